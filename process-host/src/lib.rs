//! The Linux process host for pvnet's drivers: a frontend and a backend in two processes, as
//! a domU and its driver domain. Everything process-specific lives here, below the drivers:
//!
//! - **Memory** ([`create_memfd`], [`map_shared`], sealed against resizing): a frontend's frames, grant table and flip
//!   pool are memfds, handed to the backend by descriptor and mapped `MAP_SHARED` there (as
//!   dom0 maps a guest through gntdev); [`RemapWindow`] maps flipped pool frames at fixed
//!   addresses, which costs what a page flip costs on real hardware.
//! - **The control socket** ([`Listener`], [`connect`]): xenbus's messages over a Unix
//!   `SOCK_SEQPACKET` socket, the descriptors attached with SCM_RIGHTS, the peer's credentials
//!   checked (SO_PEERCRED) against an allow-list, every receive bounded by a timeout; a
//!   blocking handshake ([`Incoming::handshake`]), a non-blocking one for event loops
//!   ([`Handshake::step`]), or one on a thread of its own ([`spawn_acceptor`]).
//! - **Doorbells** ([`Doorbell`]): an event channel is a pair of AF_UNIX datagram sockets,
//!   one per direction, used only with `MSG_DONTWAIT`: nothing the peer does with its
//!   descriptors can make this end block (an eventfd shared with the peer could be saturated,
//!   drained first or switched to non-blocking under us).
//! - **The hand-over** ([`Offer`] on the frontend; [`BackendConnection::map_memory`] and
//!   [`BackendConnection::take_event_channel`] on the backend): memfds and doorbells
//!   made, indexed as xenbus's [`Resources`](xenbus::Resources) name them, checked and adopted.
//!
//! The drivers' process constructors (`Netback::new` / `Netback::attach`, `Netfront::connect`)
//! are built on this crate; nothing else in them is process-specific.
//!
//! ```
//! use std::time::Duration;
//! use event_channel::EventChannel;
//! use pvnet_process_host::{BackendConfig, Listener, Offer, connect};
//! use xenbus::{FrontendChoice, QueueResources, Resources, RxMode};
//!
//! let dir = std::env::temp_dir().join(format!("process-host-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! let path = dir.join("backend.sock");
//! // Every feature offered; only this process's uid may connect; 5 s per handshake step.
//! let listener = Listener::bind(&path, BackendConfig::default())?;
//! let backend = std::thread::spawn(move || -> Result<_, Box<dyn std::error::Error + Send + Sync>> {
//!     let mut conn = listener.accept()?.handshake()?;
//!     let res = conn.resources.clone();
//!     let frames = conn.map_memory(res.frames, "frames", 1 << 20)?;
//!     let mut bell = conn.take_event_channel(res.queues[0].tx_event)?;
//!     assert!(bell.wait(Some(Duration::from_secs(5)))?, "the frontend rang");
//!     let mut word = [0u8; 5];
//!     frames.copy_out(0, &mut word)?;
//!     assert!(conn.frontend_closing(Duration::from_secs(5))?);
//!     drop(frames); // release everything of this frontend, then:
//!     conn.acknowledge_closed()?;
//!     Ok(word)
//! });
//!
//! // The frontend: frames and a grant table in memfds, one event channel.
//! let pending = connect(&path, Duration::from_secs(5))?;
//! let mut offer = Offer::new();
//! let (frames, frames_fd) = offer.memory(c"frames", 4 * 4096)?;
//! let (_table, table_fd) = offer.memory(c"grants", 4096)?;
//! let (mut port, tx_event) = offer.event_channel()?;
//! frames.copy_in(0, b"hello")?;
//! let resources = Resources {
//!     frames: frames_fd,
//!     grant_table: table_fd,
//!     flip_pool: None,
//!     queues: vec![QueueResources { tx_ring_ref: 8, rx_ring_ref: 9, tx_event, rx_event: None }],
//! };
//! let mut choice = FrontendChoice::default();
//! choice.rx_mode = RxMode::Copy;
//! let mut conn = offer.send(pending, &choice, &resources)?;
//! // The backend answered with its end of each event channel: ring it.
//! conn.connect_doorbells([&mut port])?;
//! port.notify()?;
//! conn.close()?; // returns once the backend has released everything
//! assert_eq!(&backend.join().unwrap().map_err(|e| e.to_string())?, b"hello");
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]
#![deny(unsafe_code)]

mod acceptor;
mod doorbell;
mod endpoint;
mod guarded;
mod handover;
mod path;
#[cfg(any(test, feature = "test-utils"))]
pub mod testing;
// The unsafe code of this crate, one module per kind (see DESIGN.md's unsafe inventory):
// adopting a mapping, reserving and remapping a window, adopting received descriptors.
#[allow(unsafe_code)]
mod memfd;
#[allow(unsafe_code)]
mod remap;
#[allow(unsafe_code)]
mod socket;

pub use acceptor::{Accepted, MAX_HANDSHAKES, MAX_HANDSHAKES_PER_UID, spawn_acceptor};
pub use doorbell::Doorbell;
pub use endpoint::{
    BackendConfig, BackendConnection, FrontendConnection, FrontendPending, Handshake, Incoming,
    Listener, Step, connect, connect_to, default_backend_uids,
};
pub use guarded::GuardedFrames;
pub use handover::{MAX_MAPPED, Offer};
pub use memfd::{SEALS, check_sealed, create_memfd, map_owned, map_shared};
pub use path::default_socket_path;
pub use remap::RemapWindow;
pub use socket::MAX_FDS;

/// The backend's domain id on the process host (dom0's): frontends grant to it.
pub const BACKEND_DOMID: grant_table::DomId = grant_table::DomId(0);
