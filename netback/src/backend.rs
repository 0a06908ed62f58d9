//! The backend: attached vifs, the poll that moves their frames, and the sleep between polls.

use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use event_channel::{EventChannel, EventFdPort, QueuePorts, Sleeper, wait_any, wait_for_work};
use xenbus::{BackendControl, FrontendChoice, Peer};

use crate::credit::RateLimit;
use crate::error::{NetbackError, VifFault};
use crate::host::{BackendHost, VifParts};
use crate::memory::{MAX_PACKET_PAGES, PacketId, PacketMemory};
use crate::process::ProcessHost;
use crate::rx::RxScratch;
use crate::stats::VifStats;
use crate::tx::{TxMode, TxScratch};
use crate::uplink::{Outbox, Uplink, VifId};
use crate::vif::Vif;

/// What a descriptor from [`Netback::descriptors`] is, to hand back to
/// [`Netback::ready`] when an external event loop finds it readable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Token {
    /// The [`Waker`].
    Waker,
    /// A vif's control channel (its frontend changed state or went away).
    Control(VifId),
    /// A queue's event channel: `rx` is the receive ring's own channel when split.
    Event {
        /// The vif.
        vif: VifId,
        /// The queue.
        queue: u16,
        /// Whether this is the split receive channel.
        rx: bool,
    },
    /// One of the uplink's descriptors ([`Uplink::readiness_fds`], by position): frames
    /// from outside wait.
    Uplink(u16),
}

/// What [`Netback::prepare_to_sleep`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sleep {
    /// Work is waiting: poll again instead of sleeping.
    pub work: bool,
    /// Sleep no later than this (a throttled vif's credit refill, a retry after memory ran
    /// short); `None`: until a descriptor is readable.
    pub deadline: Option<Instant>,
}

/// Netback's settings.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct NetbackConfig {
    /// How guest transmit bytes are read: grant copy or map.
    pub tx_mode: TxMode,
    /// Packets handled per queue and direction in one [`Netback::poll`] (NAPI's budget): a
    /// busy guest cannot starve the others, and a flood of events buys no more work.
    pub budget: usize,
    /// The most bytes of frames that may wait for one vif's receive buffers (counted in
    /// whole pages, the memory they hold); beyond it frames for that vif are dropped and
    /// counted (a guest that stops posting buffers cannot pin backend memory, XSA-392).
    pub rx_backlog_bytes: usize,
    /// A transmit rate limit applied to each vif, if any.
    pub rate_limit: Option<RateLimit>,
    /// How long [`Netback::wait`] polls the rings before sleeping (0: sleep at once).
    pub spin: Duration,
    /// Pages of backend packet memory. When a guest's transmit finds it short, frames waiting
    /// for receive buffers are dropped, oldest first from the vif whose backlog holds the
    /// most while it holds more than its share (the memory divided by the active vifs),
    /// until a sixteenth is free: guests that stop posting buffers cannot starve the others,
    /// however many they are.
    pub memory_pages: u32,
    /// How long frames may wait for a guest's receive buffers with none delivered before
    /// they are all dropped (Linux netback's `rx_drain_timeout`, 10 s by default).
    pub rx_stall_timeout: Duration,
    /// The largest grant table a frontend may have, in 4 KiB pages of 512 entries (Xen's
    /// `gnttab_max_frames`, 64 by default): the backend keeps a pin count per entry, so this
    /// bounds what one frontend costs it. Larger tables are refused.
    pub max_grant_frames: u32,
    /// The largest memory a frontend process may hand over in one descriptor (frames, flip
    /// pool), checked before it is mapped. Mapping costs address space, not memory.
    pub max_frontend_bytes: usize,
    /// Whether [`attach`](Netback::attach) keeps a frontend's grants claimed between copies
    /// (`PeerGrants::with_persistent_copies`, Xen's persistent grants): right for pvnet's
    /// netfront, which grants its buffers for the whole connection, and 1.1-1.4x faster.
    /// Off, every copy claims and releases its grant, as a frontend that grants per packet
    /// (Linux netfront) needs. A host that builds its own grants (`attach_parts`) chooses
    /// when it builds them.
    pub persistent_grants: bool,
}

