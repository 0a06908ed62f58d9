//! The guest's receive path: frames from the backlog into the buffers the guest posted, by
//! grant copy or by page flip; responses in the slots of their requests, the GSO extra after
//! the first data slot.

use std::collections::VecDeque;
use std::ops::Range;

use event_channel::{EventChannel, QueuePorts};
use grant_table::{
    CopyOp, CopyPtr, FRAME_SIZE, FrameMemory, FrameNumber, GrantOps, GrantRef, GrantStatus,
    PeerGrants, TransferOp,
};
use io_ring::BackRing;
use netif::wire::{RxRequest, RxResponse, rx_flags, status};
use netif::{GsoKind, Offload};
use xenbus::{FrontendChoice, RxMode};

use crate::memory::{PacketId, PacketMemory};
use crate::stats::VifStats;
use crate::tx::{PollFailure, ring_failure};

struct Answer {
    packet: PacketId,
    /// Its requests in `RxScratch::reqs`.
    reqs: Range<usize>,
    /// Its copies or transfers.
    ops: Range<usize>,
    data_slots: usize,
    meta: Offload,
}

/// Buffers reused by every receive poll.
#[derive(Default)]
pub(crate) struct RxScratch {
    reqs: Vec<RxRequest>,
    copies: Vec<CopyOp>,
    transfers: Vec<TransferOp>,
    answers: Vec<Answer>,
    pool_free: Vec<FrameNumber>,
}

impl core::fmt::Debug for RxScratch {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RxScratch").finish_non_exhaustive()
    }
}

/// A guest's receive ring and the frames waiting for its buffers.
#[derive(Debug)]
pub(crate) struct RxQueue {
    ring: BackRing<RxRequest, RxResponse>,
    /// Frames waiting for receive buffers, oldest first.
    backlog: VecDeque<PacketId>,
    /// Rx requests the frame at the head of the backlog needs (0: not waiting).
    need: u32,
    /// Responses published that the frontend asked to be told of, not told yet: the poll's
    /// last batch leaves its notification to the end of the poll, where it goes out with
    /// the transmit ring's in one event when both rings share a channel.
    notify_owed: bool,
}

/// What a receive poll uses of its vif: its grants (and flip pool), what it negotiated, its
/// counters, and the pages its backlogs hold.
pub(crate) struct RxVif<'a, M> {
    grants: &'a PeerGrants<M>,
    choice: &'a FrontendChoice,
    stats: &'a mut VifStats,
    backlog_pages: &'a mut usize,
}

impl<'a, M> RxVif<'a, M> {
    #[inline]
    pub(crate) fn new(
        grants: &'a PeerGrants<M>,
        choice: &'a FrontendChoice,
        stats: &'a mut VifStats,
        backlog_pages: &'a mut usize,
    ) -> Self {
        Self {
            grants,
            choice,
            stats,
            backlog_pages,
        }
    }

    /// The offload metadata this guest may receive: a GSO kind it did not negotiate is not
    /// sent (the bytes are delivered whole; segmenting in software is not done here).
    fn rx_meta(&self, meta: Offload) -> Offload {
        let gso = meta.gso.filter(|g| match g.kind {
            GsoKind::TcpV4 => self.choice.gso_tcpv4,
            GsoKind::TcpV6 => self.choice.gso_tcpv6,
        });
        Offload { gso, ..meta }
    }
}

impl RxQueue {
    pub(crate) fn new(ring: BackRing<RxRequest, RxResponse>) -> Self {
        Self {
            ring,
            backlog: VecDeque::new(),
            need: 0,
            notify_owed: false,
        }
    }

    /// Frames waiting.
    #[inline]
    pub(crate) fn backlog_len(&self) -> usize {
        self.backlog.len()
    }

    /// Queues a frame for this guest (the caller checked the vif's cap).
    #[inline]
    pub(crate) fn push(&mut self, packet: PacketId) {
        self.backlog.push_back(packet);
    }

    /// Takes the oldest waiting frame (to free it: memory is short).
    pub(crate) fn pop_oldest(&mut self) -> Option<PacketId> {
        self.need = 0;
        self.backlog.pop_front()
    }

