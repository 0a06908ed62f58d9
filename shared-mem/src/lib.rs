//! Memory shared with an untrusted peer (another thread, process or domain), and the only
//! place in pvnet where raw shared memory is touched.
//!
//! [`SharedRegion`] has one unsafe constructor; everything after it is bounds-checked safe
//! code, in the manner of vm-memory's `volatile_memory.rs`. Control data (ring indices, slots,
//! grant entries) is read and written as 32-bit atomic words, with compare-and-swap where a
//! protocol needs it; bulk payload (packet bytes in granted frames) is copied with
//! [`SharedRegion::copy_out`] / [`SharedRegion::copy_in`] / [`SharedRegion::copy_to`], which
//! never create a Rust reference into the shared memory.
//!
//! ```
//! use core::sync::atomic::Ordering;
//! use pvnet_shared_mem::SharedRegion;
//!
//! let page = SharedRegion::new_zeroed(4096);
//! page.store_u32(8, 0xfeed, Ordering::Release)?;
//! assert_eq!(page.load_u32(8, Ordering::Acquire)?, 0xfeed);
//! page.copy_in(100, b"packet bytes")?;
//! let mut out = [0u8; 6];
//! page.copy_out(100, &mut out)?;
//! assert_eq!(&out, b"packet");
//! # Ok::<(), pvnet_shared_mem::RegionError>(())
//! ```
#![no_std]
#![deny(missing_docs)]
#![deny(unsafe_code)]

extern crate alloc;
#[cfg(any(test, loom, feature = "std"))]
extern crate std;

// The unsafe code of this crate (see DESIGN.md's unsafe inventory).
#[allow(unsafe_code)]
mod region;
mod sync;

pub use region::{MAX_SPANS, RegionError, SharedRegion};
