//! One queue's receive side: buffers posted to the backend (pre-granted pages in copy mode,
//! accept-transfer grants offering pool frames in flip mode), responses validated by the
//! netif parser, frames assembled from their slots, and every slot's buffer posted again.

use std::collections::VecDeque;

use grant_table::{
    FRAME_SIZE, FrameNumber, GrantError, GrantRef, GrantTable, TransferEnd, TransferState,
};
use io_ring::FrontRing;
use netif::wire::{RxRequest, RxResponse};
use netif::{Offload, RxErrorKind, RxPacket, Severity, parse_rx_into};
use shared_mem::SharedRegion;

use crate::error::{BackendFault, NetfrontError};
use crate::flip::FlipPool;
use crate::host::FlipWindow;
use crate::stats::Stats;
use crate::txq::ring_error;

/// A received frame, handed to the caller's closure.
#[derive(Debug)]
pub struct RxFrame<'a> {
    /// The queue it came on.
    pub queue: usize,
    /// Its bytes (copied out of shared memory: the backend cannot change them).
    pub data: &'a [u8],
    /// Its offload metadata.
    pub offload: Offload,
}

/// Receive buffers handed back at once.
const REFILL_BATCH: usize = 32;

/// Buffers a receive reuses from frame to frame: the frame's bytes and its parsed
/// description (built in place).
#[derive(Debug, Default)]
pub(crate) struct RxScratch {
    bytes: Vec<u8>,
    packet: RxPacket,
}

/// Where received bytes are, and so what every queue's buffer grants are: the one record of
/// the receive mode (a queue does not know its own, so the two cannot disagree).
#[derive(Debug)]
pub(crate) enum RxMemory {
    /// Copy: each buffer is a page of our frames, granted to the backend.
    Copy {
        /// Our frames.
        frames: SharedRegion,
    },
    /// Flip: each buffer is an accept-transfer grant offering a pool frame.
    Flip {
        /// The pool, with the frames on offer.
        pool: FlipPool,
        /// The window flipped frames are read through, if the host gave one.
        window: Option<Box<dyn FlipWindow>>,
    },
}

/// What a receive queue works with besides itself.
#[derive(Debug)]
pub(crate) struct RxCtx<'a> {
    pub(crate) table: &'a mut GrantTable,
    pub(crate) memory: &'a mut RxMemory,
}

/// A receive queue.
#[derive(Debug)]
pub(crate) struct RxQueue {
    pub(crate) ring: FrontRing<RxRequest, RxResponse>,
    /// The buffers' grants, one per id.
    grefs: Vec<GrantRef>,
    /// Copy: the frame of buffer 0 in our frames; flip: its slot in the flip window.
    first: usize,
    /// Flip: the frame a flip delivered to each id that is not offered again yet.
    held: Vec<Option<FrameNumber>>,
    prod: u32,
    cons: u32,
    /// Ring slot -> the id posted there.
    posted: Vec<u16>,
    /// Ids whose buffers are ours and not posted, posted from the front. A one-slot frame's
    /// buffer goes to the back, so that with more buffers than ring slots each is written
    /// again only after all the others (see
    /// [`NetfrontConfig::rx_buffers`](crate::NetfrontConfig::rx_buffers)); the buffers of a
    /// frame of several slots go to the front, to be posted again first.
    to_post: VecDeque<u16>,
    /// Responses copied out of the ring, with the id posted in each one's slot; those from
    /// `start` on are not handled yet.
    rsps: Vec<RxResponse>,
    ids: Vec<u16>,
    start: usize,
}

fn transfer_fault(_: GrantError) -> NetfrontError {
    NetfrontError::Broken(BackendFault::TransferIncomplete)
}

impl RxQueue {
    /// A queue whose buffer `id` is granted by `grefs[id]`, and is page `first + id` of our
    /// frames (copy) or slot `first + id` of the flip window (flip).
    pub(crate) fn new(
        ring: FrontRing<RxRequest, RxResponse>,
        grefs: Vec<GrantRef>,
        first: usize,
    ) -> Self {
        let size = ring.size() as usize;
        let ids = grefs.len();
        Self {
            ring,
            held: vec![None; ids],
            grefs,
            first,
            prod: 0,
            cons: 0,
            posted: vec![0; size],
            to_post: (0..u16::try_from(ids).unwrap_or(u16::MAX)).collect(),
            rsps: Vec::with_capacity(size),
            ids: Vec::with_capacity(size),
            start: 0,
        }
    }