impl Default for NetbackConfig {
    fn default() -> Self {
        Self {
            tx_mode: TxMode::Copy,
            budget: 64,
            rx_backlog_bytes: 2 << 20,
            rate_limit: None,
            spin: Duration::ZERO,
            memory_pages: 16384,
            rx_stall_timeout: Duration::from_secs(10),
            max_grant_frames: 64,
            max_frontend_bytes: 1 << 30,
            persistent_grants: true,
        }
    }
}

/// What netback knows about an attached vif.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct VifInfo {
    /// Its id.
    pub id: VifId,
    /// The frontend process.
    pub peer: Option<Peer>,
    /// What the frontend negotiated.
    pub choice: FrontendChoice,
    /// Its counters.
    pub stats: VifStats,
    /// Why it was disabled, if it was.
    pub fault: Option<VifFault>,
}

/// A vif that is gone, and what it left behind.
#[derive(Debug)]
#[non_exhaustive]
pub struct ClosedVif {
    /// Its id.
    pub id: VifId,
    /// Its final counters.
    pub stats: VifStats,
    /// Why it had been disabled, if it had.
    pub fault: Option<VifFault>,
    /// Grants of this frontend still in use when it was released (0: everything let go).
    pub pinned: usize,
    /// How acknowledging the close went (the frontend may already be gone: that is fine).
    pub acknowledged: Result<(), xenbus::XenbusError>,
}

/// Wakes a [`Netback`] from [`wait`](Netback::wait), from any thread (for example an
/// acceptor thread that has a new connection to attach).
#[derive(Clone, Debug)]
pub struct Waker(Arc<EventFdPort>);

impl Waker {
    /// Wakes the backend.
    ///
    /// # Errors
    /// [`NetbackError::Event`].
    pub fn wake(&self) -> Result<(), NetbackError> {
        Ok(self.0.notify()?)
    }
}

/// The driver side: serves any number of frontends (vifs), moving frames between their rings
/// and an [`Uplink`]. Single-threaded: one thread calls [`poll`](Self::poll) and
/// [`wait`](Self::wait) in a loop; [`Waker`] reaches it from others.
#[derive(Debug)]
pub struct Netback<U, H: BackendHost = ProcessHost> {
    cfg: NetbackConfig,
    mem: PacketMemory,
    uplink: U,
    vifs: Vec<Vif<H>>,
    next_id: u32,
    tx_scratch: TxScratch,
    rx_scratch: RxScratch,
    deliveries: Vec<(VifId, PacketId)>,
    active: Vec<VifId>,
    wake: EventFdPort,
    waker: Waker,
    closed: Vec<ClosedVif>,
    /// The set of descriptors changed since [`Netback::descriptors`] was last called.
    fds_changed: bool,
    /// Event channels of released vifs, kept open until the embedder has had the chance to
    /// deregister them ([`Netback::descriptors`], or the next [`Netback::wait`]). An eventfd's
    /// file is shared with the frontend: closing ours would not take it out of an epoll set,
    /// and a frontend writing it would wake the loop with no way left to deregister it.
    retired: Vec<QueuePorts<H::Port>>,
    /// The clock as the spin of [`Netback::wait`] last read it (credit checks while spinning).
    spin_now: Instant,
}

