//! The guest's transmit path: requests copied out of the ring once, parsed by the netif
//! parser, the packet's bytes brought into backend memory by grant copy or by mapping, and
//! every request answered (extras with `NULL`), in order.

use std::time::Instant;

use event_channel::{EventChannel, QueuePorts};
use grant_table::{
    Access, CopyOp, CopyPtr, FRAME_SIZE, FrameMemory, FrameNumber, GrantMapping, GrantOps,
    GrantRef, GrantStatus, PeerGrants,
};
use io_ring::BackRing;
use netif::wire::{TxRequest, TxResponse, status};
use netif::{Offload, Severity, TxPacket, parse_tx_into, tx_responses};

use crate::credit::Credit;
use crate::error::{NetbackError, VifFault};
use crate::memory::{PacketId, PacketMemory};
use crate::stats::VifStats;

/// Pages copied after which a poll writes the answers (transmit) or publishes the responses
/// (receive) it has so far: pipelines large frames with the frontend (16 pages make one
/// 64 KiB frame).
pub(crate) const COPY_CHUNK: usize = 32;

/// How netback reads a guest's transmitted bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TxMode {
    /// Grant copy from the guest's pages into backend memory.
    #[default]
    Copy,
    /// Map each granted page read-only and copy out of the mapping.
    Map,
}

/// Buffers reused by every transmit poll.
#[derive(Default)]
pub(crate) struct TxScratch {
    /// The packet being parsed (built in place, not moved).
    packet: TxPacket,
    /// Packets the last poll accepted, in order, for the uplink.
    accepted: Vec<PacketId>,
}

impl TxScratch {
    /// The packets the last poll accepted, in order (each holds one reference).
    #[inline]
    pub(crate) fn take_accepted(&mut self) -> std::vec::Drain<'_, PacketId> {
        self.accepted.drain(..)
    }
}

/// A guest's transmit ring and what netback holds of it: requests copied out and not yet
/// answered, and the answers a poll decided and has not written yet.
#[derive(Debug)]
pub(crate) struct TxQueue {
    ring: BackRing<TxRequest, TxResponse>,
    /// Requests copied out of the ring and not answered yet (`pending[start..]`).
    pending: Vec<TxRequest>,
    start: usize,
    /// This poll's answers, in request order, each final when pushed; written at the poll's
    /// end (or a chunk's).
    answers: Vec<TxAnswer>,
}

/// What a transmit poll uses of its vif: its grants, transmit credit and counters.
pub(crate) struct TxVif<'a, M> {
    grants: &'a PeerGrants<M>,
    credit: &'a mut Credit,
    stats: &'a mut VifStats,
}

impl<'a, M> TxVif<'a, M> {
    pub(crate) fn new(
        grants: &'a PeerGrants<M>,
        credit: &'a mut Credit,
        stats: &'a mut VifStats,
    ) -> Self {
        Self {
            grants,
            credit,
            stats,
        }
    }
}

impl core::fmt::Debug for TxScratch {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TxScratch").finish_non_exhaustive()
    }
}

/// What one transmit poll of a queue did.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct TxPoll {
    /// Packets handled (accepted, dropped or failed).
    pub(crate) packets: usize,
    /// Stopped for lack of credit: try again at the refill time.
    pub(crate) throttled: Option<Instant>,
    /// Stopped for lack of backend memory.
    pub(crate) out_of_memory: bool,
}

/// Splits `[pos, pos + len)` of a packet at its page boundaries: (page index, offset in it,
/// bytes, offset in the source).
fn dest_pieces(pos: usize, len: usize) -> impl Iterator<Item = (usize, usize, usize, usize)> {
    let mut done = 0;
    core::iter::from_fn(move || {
        if done >= len {
            return None;
        }
        let at = pos + done;
        let n = (FRAME_SIZE - at % FRAME_SIZE).min(len - done);
        let piece = (at / FRAME_SIZE, at % FRAME_SIZE, n, done);
        done += n;
        Some(piece)
    })
}

