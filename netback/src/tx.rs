//! The guest's transmit path: requests copied out of the ring once, parsed by the netif
//! parser, the packet's bytes brought into backend memory by grant copy or by mapping, and
//! every request answered (extras with `NULL`), in order.

use std::ops::Range;
use std::time::Instant;

use grant_table::{
    Access, CopyOp, CopyPtr, FRAME_SIZE, GrantMapping, GrantOps, GrantRef, GrantStatus,
};
use netif::wire::status;
use netif::{Offload, Severity, TxPacket, parse_tx_into, tx_responses};

use crate::error::{NetbackError, VifFault};
use crate::memory::{PacketId, PacketMemory};
use crate::vif::Vif;

/// Grant copies (pages) after which a poll copies and answers what it has so far: pipelines
/// large frames with the frontend (16 copies make one 64 KiB frame).
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

enum Outcome {
    /// Answered with this status, counted as dropped (`DROPPED`) or an error.
    Status(i16),
    /// A packet in backend memory; its copies are `ops` (all must succeed) and `mapped_ok`
    /// says whether the mapped reads did.
    Packet {
        packet: PacketId,
        ops: Range<usize>,
        mapped_ok: bool,
    },
}

struct Answer {
    start: usize,
    slots: usize,
    extra_slots: usize,
    outcome: Outcome,
}

/// Buffers reused by every transmit poll.
#[derive(Default)]
pub(crate) struct TxScratch {
    ops: Vec<CopyOp>,
    /// The packet being parsed (built in place, not moved).
    packet: TxPacket,
    answers: Vec<Answer>,
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

impl<H: crate::host::BackendHost> Vif<H> {
    /// Copies out what the ring holds, appending to `pending` (whose indices the poll's
    /// answers refer to: nothing is removed during a poll).
    fn refill_pending(&mut self, q: usize) -> Result<(), PollFailure> {
        let queue = &mut self.queues[q];
        let reqs = queue.tx.requests().map_err(ring_failure)?;
        queue.pending.extend(reqs);
        Ok(())
    }

    /// Handles up to `budget` of the guest's packets on queue `q`; accepted ones are
    /// appended to `accepted` in order, for the uplink.
    pub(crate) fn tx_poll(
        &mut self,
        q: usize,
        mode: TxMode,
        mem: &mut PacketMemory,
        scratch: &mut TxScratch,
        budget: usize,
        accepted: &mut Vec<PacketId>,
    ) -> Result<TxPoll, PollFailure> {
        scratch.ops.clear();
        scratch.answers.clear();
        // Requests answered by earlier polls go; at most a ring's worth ever stays. (Answers
        // index `pending`: they are flushed at the end of every poll, before this runs again.)
        let queue = &mut self.queues[q];
        debug_assert!(
            queue.tx_answers.is_empty(),
            "answers flushed before the next poll"
        );
        if queue.tx_answers.is_empty() {
            queue.pending.drain(..queue.start);
            queue.start = 0;
        }
        let mut result = TxPoll::default();
        let mut refilled = false;
        let mut chunk_pages = 0;
        let now = self.credit.limited().then(Instant::now);
        let outcome = loop {
            if result.packets >= budget {
                break Ok(());
            }
            let queue = &self.queues[q];
            if queue.start >= queue.pending.len() {
                if refilled {
                    break Ok(());
                }
                refilled = true;
                if let Err(f) = self.refill_pending(q) {
                    break Err(f);
                }
                continue;
            }
            let parsed = parse_tx_into(&queue.pending[queue.start..], &mut scratch.packet);
            match parsed {
                Err(e) if e.severity == Severity::Fatal => {
                    // A packet cut short at the end of what we copied: the frontend may have
                    // published more since; look once before judging (Linux judges the
                    // frontend by what it published, as this does after the refill).
                    if !refilled {
                        refilled = true;
                        if let Err(f) = self.refill_pending(q) {
                            break Err(f);
                        }
                        continue;
                    }
                    break Err(PollFailure::Fault(VifFault::Tx(e.kind)));
                }
                Err(e) => {
                    let queue = &mut self.queues[q];
                    let st = if e.severity == Severity::Drop {
                        self.stats.tx_dropped += 1;
                        status::DROPPED
                    } else {
                        self.stats.tx_errors += 1;
                        status::ERROR
                    };
                    scratch.answers.push(Answer {
                        start: queue.start,
                        slots: e.slots,
                        extra_slots: e.extra_slots,
                        outcome: Outcome::Status(st),
                    });
                    queue.start += e.slots;
                    result.packets += 1;
                }
                Ok(()) => {
                    let pkt = &scratch.packet;
                    if let Some(now) = now
                        && !self.credit.take(u64::from(pkt.len), now)
                    {
                        self.stats.tx_throttled += 1;
                        result.throttled = self.credit.refill_at();
                        break Ok(());
                    }
                    let Some(packet) = mem.alloc(u32::from(pkt.len), Offload::from_tx(pkt)) else {
                        result.out_of_memory = true;
                        break Ok(());
                    };
                    let first_op = scratch.ops.len();
                    let mapped_ok = match mode {
                        TxMode::Copy => {
                            push_copies(pkt, packet, mem, &mut scratch.ops);
                            true
                        }
                        TxMode::Map => self.read_mapped(pkt, packet, mem),
                    };
                    let queue = &mut self.queues[q];
                    scratch.answers.push(Answer {
                        start: queue.start,
                        slots: pkt.slots,
                        extra_slots: pkt.extra_slots,
                        outcome: Outcome::Packet {
                            packet,
                            ops: first_op..scratch.ops.len(),
                            mapped_ok,
                        },
                    });
                    queue.start += pkt.slots;
                    result.packets += 1;
                    // Large frames: copy and answer in chunks, so the frontend gets buffers
                    // back (and refills) while the rest of the batch is copied. (Map mode
                    // copied already; its pages count the same.)
                    chunk_pages += PacketMemory::pages_for(u32::from(pkt.len));
                    if chunk_pages >= COPY_CHUNK {
                        chunk_pages = 0;
                        self.grants.copy(&mut scratch.ops);
                        if let Err(e) = self
                            .answer(q, mem, scratch, accepted)
                            .and_then(|()| self.flush_tx_answers_of(q))
                        {
                            break Err(PollFailure::Local(e));
                        }
                        scratch.ops.clear();
                    }
                }
            }
        };
        if let Err(failure) = outcome {
            for a in scratch.answers.drain(..) {
                if let Outcome::Packet { packet, .. } = a.outcome {
                    mem.release(packet);
                }
            }
            return Err(failure);
        }
        if scratch.ops.is_empty() && scratch.answers.is_empty() {
            return Ok(result);
        }
        self.grants.copy(&mut scratch.ops);
        self.answer(q, mem, scratch, accepted)
            .map_err(PollFailure::Local)?;
        Ok(result)
    }

