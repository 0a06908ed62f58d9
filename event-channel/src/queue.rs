//! The event channels of one queue pair, as a poll loop uses them.

use std::os::fd::{AsFd, BorrowedFd};

use crate::{EventChannel, EventError, EventFdPort};

/// The event channels of one queue pair (a transmit and a receive ring): one port for both, or
/// one per ring (Xen's split event channels), with the late-EOI bookkeeping a loop that sleeps
/// on many descriptors needs.
///
/// The loop sleeps on [`fds`](Self::fds) (with [`wait_any`](crate::wait_any)), hands the
/// readiness back with [`mark_ready`](Self::mark_ready), drains its rings, and only then calls
/// [`end_of_interrupt`](Self::end_of_interrupt) to clear the events, before its next final
/// check: an event sent while it worked is absorbed by that clear, and the final check sees
/// the work it announced. A peer notifying without end therefore buys at most one drain per
/// sleep (XSA-332's late EOI).
#[derive(Debug)]
pub struct QueuePorts {
    tx: EventFdPort,
    rx: Option<EventFdPort>,
    fired: [bool; 2],
}

impl QueuePorts {
    /// `tx` serves both rings unless `rx` is given.
    pub fn new(tx: EventFdPort, rx: Option<EventFdPort>) -> Self {
        Self {
            tx,
            rx,
            fired: [false; 2],
        }
    }

    /// Whether the rings have a channel each.
    pub fn split(&self) -> bool {
        self.rx.is_some()
    }

    /// Notifies the peer about the transmit ring.
    ///
    /// # Errors
    /// [`EventError::Io`].
    pub fn notify_tx(&self) -> Result<(), EventError> {
        self.tx.notify()
    }

    /// Notifies the peer about the receive ring (on its own channel if split).
    ///
    /// # Errors
    /// [`EventError::Io`].
    pub fn notify_rx(&self) -> Result<(), EventError> {
        self.rx.as_ref().unwrap_or(&self.tx).notify()
    }

    /// Appends the descriptors to sleep on (one, or two if split).
    pub fn fds<'a>(&'a self, out: &mut Vec<BorrowedFd<'a>>) {
        out.push(self.tx.as_fd());
        if let Some(rx) = &self.rx {
            out.push(rx.as_fd());
        }
    }

    /// Takes this queue's readiness flags, in [`fds`](Self::fds)' order, from `ready`.
    pub fn mark_ready(&mut self, ready: &mut impl Iterator<Item = bool>) {
        self.fired[0] |= ready.next().unwrap_or(false);
        if self.rx.is_some() {
            self.fired[1] |= ready.next().unwrap_or(false);
        }
    }

    /// Clears the events the last sleep saw (one `read` each); call it after draining the
    /// rings and before the final check.
    ///
    /// # Errors
    /// [`EventError::Io`].
    pub fn end_of_interrupt(&mut self) -> Result<(), EventError> {
        if std::mem::take(&mut self.fired[0]) {
            self.tx.consume_ready()?;
        }
        if std::mem::take(&mut self.fired[1])
            && let Some(rx) = &mut self.rx
        {
            rx.consume_ready()?;
        }
        Ok(())
    }
}
