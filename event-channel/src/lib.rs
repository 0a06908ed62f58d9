//! Xen-style event channels: a pair of ports joining two domains, each with one bit of pending
//! state.
//!
//! [`EventChannel::notify`] sets the peer's pending bit and wakes it unless the peer masked its
//! port; [`EventChannel::wait`] blocks until this port's bit is set and clears it. Events
//! coalesce (any number of notifies before a wait are one event), so a woken side always
//! re-checks its rings. Masking holds events back without losing them: unmasking a port with
//! an event pending re-delivers it.
//!
//! - [`EventFdPort`]: the process host, one eventfd per direction. The fds travel to the peer
//!   process (over a Unix socket, or by inheritance) and the port is `AsFd`, so it can sit in an
//!   epoll / mio / tokio loop.
//! - [`LocalPort`]: both ends in one process (threads), on a mutex and condition variable;
//!   model-checked with loom.
//! - [`SpinThenWait`]: spins on a cheap readiness check for a bounded time before blocking,
//!   NAPI-style, so a busy peer costs no system call.
//! - For loops that serve many rings (netback, multi-queue netfront): [`wait_any`] sleeps on
//!   many descriptors at once, [`QueuePorts`] keeps a queue's channel(s) with late-EOI
//!   bookkeeping, and [`wait_for_work`] is the whole wait (late EOI, a spin paced by the
//!   clock, arming, sleeping, again on a stale event) over a [`Sleeper`]'s hooks.
//!
//! ```
//! use std::time::Duration;
//! use pvnet_event_channel::{EventChannel, EventFdPort};
//!
//! let (mut front, mut back) = EventFdPort::pair()?;
//! front.notify()?;
//! front.notify()?; // coalesces with the first
//! assert!(back.wait(Some(Duration::from_secs(1)))?);
//! assert!(!back.try_wait()?, "one event, however many notifies");
//!
//! back.mask();
//! front.notify()?;
//! assert!(!back.try_wait()?, "masked: held back");
//! assert!(back.unmask()?, "unmask reports the pending event");
//! assert!(back.try_wait()?, "and re-delivers it");
//! # Ok::<(), pvnet_event_channel::EventError>(())
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod eventfd;
mod local;
mod poll;
mod queue;
mod sleep;
mod spin;
mod waiter;

use std::time::Duration;

pub use eventfd::EventFdPort;
pub use local::LocalPort;
pub use poll::wait_any;
pub use queue::QueuePorts;
pub use sleep::{BLIND_SLEEP, Sleeper, wait_for_work};
pub use waiter::{Check, SpinThenWait};

/// Why an event-channel operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    /// The port is masked: waiting on it would never return an event.
    #[error("the port is masked")]
    Masked,
    /// The peer's end was dropped ([`LocalPort`]; an eventfd cannot tell).
    #[error("the peer's end of the channel is closed")]
    PeerClosed,
    /// A system call failed.
    #[error("event channel I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// One end of an event channel. Implemented by [`EventFdPort`] (processes) and [`LocalPort`]
/// (threads); a Xen `/dev/xen/evtchn` port would be a third.
pub trait EventChannel: Send {
    /// Sets the peer's pending bit and wakes it, unless it is masked.
    ///
    /// # Errors
    /// [`EventError::PeerClosed`] if the implementation can tell the peer's end is gone;
    /// [`EventError::Io`].
    fn notify(&self) -> Result<(), EventError>;

    /// Clears this port's pending bit without blocking. `Ok(true)` if an event was pending.
    /// A masked port reports `Ok(false)` and keeps its event for [`unmask`](Self::unmask).
    ///
    /// # Errors
    /// [`EventError::Io`].
    fn try_wait(&mut self) -> Result<bool, EventError>;

    /// Blocks until an event is pending, clears it and returns `Ok(true)`; `Ok(false)` if
    /// `timeout` passed first (`None`: no limit).
    ///
    /// # Errors
    /// [`EventError::Masked`] if the port is masked; [`EventError::Io`].
    fn wait(&mut self, timeout: Option<Duration>) -> Result<bool, EventError>;

    /// Masks the port: events are held pending, not delivered.
    fn mask(&mut self);

    /// Unmasks the port. Returns `Ok(true)` if an event is pending, which the next
    /// [`try_wait`](Self::try_wait) or [`wait`](Self::wait) then delivers at once.
    ///
    /// # Errors
    /// [`EventError::Io`].
    fn unmask(&mut self) -> Result<bool, EventError>;

    /// Whether the port is masked.
    fn is_masked(&self) -> bool;

    /// The descriptor that becomes readable while an event is pending, for a loop that sleeps
    /// on many (`poll`, epoll, mio, tokio); `None` for a port without one (an in-process
    /// port: its embedder steps the drivers instead of sleeping on it).
    fn readiness_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        None
    }

    /// Clears an event that [`readiness_fd`](Self::readiness_fd) reported ready. By default a
    /// [`try_wait`](Self::try_wait), which never waits (what a port without a descriptor
    /// needs); an eventfd does it in one `read`, which would block on a counter not reported
    /// ready.
    ///
    /// # Errors
    /// [`EventError::Io`].
    fn clear_ready(&mut self) -> Result<(), EventError> {
        self.try_wait().map(drop)
    }
}
