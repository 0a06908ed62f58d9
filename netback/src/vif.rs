//! One attached frontend (a vif): its grants and held ring mappings, its queues (each a
//! transmit and a receive ring with their event channels), credit, counters and fault;
//! attaching from the parts a host handed over and releasing everything. The backend only
//! iterates vifs and calls what is here; the rings' own state is `tx.rs`'s and `rx.rs`'s.

use std::time::Instant;

use event_channel::QueuePorts;
use grant_table::{Access, HeldMapping, PeerGrants};
use io_ring::BackRing;
use xenbus::{BackendControl, FrontendChoice, Peer};

use crate::credit::{Credit, RateLimit};
use crate::error::{NetbackError, VifFault};
use crate::host::{BackendHost, VifParts};
use crate::memory::{PacketId, PacketMemory};
use crate::rx::{RxQueue, RxScratch, RxVif};
use crate::stats::VifStats;
use crate::storm::Storm;
use crate::tx::{PollFailure, TxMode, TxPoll, TxQueue, TxScratch, TxVif};
use crate::uplink::VifId;

/// How long a vif waits before retrying when backend memory ran out.
const OUT_OF_MEMORY_RETRY: std::time::Duration = std::time::Duration::from_millis(1);

/// One queue pair of a vif.
#[derive(Debug)]
struct VifQueue<P> {
    tx: TxQueue,
    rx: RxQueue,
    /// The two ring pages, mapped for the connection.
    rings: Vec<HeldMapping>,
    /// The queue's event channel(s).
    events: QueuePorts<P>,
}

/// What releasing a vif leaves: its control channel (to answer the close), the grants
/// still pinned (0 unless something leaked), its final counters, and its event channels
/// (closed once no event loop can still have them registered).
pub(crate) struct Released<H: BackendHost> {
    pub(crate) control: Option<H::Control>,
    pub(crate) pinned: usize,
    pub(crate) stats: VifStats,
    pub(crate) events: Vec<QueuePorts<H::Port>>,
}

/// An attached frontend.
#[derive(Debug)]
pub(crate) struct Vif<H: BackendHost> {
    id: VifId,
    control: Option<H::Control>,
    /// The control channel's descriptor was reported readable: look at it in the next poll.
    control_ready: bool,
    peer: Option<Peer>,
    grants: PeerGrants<H::Memory>,
    choice: FrontendChoice,
    queues: Vec<VifQueue<H::Port>>,
    stats: VifStats,
    credit: Credit,
    fault: Option<VifFault>,
    /// Pages of backend memory the backlogs of this vif hold.
    backlog_pages: usize,
    /// No transmit work before this instant (credit exhausted, memory short).
    tx_blocked_until: Option<Instant>,
    /// Whether its events keep bringing no work.
    storm: Storm,
    /// Since when frames have waited for its receive buffers without one being delivered.
    rx_stalled_since: Option<Instant>,
}

impl<H: BackendHost> Vif<H> {
    /// Maps the frontend's ring pages (held for the connection) and attaches to its rings.
    /// On failure everything taken is let go and the control channel handed back, to refuse
    /// the frontend with the reason.
    pub(crate) fn attach(
        id: VifId,
        parts: VifParts<H>,
        rate: Option<RateLimit>,
    ) -> Result<Self, (NetbackError, H::Control)> {
        let (choice, grants, handed, control, peer) = parts.into_inner();
        let mut vif = Self {
            id,
            control: None,
            control_ready: false,
            peer,
            grants,
            choice,
            queues: Vec::with_capacity(handed.len()),
            stats: VifStats::default(),
            credit: Credit::new(rate),
            fault: None,
            backlog_pages: 0,
            tx_blocked_until: None,
            storm: Storm::default(),
            rx_stalled_since: None,
        };
        for q in handed {
            let mut rings = Vec::with_capacity(2);
            for gref in [q.tx_ring, q.rx_ring] {
                match vif.grants.map_held(gref, Access::ReadWrite) {
                    Ok(m) => rings.push(m),
                    Err(status) => {
                        for m in rings {
                            vif.grants.unmap_held(m);
                        }
                        vif.unmap_rings();
                        let e = NetbackError::RingGrant {
                            gref: gref.0,
                            status,
                        };
                        return Err((e, control));
                    }
                }
            }
            let attached = BackRing::attach(rings[0].region().clone())
                .and_then(|tx| Ok((tx, BackRing::attach(rings[1].region().clone())?)));
            let (tx, rx) = match attached {
                Ok(r) => r,
                Err(e) => {
                    for m in rings {
                        vif.grants.unmap_held(m);
                    }
                    vif.unmap_rings();
                    return Err((NetbackError::BadFrontend(format!("ring: {e}")), control));
                }
            };
            vif.queues.push(VifQueue {
                tx: TxQueue::new(tx),
                rx: RxQueue::new(rx),
                rings,
                events: q.events,
            });
        }
        vif.control = Some(control);
        Ok(vif)
    }

