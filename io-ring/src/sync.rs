//! The one place the ring's orderings and fences come from, so that loom can replace them.
//!
//! Under `--cfg loom` every fence of the ring is loom's (and the shared words are loom's
//! atomics, inside `shared-mem`); otherwise they are `core`'s.

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{Ordering, fence};
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{Ordering, fence};
