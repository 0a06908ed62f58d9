//! Linux TAP devices for pvnet: the host's own network stack as a peer of the paravirtual
//! NIC.
//!
//! - [`Tap`]: a TAP device with `IFF_VNET_HDR` (multi-queue, non-blocking, each frame with its
//!   [`VnetHdr`]), offloads set with [`Tap::set_offloads`].
//! - [`VnetHdr::to_offload`] / [`VnetHdr::from_offload`]: the kernel's offload header to and
//!   from Xen's netif flags, as Linux netback translates between an skb and a netif packet
//!   (`NEEDS_CSUM` is `csum_blank` + `data_validated`, `DATA_VALID` is `data_validated`, TCP
//!   GSO the GSO extra; `csum_start`, `csum_offset` and `hdr_len` found from the frame's own
//!   headers; UDP segmentation has no netif form and is never enabled).
//! - [`fill_checksum`] and [`segment`]: the same offloads in software, for a peer that did
//!   not negotiate them.
//! - [`TapUplink`] (feature `netback`): a TAP as netback's uplink, the host one more port of
//!   a switch between the vifs.
//! - [`TapBridge`] (feature `netfront`): a netfront as a Linux interface.
//!
//! ```
//! use pvnet_tap::{VnetHdr, flags, gso};
//! // The header the kernel writes before a TCP/IPv4 GSO packet (Ethernet, IPv4, TCP with
//! // timestamps), and a frame with such headers: netif's view is a partial checksum, data
//! // validated, and the GSO extra.
//! let hdr = VnetHdr { flags: flags::NEEDS_CSUM, gso_type: gso::TCPV4, hdr_len: 66,
//!     gso_size: 1448, csum_start: 34, csum_offset: 16, num_buffers: 0 };
//! # let frame = pvnet_tap::testing::tcp_frame(false, 32, 3000);
//! let off = hdr.to_offload(&frame)?;
//! assert!(off.csum_blank && off.data_validated);
//! assert_eq!(off.gso.map(|g| g.size), Some(1448));
//! # Ok::<(), pvnet_tap::OffloadError>(())
//! ```
#![deny(missing_docs)]
#![deny(unsafe_code)]

#[cfg(feature = "netfront")]
mod bridge;
mod error;
mod headers;
mod soft;
#[cfg(feature = "netback")]
mod uplink;
mod vnet;
// The unsafe code of this crate: the TUN ioctls.
#[allow(unsafe_code)]
mod device;
#[cfg(feature = "test-utils")]
pub mod testing;

#[cfg(feature = "netfront")]
pub use bridge::{BridgeError, BridgeStats, TapBridge};
pub use device::{Tap, TapOffloads};
pub use error::{OffloadError, TapError};
pub use soft::{fill_checksum, segment};
#[cfg(feature = "netback")]
pub use uplink::{TapStats, TapUplink};
pub use vnet::{VNET_HDR_LEN, VnetHdr, flags, gso};
