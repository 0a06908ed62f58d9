//! Sending (whole, scatter-gather, batches), reclaiming and receiving.

use netif::Offload;

use super::{Netfront, TxBatch};
use crate::error::{NetfrontError, SendError};
use crate::host::FrontendHost;
use crate::rxq::{RxCtx, RxFrame};

impl<H: FrontendHost> Netfront<H> {
    /// Sends one frame (its flow's queue). Publishes at once.
    ///
    /// # Errors
    /// [`SendError`]; `Full` means: reclaim ([`poll`](Self::poll) / [`wait`](Self::wait))
    /// and retry.
    pub fn send(&mut self, frame: &[u8], offload: Offload) -> Result<(), SendError> {
        self.send_sg(&[frame], offload)
    }

    /// Sends one frame made of several slices (scatter-gather). Publishes at once.
    ///
    /// # Errors
    /// As [`send`](Self::send).
    pub fn send_sg(&mut self, parts: &[&[u8]], offload: Offload) -> Result<(), SendError> {
        self.queue_frame(parts, offload)?;
        self.flush().map_err(|_| SendError::Notify)
    }

    /// Sends frames in order until one does not fit, publishing each queue once (one
    /// notification at most per queue). Returns how many were sent; a frame that is wrong
    /// in itself stops the batch with its error.
    ///
    /// # Errors
    /// As [`send`](Self::send), for the first frame not sent when none was.
    pub fn send_batch<'a>(
        &mut self,
        frames: impl IntoIterator<Item = &'a [u8]>,
        offload: Offload,
    ) -> Result<usize, SendError> {
        let (sent, failure) = self.batch(|b| {
            let mut sent = 0;
            for frame in frames {
                if let Err(e) = b.send(frame, offload) {
                    return (sent, Some(e));
                }
                sent += 1;
            }
            (sent, None)
        })?;
        match failure {
            Some(e) if sent == 0 => Err(e),
            _ => Ok(sent),
        }
    }

    /// Queues any number of frames (whole or scatter-gather) through `f`, then publishes
    /// each queue once: the batched form of [`send`](Self::send) and
    /// [`send_sg`](Self::send_sg) for frames built on the fly.
    ///
    /// ```no_run
    /// # fn send(nic: &mut pvnet_netfront::Netfront) -> Result<(), Box<dyn std::error::Error>> {
    /// let header = [0u8; 14];
    /// let payload = [7u8; 1000];
    /// nic.batch(|b| {
    ///     for _ in 0..32 {
    ///         b.send_sg(&[&header, &payload], netif::Offload::default())?;
    ///     }
    ///     Ok::<(), pvnet_netfront::SendError>(())
    /// })??;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`SendError::Notify`] if the backend could not be notified; the closure's own result
    /// is returned as it is.
    pub fn batch<R>(&mut self, f: impl FnOnce(&mut TxBatch<'_, H>) -> R) -> Result<R, SendError> {
        let r = f(&mut TxBatch { dev: self });
        self.flush().map_err(|_| SendError::Notify)?;
        Ok(r)
    }

    pub(super) fn queue_frame(
        &mut self,
        parts: &[&[u8]],
        offload: Offload,
    ) -> Result<(), SendError> {
        if let Some(f) = self.broken {
            return Err(SendError::Broken(f));
        }
        let q = if self.queues.len() == 1 {
            0
        } else {
            // The headers may be split across slices: hash the first 64 bytes of the frame.
            let mut head = [0u8; 64];
            let mut n = 0;
            for p in parts {
                let take = (head.len() - n).min(p.len());
                head[n..n + take].copy_from_slice(&p[..take]);
                n += take;
            }
            self.queue_for(&head[..n])
        };
        let limits = self.limits;
        let queue = &mut self.queues[q];
        let mut r = queue.tx.push_frame(parts, offload, limits);
        if r == Err(SendError::Full) {
            // Reclaim completions, then try once more.
            let reclaimed = queue.tx.reclaim(&mut self.stats);
            if let Err(e) = self.note(reclaimed) {
                return Err(match e {
                    NetfrontError::Broken(f) => SendError::Broken(f),
                    _ => SendError::Full,
                });
            }
            r = self.queues[q].tx.push_frame(parts, offload, limits);
        }
        let len = r?;
        self.stats.tx_packets += 1;
        self.stats.tx_bytes += len as u64;
        Ok(())
    }

    /// Publishes queued transmit requests, notifying where the backend asked.
    fn flush(&mut self) -> Result<(), NetfrontError> {
        for q in &mut self.queues {
            if std::mem::take(&mut q.tx.unpublished) && q.tx.ring.publish_requests() {
                q.events.notify_tx()?;
            }
        }
        Ok(())
    }

    /// Frees transmit buffers the backend is done with and posts receive buffers. Returns the
    /// transmit buffers reclaimed.
    ///
    /// # Errors
    /// [`NetfrontError::Broken`] if the backend misbehaved; local failures.
    pub fn poll(&mut self) -> Result<usize, NetfrontError> {
        self.check()?;
        let mut n = 0;
        for q in 0..self.queues.len() {
            let r = self.queues[q].tx.reclaim(&mut self.stats);
            n += self.note(r)?;
        }
        let r = self.refill();
        self.note(r)?;
        Ok(n)
    }

    pub(super) fn refill(&mut self) -> Result<(), NetfrontError> {
        let mut ctx = RxCtx {
            table: &mut self.table,
            memory: &mut self.rx_memory,
        };
        for q in &mut self.queues {
            if q.rx.post(&mut ctx)? {
                q.events.notify_rx()?;
            }
        }
        Ok(())
    }

    /// Hands up to `budget` received frames (over all queues) to `f`, in order per queue,
    /// then posts their buffers again. Returns how many frames were handled (including
    /// dropped ones).
    ///
    /// # Errors
    /// [`NetfrontError::Broken`] if the backend misbehaved; local failures.
    pub fn receive(
        &mut self,
        budget: usize,
        mut f: impl FnMut(RxFrame<'_>),
    ) -> Result<usize, NetfrontError> {
        self.check()?;
        let mut done = 0;
        let nq = self.queues.len();
        for qi in 0..nq {
            if done >= budget {
                break;
            }
            let mut ctx = RxCtx {
                table: &mut self.table,
                memory: &mut self.rx_memory,
            };
            let q = &mut self.queues[qi];
            let r = q.rx.receive(
                qi,
                budget - done,
                &mut ctx,
                &mut self.scratch,
                &mut self.stats,
                &mut f,
            );
            done += self.note(r)?;
        }
        let r = self.refill();
        self.note(r)?;
        Ok(done)
    }
}