impl<U: Uplink, H: BackendHost> Netback<U, H> {
    /// A backend with no vif yet, over any host, with packet memory the caller made
    /// ([`PacketMemory::over`]: heap memory, a VMM's own).
    ///
    /// # Errors
    /// [`NetbackError::Event`] if its waker cannot be created.
    pub fn with_memory(
        cfg: NetbackConfig,
        uplink: U,
        mem: PacketMemory,
    ) -> Result<Self, NetbackError> {
        let (wake, theirs) = EventFdPort::pair()?;
        Ok(Self {
            cfg,
            mem,
            uplink,
            vifs: Vec::new(),
            next_id: 1,
            tx_scratch: TxScratch::default(),
            rx_scratch: RxScratch::default(),
            deliveries: Vec::new(),
            active: Vec::new(),
            wake,
            waker: Waker(Arc::new(theirs)),
            closed: Vec::new(),
            fds_changed: true,
            retired: Vec::new(),
            spin_now: Instant::now(),
        })
    }

    /// A handle that wakes [`wait`](Self::wait) from another thread.
    pub fn waker(&self) -> Waker {
        self.waker.clone()
    }

    /// The configuration it was made with.
    pub fn config(&self) -> &NetbackConfig {
        &self.cfg
    }

    /// The uplink.
    pub fn uplink(&self) -> &U {
        &self.uplink
    }

    /// The uplink, mutably.
    pub fn uplink_mut(&mut self) -> &mut U {
        &mut self.uplink
    }

    /// The packet memory (for its counters).
    pub fn memory(&self) -> &PacketMemory {
        &self.mem
    }

    /// Attaches a frontend from what it handed over, on any host: maps its ring pages
    /// (held for the connection), takes its event channels and control channel, and only
    /// then tells the frontend it is attached
    /// ([`BackendControl::connected`](xenbus::BackendControl::connected)). The grants'
    /// local memory must be this backend's packet memory
    /// ([`memory`](Self::memory)`().region()`).
    ///
    /// # Errors
    /// [`NetbackError::RingGrant`] / [`NetbackError::BadFrontend`] if its rings do not work:
    /// the vif is not attached and the frontend is refused with the reason.
    pub fn attach_parts(&mut self, parts: VifParts<H>) -> Result<VifId, NetbackError> {
        let (local, ours) = (parts.local_memory(), self.mem.region());
        if local.as_ptr() != ours.as_ptr() || local.len() != ours.len() {
            let e = NetbackError::Config(
                "the grants' local memory is not this backend's packet memory",
            );
            let _ = parts.refuse(&e.to_string());
            return Err(e);
        }
        if let Some(why) = parts.memory_fault(self.cfg.max_grant_frames) {
            let e = NetbackError::BadFrontend(why);
            let _ = parts.refuse(&e.to_string());
            return Err(e);
        }
        let id = VifId(self.next_id);
        self.next_id += 1;
        let mut vif = match Vif::attach(id, parts, self.cfg.rate_limit) {
            Ok(v) => v,
            Err((e, control)) => {
                let _ = control.refuse(&e.to_string());
                return Err(e);
            }
        };
        // Only now, with everything checked and mapped, is the frontend told it is attached.
        vif.answer_connected();
        self.uplink.vif_added(id, vif.choice());
        self.vifs.push(vif);
        self.fds_changed = true;
        Ok(id)
    }

    /// Every attached vif.
    pub fn vifs(&self) -> Vec<VifInfo> {
        self.vifs
            .iter()
            .map(|v| VifInfo {
                id: v.id(),
                peer: v.peer(),
                choice: v.choice().clone(),
                stats: v.stats(),
                fault: v.fault(),
            })
            .collect()
    }

    /// Frames waiting for `vif`'s receive buffers (over its queues), or `None` if there is no
    /// such vif: what an embedder that injects frames watches for back-pressure.
    #[inline]
    pub fn rx_backlog(&self, vif: VifId) -> Option<usize> {
        let v = self.vifs.iter().find(|v| v.id() == vif)?;
        Some(v.backlog_len())
    }

    /// The vifs that went away since the last call.
    pub fn take_closed(&mut self) -> Vec<ClosedVif> {
        std::mem::take(&mut self.closed)
    }