    /// The grants of this queue's buffers (to revoke at close), each with whether a flip
    /// delivered its frame (so the grant is used up; flip mode only).
    pub(crate) fn buffers(&self) -> impl Iterator<Item = (GrantRef, bool)> + '_ {
        self.grefs
            .iter()
            .zip(&self.held)
            .map(|(g, h)| (*g, h.is_some()))
    }

    /// Posts every buffer that is ours (flip: offering each delivered frame again). Returns
    /// whether the backend asked to be notified.
    pub(crate) fn post(&mut self, ctx: &mut RxCtx<'_>) -> Result<bool, NetfrontError> {
        // Buffers go back in batches (as netfront's rx refill does): one index publish, one
        // full barrier and at most one notification per batch, and no header-line traffic
        // on a latency path. A batch of 32 leaves 224 of 256 slots posted, more than any
        // packet needs. A batch needs both the buffers and the ring slots: with more buffers
        // than slots, the slots are what run short.
        let ready = self.to_post.len().min(self.ring.free_requests() as usize);
        if ready < REFILL_BATCH.min(self.posted.len() / 2) && !self.starving() {
            return Ok(false);
        }
        let mask = self.posted.len() - 1;
        while let Some(&id) = self.to_post.front() {
            if self.ring.free_requests() == 0 {
                break;
            }
            let i = usize::from(id);
            if let RxMemory::Flip { pool, .. } = &mut *ctx.memory
                && let Some(f) = self.held[i].take()
            {
                self.grefs[i] = pool.offer(f, ctx.table)?;
            }
            let gref = self.grefs[i];
            self.ring
                .push_request(&RxRequest {
                    id,
                    pad: 0,
                    gref: gref.0,
                })
                .map_err(ring_error)?;
            self.posted[self.prod as usize & mask] = id;
            self.prod = self.prod.wrapping_add(1);
            self.to_post.pop_front();
        }
        Ok(self.ring.publish_requests())
    }

    /// Fewer than a maximal packet's worth of buffers posted (19 data slots and an extra).
    fn starving(&self) -> bool {
        !self.to_post.is_empty()
            && (self.prod.wrapping_sub(self.cons) as usize) < netif::MAX_DATA_SLOTS + 1
    }

    /// Flip mode: collects the frame flipped into `id`'s grant, if a flip happened.
    fn settle(&mut self, id: u16, ctx: &mut RxCtx<'_>) -> Result<(), NetfrontError> {
        let RxMemory::Flip { pool, .. } = &mut *ctx.memory else {
            return Ok(());
        };
        let gref = self.grefs[usize::from(id)];
        if self.held[usize::from(id)].is_some() {
            return Ok(());
        }
        match ctx.table.transfer_state(gref).map_err(transfer_fault)? {
            TransferState::Pending => Ok(()),
            TransferState::Committed => Err(BackendFault::TransferIncomplete.into()),
            TransferState::Completed(_) => {
                match ctx.table.end_transfer(gref).map_err(transfer_fault)? {
                    TransferEnd::Completed { received, offered } => {
                        pool.complete(received, offered, gref, ctx.table)?;
                        self.held[usize::from(id)] = Some(received);
                        Ok(())
                    }
                    TransferEnd::Cancelled { .. } => Err(BackendFault::TransferIncomplete.into()),
                }
            }
        }
    }

    /// Reads `buf.len()` bytes at `offset` of buffer `id`'s page.
    fn read(
        &self,
        id: u16,
        offset: usize,
        buf: &mut [u8],
        memory: &RxMemory,
    ) -> Result<(), NetfrontError> {
        let i = usize::from(id);
        match memory {
            RxMemory::Copy { frames } => frames
                .copy_out((self.first + i) * FRAME_SIZE + offset, buf)
                .map_err(|_| NetfrontError::Broken(BackendFault::Rx(RxErrorKind::Incomplete))),
            RxMemory::Flip { pool, window } => {
                let Some(frame) = self.held[i] else {
                    return if buf.is_empty() {
                        Ok(())
                    } else {
                        Err(BackendFault::TransferIncomplete.into())
                    };
                };
                match window {
                    Some(window) => window
                        .read(self.first + i, frame, offset, buf)
                        .map_err(|e| NetfrontError::Memory(GrantError::Io(e))),
                    None => Ok(pool.read(frame, offset, buf)?),
                }
            }
        }
    }

    /// Handles up to `budget` received frames, each given to `f`. Returns how many frames
    /// were handled (delivered or dropped).
    pub(crate) fn receive<F: FnMut(RxFrame<'_>)>(
        &mut self,
        queue: usize,
        budget: usize,
        ctx: &mut RxCtx<'_>,
        scratch: &mut RxScratch,
        stats: &mut Stats,
        f: &mut F,
    ) -> Result<usize, NetfrontError> {
        if self.start >= self.rsps.len() {
            self.rsps.clear();
            self.ids.clear();
            self.start = 0;
            let mask = self.posted.len() - 1;
            let rsps = self.ring.responses().map_err(ring_error)?;
            for r in rsps {
                self.ids.push(self.posted[self.cons as usize & mask]);
                self.rsps.push(r);
                self.cons = self.cons.wrapping_add(1);
            }
            // The data lines come from the backend's core: ask for them all now, so their
            // misses overlap (only a hint; ids and offsets are validated when read).
            if let RxMemory::Copy { frames } = &*ctx.memory {
                for (r, id) in self.rsps.iter().zip(&self.ids) {
                    let frame = self.first.saturating_add(usize::from(*id));
                    frames.prefetch(frame.saturating_mul(FRAME_SIZE) + usize::from(r.offset));
                }
            }
        }
        let RxScratch {
            bytes: scratch,
            packet: pkt,
        } = scratch;
        let mut done = 0;
        while done < budget && self.start < self.rsps.len() {
            // The usual frames in a loop of their own (`receive_run`), any other one by one.
            if let RxMemory::Copy { frames } = &*ctx.memory {
                let run = self.receive_run(queue, budget - done, frames, scratch, stats, f)?;
                done += run;
                if run > 0 {
                    continue;
                }
            }
            let start = self.start;
            let parsed = parse_rx_into(&self.rsps[start..], &self.ids[start..], pkt);
            let slots = match parsed {
                Ok(()) => {
                    for i in start..start + pkt.slots {
                        self.settle(self.ids[i], ctx)?;
                    }
                    // Grown once to the largest frame seen, never cleared: every byte handed
                    // out below is overwritten first (zero-filling 64 KiB per frame cost more
                    // than the copy).
                    let len = pkt.len as usize;
                    if scratch.len() < len {
                        scratch.resize(len, 0);
                    }
                    let mut at = 0;
                    for frag in pkt.fragments() {
                        let n = usize::from(frag.len);
                        self.read(
                            frag.id,
                            usize::from(frag.offset),
                            &mut scratch[at..at + n],
                            ctx.memory,
                        )?;
                        at += n;
                    }
                    stats.rx_packets += 1;
                    stats.rx_bytes += u64::from(pkt.len);
                    debug_assert_eq!(at, len, "the fragments add up to the length");
                    f(RxFrame {
                        queue,
                        data: &scratch[..len],
                        offload: Offload::from_rx(pkt),
                    });
                    pkt.slots
                }
                Err(e) if e.severity == Severity::Fatal => {
                    return Err(BackendFault::Rx(e.kind).into());
                }
                Err(e) => {
                    for i in start..start + e.slots {
                        self.settle(self.ids[i], ctx)?;
                    }
                    if matches!(e.kind, RxErrorKind::Status(_)) {
                        stats.rx_errors += 1;
                    } else {
                        stats.rx_dropped += 1;
                    }
                    e.slots
                }
            };
            if slots == 1 {
                self.to_post.push_back(self.ids[start]);
            } else {
                // A frame of several buffers (a GSO packet, a jumbo frame) touched every
                // line of them: they are the next ones posted (the last such frame's first,
                // each in order), so that while frames are large only about a ring's worth
                // of buffers circulates, which stays in the caches; cycling through all of
                // them took rx 65535 B to 0.94x of 256 buffers (BENCHMARKS.md).
                for &id in self.ids[start..start + slots].iter().rev() {
                    self.to_post.push_front(id);
                }
            }
            self.start += slots;
            done += 1;
        }
        Ok(done)
    }

    /// Handles up to `limit` of the responses copied out that are the usual frames, one slot
    /// alone and valid ([`netif::rx_one_slot`]), in copy mode: each frame's bytes copied out
    /// of its buffer and given to `f`, the buffer queued to be posted again, as the general
    /// path would. Returns how many; stops at the first response of another kind.
    ///
    /// A loop of its own, out of line, with its counters in locals: the general loop's values
    /// did not fit in registers, and the frames that are nearly all of a small-frame stream
    /// paid for its spills (netback's receive path measured the same, BENCHMARKS.md).
    #[inline(never)]
    fn receive_run<F: FnMut(RxFrame<'_>)>(
        &mut self,
        queue: usize,
        limit: usize,
        frames: &SharedRegion,
        scratch: &mut Vec<u8>,
        stats: &mut Stats,
        f: &mut F,
    ) -> Result<usize, NetfrontError> {
        let mut n = 0;
        let mut bytes = 0;
        let outcome = loop {
            if n == limit {
                break Ok(());
            }
            let (Some(rsp), Some(&id)) = (self.rsps.get(self.start), self.ids.get(self.start))
            else {
                break Ok(());
            };
            let Some(frag) = netif::rx_one_slot(rsp, id) else {
                break Ok(());
            };
            let len = usize::from(frag.len);
            if scratch.len() < len {
                scratch.resize(len, 0);
            }
            let at = (self.first + usize::from(id)) * FRAME_SIZE + usize::from(frag.offset);
            if frames.copy_out(at, &mut scratch[..len]).is_err() {
                break Err(NetfrontError::Broken(BackendFault::Rx(
                    RxErrorKind::Incomplete,
                )));
            }
            n += 1;
            bytes += u64::from(frag.len);
            f(RxFrame {
                queue,
                data: &scratch[..len],
                offload: Offload::from_rx_flags(rsp.flags),
            });
            self.to_post.push_back(id);
            self.start += 1;
        };
        stats.rx_packets += n as u64;
        stats.rx_bytes += bytes;
        outcome.map(|()| n)
    }

    /// Whether responses wait (a fresh look at the ring, or ones copied and not handled).
    pub(crate) fn has_work(&mut self) -> Result<bool, NetfrontError> {
        Ok(self.start < self.rsps.len()
            || self.ring.unconsumed_responses().map_err(ring_error)? > 0)
    }
}