    #[inline]
    pub(crate) fn id(&self) -> VifId {
        self.id
    }

    #[inline]
    pub(crate) fn peer(&self) -> Option<Peer> {
        self.peer
    }

    pub(crate) fn choice(&self) -> &FrontendChoice {
        &self.choice
    }

    #[inline]
    pub(crate) fn stats(&self) -> VifStats {
        self.stats
    }

    #[inline]
    pub(crate) fn fault(&self) -> Option<VifFault> {
        self.fault
    }

    /// Counts a frame for this guest that could not be queued (memory short).
    #[inline]
    pub(crate) fn count_rx_drop(&mut self) {
        self.stats.rx_dropped += 1;
    }

    /// Whether the vif still carries traffic.
    #[inline]
    pub(crate) fn active(&self) -> bool {
        self.fault.is_none()
    }

    /// The control channel, once attached.
    #[inline]
    pub(crate) fn control(&self) -> Option<&H::Control> {
        self.control.as_ref()
    }

    /// The control channel's descriptor was reported readable.
    #[inline]
    pub(crate) fn mark_control_ready(&mut self) {
        self.control_ready = true;
    }

    /// Tells the frontend it is attached; one that went away meanwhile is looked at (and
    /// released) by the next poll.
    pub(crate) fn answer_connected(&mut self) {
        if let Some(c) = self.control.as_mut()
            && c.connected().is_err()
        {
            self.control_ready = true;
        }
    }

    /// Whether the frontend asked to close or went away: looked at when its descriptor was
    /// reported readable, or on every call for a channel without one (no system call then).
    #[inline]
    pub(crate) fn closing(&mut self) -> bool {
        let Some(c) = self.control.as_mut() else {
            return false;
        };
        let look = std::mem::take(&mut self.control_ready) || c.readiness_fd().is_none();
        look && c.frontend_closing()
    }

    /// Whether some channel has no descriptor to sleep on (the vif is "blind").
    #[inline]
    pub(crate) fn blind(&self) -> bool {
        self.control
            .as_ref()
            .is_some_and(|c| c.readiness_fd().is_none())
            || (self.active() && self.queues.iter().any(|q| !q.events.has_fds()))
    }

    /// Clears the events reported since the last call (late EOI) and judges them: returns
    /// whether the vif just stopped being listened to, its events having brought no work
    /// too many times in a row.
    pub(crate) fn end_of_interrupt(&mut self, now: Instant) -> Result<bool, NetbackError> {
        let mut fired = false;
        for q in &mut self.queues {
            fired |= q.events.end_of_interrupt()?;
        }
        let s = &self.stats;
        // Requests the frontend's events can bring: transmitted frames (whatever became of
        // them) and receive buffers filled.
        let mark = s.tx_packets + s.tx_dropped + s.tx_errors + s.rx_packets + s.rx_errors;
        let quieted = self.storm.after_eoi(fired, mark, now);
        if quieted {
            self.stats.quieted += 1;
        }
        Ok(quieted)
    }

    /// Whether the backend sleeps on its event channels (not while it is quieted).
    #[inline]
    pub(crate) fn listened_to(&self) -> bool {
        self.active() && !self.storm.quiet()
    }

    /// Ends a quiet time that is over; whether it did (its channels are listened to again).
    #[inline]
    pub(crate) fn wake_if_due(&mut self, now: Instant) -> bool {
        self.storm.wake_if_due(now)
    }

    /// When its quiet time ends, if it is quieted.
    #[inline]
    pub(crate) fn quiet_until(&self) -> Option<Instant> {
        self.storm.until()
    }

    /// The event channels of its queues, in order.
    #[inline]
    pub(crate) fn events(&self) -> impl Iterator<Item = &QueuePorts<H::Port>> {
        self.queues.iter().map(|q| &q.events)
    }

    /// The event channels of its queues, in order, mutably.
    #[inline]
    pub(crate) fn events_mut(&mut self) -> impl Iterator<Item = &mut QueuePorts<H::Port>> {
        self.queues.iter_mut().map(|q| &mut q.events)
    }

    /// Whether transmit may go on at `now` (not throttled, not waiting for memory).
    #[inline]
    pub(crate) fn tx_open(&self, now: Instant) -> bool {
        self.tx_blocked_until.is_none_or(|t| t <= now)
    }

