//! The control plane XenStore and XenBus provide for Xen's split drivers, for processes: a
//! backend listens on a Unix socket, checks who connects, advertises its features; a frontend
//! answers with its choices, its ring references and, attached to the same message, the
//! descriptors of its frames, grant table and event channels; both end `Connected`. Closing is
//! `Closing` answered by `Closed` once everything is released; a reconnect is a new
//! connection with new rings, grants and ports.
//!
//! Everything from the peer is untrusted: a message that is malformed, oversized, out of order
//! or late, a wrong descriptor count, or unacceptable keys gives a typed [`XenbusError`] for that
//! connection, and the listener goes on serving others.
//!
//! ```
//! use std::os::fd::AsFd;
//! use std::time::Duration;
//! use pvnet_xenbus::{BackendConfig, EventFds, FrontendChoice, Listener, QueueResources, Resources, RxMode, connect};
//!
//! let dir = std::env::temp_dir().join(format!("xenbus-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! let path = dir.join("backend.sock");
//! // Every feature offered; only this process's uid may connect; 5 s per handshake step.
//! let config = BackendConfig::default();
//! let listener = Listener::bind(&path, config)?;
//! let backend = std::thread::spawn(move || -> Result<_, pvnet_xenbus::XenbusError> {
//!     let mut conn = listener.accept()?.handshake()?;
//!     let frames = conn.take_fd(conn.resources.frames);
//!     assert!(conn.frontend_closing(Duration::from_secs(5))?);
//!     drop(frames); // release everything of this frontend, then:
//!     let choice = conn.choice.clone();
//!     conn.acknowledge_closed()?;
//!     Ok(choice)
//! });
//!
//! // The frontend: frames, grant table and one event channel (two eventfds) by descriptor.
//! let pending = connect(&path, Duration::from_secs(5))?;
//! assert!(pending.offered.rx_flip);
//! let files: Vec<std::fs::File> = (0..4).map(|_| std::fs::File::open("/dev/null")).collect::<Result<_, _>>()?;
//! let fds: Vec<_> = files.iter().map(|f| f.as_fd()).collect();
//! let resources = Resources {
//!     frames: 0,
//!     grant_table: 1,
//!     flip_pool: None,
//!     queues: vec![QueueResources {
//!         tx_ring_ref: 8,
//!         rx_ring_ref: 9,
//!         tx_event: EventFds { backend_waits: 2, backend_notifies: 3 },
//!         rx_event: None,
//!     }],
//! };
//! let mut choice = FrontendChoice::default();
//! choice.rx_mode = RxMode::Copy;
//! choice.mtu = 9000;
//! let conn = pending.finish(&choice, &resources, &fds)?;
//! conn.close()?; // returns once the backend has released everything
//! assert_eq!(backend.join().unwrap()?.mtu, 9000);
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]
#![deny(unsafe_code)]

mod control;
mod endpoint;
mod error;
pub mod local;
mod message;
mod negotiate;
mod resources;
// The unsafe code of this crate (see DESIGN.md's unsafe inventory).
#[allow(unsafe_code)]
mod socket;

pub use control::{BackendControl, FrontendControl};
pub use endpoint::{
    BackendConfig, BackendConnection, FrontendConnection, FrontendPending, Handshake, Incoming,
    Listener, Peer, Step, connect,
};
pub use error::XenbusError;
pub use message::{
    DecodeError, Keys, MAX_KEY_LEN, MAX_KEYS, MAX_MESSAGE, MAX_VALUE_LEN, Message, State,
};
pub use negotiate::{
    BackendFeatures, FrontendChoice, MAX_MTU, MAX_MTU_WITHOUT_SG, MIN_MTU, NegotiationError, RxMode,
};
pub use resources::{EventFds, QueueResources, Resources};
pub use socket::MAX_FDS;