impl TxQueue {
    pub(crate) fn new(ring: BackRing<TxRequest, TxResponse>) -> Self {
        Self {
            ring,
            pending: Vec::new(),
            start: 0,
            answers: Vec::new(),
        }
    }

    /// Whether requests wait, looking without arming (a bad index counts as work: the poll
    /// that follows reports it).
    #[inline]
    pub(crate) fn has_work(&mut self) -> bool {
        self.start < self.pending.len() || self.ring.unconsumed_requests().unwrap_or(1) > 0
    }

    /// Arms the ring's event and re-checks (the final check before sleeping).
    #[inline]
    pub(crate) fn final_check(&mut self) -> Result<bool, io_ring::RingError> {
        Ok(self.ring.final_check_requests()? || self.start < self.pending.len())
    }

    /// Forgets decided answers (the vif was disabled: nothing more is written to it).
    #[inline]
    pub(crate) fn discard_answers(&mut self) {
        self.answers.clear();
    }

    /// Copies out what the ring holds, appending to `pending` (whose indices the poll's
    /// answers refer to: nothing is removed during a poll), and asks for the first line of
    /// each new request's data: the packets are copied one by one as they are parsed, and
    /// without the hint each copy would wait in turn for lines the frontend has just written.
    fn refill_pending<M: FrameMemory>(
        &mut self,
        grants: &PeerGrants<M>,
    ) -> Result<(), PollFailure> {
        let reqs = self.ring.requests().map_err(ring_failure)?;
        self.pending.reserve(reqs.len());
        // A plain loop: `extend` pushed each request through a generic path out of line
        // (callgrind: 35 instructions a request).
        for r in reqs {
            // Every slot, extras and all: a hint reads nothing, and one whose reference names
            // no frame of the guest's does nothing.
            grants.prefetch(GrantRef(r.gref), r.offset, 1);
            self.pending.push(r);
        }
        Ok(())
    }