    /// One round over every vif: up to the budget of transmitted frames per queue into the
    /// uplink, then up to the budget of waiting frames per queue into receive buffers.
    /// Returns the frames handled (0: nothing to do). First, vifs whose frontend closed are
    /// released (see [`take_closed`](Self::take_closed)): those whose control channel was
    /// reported readable (by [`wait`](Self::wait) or [`ready`](Self::ready)), and always
    /// those whose channel has no descriptor.
    ///
    /// # Errors
    /// Local failures only; a misbehaving frontend disables its own vif (see
    /// [`VifInfo::fault`]).
    pub fn poll(&mut self) -> Result<usize, NetbackError> {
        self.release_closing();
        let mut work = 0;
        self.active.clear();
        self.active
            .extend(self.vifs.iter().filter(|v| v.active()).map(Vif::id));
        let now = Instant::now();
        let mut short = false;
        for vi in 0..self.vifs.len() {
            let vif = &mut self.vifs[vi];
            // An uplink that cannot take more from this vif leaves its requests in the rings.
            if !vif.active() || !vif.tx_open(now) || !self.uplink.accepting(vif.id()) {
                continue;
            }
            vif.unblock_tx();
            let from = vif.id();
            for q in 0..vif.queue_count() {
                let r = vif.poll_tx(
                    q,
                    self.cfg.tx_mode,
                    &mut self.mem,
                    &mut self.tx_scratch,
                    self.cfg.budget,
                    now,
                );
                match r {
                    Ok(r) => {
                        work += r.packets;
                        short |= r.out_of_memory;
                    }
                    Err(e) => {
                        for p in self.tx_scratch.take_accepted() {
                            self.mem.release(p);
                        }
                        return Err(e);
                    }
                }
                for p in self.tx_scratch.take_accepted() {
                    let mut out = Outbox::new(&mut self.mem, &mut self.deliveries, &self.active);
                    self.uplink.transmit(from, p, &mut out);
                    self.mem.release(p);
                }
                if !vif.active() {
                    self.fds_changed = true;
                    break;
                }
            }
            self.deliver_all();
        }
        if short {
            self.make_room();
        }
        // Frames from outside (a TAP), into the backlogs before they are drained.
        let mut out = Outbox::new(&mut self.mem, &mut self.deliveries, &self.active);
        work += self.uplink.receive(&mut out, self.cfg.budget);
        self.deliver_all();
        for vif in &mut self.vifs {
            if !vif.active() {
                continue;
            }
            work += vif.poll_rx(&mut self.mem, &mut self.rx_scratch, self.cfg.budget, now)?;
            if !vif.active() {
                self.fds_changed = true;
            }
            vif.drain_if_stalled(now, self.cfg.rx_stall_timeout, &mut self.mem);
        }
        // Transmit answers last: the frames they carried are on their way already. The
        // notifications of both rings go with them.
        for vif in &mut self.vifs {
            vif.finish_poll()?;
        }
        Ok(work)
    }

    /// Queues a frame of `bytes` for `to`'s receive ring (an embedder's own traffic).
    /// Returns whether it was queued (not: no such active vif, its backlog is full, or
    /// memory is short; the vif's `rx_dropped` counts the latter two).
    pub fn inject(&mut self, to: VifId, bytes: &[u8], meta: netif::Offload) -> bool {
        let Some(p) = self.mem.alloc_from(bytes, meta) else {
            if let Some(v) = self.vifs.iter_mut().find(|v| v.id() == to) {
                v.count_rx_drop();
            }
            return false;
        };
        let queued = self.deliver(to, p);
        self.mem.release(p);
        queued
    }

    /// A frame in backend memory that the caller holds (one reference), to
    /// [`deliver`](Self::deliver) any number of times without copying it again; `None` when
    /// it is longer than 65535 bytes or memory is short. Give it back with
    /// [`release_packet`](Self::release_packet).
    pub fn packet(&mut self, bytes: &[u8], meta: netif::Offload) -> Option<PacketId> {
        self.mem.alloc_from(bytes, meta)
    }

