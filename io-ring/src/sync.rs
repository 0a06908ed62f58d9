//! The one place atomics and fences come from, so that loom can replace them.
//!
//! Under `--cfg loom` every shared access and every fence of the ring goes through loom's
//! model-checked types; otherwise they are `core`'s. Nothing else in the crate names
//! `core::sync::atomic` directly.

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{AtomicU32, Ordering, fence};
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, Ordering, fence};
