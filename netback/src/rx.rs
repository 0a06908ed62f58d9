//! The guest's receive path: frames from the backlog into the buffers the guest posted, by
//! grant copy or by page flip; responses in the slots of their requests, the GSO extra after
//! the first data slot.

use std::collections::VecDeque;

use event_channel::{EventChannel, QueuePorts};
use grant_table::{
    CopyOp, CopyPtr, FRAME_SIZE, FrameMemory, FrameNumber, GrantOps, GrantRef, GrantStatus,
    PeerGrants, TransferOp,
};
use io_ring::BackRing;
use netif::wire::{RxRequest, RxResponse, rx_flags, status};
use netif::{GsoKind, Offload};
use xenbus::{FrontendChoice, RxMode};

use crate::buffer_age::BufferAges;
use crate::memory::{PacketId, PacketMemory};
use crate::stats::VifStats;
use crate::tx::{PollFailure, ring_failure};

/// How many frames ahead of its copy netback asks for the lines of the frontend's buffer
/// ([`prefetch_ahead`]): 2 and 4 measured alike.
const COPY_AHEAD: u32 = 2;
/// The shortest frame whose buffer lines may be asked for reading ahead, and whose buffer
/// is counted in [`BufferAges`]: the read gained 1.06x at 512 B, nothing at 256 B, and at
/// 64 B (one line, asked for with the request's slot anyway) its cost showed, 0.875x.
/// Shorter frames' lines are asked for writing.
const PREFETCH_MIN: u16 = 512;

/// Buffers reused by every receive poll.
#[derive(Default)]
pub(crate) struct RxScratch {
    /// The requests of the frame being placed.
    reqs: Vec<RxRequest>,
    /// Its page flips (flip mode).
    transfers: Vec<TransferOp>,
    /// Pool frames free for flipping, taken from the end.
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
    /// When each of the guest's buffers was last written by a frame of [`PREFETCH_MIN`]
    /// bytes or more: whether its lines are asked for ahead to be read or to be owned. A
    /// one-page frame's buffer is counted where the read-ahead looks at it, two frames
    /// before its copy, a larger frame's after its copy; smaller frames are not counted (one
    /// store more per frame in their loop cost rx 64 B 3-4%).
    ages: BufferAges,
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
            ages: BufferAges::new(ring.size()),
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

