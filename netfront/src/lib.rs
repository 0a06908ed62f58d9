//! The guest side of Xen's paravirtual network path (netfront), for any host that can share
//! memory and signal.
//!
//! [`Netfront::connect`] allocates its memory (rings, a transmit buffer page per ring slot, a
//! receive buffer page per slot or a flip pool), grants it once for the whole connection,
//! hands it over with its event channels through the control plane ([`xenbus`]) and posts
//! every receive buffer. Then:
//!
//! - [`send`](Netfront::send), [`send_sg`](Netfront::send_sg) and
//!   [`send_batch`](Netfront::send_batch) copy frames into transmit buffers and post them
//!   (frames up to 65535 bytes with scatter-gather, with checksum and GSO metadata the
//!   backend agreed to); a flow always goes to the same queue, so it is never reordered.
//! - [`receive`](Netfront::receive) hands received frames to a closure, in order, after
//!   validating everything the backend wrote ([`netif::parse_rx`]: ids, statuses, offsets,
//!   lengths); the buffers are posted again at once.
//! - [`wait`](Netfront::wait) spins (if configured), arms the rings and sleeps on the event
//!   channels; [`close`](Netfront::close) revokes every grant once the backend let go.
//!
//! A backend that misbehaves turns the device [`broken`](Netfront::broken) with a typed
//! [`BackendFault`]; nothing it writes can make netfront panic or read outside its own
//! frames.
//!
//! Against a netback listening on `path` (this example compiles but does not run here:
//! netback's crate docs run the same with a backend thread; netfront has no dependency on
//! netback, not even for its tests, so the two publish independently):
//!
//! ```no_run
//! use pvnet_netfront::{Netfront, NetfrontConfig};
//! use netif::Offload;
//! # let path = std::path::Path::new("/run/pvnet/backend.sock");
//!
//! let mut nic = Netfront::connect(&path, NetfrontConfig::default())?;
//! let frame = [0xffu8; 60];
//! nic.send(&frame, Offload::default())?;
//! let mut got = 0;
//! while got == 0 {
//!     got = nic.receive(64, |rx| println!("{} bytes on queue {}", rx.data.len(), rx.queue))?;
//!     if got == 0 {
//!         nic.wait(None)?;
//!     }
//! }
//! let report = nic.close()?; // the backend let go of everything; every grant is revoked
//! assert!(report.revoked > 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod device;
mod error;
mod flip;
mod host;
#[cfg(feature = "smoltcp")]
mod phy;
mod process;
mod rxq;
mod stats;
#[cfg(feature = "test-utils")]
pub mod testing;
mod txq;

pub use device::{
    CloseReport, DEFAULT_RX_BUFFERS, MAX_RX_BUFFERS, Netfront, NetfrontConfig, PendingNetfront,
    TxBatch, TxBuffer,
};
pub use error::{BackendFault, NetfrontError, SendError};
pub use host::{FlipWindow, FrontMemory, FrontendHost, Host, Layout, RingRefs};
#[cfg(feature = "smoltcp")]
pub use phy::{RxToken, SmoltcpDevice, TxToken};
pub use process::ProcessHost;
pub use rxq::RxFrame;
pub use stats::Stats;