    /// Queues a held packet for `to`'s receive ring (it gains a reference for that delivery).
    /// Returns whether it was queued (see [`inject`](Self::inject)); a packet released
    /// already is not (and a debug build panics).
    // Inlined with `enqueue` into the embedder's loop: out of line the two took 92
    // instructions a frame (their prologues, the vif lookup's spills), inlined 50, and rx
    // 64 B, bound by netback's core, went 1.11x faster (BENCHMARKS.md).
    #[inline]
    pub fn deliver(&mut self, to: VifId, packet: PacketId) -> bool {
        // The uplink's deliveries first, if any wait: frames keep their order.
        if !self.deliveries.is_empty() {
            self.deliver_all();
        }
        if !self.mem.retain(packet) {
            // Released already: its page may hold another packet by now.
            return false;
        }
        let queued = self.enqueue(to, packet);
        if !queued {
            self.mem.release(packet);
        }
        queued
    }

    /// Gives back a packet from [`packet`](Self::packet).
    pub fn release_packet(&mut self, packet: PacketId) {
        self.mem.release(packet);
    }

    /// Memory ran short for a guest's transmit: drops waiting frames, oldest first from the
    /// vif whose backlog holds the most pages while it holds more than its share (the memory
    /// divided by the active vifs), until a sixteenth of the memory is free. A vif within
    /// its share keeps its frames: then transmit waits for memory as before (back-pressure,
    /// not loss, for a guest that only outruns itself). Memory held elsewhere, by the
    /// embedder's packets, is not ours to free.
    fn make_room(&mut self) {
        let want = (self.cfg.memory_pages as usize / 16).max(MAX_PACKET_PAGES);
        let active = self.vifs.iter().filter(|v| v.active()).count().max(1);
        let share = self.cfg.memory_pages as usize / active;
        while self.mem.free_pages() < want {
            let Some(v) = self
                .vifs
                .iter_mut()
                .filter(|v| v.backlog_pages() > share)
                .max_by_key(|v| v.backlog_pages())
            else {
                return;
            };
            if !v.evict_oldest(&mut self.mem) {
                return;
            }
        }
    }

    /// Moves the uplink's deliveries into the vifs' backlogs.
    fn deliver_all(&mut self) {
        let mut deliveries = std::mem::take(&mut self.deliveries);
        for (to, p) in deliveries.drain(..) {
            if !self.enqueue(to, p) {
                self.mem.release(p);
            }
        }
        // The list goes back, empty, with its capacity.
        self.deliveries = deliveries;
    }

    /// Queues `packet` (a reference the caller gives) for `to`'s receive ring; `false` if
    /// there is no such vif or it refused the frame (the reference is then still the
    /// caller's to release).
    #[inline(always)]
    fn enqueue(&mut self, to: VifId, packet: PacketId) -> bool {
        let cap_pages = self.cfg.rx_backlog_bytes / grant_table::FRAME_SIZE;
        self.vifs
            .iter_mut()
            .find(|v| v.id() == to)
            .is_some_and(|v| v.enqueue(packet, &self.mem, cap_pages))
    }

    /// Whether any ring has work, looking without arming (the spin's check).
    fn has_work(&mut self, now: Instant) -> bool {
        self.vifs.iter_mut().any(|v| v.has_work(now))
    }

    /// Arms every ring's event and re-checks (the final check before sleeping). A ring
    /// error disables its vif.
    fn final_check(&mut self, now: Instant) -> bool {
        let mut work = false;
        for vif in &mut self.vifs {
            if vif.wake_if_due(now) {
                // Its quiet time is over: its channels are slept on again.
                self.fds_changed = true;
            }
            let was_active = vif.active();
            work |= vif.final_check(now, &mut self.mem);
            if was_active && !vif.active() {
                self.fds_changed = true;
            }
        }
        work
    }

