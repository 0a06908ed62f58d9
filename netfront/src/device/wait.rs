//! Waiting for work: late EOI, an optional spin, arming the rings, one sleep over the
//! event channels and the control channel.

use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use event_channel::{Sleeper, wait_any, wait_for_work};
use xenbus::FrontendControl;

use super::Netfront;
use crate::error::{BackendFault, NetfrontError};
use crate::host::FrontendHost;
use crate::txq::ring_error;

impl<H: FrontendHost> Netfront<H> {
    /// A cheap look for work while spinning: received frames always, transmit completions
    /// only when `tx_too` (their header line is the one the backend writes while it works:
    /// reading it on every look would pull it away from the backend for nothing).
    fn has_work(&mut self, tx_too: bool) -> Result<bool, NetfrontError> {
        for q in &mut self.queues {
            if q.rx.has_work()?
                || (tx_too && q.tx.ring.unconsumed_responses().map_err(ring_error)? > 0)
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn final_check(&mut self) -> Result<bool, NetfrontError> {
        let mut work = false;
        for q in &mut self.queues {
            work |= q.rx.ring.final_check_responses().map_err(ring_error)?;
            work |= q.rx.has_work()?;
            work |= q.tx.ring.final_check_responses().map_err(ring_error)?;
        }
        Ok(work)
    }

    /// Waits until a frame arrives or transmit buffers come back, or `timeout` passes: spins
    /// for the configured time looking at the rings, then arms them and sleeps on the event
    /// channels and the control socket. Returns `true` when there is work (call
    /// [`receive`](Self::receive) and [`poll`](Self::poll)), `false` only when the timeout
    /// passed without any: a stale event does not end the wait.
    ///
    /// # Errors
    /// [`NetfrontError::Broken`] (with [`BackendFault::Closed`] if the backend closed);
    /// local failures.
    pub fn wait(&mut self, timeout: Option<Duration>) -> Result<bool, NetfrontError> {
        self.wait_with(&[], timeout)
    }

    /// As [`wait`](Self::wait), and also returns (`true`) when one of `also` is readable:
    /// for a loop that moves frames between this device and descriptors of its own (a TAP,
    /// a socket). The spin looks at them about once a millisecond, as at the control channel.
    ///
    /// # Errors
    /// As [`wait`](Self::wait).
    pub fn wait_with(
        &mut self,
        also: &[BorrowedFd<'_>],
        timeout: Option<Duration>,
    ) -> Result<bool, NetfrontError> {
        self.check()?;
        let deadline = timeout.map(|t| Instant::now() + t);
        let spin = self.spin;
        let r = wait_for_work(&mut Waiting(self, also), spin, deadline);
        self.note(r)
    }

    /// Whether the control channel has news (the backend changed state or went away): a
    /// zero-time poll of its descriptor, or a look at a channel without one.
    fn control_ready(&mut self) -> Result<bool, NetfrontError> {
        let Some(c) = &mut self.conn else {
            return Ok(false);
        };
        match c.readiness_fd() {
            Some(fd) => {
                let mut ready = [false];
                Ok(wait_any(&[fd], Some(Duration::ZERO), &mut ready)? > 0)
            }
            None => Ok(c.backend_closing()),
        }
    }

    /// Clears the events that woke the last sleep, now that the rings were looked at (late
    /// EOI: a notification sent while we worked is absorbed here, and the final check that
    /// follows sees its work).
    fn end_of_interrupt(&mut self) -> Result<(), NetfrontError> {
        for q in &mut self.queues {
            q.events.end_of_interrupt()?;
        }
        Ok(())
    }

    /// Whether a channel has no descriptor to sleep on (an in-process host).
    fn blind(&self) -> bool {
        self.queues.iter().any(|q| !q.events.has_fds())
            || self
                .conn
                .as_ref()
                .is_some_and(|c| c.readiness_fd().is_none())
    }

    /// Sleeps on the event channels, the control channel and `also`; marks the channels
    /// that fired and returns whether one of `also` did. A control channel without a
    /// descriptor is looked at after the sleep.
    fn sleep(
        &mut self,
        also: &[BorrowedFd<'_>],
        timeout: Option<Duration>,
    ) -> Result<bool, NetfrontError> {
        let (control_fired, also_fired, ready) = {
            let mut fds: Vec<BorrowedFd<'_>> =
                Vec::with_capacity(1 + also.len() + 2 * self.queues.len());
            let control = self.conn.as_ref().and_then(FrontendControl::readiness_fd);
            if let Some(fd) = control {
                fds.push(fd);
            }
            fds.extend_from_slice(also);
            for q in &self.queues {
                q.events.fds(&mut fds);
            }
            let mut ready = vec![false; fds.len()];
            wait_any(&fds, timeout, &mut ready)?;
            let mut it = ready.into_iter();
            let fired = control.is_some() && it.next() == Some(true);
            let also_fired = it.by_ref().take(also.len()).fold(false, |a, r| a | r);
            (fired, also_fired, it.collect::<Vec<_>>())
        };
        if let Some(c) = self.conn.as_mut()
            && (control_fired || c.readiness_fd().is_none())
            && c.backend_closing()
        {
            self.backend_closing = true;
            return Err(BackendFault::Closed.into());
        }
        let mut it = ready.into_iter();
        for q in &mut self.queues {
            if q.events.has_fds() {
                q.events.mark_ready(&mut it);
            }
        }
        Ok(also_fired)
    }
}

/// The device as [`wait_for_work`] sees it (a wrapper, so the hooks stay out of the public
/// API).
struct Waiting<'a, 'b, H: FrontendHost>(&'a mut Netfront<H>, &'a [BorrowedFd<'b>]);

impl<H: FrontendHost> Sleeper for Waiting<'_, '_, H> {
    type Error = NetfrontError;

    fn end_of_interrupt(&mut self) -> Result<(), NetfrontError> {
        self.0.end_of_interrupt()
    }

    fn look(&mut self, clock_step: bool) -> Result<bool, NetfrontError> {
        self.0.has_work(clock_step)
    }

    // The control channel needs a system call: looked at about once a millisecond, so a
    // long spin still notices a closing backend.
    fn look_around(&mut self) -> Result<bool, NetfrontError> {
        if self.0.control_ready()? {
            return Ok(true);
        }
        if self.1.is_empty() {
            return Ok(false);
        }
        let mut ready = vec![false; self.1.len()];
        Ok(wait_any(self.1, Some(Duration::ZERO), &mut ready)? > 0)
    }

    fn final_check(&mut self) -> Result<bool, NetfrontError> {
        self.0.final_check()
    }

    fn blind(&self) -> bool {
        self.0.blind()
    }

    // A closing backend is an error (`BackendFault::Closed`), not a wakeup.
    fn sleep(&mut self, timeout: Option<Duration>) -> Result<bool, NetfrontError> {
        self.0.sleep(self.1, timeout)
    }
}
