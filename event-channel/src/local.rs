//! Both ends of an event channel in one process, for threads and in-process embedders.

use std::time::Duration;

use crate::{EventChannel, EventError};

#[cfg(loom)]
use loom::sync::{Arc, Condvar, Mutex};
#[cfg(not(loom))]
use std::sync::{Arc, Condvar, Mutex};

/// One side's state: its pending bit, guarded, and the condition its waiter sleeps on.
#[derive(Debug, Default)]
struct Side {
    pending: Mutex<bool>,
    wake: Condvar,
}

/// One end of an in-process event channel.
///
/// The pending bit lives under a mutex with a condition variable, so the classic lost-wakeup
/// race (notify between the waiter's check and its sleep) cannot happen: the waiter checks and
/// sleeps under the lock the notifier takes to set the bit. Loom checks this (`tests/loom.rs`).
#[derive(Debug)]
pub struct LocalPort {
    mine: Arc<Side>,
    peer: Arc<Side>,
    masked: bool,
}

impl LocalPort {
    /// Creates both ends of a channel.
    pub fn pair() -> (Self, Self) {
        let a = Arc::new(Side::default());
        let b = Arc::new(Side::default());
        (
            Self {
                mine: a.clone(),
                peer: b.clone(),
                masked: false,
            },
            Self {
                mine: b,
                peer: a,
                masked: false,
            },
        )
    }

    /// Whether an event is pending, without consuming it.
    pub fn is_pending(&self) -> bool {
        *lock(&self.mine.pending)
    }
}

/// Locks, ignoring poisoning: the guarded value is a plain bool, valid whatever a panicking
/// holder was doing.
#[cfg(not(loom))]
fn lock(m: &Mutex<bool>) -> std::sync::MutexGuard<'_, bool> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(loom)]
fn lock(m: &Mutex<bool>) -> loom::sync::MutexGuard<'_, bool> {
    m.lock().unwrap()
}

impl EventChannel for LocalPort {
    fn notify(&self) -> Result<(), EventError> {
        if Arc::strong_count(&self.peer) < 2 {
            return Err(EventError::PeerClosed);
        }
        *lock(&self.peer.pending) = true;
        self.peer.wake.notify_one();
        Ok(())
    }

    fn try_wait(&mut self) -> Result<bool, EventError> {
        if self.masked {
            return Ok(false);
        }
        Ok(std::mem::take(&mut *lock(&self.mine.pending)))
    }

    fn wait(&mut self, timeout: Option<Duration>) -> Result<bool, EventError> {
        if self.masked {
            return Err(EventError::Masked);
        }
        let mut pending = lock(&self.mine.pending);
        #[cfg(not(loom))]
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        while !*pending {
            #[cfg(not(loom))]
            {
                pending = match deadline {
                    None => self
                        .mine
                        .wake
                        .wait(pending)
                        .unwrap_or_else(std::sync::PoisonError::into_inner),
                    Some(d) => {
                        let left = d.saturating_duration_since(std::time::Instant::now());
                        if left.is_zero() {
                            return Ok(false);
                        }
                        self.mine
                            .wake
                            .wait_timeout(pending, left)
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .0
                    }
                };
            }
            #[cfg(loom)]
            {
                // Loom models no time: a timed wait is an untimed one in the model.
                let _ = timeout;
                pending = self.mine.wake.wait(pending).unwrap();
            }
        }
        *pending = false;
        Ok(true)
    }

    fn mask(&mut self) {
        self.masked = true;
    }

    fn unmask(&mut self) -> Result<bool, EventError> {
        self.masked = false;
        Ok(self.is_pending())
    }

    fn is_masked(&self) -> bool {
        self.masked
    }
}
