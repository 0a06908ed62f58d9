//! A polled event per direction, shared with the C side: a word that is 1 while an event is
//! pending. Stands in for an event channel in the interop tests; a lost wakeup becomes a
//! timeout instead of a hang.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How long a side waits for an event before declaring the wakeup lost.
pub const WAIT_LIMIT: Duration = Duration::from_secs(10);

/// The two event words of a ring pair.
#[derive(Debug, Default)]
pub struct Events {
    /// Pending event for the backend.
    pub to_back: AtomicU32,
    /// Pending event for the frontend.
    pub to_front: AtomicU32,
}

/// Marks the event pending.
pub fn send(ev: &AtomicU32) {
    // SeqCst to match the C side's __ATOMIC_SEQ_CST; the ring's own barriers do the real work.
    ev.store(1, Ordering::SeqCst);
}

/// Waits for the event and clears it. `false` if it did not come within [`WAIT_LIMIT`].
pub fn wait(ev: &AtomicU32) -> bool {
    let start = Instant::now();
    while ev.swap(0, Ordering::SeqCst) == 0 {
        if start.elapsed() > WAIT_LIMIT {
            return false;
        }
        std::thread::yield_now();
    }
    true
}
