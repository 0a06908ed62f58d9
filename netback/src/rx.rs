//! The guest's receive path: frames from the backlog into the buffers the guest posted, by
//! grant copy or by page flip; responses in the slots of their requests, the GSO extra after
//! the first data slot.

use std::ops::Range;

use grant_table::{
    CopyOp, CopyPtr, FRAME_SIZE, FrameNumber, GrantOps, GrantRef, GrantStatus, TransferOp,
};
use netif::wire::{RxRequest, RxResponse, rx_flags, status};
use netif::{GsoKind, Offload};
use xenbus::RxMode;

use crate::memory::{PacketId, PacketMemory};
use crate::tx::{PollFailure, ring_failure};
use crate::vif::Vif;

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

impl<H: crate::host::BackendHost> Vif<H> {
    /// The offload metadata this guest may receive: a GSO kind it did not negotiate is not
    /// sent (the bytes are delivered whole; segmenting in software is not done here).
    fn rx_meta(&self, meta: Offload) -> Offload {
        let gso = meta.gso.filter(|g| match g.kind {
            GsoKind::TcpV4 => self.choice.gso_tcpv4,
            GsoKind::TcpV6 => self.choice.gso_tcpv6,
        });
        Offload { gso, ..meta }
    }

    /// Fills up to `budget` frames of queue `q`'s backlog into posted buffers.
    pub(crate) fn rx_poll(
        &mut self,
        q: usize,
        mem: &mut PacketMemory,
        scratch: &mut RxScratch,
        budget: usize,
    ) -> Result<usize, PollFailure> {
        if self.queues[q].backlog.is_empty() {
            return Ok(0);
        }
        scratch.reqs.clear();
        scratch.copies.clear();
        scratch.transfers.clear();
        scratch.answers.clear();
        let flip = self.choice.rx_mode == RxMode::Flip;
        if flip {
            scratch.pool_free.clear();
            if let Some(pool) = self.grants.pool() {
                scratch.pool_free.extend(pool.owned_frames());
            }
        }
        let mut avail = self.queues[q]
            .rx
            .unconsumed_requests()
            .map_err(ring_failure)?;
        let mut done = 0;
        while done < budget {
            let Some(&packet) = self.queues[q].backlog.front() else {
                self.queues[q].rx_need = 0;
                break;
            };
            let meta = self.rx_meta(mem.meta(packet));
            let data_slots = mem.npages(packet);
            let need =
                u32::try_from(data_slots + usize::from(meta.gso.is_some())).unwrap_or(u32::MAX);
            if need > avail || (flip && scratch.pool_free.len() < data_slots) {
                self.queues[q].rx_need = need;
                break;
            }
            let queue = &mut self.queues[q];
            queue.backlog.pop_front();
            self.backlog_pages -= data_slots;
            avail -= need;
            let first = scratch.reqs.len();
            take_requests(&mut queue.rx, need as usize, &mut scratch.reqs)?;
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
                    let pool = self.grants.pool().expect("flip mode has a pool");
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
                self.move_and_respond(q, mem, scratch, flip)?;
            }
        }
        if scratch.answers.is_empty() {
            return Ok(done);
        }
        self.move_and_respond(q, mem, scratch, flip)?;
        Ok(done)
    }

    /// Performs the batch's copies or transfers and writes its responses; the scratch is
    /// empty afterwards.
    fn move_and_respond(
        &mut self,
        q: usize,
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
                self.grants.transfer(&mut scratch.transfers);
            } else {
                for op in &mut scratch.transfers {
                    if op.status != GrantStatus::BadPage {
                        self.grants.transfer(core::slice::from_mut(op));
                    }
                }
            }
        } else {
            self.grants.copy(&mut scratch.copies);
        }
        self.respond(q, mem, scratch, flip)?;
        scratch.reqs.clear();
        scratch.copies.clear();
        scratch.transfers.clear();
        Ok(())
    }

    fn respond(
        &mut self,
        q: usize,
        mem: &mut PacketMemory,
        scratch: &mut RxScratch,
        flip: bool,
    ) -> Result<(), PollFailure> {
        let queue = &mut self.queues[q];
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
                queue.rx.push_response(&rsp).map_err(ring_failure)?;
                slot += 1;
                if k == 0
                    && let Some(e) = extra
                {
                    let rsp = e.to_rx_slot();
                    queue.rx.push_response(&rsp).map_err(ring_failure)?;
                    slot += 1;
                }
            }
            if ok {
                self.stats.rx_packets += 1;
                self.stats.rx_bytes += len as u64;
            } else {
                self.stats.rx_errors += 1;
            }
            mem.release(a.packet);
        }
        if queue.rx.publish_responses() {
            queue.notify_rx().map_err(PollFailure::Local)?;
        }
        Ok(())
    }
}

/// Takes exactly `n` requests (known to be there), across snapshot refreshes.
fn take_requests(
    ring: &mut io_ring::BackRing<RxRequest, RxResponse>,
    n: usize,
    out: &mut Vec<RxRequest>,
) -> Result<(), PollFailure> {
    let mut left = n;
    while left > 0 {
        let before = out.len();
        out.extend(ring.requests().map_err(ring_failure)?.take(left));
        let got = out.len() - before;
        if got == 0 {
            break;
        }
        left -= got;
    }
    Ok(())
}
