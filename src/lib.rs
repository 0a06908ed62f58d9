//! pvnet: Xen's paravirtual network I/O path (netfront / netback) as embeddable Rust crates.
//!
//! This facade re-exports the workspace's crates under one name and owns the project's
//! runnable examples (`examples/`) and benchmarks (`benches/`). Each crate can also be used on
//! its own; see the crate map in the repository's README.
//!
//! | module | crate | what |
//! |---|---|---|
//! | [`mem`] | `shared-mem` | memory shared with an untrusted peer: atomic words, bulk copies |
//! | [`ring`] | `io-ring` | Xen's shared request/response ring, byte-compatible with `io/ring.h` |
//! | [`grant`] | `grant-table` | grant tables: grant / revoke, copy / map / transfer, flip pools, any frame memory |
//! | [`event`] | `event-channel` | event channels: notify / wait / mask, eventfd and in-process ports |
//! | [`netif`] | `netif` | the netif wire ABI and validated tx / rx packet parsers |
//! | [`bus`] | `xenbus` | the control plane: states, feature keys, resources, close protocol |
//! | [`process`] | `process-host` | the Linux process host: memfds, eventfds, the control socket, the acceptor |
//! | [`front`] | `netfront` | the guest side: send / receive frames, buffer pools, offloads |
//! | [`back`] | `netback` | the driver side: serves many frontends into an uplink (switch, echo, ...) |
//! | [`tap`] | `tap` | Linux TAP devices: netback's TAP uplink, netfront as a Linux interface, vnet_hdr offloads |
//!
//! ```
//! use pvnet::ring::{BackRing, FrontRing, SharedRegion};
//!
//! let page = SharedRegion::new_zeroed(4096);
//! let mut front = FrontRing::<u64, u64>::init(page.clone())?;
//! let mut back = BackRing::<u64, u64>::attach(page)?;
//! front.push_request(&7)?;
//! let _ = front.publish_requests();
//! let request = back.requests()?.next();
//! assert_eq!(request, Some(7));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub use event_channel as event;
pub use grant_table as grant;
pub use io_ring as ring;
pub use netback as back;
pub use netfront as front;
pub use netif;
pub use process_host as process;
pub use shared_mem as mem;
pub use tap;
pub use xenbus as bus;

/// The README's examples, compiled and run as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