    /// Fills up to `budget` frames of the backlog into posted buffers: each frame is copied
    /// (or flipped) and its responses written as it is taken, and published every
    /// [`COPY_CHUNK`](crate::tx::COPY_CHUNK) pages (told at once, so a frontend asleep starts
    /// on the first 64 KiB frames while the rest are copied) and at the end (told at the
    /// poll's end, with the transmit ring's answers).
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
        let flip = vif.choice.rx_mode == RxMode::Flip;
        if flip {
            scratch.pool_free.clear();
            if let Some(pool) = vif.grants.pool() {
                scratch.pool_free.extend(pool.owned_frames());
            }
        }
        let mut avail = self.ring.unconsumed_requests().map_err(ring_failure)?;
        let mut done = 0;
        let mut chunk_pages = 0;
        while done < budget {
            // The usual frames in a loop of their own (`copy_run`), any other one by one.
            let run = if flip {
                0
            } else {
                let limit = (budget - done)
                    .min(avail as usize)
                    .min(crate::tx::COPY_CHUNK - chunk_pages);
                self.copy_run(&mut vif, mem, limit)?
            };
            let pages = if run > 0 {
                avail -= u32::try_from(run).expect("at most `avail`");
                run
            } else {
                match self.place(&mut vif, mem, scratch, flip, avail)? {
                    Some((need, pages)) => {
                        avail -= need;
                        pages
                    }
                    None => break,
                }
            };
            done += run.max(1);
            chunk_pages += pages;
            if chunk_pages >= crate::tx::COPY_CHUNK {
                chunk_pages = 0;
                // Told now, not at the end of the poll: a frontend asleep starts on these.
                if self.ring.publish_responses() {
                    events
                        .notify_rx()
                        .map_err(|e| PollFailure::Local(e.into()))?;
                }
            }
        }
        if chunk_pages > 0 && self.ring.publish_responses() {
            self.notify_owed = true;
        }
        Ok(done)
    }

    /// Places the frame at the head of the backlog, of any kind, in copy or flip mode, with
    /// `avail` requests published: takes its requests, copies or flips it, writes its
    /// responses (unpublished) and releases it. Returns the requests it took and its pages;
    /// `None` when there is no frame, or when it needs more requests (or flip frames) than
    /// there are, which `need` then records.
    fn place<M: FrameMemory>(
        &mut self,
        vif: &mut RxVif<'_, M>,
        mem: &mut PacketMemory,
        scratch: &mut RxScratch,
        flip: bool,
        avail: u32,
    ) -> Result<Option<(u32, usize)>, PollFailure> {
        let Some(&packet) = self.backlog.front() else {
            self.need = 0;
            return Ok(None);
        };
        let meta = vif.rx_meta(mem.meta(packet));
        let data_slots = mem.npages(packet);
        let need = u32::try_from(data_slots + usize::from(meta.gso.is_some())).unwrap_or(u32::MAX);
        if need > avail || (flip && scratch.pool_free.len() < data_slots) {
            self.need = need;
            return Ok(None);
        }
        self.backlog.pop_front();
        *vif.backlog_pages -= data_slots;
        scratch.reqs.clear();
        // The frame is released after this on every path.
        let placed = take_requests(&mut self.ring, need as usize, &mut scratch.reqs)
            .and_then(|()| {
                if scratch.reqs.len() == need as usize {
                    Ok(())
                } else {
                    Err(requests_vanished())
                }
            })
            .and_then(|()| {
                let ok = if flip {
                    flip_frame(vif, mem, packet, meta, scratch)
                } else {
                    let ok = copy_frame(vif.grants, mem, packet, meta, &scratch.reqs);
                    if ok && mem.len(packet) >= u32::from(PREFETCH_MIN) {
                        for k in 0..data_slots {
                            let gref = data_request(&scratch.reqs, k, meta).gref;
                            let _ = self.ages.wrote(gref, vif.grants.table_entries());
                        }
                    }
                    ok
                };
                self.respond(vif.stats, mem, packet, meta, &scratch.reqs, ok)
            });
        mem.release(packet);
        placed.map(|()| Some((need, data_slots)))
    }

    /// Places up to `limit` frames from the head of the backlog that are the usual kind, one
    /// page with no GSO extra, in copy mode (at least `limit` requests are published): one
    /// request, one copy, one response each, unpublished. Returns how many; stops at the
    /// first frame of another kind.
    ///
    /// A loop of its own, out of line, so that its few values stay in registers: at rx 64 B
    /// the backend waits on its store buffer, which fills behind the stores into the
    /// frontend's lines (the buffer, the response slot), and every spill of the general
    /// loop is one more store in that queue (BENCHMARKS.md, "The usual packet's own
    /// loop"). The counters are kept in locals and written once.
    #[inline(never)]
    fn copy_run<M: FrameMemory>(
        &mut self,
        vif: &mut RxVif<'_, M>,
        mem: &mut PacketMemory,
        limit: usize,
    ) -> Result<usize, PollFailure> {
        let Self {
            ring,
            backlog,
            ages,
            ..
        } = self;
        // The frames as one slice, walked by index and taken off together at the end: a
        // `VecDeque`'s `front`, `pop_front` and `get` each wrapped an index (callgrind: 14
        // instructions a frame at rx 64 B). Contiguous already unless the backlog wrapped
        // round its buffer, and then it is moved once for the whole run.
        let frames = backlog.make_contiguous();
        let mut n = 0;
        let mut taken = 0;
        let (mut packets, mut bytes, mut errors) = (0u64, 0u64, 0u64);
        let outcome = loop {
            if n == limit {
                break Ok(());
            }
            let Some(&packet) = frames.get(taken) else {
                break Ok(());
            };
            let Some((frame, len, meta)) = mem.one_page(packet) else {
                break Ok(());
            };
            if meta.gso.is_some() {
                break Ok(());
            }
            let req = match ring.requests().map(|mut r| r.next()) {
                Ok(Some(req)) => req,
                Ok(None) => break Err(requests_vanished()),
                Err(e) => break Err(ring_failure(e)),
            };
            taken += 1;
            let ahead = frames.get(taken - 1 + COPY_AHEAD as usize).copied();
            prefetch_ahead(ring, ages, vif.grants, mem, ahead);
            let mut op = CopyOp::new(
                CopyPtr::Local { frame, offset: 0 },
                CopyPtr::Grant {
                    gref: GrantRef(req.gref),
                    offset: 0,
                },
                u16::try_from(len).expect("one page"),
            );
            vif.grants.copy_one(&mut op);
            mem.release(packet);
            let ok = op.status == GrantStatus::Okay;
            let rsp = one_page_response(req.id, len as usize, meta, ok);
            if let Err(e) = ring.push_response(&rsp) {
                break Err(ring_failure(e));
            }
            n += 1;
            if ok {
                packets += 1;
                bytes += u64::from(len);
            } else {
                errors += 1;
            }
        };
        // Every frame taken, answered or not (each was released), leaves the backlog.
        backlog.drain(..taken);
        *vif.backlog_pages -= taken;
        vif.stats.rx_packets += packets;
        vif.stats.rx_bytes += bytes;
        vif.stats.rx_errors += errors;
        outcome.map(|()| n)
    }

    /// Whether the frontend is owed a notification for responses published (and forgets
    /// it: the caller sends it).
    pub(crate) fn take_notify_owed(&mut self) -> bool {
        std::mem::take(&mut self.notify_owed)
    }

    /// Writes a frame's responses in the slots of its requests `reqs` (the GSO extra after
    /// the first data slot), unpublished: each data slot's length, or `ERROR` in every one if
    /// `ok` is false; counts the frame once they are written.
    #[inline]
    fn respond(
        &mut self,
        stats: &mut VifStats,
        mem: &PacketMemory,
        packet: PacketId,
        meta: Offload,
        reqs: &[RxRequest],
        ok: bool,
    ) -> Result<(), PollFailure> {
        let len = mem.len(packet) as usize;
        let written = if let [req] = reqs
            && meta.gso.is_none()
        {
            // A frame of one page (one request and no extra), one response.
            let rsp = one_page_response(req.id, len, meta, ok);
            self.ring.push_response(&rsp).map_err(ring_failure)
        } else {
            self.respond_slots(len, mem.npages(packet), meta, reqs, ok)
        };
        if written.is_ok() {
            if ok {
                stats.rx_packets += 1;
                stats.rx_bytes += len as u64;
            } else {
                stats.rx_errors += 1;
            }
        }
        written
    }

    /// [`respond`](Self::respond)'s responses for any frame: `len` bytes in `data_slots`
    /// pages, the GSO extra's slot after the first.
    fn respond_slots(
        &mut self,
        len: usize,
        data_slots: usize,
        meta: Offload,
        reqs: &[RxRequest],
        ok: bool,
    ) -> Result<(), PollFailure> {
        let extra = meta.gso_extra();
        let mut slot = 0;
        for k in 0..data_slots {
            let chunk = (len - k * FRAME_SIZE).min(FRAME_SIZE);
            let mut flags = if k + 1 < data_slots {
                rx_flags::MORE_DATA
            } else {
                0
            };
            if k == 0 {
                flags |= meta.rx_flags();
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
        Ok(())
    }
}

/// The failure when fewer requests come out of the ring than it said it held: the poll
/// counted them first, so a short read is a local inconsistency, not the frontend's doing.
fn requests_vanished() -> PollFailure {
    PollFailure::Local(crate::NetbackError::BadFrontend(
        "rx requests vanished".into(),
    ))
}

/// Asks for the lines of the frontend's buffer that `ahead`, the frame [`COPY_AHEAD`]
/// places behind the one being copied, will be written to (the buffer of the request as
/// many places ahead), if both are known and the frame is of one page: for writing
/// (`prefetchw`) if the frontend's core probably still holds them, for reading if not.
///
/// When the frontend read that buffer long before (netfront keeps more buffers than
/// ring slots and posts them in turn), its lines are in the shared cache, not in the
/// frontend's: read now, they arrive here unshared, and the copy's stores then find them
/// owned instead of waiting for each. rx 1500 B went 1.08-1.10x faster (and 0.94x with
/// `prefetchw` instead). When the frontend read it a moment ago (a buffer posted again as
/// soon as it was read, as Linux netfront does), a read brings the lines over shared and
/// the copy's stores must then take them over once more, which halved the rate; asked
/// for writing they come over once, owned. Against no hint, 256 buffers posted again at
/// once: rx 64 B 1.30x, 256 B 1.27x, 512 B 1.74x, 1024 B 1.32x, 1500 B 1.70x, 4096 B
/// level; with netfront's default every size level. netback tells the two apart by when
/// it last wrote the buffer ([`BufferAges`]; BENCHMARKS.md, "Read ahead only into
/// buffers left alone", "Buffers posted again at once: owned ahead"). Frames under
/// [`PREFETCH_MIN`] are not counted (a store more per frame cost rx 64 B 3-4%) and always
/// take `prefetchw`, which is level for netfront's default. Only a hint: the request's
/// reference and the frame's length are checked again when the frame is copied.
#[inline(always)]
fn prefetch_ahead<M: FrameMemory>(
    ring: &BackRing<RxRequest, RxResponse>,
    ages: &mut BufferAges,
    grants: &PeerGrants<M>,
    mem: &PacketMemory,
    ahead: Option<PacketId>,
) {
    if let Some(packet) = ahead
        && let Ok(len) = u16::try_from(mem.len(packet))
        && usize::from(len) <= FRAME_SIZE
        && let Some(req) = ring.peek_request(COPY_AHEAD - 1)
    {
        let gref = GrantRef(req.gref);
        if len < PREFETCH_MIN {
            grants.prefetch_for_write(gref, 0, len);
            return;
        }
        // Written two frames from now, if nothing fails: counted now, so that the loop of
        // the small frames, which return above, has no more stores.
        if ages.wrote(req.gref, grants.table_entries()) {
            grants.prefetch(gref, 0, len);
        } else {
            grants.prefetch_for_write(gref, 0, len);
        }
    }
}

/// The response to a frame of one page and `len` bytes, with no extra, in the slot of the
/// request `id`: its length, or `ERROR` in it if its copy or flip failed.
#[inline(always)]
fn one_page_response(id: u16, len: usize, meta: Offload, ok: bool) -> RxResponse {
    RxResponse {
        id,
        offset: 0,
        flags: meta.rx_flags(),
        status: if ok {
            i16::try_from(len).expect("at most a page")
        } else {
            status::ERROR
        },
    }
}

/// The request that receives data slot `k` of a frame: request `k`, after the extra's slot
/// for `k >= 1`.
#[inline]
fn data_request(reqs: &[RxRequest], k: usize, meta: Offload) -> RxRequest {
    reqs[if k == 0 {
        0
    } else {
        k + usize::from(meta.gso.is_some())
    }]
}

/// Copy mode: grant-copies each page of the frame into the buffer of its request, now;
/// whether every copy succeeded.
#[inline]
fn copy_frame<M: FrameMemory>(
    grants: &PeerGrants<M>,
    mem: &PacketMemory,
    packet: PacketId,
    meta: Offload,
    reqs: &[RxRequest],
) -> bool {
    let len = mem.len(packet) as usize;
    let mut ok = true;
    for k in 0..mem.npages(packet) {
        let chunk = (len - k * FRAME_SIZE).min(FRAME_SIZE);
        let mut op = CopyOp::new(
            CopyPtr::Local {
                frame: mem.page(packet, k),
                offset: 0,
            },
            CopyPtr::Grant {
                gref: GrantRef(data_request(reqs, k, meta).gref),
                offset: 0,
            },
            u16::try_from(chunk).expect("at most a page"),
        );
        grants.copy_one(&mut op);
        ok &= op.status == GrantStatus::Okay;
    }
    ok
}

/// Flip mode: copies each page of the frame into a pool frame (the rest of it zeroed) and
/// transfers it to the grant of its request; whether every transfer succeeded.
fn flip_frame<M: FrameMemory>(
    vif: &RxVif<'_, M>,
    mem: &PacketMemory,
    packet: PacketId,
    meta: Offload,
    scratch: &mut RxScratch,
) -> bool {
    let Some(pool) = vif.grants.pool() else {
        return false;
    };
    let len = mem.len(packet) as usize;
    scratch.transfers.clear();
    for k in 0..mem.npages(packet) {
        let chunk = (len - k * FRAME_SIZE).min(FRAME_SIZE);
        let page = mem.page(packet, k);
        let frame = scratch.pool_free.pop().expect("counted by the caller");
        let at = frame.0 as usize * FRAME_SIZE;
        // The flipped frame holds the packet's bytes and zeros, nothing older (XSA-403).
        let copied = mem
            .region()
            .copy_to(page.0 as usize * FRAME_SIZE, pool.region(), at, chunk)
            .and_then(|()| pool.region().fill(at + chunk, FRAME_SIZE - chunk, 0));
        let mut op = TransferOp::new(frame, GrantRef(data_request(&scratch.reqs, k, meta).gref));
        if copied.is_err() {
            op.status = GrantStatus::BadPage;
        }
        scratch.transfers.push(op);
    }
    // Only transfers whose frame was filled (a failed fill keeps the frame ours).
    for op in &mut scratch.transfers {
        if op.status != GrantStatus::BadPage {
            vif.grants.transfer(core::slice::from_mut(op));
        }
    }
    scratch
        .transfers
        .iter()
        .all(|o| o.status == GrantStatus::Okay)
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