    /// Handles up to `budget` of the guest's packets; accepted ones are left in the
    /// scratch's accepted list in order, for the uplink.
    pub(crate) fn poll<M: FrameMemory, P: EventChannel>(
        &mut self,
        vif: TxVif<'_, M>,
        events: &QueuePorts<P>,
        mode: TxMode,
        mem: &mut PacketMemory,
        scratch: &mut TxScratch,
        budget: usize,
    ) -> Result<TxPoll, PollFailure> {
        let TxVif {
            grants,
            credit,
            stats,
        } = vif;
        // Requests answered by earlier polls go; at most a ring's worth ever stays. (Answers
        // index `pending`: they are flushed at the end of every poll, before this runs again.)
        debug_assert!(
            self.answers.is_empty(),
            "answers flushed before the next poll"
        );
        if self.answers.is_empty() {
            self.pending.drain(..self.start);
            self.start = 0;
        }
        let mut result = TxPoll::default();
        let mut refilled = false;
        let mut chunk_pages = 0;
        let now = credit.limited().then(Instant::now);
        let outcome = loop {
            if result.packets >= budget {
                break Ok(());
            }
            // The usual packets in a loop of their own (`copy_run`), any other one by one.
            let run = if mode == TxMode::Copy && now.is_none() {
                let limit = (budget - result.packets).min(COPY_CHUNK - chunk_pages);
                self.copy_run(grants, stats, mem, &mut scratch.accepted, limit)
            } else {
                0
            };
            let pages = if run > 0 {
                result.packets += run;
                run
            } else {
                if self.start >= self.pending.len() {
                    if refilled {
                        break Ok(());
                    }
                    refilled = true;
                    if let Err(f) = self.refill_pending(grants) {
                        break Err(f);
                    }
                    continue;
                }
                let parsed = parse_tx_into(&self.pending[self.start..], &mut scratch.packet);
                match parsed {
                    Err(e) if e.severity == Severity::Fatal => {
                        // A packet cut short at the end of what we copied: the frontend may
                        // have published more since; look once before judging (Linux judges
                        // the frontend by what it published, as this does after the refill).
                        if !refilled {
                            refilled = true;
                            if let Err(f) = self.refill_pending(grants) {
                                break Err(f);
                            }
                            continue;
                        }
                        break Err(PollFailure::Fault(VifFault::Tx(e.kind)));
                    }
                    Err(e) => {
                        let st = if e.severity == Severity::Drop {
                            stats.tx_dropped += 1;
                            status::DROPPED
                        } else {
                            stats.tx_errors += 1;
                            status::ERROR
                        };
                        self.answer(e.slots, e.extra_slots, st);
                        result.packets += 1;
                        0
                    }
                    Ok(()) => {
                        let pkt = &scratch.packet;
                        if let Some(now) = now
                            && !credit.take(u64::from(pkt.len), now)
                        {
                            stats.tx_throttled += 1;
                            result.throttled = credit.refill_at();
                            break Ok(());
                        }
                        let Some(packet) = mem.alloc(u32::from(pkt.len), Offload::from_tx(pkt))
                        else {
                            result.out_of_memory = true;
                            break Ok(());
                        };
                        // The bytes now, and the answer with them: no list of copies to check
                        // later (the batch's misses still overlap: `refill_pending` asked for
                        // every request's first line).
                        let copied = match mode {
                            TxMode::Copy => copy_in(grants, pkt, packet, mem),
                            TxMode::Map => read_mapped(grants, pkt, packet, mem),
                        };
                        let st = if copied {
                            stats.tx_packets += 1;
                            stats.tx_bytes += u64::from(pkt.len);
                            scratch.accepted.push(packet);
                            status::OKAY
                        } else {
                            stats.tx_errors += 1;
                            mem.release(packet);
                            status::ERROR
                        };
                        self.answer(pkt.slots, pkt.extra_slots, st);
                        result.packets += 1;
                        PacketMemory::pages_for(u32::from(pkt.len))
                    }
                }
            };
            // Large frames: answer in chunks, so the frontend gets buffers back (and refills)
            // while the rest of the batch is copied.
            chunk_pages += pages;
            if chunk_pages >= COPY_CHUNK {
                chunk_pages = 0;
                if let Err(e) = self.flush(events) {
                    break Err(PollFailure::Local(e));
                }
            }
        };
        // A fault ends the poll with every packet before it answered (and accepted ones
        // on their way, as Linux netback submits what it built before a fatal error).
        outcome.map(|()| result)
    }

    /// Handles up to `limit` packets from the head of `pending` that are the usual kind, one
    /// slot alone and valid ([`netif::tx_one_slot`]), in copy mode: each copied into a packet of
    /// its own (accepted) and answered, as the general path would. Returns how many; stops at
    /// the first packet of another kind, at the end of what was copied out of the ring, or
    /// when backend memory runs out (the general path then finds each of these again and
    /// handles it). Not for a vif with a credit limit.
    ///
    /// A loop of its own, out of line, with its counters in locals: as on the receive path,
    /// the general loop's values did not fit in registers, and the packets that are nearly
    /// all of a small-frame stream paid for its spills.
    #[inline(never)]
    fn copy_run<M: FrameMemory>(
        &mut self,
        grants: &PeerGrants<M>,
        stats: &mut VifStats,
        mem: &mut PacketMemory,
        accepted: &mut Vec<PacketId>,
        limit: usize,
    ) -> usize {
        let mut n = 0;
        let (mut packets, mut bytes, mut errors) = (0u64, 0u64, 0u64);
        // The answers go as runs: `okay` packets from `okay_from` on, each answered `OKAY`,
        // recorded once per run instead of once per packet.
        let (mut okay_from, mut okay) = (self.start, 0);
        while n < limit {
            let Some(req) = self.pending.get(self.start) else {
                break;
            };
            let Some(frag) = netif::tx_one_slot(req) else {
                break;
            };
            let Some(packet) = mem.alloc(u32::from(frag.len), Offload::from_tx_flags(req.flags))
            else {
                break;
            };
            if copy_piece(
                grants,
                frag.gref,
                usize::from(frag.offset),
                mem.page(packet, 0),
                0,
                usize::from(frag.len),
            ) {
                packets += 1;
                bytes += u64::from(frag.len);
                accepted.push(packet);
                okay += 1;
                self.start += 1;
            } else {
                errors += 1;
                mem.release(packet);
                self.answer_okay(okay_from, okay);
                self.answer(1, 0, status::ERROR);
                (okay_from, okay) = (self.start, 0);
            }
            n += 1;
        }
        self.answer_okay(okay_from, okay);
        stats.tx_packets += packets;
        stats.tx_bytes += bytes;
        stats.tx_errors += errors;
        n
    }

