//! Xen's netif wire ABI (`io/netif.h`) and the validated parsing of what a peer writes.
//!
//! - [`wire`]: every struct (`#[repr(C)]`, `Pod`, size and offset asserted) and constant of the
//!   protocol; the interop crate checks each against Xen's own header.
//! - [`parse_tx`]: a backend's view of a guest packet: the copied tx request slots in, a
//!   [`TxPacket`] (fragments inside their pages, lengths adding up, extras, GSO) or a
//!   [`TxError`] carrying Linux netback's [`Severity`] (drop, error response, fatal) out.
//! - [`parse_rx`]: a frontend's view of a received packet: the copied rx responses and the ids
//!   it posted in their slots in, an [`RxPacket`] or an [`RxError`] (drop the packet, or the
//!   backend is broken) out.
//!
//! ```
//! use pvnet_netif::wire::{TxRequest, tx_flags};
//! use pvnet_netif::{Severity, parse_tx};
//!
//! // A 1514-byte frame in two slots: 1000 bytes in the first page, 514 in the second.
//! let reqs = [
//!     TxRequest { gref: 8, offset: 0, flags: tx_flags::MORE_DATA, id: 1, size: 1514 },
//!     TxRequest { gref: 9, offset: 0, flags: 0, id: 2, size: 514 },
//! ];
//! let packet = parse_tx(&reqs)?;
//! assert_eq!(packet.len, 1514);
//! assert_eq!(packet.fragments()[0].len, 1000);
//! assert_eq!(packet.slots, 2);
//!
//! // A slot crossing its page is fatal: netback disables the interface.
//! let bad = [TxRequest { gref: 8, offset: 4000, flags: 0, id: 1, size: 200 }];
//! assert_eq!(parse_tx(&bad).unwrap_err().severity, Severity::Fatal);
//! # Ok::<(), pvnet_netif::TxError>(())
//! ```
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod extras;
mod flow;
mod offload;
mod rx;
mod tx;
pub mod wire;

pub use extras::{EXTRA_KINDS, Extras};
pub use flow::flow_hash;
pub use offload::{Gso, GsoKind, Offload};
pub use rx::{RxError, RxErrorKind, RxFragment, RxPacket, parse_rx, parse_rx_into, rx_one_slot};

pub use tx::{
    DROP_AT_FOLLOWING, FATAL_AT_FOLLOWING, MAX_DATA_SLOTS, Severity, TxError, TxErrorKind,
    TxFragment, TxPacket, parse_tx, parse_tx_into, tx_one_slot, tx_responses,
};
