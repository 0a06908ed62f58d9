//! Closing: asking (or answering) the backend, then revoking every grant once it let go;
//! in one call or in two steps for one thread.

use std::time::{Duration, Instant};

use grant_table::GrantRef;
use xenbus::FrontendControl;

use event_channel::BLIND_SLEEP;

use super::{CloseReport, Netfront};
use crate::error::NetfrontError;
use crate::host::FrontendHost;
use crate::rxq::RxMemory;

impl<H: FrontendHost> Netfront<H> {
    /// Closes: asks the backend to close and waits (up to the control-plane timeout) until it
    /// has released everything (or, when the backend asked first, answers it), then revokes
    /// every grant (rings, buffers, transfer offers). On one thread with an in-process
    /// backend, use [`start_close`](Self::start_close), poll the backend, then
    /// [`finish_close`](Self::finish_close).
    ///
    /// # Errors
    /// A control-plane failure or timeout; [`NetfrontError::GrantsInUse`] if the backend
    /// still holds grants (their frames are then never reused: the memory is simply kept).
    pub fn close(mut self) -> Result<CloseReport, NetfrontError> {
        self.start_close()?;
        let deadline = Instant::now() + self.timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if let Some(report) = self.finish_close(left)? {
                return Ok(report);
            }
            if left.is_zero() {
                return Err(xenbus::XenbusError::Timeout("the backend's Closed").into());
            }
            // A control channel without a descriptor cannot be waited on: look again soon.
            std::thread::sleep(BLIND_SLEEP.min(left));
        }
    }

    /// Starts closing: tells the backend (or, if it asked first, prepares to answer it).
    /// Nothing is sent after this; [`finish_close`](Self::finish_close) completes the close.
    ///
    /// # Errors
    /// A control-plane failure.
    pub fn start_close(&mut self) -> Result<(), NetfrontError> {
        if self.close_requested || self.finished {
            return Ok(());
        }
        self.close_requested = true;
        if let Some(c) = self.conn.as_mut()
            && !self.backend_closing
        {
            if c.backend_closing() {
                // It asked first: it released everything before it asked.
                self.backend_closing = true;
            } else {
                match c.request_close() {
                    Ok(()) | Err(xenbus::XenbusError::PeerClosed) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }

    /// Completes a close begun by [`start_close`](Self::start_close) once the backend has
    /// released everything, waiting at most `wait` for it: then every grant is revoked and
    /// the report returned (`None`: not yet; call again). A backend that went away released
    /// everything with its process.
    ///
    /// # Errors
    /// A control-plane failure; [`NetfrontError::GrantsInUse`] as for [`close`](Self::close).
    pub fn finish_close(&mut self, wait: Duration) -> Result<Option<CloseReport>, NetfrontError> {
        if !self.close_requested {
            self.start_close()?;
        }
        if self.finished {
            return Err(NetfrontError::Config("already closed".into()));
        }
        let mut vanished = false;
        if let Some(mut conn) = self.conn.take() {
            if self.backend_closing {
                vanished = conn.vanished();
                match conn.acknowledge_closed() {
                    Ok(()) | Err(xenbus::XenbusError::PeerClosed) => {}
                    Err(e) => return Err(e.into()),
                }
            } else {
                match conn.closed(wait) {
                    Ok(true) | Err(xenbus::XenbusError::PeerClosed) => vanished = conn.vanished(),
                    Ok(false) => {
                        self.conn = Some(conn);
                        return Ok(None);
                    }
                    Err(e) => {
                        self.conn = Some(conn);
                        return Err(e.into());
                    }
                }
            }
        }
        self.finished = true;
        self.revoke_all(vanished).map(Some)
    }

    /// Revokes every grant (after the backend let go). A backend that `vanished` left its
    /// in-use marks behind: those grants are reclaimed.
    fn revoke_all(&mut self, vanished: bool) -> Result<CloseReport, NetfrontError> {
        let mut revoked = 0;
        let mut reclaimed = 0;
        let mut in_use = 0;
        for q in &self.queues {
            let mut grants: Vec<GrantRef> = q.ring_grants.to_vec();
            grants.extend(q.tx.grants());
            let mut transfers = Vec::new();
            for (g, flipped) in q.rx.buffers() {
                match self.rx_memory {
                    RxMemory::Copy { .. } => grants.push(g),
                    // A completed flip used its grant up; an open offer is ended.
                    RxMemory::Flip { .. } if !flipped => transfers.push(g),
                    RxMemory::Flip { .. } => {}
                }
            }
            for g in grants {
                match self.table.end_access(g) {
                    Ok(_) => revoked += 1,
                    Err(_) if vanished => match self.table.reclaim(g) {
                        Ok(_) => reclaimed += 1,
                        Err(_) => in_use += 1,
                    },
                    Err(_) => in_use += 1,
                }
            }
            for g in transfers {
                match self.table.end_transfer(g) {
                    Ok(_) => revoked += 1,
                    Err(_) if vanished => match self.table.reclaim(g) {
                        Ok(_) => reclaimed += 1,
                        Err(_) => in_use += 1,
                    },
                    Err(_) => in_use += 1,
                }
            }
        }
        if in_use > 0 {
            return Err(NetfrontError::GrantsInUse(in_use));
        }
        Ok(CloseReport {
            revoked: revoked + reclaimed,
            reclaimed,
        })
    }
}

impl<H: FrontendHost> Drop for Netfront<H> {
    fn drop(&mut self) {
        // Dropping without `close`: tell the backend (best effort) so it releases us, and
        // give it the control-plane timeout to do so before the memory goes.
        if let Some(mut conn) = self.conn.take() {
            if self.backend_closing {
                let _ = conn.acknowledge_closed();
            } else if self.close_requested || conn.request_close().is_ok() {
                let _ = conn.closed(self.timeout);
            }
        }
    }
}