    /// Waits for work: clears the events that woke the last sleep (after the poll that
    /// followed drained the rings: late EOI), spins for the configured time looking at the
    /// rings, then arms every ring and sleeps on all event channels, control channels and the
    /// waker. Returns when a ring has work, the [`Waker`] fired, a vif closed (it is released
    /// here: see [`take_closed`](Self::take_closed)), a throttled vif's credit is due, or
    /// `timeout` passed; a stale event does not end the wait. While some vif's channels have
    /// no descriptor (an in-process host), it sleeps at most 1 ms at a time and looks again.
    ///
    /// For an event loop of your own (mio, tokio, a VMM's epoll), use
    /// [`descriptors`](Self::descriptors), [`ready`](Self::ready) and
    /// [`prepare_to_sleep`](Self::prepare_to_sleep) instead.
    ///
    /// # Errors
    /// Local failures.
    pub fn wait(&mut self, timeout: Option<Duration>) -> Result<(), NetbackError> {
        let start = Instant::now();
        // This loop registers nothing anywhere: released vifs' channels can go.
        self.retired.clear();
        self.spin_now = start;
        let spin = self.cfg.spin;
        wait_for_work(&mut Waiting(self), spin, timeout.map(|t| start + t)).map(drop)
    }

    /// The descriptors an event loop of your own should watch (readable), each with the
    /// [`Token`] to hand to [`ready`](Self::ready): the waker, every vif's control channel and
    /// every active vif's event channels. The set changes when vifs attach, close or are
    /// disabled; [`descriptors_changed`](Self::descriptors_changed) says when to ask again:
    /// deregister the previous set first (a closed vif's descriptors stay open until this
    /// call, so they can be), then register what this returns.
    /// Channels without a descriptor (an in-process host) are not listed: such vifs need
    /// [`poll`](Self::poll) called without waiting for a descriptor.
    pub fn descriptors(&mut self) -> Vec<(Token, BorrowedFd<'_>)> {
        self.fds_changed = false;
        self.retired.clear();
        self.listed()
    }

    /// Every descriptor a sleep watches, with its token, in one order (the one list behind
    /// [`descriptors`](Self::descriptors), [`wait`](Self::wait)'s sleep and its look around).
    fn listed(&self) -> Vec<(Token, BorrowedFd<'_>)> {
        let mut out = vec![(Token::Waker, self.wake.as_fd())];
        let mut uplink = Vec::new();
        self.uplink.readiness_fds(&mut uplink);
        out.extend((0u16..).zip(uplink).map(|(i, fd)| (Token::Uplink(i), fd)));
        let mut fds = Vec::with_capacity(2);
        for vif in &self.vifs {
            if let Some(fd) = vif.control().and_then(BackendControl::readiness_fd) {
                out.push((Token::Control(vif.id()), fd));
            }
            if !vif.listened_to() {
                continue;
            }
            for (qi, q) in vif.events().enumerate() {
                fds.clear();
                if q.fds(&mut fds) {
                    let queue = u16::try_from(qi).unwrap_or(u16::MAX);
                    for (i, fd) in fds.drain(..).enumerate() {
                        out.push((
                            Token::Event {
                                vif: vif.id(),
                                queue,
                                rx: i == 1,
                            },
                            fd,
                        ));
                    }
                }
            }
        }
        out
    }

    /// Whether the set of [`descriptors`](Self::descriptors) changed since it was last asked
    /// for (a vif attached, closed or was disabled): re-register them.
    pub fn descriptors_changed(&self) -> bool {
        self.fds_changed
    }