    /// Decides the answer to the packet at `pending[start]` (`slots` requests, `extra_slots`
    /// of them extras), written at the next flush, and moves past it.
    #[inline(always)]
    fn answer(&mut self, slots: usize, extra_slots: usize, status: i16) {
        if slots == 1 && status == status::OKAY {
            let at = self.start;
            self.start += 1;
            self.answer_okay(at, 1);
            return;
        }
        self.answers.push(TxAnswer::Packet {
            start: self.start,
            slots,
            extra_slots,
            status,
        });
        self.start += slots;
    }

    /// Records `OKAY` answers to the `count` one-slot packets `pending[from..from + count]`
    /// (already moved past), joining the run before them if they follow it.
    #[inline(always)]
    fn answer_okay(&mut self, from: usize, count: usize) {
        if count == 0 {
            return;
        }
        if let Some(TxAnswer::Okay { start, count: run }) = self.answers.last_mut()
            && *start + *run == from
        {
            *run += count;
            return;
        }
        self.answers.push(TxAnswer::Okay { start: from, count });
    }

    /// Writes the answers the polls since the last flush decided, in request order, and
    /// publishes them. Runs after the poll delivered its frames: writing a response takes its
    /// slot's cache line back from the frontend, which need not delay a frame on its way.
    pub(crate) fn flush<P: EventChannel>(
        &mut self,
        events: &QueuePorts<P>,
    ) -> Result<(), NetbackError> {
        if self.flush_owed()? {
            events.notify_tx()?;
        }
        Ok(())
    }

    /// As [`flush`](Self::flush), leaving the notification to the caller: returns whether
    /// the frontend asked for one.
    pub(crate) fn flush_owed(&mut self) -> Result<bool, NetbackError> {
        if self.answers.is_empty() {
            return Ok(false);
        }
        for a in self.answers.drain(..) {
            match a {
                TxAnswer::Okay { start, count } => {
                    // The usual packets: one slot each, answered with its own id.
                    for req in &self.pending[start..start + count] {
                        let rsp = TxResponse {
                            id: req.id,
                            status: status::OKAY,
                        };
                        self.ring.push_response(&rsp).map_err(NetbackError::Ring)?;
                    }
                }
                TxAnswer::Packet {
                    start,
                    slots,
                    extra_slots,
                    status,
                } => {
                    let reqs = &self.pending[start..];
                    for rsp in tx_responses(reqs, slots, extra_slots, status) {
                        self.ring.push_response(&rsp).map_err(NetbackError::Ring)?;
                    }
                }
            }
        }
        Ok(self.ring.publish_responses())
    }
}

/// Map mode: reads each fragment through a read-only mapping held only for the copy.
fn read_mapped<M: FrameMemory>(
    grants: &PeerGrants<M>,
    pkt: &TxPacket,
    packet: PacketId,
    mem: &PacketMemory,
) -> bool {
    let mut pos = 0;
    for frag in pkt.fragments() {
        let len = usize::from(frag.len);
        if len > 0 {
            let Ok(mapping) = grants.map(GrantRef(frag.gref), Access::ReadOnly) else {
                return false;
            };
            let src = mapping.region();
            debug_assert!(!mapping.writable());
            for (page, within, n, from) in dest_pieces(pos, len) {
                let dst = mem.page(packet, page).0 as usize * FRAME_SIZE + within;
                if src
                    .copy_to(usize::from(frag.offset) + from, mem.region(), dst, n)
                    .is_err()
                {
                    return false;
                }
            }
        }
        pos += len;
    }
    true
}

