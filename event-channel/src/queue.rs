//! The event channels of one queue pair, as a poll loop uses them.

use std::os::fd::BorrowedFd;

use crate::{EventChannel, EventError, EventFdPort};

/// The event channels of one queue pair (a transmit and a receive ring): one port for both, or
/// one per ring (Xen's split event channels), with the late-EOI bookkeeping a loop that sleeps
/// on many descriptors needs.
///
/// Generic over the port ([`EventFdPort`] between processes, [`LocalPort`](crate::LocalPort)
/// in one process, a VMM's own). The loop sleeps on [`fds`](Self::fds) (with
/// [`wait_any`](crate::wait_any)), or, for ports without descriptors, is stepped by its
/// embedder; it hands the
/// readiness back with [`mark_ready`](Self::mark_ready), drains its rings, and only then calls
/// [`end_of_interrupt`](Self::end_of_interrupt) to clear the events, before its next final
/// check: an event sent while it worked is absorbed by that clear, and the final check sees
/// the work it announced. A peer notifying without end therefore buys at most one drain per
/// sleep (XSA-332's late EOI).
#[derive(Debug)]
pub struct QueuePorts<P = EventFdPort> {
    tx: P,
    rx: Option<P>,
    fired: [bool; 2],
}

impl<P: EventChannel> QueuePorts<P> {
    /// `tx` serves both rings unless `rx` is given.
    pub fn new(tx: P, rx: Option<P>) -> Self {
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

    /// The ports, the transmit ring's first: to finish setting them up once the peer's half
    /// of the channels came (a process host's doorbells).
    pub fn ports_mut(&mut self) -> impl Iterator<Item = &mut P> {
        std::iter::once(&mut self.tx).chain(self.rx.as_mut())
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

    /// Sends the notifications a poll owes: `tx` for the transmit ring, `rx` for the receive
    /// ring. Rings that share a channel get one event for both (the peer drains both rings
    /// on any event of the channel); split channels get one each.
    ///
    /// # Errors
    /// [`EventError::Io`].
    pub fn notify_owed(&self, tx: bool, rx: bool) -> Result<(), EventError> {
        match &self.rx {
            Some(r) => {
                if tx {
                    self.tx.notify()?;
                }
                if rx {
                    r.notify()?;
                }
            }
            None => {
                if tx || rx {
                    self.tx.notify()?;
                }
            }
        }
        Ok(())
    }

    /// Appends the descriptors to sleep on (one, or two if split). Returns `false` if a port
    /// has none (then nothing is appended: the loop cannot sleep on this queue).
    pub fn fds<'a>(&'a self, out: &mut Vec<BorrowedFd<'a>>) -> bool {
        let tx = self.tx.readiness_fd();
        let rx = self.rx.as_ref().map(EventChannel::readiness_fd);
        match (tx, rx) {
            (Some(t), None) => out.push(t),
            (Some(t), Some(Some(r))) => {
                out.push(t);
                out.push(r);
            }
            _ => return false,
        }
        true
    }

    /// Whether the ports have descriptors to sleep on.
    pub fn has_fds(&self) -> bool {
        self.tx.readiness_fd().is_some()
            && self.rx.as_ref().is_none_or(|r| r.readiness_fd().is_some())
    }

    /// Marks the transmit ring's channel (`rx == false`) or the receive ring's as fired, for
    /// an embedder whose own poll reported its descriptor; ports without descriptors count
    /// as fired whenever asked (their pending bit is cleared without waiting).
    pub fn mark_fired(&mut self, rx: bool) {
        self.fired[usize::from(rx && self.rx.is_some())] = true;
    }

    /// Takes this queue's readiness flags, in [`fds`](Self::fds)' order, from `ready`.
    pub fn mark_ready(&mut self, ready: &mut impl Iterator<Item = bool>) {
        self.fired[0] |= ready.next().unwrap_or(false);
        if self.rx.is_some() {
            self.fired[1] |= ready.next().unwrap_or(false);
        }
    }

    /// Clears the events the last sleep saw (one `read` each on eventfds); call it after
    /// draining the rings and before the final check. Returns whether a sleep (or the
    /// embedder) had reported an event on these ports since the last call, which a loop uses
    /// to tell events that brought work from a storm.
    ///
    /// # Errors
    /// [`EventError::Io`].
    pub fn end_of_interrupt(&mut self) -> Result<bool, EventError> {
        // A port without a descriptor is never marked by a sleep: its pending bit is cleared
        // here every time (without waiting), which is what a sleep would have reported.
        let fds = self.has_fds();
        let tx = std::mem::take(&mut self.fired[0]);
        if tx || !fds {
            self.tx.clear_ready()?;
        }
        let rx = std::mem::take(&mut self.fired[1]);
        if (rx || !fds)
            && let Some(port) = &mut self.rx
        {
            port.clear_ready()?;
        }
        Ok(tx || rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    /// A port that counts the notifications sent through it.
    #[derive(Debug, Default)]
    struct Counting(Arc<AtomicU32>);

    impl EventChannel for Counting {
        fn notify(&self) -> Result<(), EventError> {
            // Relaxed: a counter read by the same thread.
            self.0.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        fn try_wait(&mut self) -> Result<bool, EventError> {
            Ok(false)
        }
        fn wait(&mut self, _timeout: Option<Duration>) -> Result<bool, EventError> {
            Ok(false)
        }
        fn mask(&mut self) {}
        fn unmask(&mut self) -> Result<bool, EventError> {
            Ok(false)
        }
        fn is_masked(&self) -> bool {
            false
        }
    }

    #[test]
    fn owed_notifications_share_a_shared_channel() {
        let sent = Arc::new(AtomicU32::new(0));
        let ports = QueuePorts::new(Counting(sent.clone()), None);
        for (tx, rx, events) in [
            (false, false, 0),
            (true, false, 1),
            (false, true, 1),
            (true, true, 1),
        ] {
            sent.store(0, Ordering::Relaxed);
            ports.notify_owed(tx, rx).unwrap();
            assert_eq!(sent.load(Ordering::Relaxed), events, "tx {tx} rx {rx}");
        }
    }

    #[test]
    fn owed_notifications_go_to_their_own_split_channels() {
        let (tx_sent, rx_sent) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
        let ports = QueuePorts::new(Counting(tx_sent.clone()), Some(Counting(rx_sent.clone())));
        let counts = || {
            (
                tx_sent.load(Ordering::Relaxed),
                rx_sent.load(Ordering::Relaxed),
            )
        };
        ports.notify_owed(true, true).unwrap();
        assert_eq!(counts(), (1, 1));
        ports.notify_owed(false, true).unwrap();
        assert_eq!(counts(), (1, 2));
        ports.notify_owed(false, false).unwrap();
        assert_eq!(counts(), (1, 2));
    }
}