    /// Tells the backend that the descriptor of `token` is readable (an event loop of your
    /// own found it so). Call [`poll`](Self::poll) afterwards: a closing vif is released
    /// there, ring work is done there.
    ///
    /// # Errors
    /// [`NetbackError::Event`] if the waker cannot be cleared.
    pub fn ready(&mut self, token: Token) -> Result<(), NetbackError> {
        match token {
            Token::Waker => self.wake.consume_ready()?,
            Token::Control(id) => {
                if let Some(v) = self.vifs.iter_mut().find(|v| v.id() == id) {
                    v.mark_control_ready();
                }
            }
            // The uplink is asked at every poll; nothing to record.
            Token::Uplink(_) => {}
            Token::Event { vif, queue, rx } => {
                if let Some(q) = self
                    .vifs
                    .iter_mut()
                    .find(|v| v.id() == vif)
                    .and_then(|v| v.events_mut().nth(usize::from(queue)))
                {
                    q.mark_fired(rx);
                }
            }
        }
        Ok(())
    }

    /// Before an event loop of your own sleeps: clears the events reported since the last
    /// call (late EOI: the polls in between drained their rings), releases vifs whose
    /// frontend closed, arms every ring's event and re-checks. If [`Sleep::work`] is set,
    /// poll instead of sleeping; otherwise sleep until a descriptor is readable or
    /// [`Sleep::deadline`], whichever comes first. Nothing is lost between this and the sleep:
    /// a frontend that produces afterwards notifies.
    ///
    /// # Errors
    /// Local failures.
    pub fn prepare_to_sleep(&mut self) -> Result<Sleep, NetbackError> {
        self.end_of_interrupt()?;
        let released = self.release_closing();
        let now = Instant::now();
        let work = self.final_check(now) || released || self.blind();
        Ok(Sleep {
            work,
            deadline: self.next_deadline(),
        })
    }

    /// The first time a blocked vif's transmit may go on (credit refill, memory retry), a
    /// quieted vif is listened to again, or a stalled vif's waiting frames are dropped.
    fn next_deadline(&self) -> Option<Instant> {
        self.vifs
            .iter()
            .filter(|v| v.active())
            .flat_map(|v| {
                [
                    v.tx_blocked_until(),
                    v.quiet_until(),
                    v.rx_stall_deadline(self.cfg.rx_stall_timeout),
                ]
            })
            .flatten()
            .chain(self.uplink.retry_at())
            .min()
    }

    /// Whether some vif's channels cannot be slept on (no descriptor).
    fn blind(&self) -> bool {
        self.vifs.iter().any(Vif::blind)
    }

    /// Releases every vif whose frontend asked to close or went away (looked at where its
    /// control channel was reported readable, and always where it has no descriptor).
    /// Returns whether one was released.
    fn release_closing(&mut self) -> bool {
        let closing: Vec<VifId> = self
            .vifs
            .iter_mut()
            .filter_map(|v| v.closing().then_some(v.id()))
            .collect();
        let any = !closing.is_empty();
        for id in closing {
            self.release_vif(id, false);
        }
        any
    }

    /// Clears the events that woke the last sleep, after the rings were looked at (late EOI:
    /// an event sent while we worked is absorbed here, and the final check after it sees the
    /// work it announced).
    fn end_of_interrupt(&mut self) -> Result<(), NetbackError> {
        let now = Instant::now();
        for vif in &mut self.vifs {
            if vif.end_of_interrupt(now)? {
                // Quieted: its channels leave the set to sleep on until its time is over.
                self.fds_changed = true;
            }
        }
        Ok(())
    }

    /// Whether the waker or a control channel is readable, without waiting.
    fn control_ready(&self) -> Result<bool, NetbackError> {
        let fds: Vec<BorrowedFd<'_>> = self
            .listed()
            .into_iter()
            .filter(|(t, _)| !matches!(t, Token::Event { .. }))
            .map(|(_, fd)| fd)
            .collect();
        let mut ready = vec![false; fds.len()];
        Ok(wait_any(&fds, Some(Duration::ZERO), &mut ready)? > 0)
    }

