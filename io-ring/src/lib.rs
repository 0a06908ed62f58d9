//! Xen's shared request/response ring (`xen/io/ring.h`), byte for byte, over any shared memory.
//!
//! A ring lives in one or more pages shared by two parties. The *frontend* initialises it,
//! produces requests and consumes responses; the *backend* attaches to it, consumes requests
//! and answers each one with a response written into the same slot. Both sides keep private
//! copies of their indices, publish in batches with one index store, and notify the peer only
//! when the peer's event index asks for it (`RING_PUSH_*_AND_CHECK_NOTIFY`,
//! `RING_FINAL_CHECK_FOR_*`, with the two full barriers that make the notification race safe).
//!
//! - [`SharedRegion`] (from the `shared-mem` crate, re-exported): the memory, reached only
//!   through atomic words behind one unsafe constructor. Heap memory for tests and threads, or
//!   any `mmap`ed memory. `io-ring` itself has no `unsafe`.
//! - [`FrontRing`] / [`BackRing`]: single-owner handles (`&mut self`), generic over
//!   [`bytemuck::Pod`] request and response types. Slot size and ring size follow `ring.h`
//!   exactly ([`slot_bytes`], [`ring_size`]): a netif tx or rx ring on one 4 KiB page has 256
//!   entries, the control ring 128.
//! - The peer is untrusted: every shared index is read once per batch and validated, every
//!   slot is copied out once, and a misbehaving peer yields a [`PeerError`] (never a panic,
//!   never unbounded work) that breaks the ring for good.
//!
//! The crate is `no_std` (it needs `alloc`). Under `--cfg loom` its atomics and fences are
//! loom's, so the notification protocol is model-checked.
//!
//! # Example
//!
//! ```
//! use pvnet_io_ring::{BackRing, FrontRing, SharedRegion};
//!
//! // A one-page ring of 8-byte requests and 8-byte responses (like netif rx).
//! let page = SharedRegion::new_zeroed(4096);
//! let mut front = FrontRing::<[u32; 2], [u32; 2]>::init(page.clone())?;
//! let mut back = BackRing::<[u32; 2], [u32; 2]>::attach(page)?;
//! assert_eq!(front.size(), 256);
//!
//! // The backend goes to sleep: nothing to do, and it asks to be woken.
//! assert!(!back.final_check_requests()?);
//!
//! // The frontend pushes a batch and publishes it once: the backend asked, so notify.
//! for id in 0..3 {
//!     front.push_request(&[id, 100 + id])?;
//! }
//! assert!(front.publish_requests());
//!
//! // The backend drains the batch and answers each request in order.
//! let requests: Vec<[u32; 2]> = back.requests()?.collect();
//! for [id, value] in requests {
//!     back.push_response(&[id, value * 2])?;
//! }
//! let _notify_front = back.publish_responses();
//!
//! let responses: Vec<[u32; 2]> = front.responses()?.collect();
//! assert_eq!(responses, [[0, 200], [1, 202], [2, 204]]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

extern crate alloc;
#[cfg(any(test, loom))]
extern crate std;

mod back;
mod direction;
mod error;
mod front;
mod layout;
mod shared;
mod sync;

pub use back::BackRing;
pub use error::{PeerError, RingError, SetupError};
pub use front::FrontRing;
pub use layout::{HEADER_BYTES, SringHeader, ring_size, slot_bytes};
pub use shared::Entries;
pub use shared_mem::{RegionError, SharedRegion};