    /// Lets transmit go on (its blocking time passed); the polls that follow may block it
    /// again.
    #[inline]
    pub(crate) fn unblock_tx(&mut self) {
        self.tx_blocked_until = None;
    }

    /// When transmit may go on again, if it is blocked.
    #[inline]
    pub(crate) fn tx_blocked_until(&self) -> Option<Instant> {
        self.tx_blocked_until
    }

    /// Queues.
    #[inline]
    pub(crate) fn queue_count(&self) -> usize {
        self.queues.len()
    }

    /// Handles up to `budget` of the guest's packets on queue `q` (accepted ones are left in
    /// the scratch for the uplink). Throttling and memory shortage block transmit until
    /// their time; a fault disables the vif.
    pub(crate) fn poll_tx(
        &mut self,
        q: usize,
        mode: TxMode,
        mem: &mut PacketMemory,
        scratch: &mut TxScratch,
        budget: usize,
        now: Instant,
    ) -> Result<TxPoll, NetbackError> {
        let Some(queue) = self.queues.get_mut(q) else {
            return Ok(TxPoll::default());
        };
        let vif = TxVif::new(&self.grants, &mut self.credit, &mut self.stats);
        match queue
            .tx
            .poll(vif, &queue.events, mode, mem, scratch, budget)
        {
            Ok(r) => {
                if let Some(t) = r.throttled {
                    self.tx_blocked_until = Some(t);
                } else if r.out_of_memory {
                    self.tx_blocked_until = Some(now + OUT_OF_MEMORY_RETRY);
                }
                Ok(r)
            }
            Err(PollFailure::Fault(f)) => {
                self.disable(f, mem);
                Ok(TxPoll::default())
            }
            Err(PollFailure::Local(e)) => Err(e),
        }
    }

    /// Fills up to `budget` frames of each queue's backlog into posted buffers. A fault
    /// disables the vif.
    pub(crate) fn poll_rx(
        &mut self,
        mem: &mut PacketMemory,
        scratch: &mut RxScratch,
        budget: usize,
        now: Instant,
    ) -> Result<usize, NetbackError> {
        let work = self.fill_rx(mem, scratch, budget)?;
        self.rx_stalled_since = match (self.backlog_pages, work) {
            (0, _) => None,
            (_, 1..) => Some(now),
            (_, 0) => self.rx_stalled_since.or(Some(now)),
        };
        Ok(work)
    }

    /// When its waiting frames are dropped if it posts no receive buffer meanwhile (`timeout`
    /// after the last delivery), if frames wait.
    #[inline]
    pub(crate) fn rx_stall_deadline(&self, timeout: std::time::Duration) -> Option<Instant> {
        self.rx_stalled_since.map(|t| t + timeout)
    }

    /// Drops every waiting frame if none was delivered for `timeout` (Linux netback's
    /// `rx_drain_timeout`: a guest that stops posting buffers does not pin backend memory
    /// for longer). Returns whether it did.
    pub(crate) fn drain_if_stalled(
        &mut self,
        now: Instant,
        timeout: std::time::Duration,
        mem: &mut PacketMemory,
    ) -> bool {
        if self.rx_stall_deadline(timeout).is_none_or(|d| now < d) {
            return false;
        }
        self.drop_backlog(mem);
        self.rx_stalled_since = None;
        true
    }

    /// Pages of backend memory its waiting frames hold.
    #[inline]
    pub(crate) fn backlog_pages(&self) -> usize {
        self.backlog_pages
    }

    /// Drops its oldest waiting frame, from its longest queue (memory is short and this vif
    /// holds the most). Returns whether there was one.
    pub(crate) fn evict_oldest(&mut self, mem: &mut PacketMemory) -> bool {
        let Some(q) = self.queues.iter_mut().max_by_key(|q| q.rx.backlog_len()) else {
            return false;
        };
        let Some(p) = q.rx.pop_oldest() else {
            return false;
        };
        self.backlog_pages = self.backlog_pages.saturating_sub(mem.npages(p));
        mem.release(p);
        self.stats.rx_dropped += 1;
        true
    }

    /// One poll of every queue's backlog into posted buffers.
    fn fill_rx(
        &mut self,
        mem: &mut PacketMemory,
        scratch: &mut RxScratch,
        budget: usize,
    ) -> Result<usize, NetbackError> {
        let mut work = 0;
        for q in &mut self.queues {
            let vif = RxVif::new(
                &self.grants,
                &self.choice,
                &mut self.stats,
                &mut self.backlog_pages,
            );
            match q.rx.poll(vif, &q.events, mem, scratch, budget) {
                Ok(n) => work += n,
                Err(PollFailure::Fault(f)) => {
                    self.disable(f, mem);
                    break;
                }
                Err(PollFailure::Local(e)) => return Err(e),
            }
        }
        Ok(work)
    }