    /// Sleeps on every listed descriptor and hands what fired to [`ready`](Self::ready);
    /// returns whether the caller should see it now (the waker fired, or a vif closed and
    /// was released).
    fn sleep(&mut self, timeout: Option<Duration>) -> Result<bool, NetbackError> {
        let fired: Vec<Token> = {
            let listed = self.listed();
            let fds: Vec<BorrowedFd<'_>> = listed.iter().map(|(_, fd)| *fd).collect();
            let mut ready = vec![false; fds.len()];
            wait_any(&fds, timeout, &mut ready)?;
            listed
                .iter()
                .zip(ready)
                .filter_map(|((t, _), r)| r.then_some(*t))
                .collect()
        };
        let woken = fired
            .iter()
            .any(|t| matches!(t, Token::Waker | Token::Uplink(_)));
        for t in fired {
            self.ready(t)?;
        }
        let closed = self.release_closing();
        Ok(woken || closed)
    }

    /// Releases a vif: drops its backlog, unmaps its rings and memory, closes its event
    /// channels, then answers its close (`acknowledge`) or asks it to close.
    fn release_vif(&mut self, id: VifId, ask: bool) {
        let Some(i) = self.vifs.iter().position(|v| v.id() == id) else {
            return;
        };
        let vif = self.vifs.remove(i);
        self.fds_changed = true;
        self.uplink.vif_removed(id);
        let fault = vif.fault();
        let crate::vif::Released {
            control,
            pinned,
            stats,
            events,
        } = vif.release(&mut self.mem);
        self.retired.extend(events);
        let acknowledged = match control {
            Some(c) if ask => c.close(),
            Some(c) => c.acknowledge_closed(),
            None => Ok(()),
        };
        self.closed.push(ClosedVif {
            id,
            stats,
            fault,
            pinned,
            acknowledged,
        });
    }

    /// Detaches a vif on the backend's initiative: releases everything of it, then asks the
    /// frontend to close and waits (up to the control plane's timeout) for its `Closed`.
    ///
    /// # Errors
    /// [`NetbackError::NoSuchVif`].
    pub fn detach(&mut self, id: VifId) -> Result<ClosedVif, NetbackError> {
        if !self.vifs.iter().any(|v| v.id() == id) {
            return Err(NetbackError::NoSuchVif);
        }
        self.release_vif(id, true);
        self.closed.pop().ok_or(NetbackError::NoSuchVif)
    }
}

/// The backend as [`wait_for_work`] sees it (a wrapper, so the hooks stay out of the public
/// API).
struct Waiting<'a, U, H: BackendHost>(&'a mut Netback<U, H>);

impl<U: Uplink, H: BackendHost> Sleeper for Waiting<'_, U, H> {
    type Error = NetbackError;

    fn end_of_interrupt(&mut self) -> Result<(), NetbackError> {
        self.0.end_of_interrupt()
    }

    fn look(&mut self, _clock_step: bool) -> Result<bool, NetbackError> {
        let now = self.0.spin_now;
        Ok(self.0.has_work(now))
    }

    // The rings are read without system calls; control channels and the waker need one, so
    // they are looked at about once a millisecond (as is the clock that credit refills
    // follow).
    fn look_around(&mut self) -> Result<bool, NetbackError> {
        self.0.spin_now = Instant::now();
        self.0.control_ready()
    }

    fn final_check(&mut self) -> Result<bool, NetbackError> {
        if self.0.release_closing() {
            return Ok(true);
        }
        Ok(self.0.final_check(Instant::now()))
    }

    fn deadline(&self) -> Option<Instant> {
        self.0.next_deadline()
    }

    fn blind(&self) -> bool {
        self.0.blind()
    }

    fn sleep(&mut self, timeout: Option<Duration>) -> Result<bool, NetbackError> {
        self.0.sleep(timeout)
    }
}
