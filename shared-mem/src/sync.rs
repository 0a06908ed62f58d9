//! Atomics from `core`, or from loom under `--cfg loom` so the model checker sees every shared
//! access.

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{AtomicU32, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, Ordering};