    /// Takes every waiting frame (to free them); nothing is waited for afterwards.
    pub(crate) fn drain_backlog(&mut self) -> std::collections::vec_deque::Drain<'_, PacketId> {
        self.need = 0;
        self.backlog.drain(..)
    }

    /// Whether a waiting frame can be placed, looking without arming (a bad index counts as
    /// work: the poll that follows reports it).
    #[inline]
    pub(crate) fn has_work(&mut self) -> bool {
        !self.backlog.is_empty()
            && self.ring.unconsumed_requests().unwrap_or(u32::MAX) >= self.need.max(1)
    }

    /// Arms the ring for exactly the requests the head frame needs and re-checks (only with
    /// frames waiting: otherwise the guest's buffers are no news).
    #[inline]
    pub(crate) fn final_check(&mut self) -> Result<bool, io_ring::RingError> {
        if self.backlog.is_empty() {
            return Ok(false);
        }
        self.ring.final_check_requests_for(self.need.max(1))
    }

    /// Fills up to `budget` frames of the backlog into posted buffers.
    pub(crate) fn poll<M: FrameMemory, P: EventChannel>(
        &mut self,
        mut vif: RxVif<'_, M>,
        events: &QueuePorts<P>,
        mem: &mut PacketMemory,
        scratch: &mut RxScratch,
        budget: usize,
    ) -> Result<usize, PollFailure> {
        if self.backlog.is_empty() {
            return Ok(0);
        }
        scratch.reqs.clear();
        scratch.copies.clear();
        scratch.transfers.clear();
        scratch.answers.clear();
        let flip = vif.choice.rx_mode == RxMode::Flip;
        if flip {
            scratch.pool_free.clear();
            if let Some(pool) = vif.grants.pool() {
                scratch.pool_free.extend(pool.owned_frames());
            }
        }
        let mut avail = self.ring.unconsumed_requests().map_err(ring_failure)?;
        let mut done = 0;
        while done < budget {
            let Some(&packet) = self.backlog.front() else {
                self.need = 0;
                break;
            };
            let meta = vif.rx_meta(mem.meta(packet));
            let data_slots = mem.npages(packet);
            let need =
                u32::try_from(data_slots + usize::from(meta.gso.is_some())).unwrap_or(u32::MAX);
            if need > avail || (flip && scratch.pool_free.len() < data_slots) {
                self.need = need;
                break;
            }
            self.backlog.pop_front();
            *vif.backlog_pages -= data_slots;
            avail -= need;
            let first = scratch.reqs.len();
            take_requests(&mut self.ring, need as usize, &mut scratch.reqs)?;
            let reqs = first..scratch.reqs.len();
            if reqs.len() != need as usize {
                // The ring said `need` were there; a short read is a local inconsistency.
                mem.release(packet);
                return Err(PollFailure::Local(crate::NetbackError::BadFrontend(
                    "rx requests vanished".into(),
                )));
            }
            let extra = usize::from(meta.gso.is_some());
            let len = mem.len(packet) as usize;
            let ops_start = if flip {
                scratch.transfers.len()
            } else {
                scratch.copies.len()
            };
            for k in 0..data_slots {
                // Data slot k is request k, after the extra's slot for k >= 1.
                let req = scratch.reqs[first + if k == 0 { 0 } else { k + extra }];
                let chunk = (len - k * FRAME_SIZE).min(FRAME_SIZE);
                let page = mem.page(packet, k);
                if flip {
                    let frame = scratch.pool_free.pop().expect("counted above");
                    let pool = vif.grants.pool().expect("flip mode has a pool");
                    let at = frame.0 as usize * FRAME_SIZE;
                    // The flipped frame holds the packet's bytes and zeros, nothing older
                    // (XSA-403).
                    let copied = mem
                        .region()
                        .copy_to(page.0 as usize * FRAME_SIZE, pool.region(), at, chunk)
                        .and_then(|()| pool.region().fill(at + chunk, FRAME_SIZE - chunk, 0));
                    let mut op = TransferOp::new(frame, GrantRef(req.gref));
                    if copied.is_err() {
                        op.status = GrantStatus::BadPage;
                    }
                    scratch.transfers.push(op);
                } else {
                    scratch.copies.push(CopyOp::new(
                        CopyPtr::Local {
                            frame: page,
                            offset: 0,
                        },
                        CopyPtr::Grant {
                            gref: GrantRef(req.gref),
                            offset: 0,
                        },
                        u16::try_from(chunk).expect("at most a page"),
                    ));
                }
            }
            let ops_end = if flip {
                scratch.transfers.len()
            } else {
                scratch.copies.len()
            };
            scratch.answers.push(Answer {
                packet,
                reqs,
                ops: ops_start..ops_end,
                data_slots,
                meta,
            });
            done += 1;
            // Large frames: move and answer in chunks, so the frontend starts on the first
            // frames while the rest are copied.
            if scratch.copies.len() + scratch.transfers.len() >= crate::tx::COPY_CHUNK {
                // Told now, not at the end of the poll: a frontend asleep starts on these.
                self.move_and_respond(&mut vif, Some(events), mem, scratch, flip)?;
            }
        }
        if scratch.answers.is_empty() {
            return Ok(done);
        }
        self.move_and_respond(&mut vif, None::<&QueuePorts<P>>, mem, scratch, flip)?;
        Ok(done)
    }

    /// Whether the frontend is owed a notification for responses published (and forgets
    /// it: the caller sends it).
    pub(crate) fn take_notify_owed(&mut self) -> bool {
        std::mem::take(&mut self.notify_owed)
    }

    /// Performs the batch's copies or transfers and writes its responses; the scratch is
    /// empty afterwards. Notifies through `now` if given, else leaves the notification owed
    /// (for the end of the poll).
    fn move_and_respond<M: FrameMemory, P: EventChannel>(
        &mut self,
        vif: &mut RxVif<'_, M>,
        now: Option<&QueuePorts<P>>,
        mem: &mut PacketMemory,
        scratch: &mut RxScratch,
        flip: bool,
    ) -> Result<(), PollFailure> {
        if flip {
            // Only transfers whose frame was filled (a failed fill keeps the frame ours).
            if scratch
                .transfers
                .iter()
                .all(|o| o.status != GrantStatus::BadPage)
            {
                vif.grants.transfer(&mut scratch.transfers);
            } else {
                for op in &mut scratch.transfers {
                    if op.status != GrantStatus::BadPage {
                        vif.grants.transfer(core::slice::from_mut(op));
                    }
                }
            }
        } else {
            vif.grants.copy(&mut scratch.copies);
        }
        self.respond(vif.stats, now, mem, scratch, flip)?;
        scratch.reqs.clear();
        scratch.copies.clear();
        scratch.transfers.clear();
        Ok(())
    }

    fn respond<P: EventChannel>(
        &mut self,
        stats: &mut VifStats,
        now: Option<&QueuePorts<P>>,
        mem: &mut PacketMemory,
        scratch: &mut RxScratch,
        flip: bool,
    ) -> Result<(), PollFailure> {
        for a in scratch.answers.drain(..) {
            let ok = if flip {
                scratch.transfers[a.ops.clone()]
                    .iter()
                    .all(|o| o.status == GrantStatus::Okay)
            } else {
                scratch.copies[a.ops.clone()]
                    .iter()
                    .all(|o| o.status == GrantStatus::Okay)
            };
            let len = mem.len(a.packet) as usize;
            let reqs = &scratch.reqs[a.reqs.clone()];
            let extra = a.meta.gso_extra();
            let mut slot = 0;
            for k in 0..a.data_slots {
                let chunk = (len - k * FRAME_SIZE).min(FRAME_SIZE);
                let mut flags = if k + 1 < a.data_slots {
                    rx_flags::MORE_DATA
                } else {
                    0
                };
                if k == 0 {
                    flags |= a.meta.rx_flags();
                    if extra.is_some() {
                        flags |= rx_flags::EXTRA_INFO;
                    }
                }
                let rsp = RxResponse {
                    id: reqs[slot].id,
                    offset: 0,
                    flags,
                    status: if ok {
                        i16::try_from(chunk).expect("at most a page")
                    } else {
                        status::ERROR
                    },
                };
                self.ring.push_response(&rsp).map_err(ring_failure)?;
                slot += 1;
                if k == 0
                    && let Some(e) = extra
                {
                    let rsp = e.to_rx_slot();
                    self.ring.push_response(&rsp).map_err(ring_failure)?;
                    slot += 1;
                }
            }
            if ok {
                stats.rx_packets += 1;
                stats.rx_bytes += len as u64;
            } else {
                stats.rx_errors += 1;
            }
            mem.release(a.packet);
        }
        if self.ring.publish_responses() {
            match now {
                Some(events) => events
                    .notify_rx()
                    .map_err(|e| PollFailure::Local(e.into()))?,
                None => self.notify_owed = true,
            }
        }
        Ok(())
    }
}

/// Takes exactly `n` requests (known to be there), across snapshot refreshes.
#[inline]
fn take_requests(
    ring: &mut io_ring::BackRing<RxRequest, RxResponse>,
    n: usize,
    out: &mut Vec<RxRequest>,
) -> Result<(), PollFailure> {
    out.reserve(n);
    let mut left = n;
    while left > 0 {
        let before = left;
        // A plain loop: `extend` over a `Take` pushes one by one through a generic path
        // that does not inline (callgrind: 123 instructions for one request).
        for req in ring.requests().map_err(ring_failure)?.take(left) {
            out.push(req);
            left -= 1;
        }
        if left == before {
            break;
        }
    }
    Ok(())
}
