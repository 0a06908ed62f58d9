//! Frames built in place: transmit buffers taken first, written where they are (by the
//! caller's copies or straight by the kernel, `readv` from a TAP or a socket), then sent
//! (reserve / commit, as rtrb's write chunks and AF_XDP's descriptors do). No copy of pvnet's
//! own between the source and the granted pages.

use std::os::fd::BorrowedFd;

use grant_table::FRAME_SIZE;
use netif::Offload;

use super::{Netfront, TxBatch};
use crate::error::{NetfrontError, SendError};
use crate::host::FrontendHost;
use crate::process::ProcessHost;
use crate::txq::{Taken, TxQueue};

/// Transmit buffers taken for one frame ([`TxBatch::reserve`]): written with
/// [`write`](Self::write) or [`read_from`](Self::read_from), then sent with
/// [`commit`](Self::commit). Dropped uncommitted, the buffers go back unsent.
#[derive(Debug)]
pub struct TxBuffer<'a, H: FrontendHost = ProcessHost> {
    dev: &'a mut Netfront<H>,
    queue: usize,
    /// `None` once committed.
    taken: Option<Taken>,
}

impl<H: FrontendHost> TxBatch<'_, H> {
    /// Takes buffers for one frame of up to `capacity` bytes on queue `queue % queues()`
    /// (a multi-queue caller keeps each flow on one queue: a TAP queue's index, say), with
    /// ring room for its requests and, when GSO was negotiated, a GSO extra. The frame is
    /// published with the batch.
    ///
    /// # Errors
    /// [`SendError::Full`] when the queue has not the buffers or ring room even after
    /// reclaiming completions; [`SendError::TooLong`] when `capacity` exceeds what one
    /// request chain holds ([`netif::MAX_DATA_SLOTS`] pages); [`SendError::Broken`].
    pub fn reserve(&mut self, queue: usize, capacity: usize) -> Result<TxBuffer<'_, H>, SendError> {
        let dev = &mut *self.dev;
        if let Some(f) = dev.broken {
            return Err(SendError::Broken(f));
        }
        let max = netif::MAX_DATA_SLOTS * FRAME_SIZE;
        if capacity > max {
            return Err(SendError::TooLong { len: capacity, max });
        }
        let queue = queue % dev.queues.len().max(1);
        let pages = capacity.div_ceil(FRAME_SIZE);
        let gso = dev.limits.gso_tcpv4 || dev.limits.gso_tcpv6;
        let mut taken = dev.queues[queue].tx.take(pages, gso);
        if taken.is_none() {
            // Reclaim completions, then try once more.
            let reclaimed = dev.queues[queue].tx.reclaim(&mut dev.stats);
            if let Err(e) = dev.note(reclaimed) {
                return Err(match e {
                    NetfrontError::Broken(f) => SendError::Broken(f),
                    _ => SendError::Full,
                });
            }
            taken = dev.queues[queue].tx.take(pages, gso);
        }
        Ok(TxBuffer {
            queue,
            taken: Some(taken.ok_or(SendError::Full)?),
            dev,
        })
    }
}

impl<H: FrontendHost> TxBuffer<'_, H> {
    /// Bytes the buffers hold (the capacity asked for, rounded up to whole pages).
    pub fn capacity(&self) -> usize {
        self.taken.as_ref().map_or(0, Taken::capacity)
    }

    /// The queue the frame goes out on.
    pub fn queue(&self) -> usize {
        self.queue
    }

    fn txq(&self) -> &TxQueue {
        &self.dev.queues[self.queue].tx
    }

    /// Copies `bytes` into the frame at `offset`.
    ///
    /// # Errors
    /// [`SendError::TooLong`] if they run past the capacity (nothing is written).
    pub fn write(&mut self, offset: usize, bytes: &[u8]) -> Result<(), SendError> {
        let end = offset.saturating_add(bytes.len());
        let cap = self.capacity();
        if end > cap {
            return Err(SendError::TooLong { len: end, max: cap });
        }
        self.each_page(offset, bytes.len(), |region, at, from, n| {
            region
                .copy_in(at, &bytes[from..from + n])
                .expect("taken pages lie inside our frames");
        });
        Ok(())
    }

    /// Copies the frame's bytes from `offset` into `buf`, as many as fit within the
    /// capacity; returns how many (to parse headers a kernel wrote, say).
    pub fn read(&self, offset: usize, buf: &mut [u8]) -> usize {
        let n = buf.len().min(self.capacity().saturating_sub(offset));
        self.each_page(offset, n, |region, at, from, len| {
            region
                .copy_out(at, &mut buf[from..from + len])
                .expect("taken pages lie inside our frames");
        });
        n
    }

    /// Calls `f(region, region offset, byte offset, bytes)` for each page-sized piece of the
    /// frame's `len` bytes from `offset` (inside the capacity).
    fn each_page(
        &self,
        offset: usize,
        len: usize,
        mut f: impl FnMut(&shared_mem::SharedRegion, usize, usize, usize),
    ) {
        let Some(t) = &self.taken else { return };
        let mut spans = [(0, 0); netif::MAX_DATA_SLOTS];
        let (region, spans) = self.txq().spans(t, &mut spans);
        let mut at = offset;
        while at < offset + len {
            let (page, within) = (at / FRAME_SIZE, at % FRAME_SIZE);
            let n = (FRAME_SIZE - within).min(offset + len - at);
            f(region, spans[page].0 + within, at - offset, n);
            at += n;
        }
    }

    /// Reads the frame from `fd` with one `readv(2)`: `head` first (a local buffer, such
    /// as a TAP's virtio header), then the buffers, in order. Returns the bytes read, head
    /// included; what is past the capacity is the kernel's to drop (a TAP cuts the frame).
    ///
    /// # Errors
    /// The read's own (`WouldBlock`, `Interrupted` included: the caller decides).
    pub fn read_from(&mut self, fd: BorrowedFd<'_>, head: &mut [u8]) -> std::io::Result<usize> {
        let Some(t) = &self.taken else { return Ok(0) };
        let mut spans = [(0, 0); netif::MAX_DATA_SLOTS];
        let (region, spans) = self.txq().spans(t, &mut spans);
        region.read_vectored_from(fd, head, spans)
    }

    /// Sends the first `len` bytes as a frame with `offload` (published when the batch
    /// ends); the buffers it does not need go back.
    ///
    /// # Errors
    /// As [`Netfront::send`] for a frame of `len` bytes ([`SendError::TooLong`] also past
    /// the capacity); the buffers stay taken, so the bytes can still be [`read`](Self::read)
    /// (to segment them in software, say) before the buffer is dropped.
    pub fn commit(&mut self, len: usize, offload: Offload) -> Result<(), SendError> {
        let cap = self.capacity();
        if len > cap {
            return Err(SendError::TooLong { len, max: cap });
        }
        TxQueue::check(len, offload, self.dev.limits)?;
        let t = self.taken.take().ok_or(SendError::Full)?;
        self.dev.queues[self.queue].tx.push_taken(t, len, offload);
        self.dev.stats.tx_packets += 1;
        self.dev.stats.tx_bytes += len as u64;
        Ok(())
    }
}

impl<H: FrontendHost> Drop for TxBuffer<'_, H> {
    fn drop(&mut self) {
        if let Some(t) = self.taken.take() {
            self.dev.queues[self.queue].tx.give_back(&t);
        }
    }
}
