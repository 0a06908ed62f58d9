//! The driver side of Xen's paravirtual network path (netback), for any host that can share
//! memory and signal: frontends (guests) connect over the control plane ([`xenbus`]), hand
//! over their frames, grant table and event channels, and netback moves their frames between
//! their rings and an [`Uplink`]. The host is a type parameter ([`BackendHost`]): the Linux
//! process host ([`ProcessHost`], the default, on [`process_host`]), a VMM's guest memory, or
//! one process ([`Host`]; the in-process pair of `testing`, feature `test-utils`).
//!
//! - Guest transmit: each request is copied out of the ring once, parsed by
//!   [`netif::parse_tx`] with Linux netback's judgement (drop / error / fatal), and the
//!   packet's bytes are brought into backend memory by grant copy or by mapping
//!   ([`TxMode`]). Every request is answered, extras with `NULL`.
//! - Guest receive: frames the uplink delivers wait in a per-vif backlog (capped) and go into
//!   the buffers the guest posted, by grant copy or page flip, with the GSO extra after the
//!   first data slot.
//! - Several queues per vif, steered by [`netif::flow_hash`]; a transmit rate limit per vif
//!   ([`RateLimit`]); a budget per poll; events re-armed only after the rings are drained.
//! - A frontend that breaks the protocol disables its own vif ([`VifFault`]); the others go
//!   on. A frontend that closes has everything of it released before its close is answered.
//!
//! A backend with an echo uplink on one thread, a netfront on another, over a real socket,
//! shared memory and eventfds:
//!
//! ```
//! use std::time::Duration;
//! use pvnet_netback::{Echo, Netback, NetbackConfig};
//! use netfront::{Netfront, NetfrontConfig};
//! use process_host::{BackendConfig, Listener};
//!
//! let path = std::env::temp_dir().join(format!("netback-doc-{}.sock", std::process::id()));
//! // Every feature offered; only this process's uid may connect.
//! let listener = Listener::bind(&path, BackendConfig::default())?;
//! let mut backend = Netback::new(NetbackConfig::default(), Echo)?;
//! let incoming = pvnet_netback::spawn_acceptor(listener, backend.waker())?;
//! std::thread::spawn(move || -> Result<(), pvnet_netback::NetbackError> {
//!     loop {
//!         backend.wait(None)?;
//!         while let Ok(conn) = incoming.try_recv() {
//!             if let Ok(conn) = conn {
//!                 backend.attach(conn)?;
//!             }
//!         }
//!         backend.poll()?;
//!         if !backend.take_closed().is_empty() {
//!             return Ok(()); // our one frontend came and went
//!         }
//!     }
//! });
//!
//! let mut nic = Netfront::connect(&path, NetfrontConfig::default())?;
//! let frame = [0x5au8; 1514];
//! nic.send(&frame, netif::Offload::default())?;
//! let mut echoed = Vec::new();
//! while echoed.is_empty() {
//!     nic.receive(64, |rx| echoed.extend_from_slice(rx.data))?;
//!     if echoed.is_empty() {
//!         nic.wait(Some(Duration::from_secs(5)))?;
//!     }
//! }
//! assert_eq!(echoed, frame);
//! nic.close()?;
//! # let _ = std::fs::remove_file(&path); // the listener may have gone already
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod backend;
mod buffer_age;
mod credit;
mod error;
mod host;
mod memory;
mod process;
mod rx;
mod stats;
mod storm;
#[cfg(feature = "test-utils")]
pub mod testing;
mod tx;
mod uplink;
mod vif;

pub use backend::{ClosedVif, Netback, NetbackConfig, Sleep, Token, VifInfo, Waker};
pub use credit::{MIN_BURST, RateLimit};
pub use error::{NetbackError, VifFault};
pub use host::{BackendHost, Host, QueueParts, VifParts};
pub use memory::{MAX_PACKET_PAGES, PacketId, PacketMemory};
pub use process::{ProcessHost, ProcessHosts, StrictProcessHost, spawn_acceptor};
pub use stats::VifStats;
pub use tx::TxMode;
pub use uplink::{Callback, Echo, LEARNT_AGE, MAX_LEARNT, Outbox, Sink, Switch, Uplink, VifId};
