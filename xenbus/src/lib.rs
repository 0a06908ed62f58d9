//! The control plane XenStore and XenBus provide for Xen's split drivers, independent of how
//! its messages travel: device [`State`]s, the feature keys a backend offers
//! ([`BackendFeatures`]) and a frontend chooses from ([`FrontendChoice`], checked against the
//! offer on both sides), the resources a frontend hands over ([`Resources`]: ring grant refs,
//! event channels, memory, by descriptor index), one strict [`Message`] codec for them, and
//! the drivers' view of a connection once it is up ([`BackendControl`], [`FrontendControl`]:
//! whether the peer is closing, and the close protocol: `Closing` answered by `Closed` once
//! everything is released; a reconnect is a new connection with new rings, grants and ports).
//!
//! Transports: [`local`] connects two drivers in one process (no socket, no descriptor); the
//! `pvnet-process-host` crate carries the messages over a Unix socket between processes, with
//! the descriptors attached and the peer's credentials checked; a VMM's XenStore emulation is a
//! third. Everything from the peer is untrusted: a message that is malformed, oversized, out of
//! order or late, or unacceptable keys give a typed [`XenbusError`] for that connection.
//!
//! ```
//! use pvnet_xenbus::{BackendControl, BackendFeatures, FrontendChoice, FrontendControl, RxMode, local};
//! use std::time::Duration;
//!
//! // The backend offers every feature; the frontend picks copy receive and jumbo frames.
//! let offered = BackendFeatures::default();
//! let mut choice = FrontendChoice::default();
//! choice.rx_mode = RxMode::Copy;
//! choice.mtu = 9000;
//! let (mut back, mut front, agreed) = local::connect(&offered, &choice)?;
//! assert_eq!(agreed.mtu, 9000);
//!
//! // The frontend asks to close; the backend releases everything, then answers Closed.
//! front.request_close()?;
//! assert!(back.frontend_closing());
//! back.acknowledge_closed()?;
//! assert!(front.closed(Duration::ZERO)?);
//!
//! // The same checks as over a socket: a choice not offered is refused.
//! let mut offered = BackendFeatures::default();
//! offered.rx_flip = false;
//! choice.rx_mode = RxMode::Flip;
//! assert!(local::connect(&offered, &choice).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod control;
mod error;
pub mod local;
mod message;
mod negotiate;
mod resources;

pub use control::{BackendControl, FrontendControl, Peer};
pub use error::XenbusError;
pub use message::{
    DecodeError, Keys, MAX_KEY_LEN, MAX_KEYS, MAX_MESSAGE, MAX_VALUE_LEN, Message, State,
};
pub use negotiate::{
    BackendFeatures, FrontendChoice, MAX_MTU, MAX_MTU_WITHOUT_SG, MIN_MTU, NegotiationError,
    RxMode, TxFeatures,
};
pub use resources::{EventFds, QueueResources, Resources};