    /// Map mode: reads each fragment through a read-only mapping held only for the copy.
    fn read_mapped(&self, pkt: &TxPacket, packet: PacketId, mem: &PacketMemory) -> bool {
        let mut pos = 0;
        for frag in pkt.fragments() {
            let len = usize::from(frag.len);
            if len > 0 {
                let Ok(mapping) = self.grants.map(GrantRef(frag.gref), Access::ReadOnly) else {
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

    /// Pushes every answer of the poll in request order and publishes them.
    fn answer(
        &mut self,
        q: usize,
        mem: &mut PacketMemory,
        scratch: &mut TxScratch,
        accepted: &mut Vec<PacketId>,
    ) -> Result<(), NetbackError> {
        let queue = &mut self.queues[q];
        for a in scratch.answers.drain(..) {
            let st = match a.outcome {
                Outcome::Status(st) => st,
                Outcome::Packet {
                    packet,
                    ops,
                    mapped_ok,
                } => {
                    let ok = mapped_ok
                        && scratch.ops[ops]
                            .iter()
                            .all(|op| op.status == GrantStatus::Okay);
                    if ok {
                        self.stats.tx_packets += 1;
                        self.stats.tx_bytes += u64::from(mem.len(packet));
                        accepted.push(packet);
                        status::OKAY
                    } else {
                        self.stats.tx_errors += 1;
                        mem.release(packet);
                        status::ERROR
                    }
                }
            };
            queue.tx_answers.push(TxAnswer {
                start: a.start,
                slots: a.slots,
                extra_slots: a.extra_slots,
                status: st,
            });
        }
        Ok(())
    }

    /// Writes the answers the polls since the last flush decided, in request order, and
    /// publishes them. Runs after the poll delivered its frames: writing a response takes its
    /// slot's cache line back from the frontend, which need not delay a frame on its way.
    pub(crate) fn flush_tx_answers_of(&mut self, q: usize) -> Result<(), NetbackError> {
        let queue = &mut self.queues[q];
        if queue.tx_answers.is_empty() {
            return Ok(());
        }
        for a in queue.tx_answers.drain(..) {
            let reqs = &queue.pending[a.start..];
            for rsp in tx_responses(reqs, a.slots, a.extra_slots, a.status) {
                queue.tx.push_response(&rsp).map_err(NetbackError::Ring)?;
            }
        }
        if queue.tx.publish_responses() {
            queue.notify_tx()?;
        }
        Ok(())
    }
}

/// The answer to one packet's requests, decided and not yet written.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TxAnswer {
    start: usize,
    slots: usize,
    extra_slots: usize,
    status: i16,
}

/// Grant copies of every fragment into the packet's pages (none crossing a page on either
/// side: a fragment lies in its page, and pieces split at ours).
fn push_copies(pkt: &TxPacket, packet: PacketId, mem: &PacketMemory, ops: &mut Vec<CopyOp>) {
    let mut pos = 0;
    for frag in pkt.fragments() {
        let len = usize::from(frag.len);
        for (page, within, n, from) in dest_pieces(pos, len) {
            let src_off = usize::from(frag.offset) + from;
            ops.push(CopyOp::new(
                CopyPtr::Grant {
                    gref: GrantRef(frag.gref),
                    offset: u16::try_from(src_off).expect("inside a page"),
                },
                CopyPtr::Local {
                    frame: mem.page(packet, page),
                    offset: u16::try_from(within).expect("inside a page"),
                },
                u16::try_from(n).expect("at most a page"),
            ));
        }
        pos += len;
    }
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