    /// Queues a frame for this guest, on the queue of its flow; `false` (counted as dropped)
    /// if the vif is disabled or its backlog would pass `cap_pages`.
    #[inline]
    pub(crate) fn enqueue(
        &mut self,
        packet: PacketId,
        mem: &PacketMemory,
        cap_pages: usize,
    ) -> bool {
        let pages = mem.npages(packet);
        if !self.active() || self.backlog_pages + pages > cap_pages {
            self.stats.rx_dropped += 1;
            return false;
        }
        let q = if self.queues.len() > 1 {
            let mut hdr = [0u8; 64];
            let n = mem.read(packet, 0, &mut hdr);
            netif::flow_hash(&hdr[..n]) as usize % self.queues.len()
        } else {
            0
        };
        self.backlog_pages += pages;
        self.queues[q].rx.push(packet);
        true
    }

    /// Frames waiting for receive buffers, over its queues.
    #[inline]
    pub(crate) fn backlog_len(&self) -> usize {
        self.queues.iter().map(|q| q.rx.backlog_len()).sum()
    }

    /// Whether any ring has work, looking without arming (the spin's check).
    #[inline]
    pub(crate) fn has_work(&mut self, now: Instant) -> bool {
        if !self.active() {
            return false;
        }
        let tx_open = self.tx_open(now);
        self.queues
            .iter_mut()
            .any(|q| (tx_open && q.tx.has_work()) || q.rx.has_work())
    }

    /// Arms every ring's event and re-checks (the final check before sleeping); a ring error
    /// disables the vif (and counts as work: the caller should look).
    #[inline]
    pub(crate) fn final_check(&mut self, now: Instant, mem: &mut PacketMemory) -> bool {
        if !self.active() {
            return false;
        }
        let tx_open = self.tx_open(now);
        let mut work = false;
        let mut fault = None;
        for q in &mut self.queues {
            if tx_open {
                match q.tx.final_check() {
                    Ok(w) => work |= w,
                    Err(e) => fault = peer_fault(e),
                }
            }
            match q.rx.final_check() {
                Ok(w) => work |= w,
                Err(e) => fault = peer_fault(e),
            }
        }
        if let Some(f) = fault {
            self.disable(f, mem);
            return true;
        }
        work
    }

    /// Disables the vif for `fault`: it carries nothing more; its rings stay mapped until the
    /// frontend closes.
    pub(crate) fn disable(&mut self, fault: VifFault, mem: &mut PacketMemory) {
        if self.fault.is_none() {
            self.fault = Some(fault);
        }
        self.drop_backlog(mem);
    }

    /// Ends a poll: writes the decided transmit answers of every queue (a disabled vif's
    /// are forgotten) and sends the notifications the poll owes, one event per channel (a
    /// queue whose rings share a channel and both need telling gets one, not two).
    pub(crate) fn finish_poll(&mut self) -> Result<(), NetbackError> {
        let active = self.active();
        for q in &mut self.queues {
            let tx = if active {
                q.tx.flush_owed()?
            } else {
                q.tx.discard_answers();
                false
            };
            let rx = q.rx.take_notify_owed();
            q.events.notify_owed(tx, rx)?;
        }
        Ok(())
    }

    /// Frees every frame waiting for this vif (counted as dropped).
    fn drop_backlog(&mut self, mem: &mut PacketMemory) {
        for q in &mut self.queues {
            for p in q.rx.drain_backlog() {
                mem.release(p);
                self.stats.rx_dropped += 1;
            }
        }
        self.backlog_pages = 0;
    }

    fn unmap_rings(&mut self) {
        for q in &mut self.queues {
            for m in q.rings.drain(..) {
                self.grants.unmap_held(m);
            }
        }
    }

    /// Releases everything of this frontend: backlog (counted as dropped), ring mappings and
    /// its memory; hands back what the caller still needs (see [`Released`]).
    pub(crate) fn release(mut self, mem: &mut PacketMemory) -> Released<H> {
        self.drop_backlog(mem);
        self.unmap_rings();
        self.grants.release_persistent();
        Released {
            pinned: self.grants.pinned(),
            control: self.control.take(),
            stats: self.stats,
            events: self.queues.into_iter().map(|q| q.events).collect(),
        }
    }
}

fn peer_fault(e: io_ring::RingError) -> Option<VifFault> {
    match e {
        io_ring::RingError::Peer(p) => Some(VifFault::Ring(p)),
        _ => None,
    }
}