/// Answers decided and not yet written, in request order.
#[derive(Clone, Copy, Debug)]
enum TxAnswer {
    /// `count` packets of one slot each, `pending[start..start + count]`, every one `OKAY`:
    /// most of a stream, recorded once per run.
    Okay { start: usize, count: usize },
    /// Any other packet: `pending[start..start + slots]`, `extra_slots` of them extras,
    /// answered `status` (the parser's verdict, or `ERROR` from the copies).
    Packet {
        start: usize,
        slots: usize,
        extra_slots: usize,
        status: i16,
    },
}

/// Grant-copies every fragment into the packet's pages (no copy crosses a page on either
/// side: a fragment lies in its page, and pieces split at ours); false at the first copy that
/// fails.
#[inline]
fn copy_in<M: FrameMemory>(
    grants: &PeerGrants<M>,
    pkt: &TxPacket,
    packet: PacketId,
    mem: &PacketMemory,
) -> bool {
    if let [frag] = pkt.fragments() {
        // The usual packet, one fragment: one piece, at the start of the packet's first page.
        let (src_off, len) = (usize::from(frag.offset), usize::from(frag.len));
        return copy_piece(grants, frag.gref, src_off, mem.page(packet, 0), 0, len);
    }
    let mut pos = 0;
    for frag in pkt.fragments() {
        let len = usize::from(frag.len);
        let within = pos % FRAME_SIZE;
        if len > 0 && within + len <= FRAME_SIZE {
            // A fragment that fits the rest of one of our pages: one piece.
            let page = mem.page(packet, pos / FRAME_SIZE);
            if !copy_piece(
                grants,
                frag.gref,
                usize::from(frag.offset),
                page,
                within,
                len,
            ) {
                return false;
            }
        } else {
            for (page, within, n, from) in dest_pieces(pos, len) {
                let src_off = usize::from(frag.offset) + from;
                let page = mem.page(packet, page);
                if !copy_piece(grants, frag.gref, src_off, page, within, n) {
                    return false;
                }
            }
        }
        pos += len;
    }
    true
}

/// Grant-copies `len` bytes from `gref` at `src_off` to our `frame` at `dst_off` (each inside
/// its page: the parser and [`dest_pieces`] see to it); whether it succeeded. Always inlined:
/// out of line, the op built here goes through memory (callgrind: 54 instructions a frame
/// more at tx 64 B).
#[inline(always)]
fn copy_piece<M: FrameMemory>(
    grants: &PeerGrants<M>,
    gref: u32,
    src_off: usize,
    frame: FrameNumber,
    dst_off: usize,
    len: usize,
) -> bool {
    let mut op = CopyOp::new(
        CopyPtr::Grant {
            gref: GrantRef(gref),
            offset: u16::try_from(src_off).expect("inside a page"),
        },
        CopyPtr::Local {
            frame,
            offset: u16::try_from(dst_off).expect("inside a page"),
        },
        u16::try_from(len).expect("at most a page"),
    );
    grants.copy_one(&mut op);
    op.status == GrantStatus::Okay
}

/// Why a poll of a vif stopped.
#[derive(Debug)]
pub(crate) enum PollFailure {
    /// The frontend broke the protocol: disable the vif.
    Fault(VifFault),
    /// Something failed here.
    Local(NetbackError),
}

/// A ring error: the frontend's fault if it is a peer error, ours otherwise.
pub(crate) fn ring_failure(e: io_ring::RingError) -> PollFailure {
    match e {
        io_ring::RingError::Peer(p) => PollFailure::Fault(VifFault::Ring(p)),
        other => PollFailure::Local(NetbackError::Ring(other)),
    }
}
