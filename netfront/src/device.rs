//! The device: connecting (memory, grants, rings, event channels, handshake), sending,
//! receiving, waiting, counters and closing.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use event_channel::{QueuePorts, SpinBudget, SpinStep, wait_any};
use grant_table::host::{FramePool, PoolSide, RemapWindow};
use grant_table::{
    DomId, ENTRIES_PER_PAGE, FRAME_SIZE, FrameNumber, GrantRef, GrantTable, RESERVED_REFS,
};
use io_ring::FrontRing;
use netif::Offload;
use netif::wire::{RxRequest, RxResponse, TxRequest, TxResponse};

use xenbus::{FrontendChoice, FrontendControl, RxMode};

use crate::error::{BackendFault, NetfrontError, SendError};
use crate::flip::FlipPool;
use crate::host::{FrontMemory, FrontendHost, Layout, ProcessHost, RingRefs};
use crate::rxq::{FlipCtx, RxBuffers, RxFrame, RxQueue, RxScratch};
use crate::stats::Stats;
use crate::txq::{TxLimits, TxQueue, ring_error};

/// Buffers per ring (both rings of a queue are one page: 256 slots each).
const RING_SLOTS: u32 = 256;

/// The longest [`Netfront::wait`] sleeps at a time while its channels have no descriptor (an
/// in-process host): it looks again this often.
const BLIND_SLEEP: Duration = Duration::from_millis(1);

/// How to connect.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct NetfrontConfig {
    /// What to negotiate: MAC, MTU, receive mode, queues, scatter-gather, offloads, split
    /// event channels. Checked against what the backend offers.
    pub choice: FrontendChoice,
    /// Flip mode on the process host: map each received frame into a fixed receive slot
    /// (`mmap`), what a flip costs on real hardware, instead of reading it where it is in the
    /// pool.
    pub flip_remap: bool,
    /// How long [`Netfront::wait`] polls the rings before sleeping (0: sleep at once).
    pub spin: Duration,
    /// Control-plane timeout (connect, close).
    pub timeout: Duration,
    /// The backend's domain, which every grant names (0 on the process host; a VMM's
    /// backend domain under Xen-on-KVM emulation).
    pub backend_domid: DomId,
}

impl Default for NetfrontConfig {
    fn default() -> Self {
        Self {
            choice: FrontendChoice::default(),
            flip_remap: false,
            spin: Duration::ZERO,
            timeout: Duration::from_secs(5),
            backend_domid: grant_table::host::BACKEND_DOMID,
        }
    }
}

/// What closing released.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CloseReport {
    /// Grants revoked (rings, buffers, transfer offers).
    pub revoked: usize,
}

#[derive(Debug)]
struct Queue<P> {
    tx: TxQueue,
    rx: RxQueue,
    events: QueuePorts<P>,
    ring_grants: [GrantRef; 2],
}

/// The process host's remapping of flipped frames: a window of fixed slots and the pool's
/// descriptor to map from.
#[derive(Debug)]
pub(crate) struct Remap {
    pub(crate) window: RemapWindow,
    pub(crate) fd: OwnedFd,
}

/// A flip mode pool and what reads it.
#[derive(Debug)]
struct Flip {
    pool: FlipPool,
    remap: Option<Remap>,
}

/// A paravirtual NIC: the guest side of one connection to a netback. Single owner
/// (`&mut self`); frames within a queue are never reordered, and a flow always uses one queue.
///
/// Generic over its host ([`FrontendHost`]): [`Netfront::connect`] builds one on the process
/// host; [`PendingNetfront`] builds one over memory, event channels and a control channel any
/// host provides.
///
/// Close it with [`close`](Self::close), which reports whether every grant came back (or, on
/// one thread with the backend, with [`start_close`](Self::start_close) and
/// [`finish_close`](Self::finish_close)). Dropping it closes too, best effort: it tells the
/// backend and waits for its answer (up to the control-plane timeout) before the memory goes.
#[derive(Debug)]
pub struct Netfront<H: FrontendHost = ProcessHost> {
    conn: Option<H::Control>,
    table: GrantTable,
    flip: Option<Flip>,
    queues: Vec<Queue<H::Port>>,
    limits: TxLimits,
    choice: FrontendChoice,
    spin: Duration,
    timeout: Duration,
    broken: Option<BackendFault>,
    /// The backend asked to close (answer `Closed`, do not ask again).
    backend_closing: bool,
    /// We asked the backend to close ([`Netfront::start_close`]).
    close_requested: bool,
    /// Closed: every grant revoked (or reported in use); nothing more to do, even on drop.
    finished: bool,
    stats: Stats,
    scratch: RxScratch,
}

/// A frontend laid out and granted in the memory its host gave, not yet connected: the host
/// hands [`rings`](Self::rings) (and its memory and the backend's ends of the event channels)
/// to the backend, then [`connect`](Self::connect)s it with the control channel.
#[derive(Debug)]
pub struct PendingNetfront<H: FrontendHost = ProcessHost> {
    dev: Netfront<H>,
    rings: Vec<RingRefs>,
}

/// Frames queued by [`Netfront::batch`], published together when it returns.
#[derive(Debug)]
pub struct TxBatch<'a, H: FrontendHost = ProcessHost> {
    dev: &'a mut Netfront<H>,
}

impl<H: FrontendHost> TxBatch<'_, H> {
    /// Queues one frame.
    ///
    /// # Errors
    /// As [`Netfront::send`].
    pub fn send(&mut self, frame: &[u8], offload: Offload) -> Result<(), SendError> {
        self.dev.queue_frame(&[frame], offload)
    }

    /// Queues one frame made of several slices.
    ///
    /// # Errors
    /// As [`Netfront::send`].
    pub fn send_sg(&mut self, parts: &[&[u8]], offload: Offload) -> Result<(), SendError> {
        self.dev.queue_frame(parts, offload)
    }
}

/// Frames of our memory per queue: two ring pages, the tx buffers, and (copy mode) the rx
/// buffers.
fn frames_per_queue(copy: bool) -> u32 {
    2 + RING_SLOTS + if copy { RING_SLOTS } else { 0 }
}

fn queue_count(cfg: &NetfrontConfig) -> Result<usize, NetfrontError> {
    match usize::try_from(cfg.choice.queues) {
        Ok(n) if (1..=64).contains(&n) => Ok(n),
        _ => Err(NetfrontError::Config("between 1 and 64 queues".into())),
    }
}

impl<H: FrontendHost> PendingNetfront<H> {
    /// The memory a frontend of this configuration needs.
    ///
    /// # Errors
    /// [`NetfrontError::Config`] for an impossible queue count.
    pub fn layout(cfg: &NetfrontConfig) -> Result<Layout, NetfrontError> {
        let nq = queue_count(cfg)?;
        let copy = cfg.choice.rx_mode == RxMode::Copy;
        // Grants: the ring pages and one per buffer of each ring (access grants for copy
        // buffers, accept-transfer grants in flip mode).
        let entries = RESERVED_REFS as usize + nq * (2 + 2 * RING_SLOTS as usize);
        Ok(Layout {
            frames_bytes: nq * frames_per_queue(copy) as usize * FRAME_SIZE,
            table_bytes: entries.div_ceil(ENTRIES_PER_PAGE) * FRAME_SIZE,
            pool_bytes: if copy {
                0
            } else {
                2 * nq * RING_SLOTS as usize * FRAME_SIZE
            },
        })
    }

    /// Lays out rings and buffers in `mem` (at least the [`layout`](Self::layout)'s sizes),
    /// initialises the rings and grants every page to the backend once for the connection:
    /// rings read-write, transmit buffers read-only, receive buffers writable (or, in flip
    /// mode, accept-transfer offers of the lower half of the pool). `ports` are this side's
    /// ends of each queue's event channel(s), one [`QueuePorts`] per queue, split as the
    /// choice says.
    ///
    /// # Errors
    /// [`NetfrontError::Config`] if the memory is too small or the ports do not match the
    /// choice; [`NetfrontError::Memory`] if granting fails.
    pub fn new(
        cfg: NetfrontConfig,
        mem: FrontMemory,
        ports: Vec<QueuePorts<H::Port>>,
    ) -> Result<Self, NetfrontError> {
        let layout = Self::layout(&cfg)?;
        let choice = cfg.choice.clone();
        let nq = queue_count(&cfg)?;
        let copy = choice.rx_mode == RxMode::Copy;
        let FrontMemory {
            frames,
            table,
            pool,
            remap,
            frame_base,
        } = mem;
        let frame_base = frame_base.0;
        let frames_needed = u32::try_from(layout.frames_bytes / FRAME_SIZE).unwrap_or(u32::MAX);
        if frame_base.checked_add(frames_needed).is_none() {
            return Err(NetfrontError::Config("frame numbers past 2^32".into()));
        }
        if frames.len() < layout.frames_bytes || table.len() < layout.table_bytes {
            return Err(NetfrontError::Config(
                "frame memory or grant table too small".into(),
            ));
        }
        if ports.len() != nq
            || ports
                .iter()
                .any(|p| p.split() != choice.split_event_channels)
        {
            return Err(NetfrontError::Config(
                "one set of event channels per queue, split as chosen".into(),
            ));
        }
        let backend = cfg.backend_domid;
        let per_queue = frames_per_queue(copy);
        let mut table = GrantTable::new(table)?;
        let mut flip = match (copy, pool) {
            (true, _) => None,
            (false, Some(pool)) if pool.len() >= layout.pool_bytes => Some(Flip {
                pool: FlipPool::new(FramePool::split(pool, PoolSide::Frontend), backend),
                remap,
            }),
            (false, _) => return Err(NetfrontError::Config("flip mode needs a flip pool".into())),
        };
        let mut queues = Vec::with_capacity(nq);
        let mut rings = Vec::with_capacity(nq);
        let mut offers = flip
            .as_ref()
            .map(|f| f.pool.owned_frames())
            .unwrap_or_default()
            .into_iter();
        for (q, events) in ports.into_iter().enumerate() {
            let base = u32::try_from(q).unwrap_or(u32::MAX) * per_queue;
            let page = |f: u32| frames.subregion(f as usize * FRAME_SIZE, FRAME_SIZE);
            let tx_ref = table.grant_access(backend, FrameNumber(frame_base + base), false)?;
            let rx_ref = table.grant_access(backend, FrameNumber(frame_base + base + 1), false)?;
            let tx_ring = FrontRing::<TxRequest, TxResponse>::init(page(base).map_err(region)?)
                .map_err(|e| NetfrontError::Config(e.to_string()))?;
            let rx_ring = FrontRing::<RxRequest, RxResponse>::init(page(base + 1).map_err(region)?)
                .map_err(|e| NetfrontError::Config(e.to_string()))?;
            let tx_first = base + 2;
            let tx_grefs = (0..RING_SLOTS)
                .map(|i| table.grant_access(backend, FrameNumber(frame_base + tx_first + i), true))
                .collect::<Result<Vec<_>, _>>()?;
            let bufs = match flip.as_mut() {
                None => {
                    let first = base + 2 + RING_SLOTS;
                    let grefs = (0..RING_SLOTS)
                        .map(|i| {
                            table.grant_access(backend, FrameNumber(frame_base + first + i), false)
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    RxBuffers::Copy {
                        frames: frames.clone(),
                        first_frame: first,
                        grefs,
                    }
                }
                Some(f) => {
                    let mut grefs = Vec::with_capacity(RING_SLOTS as usize);
                    for _ in 0..RING_SLOTS {
                        let frame = offers
                            .next()
                            .ok_or_else(|| NetfrontError::Config("flip pool too small".into()))?;
                        grefs.push(f.pool.offer(frame, &mut table)?);
                    }
                    RxBuffers::Flip {
                        grefs,
                        held: vec![None; RING_SLOTS as usize],
                        window_base: q * RING_SLOTS as usize,
                    }
                }
            };
            rings.push(RingRefs {
                tx: tx_ref,
                rx: rx_ref,
            });
            queues.push(Queue {
                tx: TxQueue::new(tx_ring, frames.clone(), tx_first, tx_grefs),
                rx: RxQueue::new(rx_ring, bufs),
                events,
                ring_grants: [tx_ref, rx_ref],
            });
        }
        let max_len = if choice.sg {
            (choice.mtu as usize + 14).min(65535)
        } else {
            1514
        };
        let dev = Netfront {
            conn: None,
            table,
            flip,
            queues,
            limits: TxLimits {
                max_len,
                max_len_gso: if choice.sg { 65535 } else { max_len },
                gso_tcpv4: choice.gso_tcpv4,
                gso_tcpv6: choice.gso_tcpv6,
            },
            choice,
            spin: cfg.spin,
            timeout: cfg.timeout,
            broken: None,
            backend_closing: false,
            close_requested: false,
            finished: false,
            stats: Stats::default(),
            scratch: RxScratch::default(),
        };
        Ok(Self { dev, rings })
    }

    /// The grants of each queue's ring pages, to hand to the backend.
    pub fn rings(&self) -> &[RingRefs] {
        &self.rings
    }

    /// What this frontend will negotiate.
    pub fn choice(&self) -> &FrontendChoice {
        &self.dev.choice
    }

    /// The backend attached (the control plane said `Connected`): posts every receive buffer
    /// and returns the device.
    ///
    /// # Errors
    /// A local failure to notify the backend.
    pub fn connect(self, control: H::Control) -> Result<Netfront<H>, NetfrontError> {
        let mut dev = self.dev;
        dev.conn = Some(control);
        dev.refill()?;
        Ok(dev)
    }
}

impl<H: FrontendHost> Netfront<H> {
    /// What was negotiated.
    pub fn choice(&self) -> &FrontendChoice {
        &self.choice
    }

    /// Queue pairs.
    pub fn queues(&self) -> usize {
        self.queues.len()
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Transmit buffers the backend has not answered yet (0: everything sent was consumed).
    /// Answers are collected by [`poll`](Self::poll) and [`wait`](Self::wait)'s callers.
    pub fn tx_in_flight(&self) -> usize {
        self.queues.iter().map(|q| q.tx.in_flight()).sum()
    }

    /// Why the device is broken, if it is.
    pub fn broken(&self) -> Option<BackendFault> {
        self.broken
    }

    /// The queue a frame's flow uses.
    pub fn queue_for(&self, frame_start: &[u8]) -> usize {
        if self.queues.len() == 1 {
            0
        } else {
            netif::flow_hash(frame_start) as usize % self.queues.len()
        }
    }

    fn check(&self) -> Result<(), NetfrontError> {
        match self.broken {
            Some(f) => Err(NetfrontError::Broken(f)),
            None => Ok(()),
        }
    }

    /// Records a backend fault (the device is broken from now on) and passes errors through.
    fn note<T>(&mut self, r: Result<T, NetfrontError>) -> Result<T, NetfrontError> {
        if let Err(NetfrontError::Broken(f)) = &r
            && self.broken.is_none()
        {
            self.broken = Some(*f);
        }
        r
    }

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

    fn queue_frame(&mut self, parts: &[&[u8]], offload: Offload) -> Result<(), SendError> {
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

    fn refill(&mut self) -> Result<(), NetfrontError> {
        let mut ctx = FlipCtx {
            table: &mut self.table,
            pool: self.flip.as_mut().map(|f| &mut f.pool),
            remap: None,
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
            let (pool, remap) = match self.flip.as_mut() {
                Some(Flip { pool, remap }) => (
                    Some(pool),
                    remap.as_ref().map(|r| (&r.window, r.fd.as_fd())),
                ),
                None => (None, None),
            };
            let mut ctx = FlipCtx {
                table: &mut self.table,
                pool,
                remap,
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

    /// A cheap look for work while spinning: received frames always, transmit completions
    /// only when `tx_too` (their header line is the one the backend writes while it works:
    /// reading it on every look would pull it away from the backend for nothing).
    fn has_work(&mut self, tx_too: bool) -> Result<bool, NetfrontError> {
        for q in &mut self.queues {
            if q.rx.has_work()?
                || (tx_too && q.tx.ring.unconsumed_responses().map_err(ring_error)? > 0)
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn final_check(&mut self) -> Result<bool, NetfrontError> {
        let mut work = false;
        for q in &mut self.queues {
            work |= q.rx.ring.final_check_responses().map_err(ring_error)?;
            work |= q.rx.has_work()?;
            work |= q.tx.ring.final_check_responses().map_err(ring_error)?;
        }
        Ok(work)
    }

    /// Waits until a frame arrives or transmit buffers come back, or `timeout` passes: spins
    /// for the configured time looking at the rings, then arms them and sleeps on the event
    /// channels and the control socket. Returns `true` when there is work (call
    /// [`receive`](Self::receive) and [`poll`](Self::poll)), `false` only when the timeout
    /// passed without any: a stale event does not end the wait.
    ///
    /// # Errors
    /// [`NetfrontError::Broken`] (with [`BackendFault::Closed`] if the backend closed);
    /// local failures.
    pub fn wait(&mut self, timeout: Option<Duration>) -> Result<bool, NetfrontError> {
        self.check()?;
        let r = self.wait_inner(timeout);
        self.note(r)
    }

    fn wait_inner(&mut self, timeout: Option<Duration>) -> Result<bool, NetfrontError> {
        let start = Instant::now();
        let deadline = timeout.map(|t| start + t);
        self.end_of_interrupt()?;
        if !self.spin.is_zero() {
            let mut spin = SpinBudget::new(self.spin, deadline);
            loop {
                if self.has_work(spin.clock_step())? {
                    return Ok(true);
                }
                match spin.step() {
                    SpinStep::Spin => {}
                    // The control socket needs a system call: looked at about once a
                    // millisecond, so a long spin still notices a closing backend.
                    SpinStep::LookAround => {
                        if self.control_ready()? {
                            break;
                        }
                    }
                    SpinStep::Done => break,
                }
            }
        }
        loop {
            if self.final_check()? {
                return Ok(true);
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left == Some(Duration::ZERO) {
                return Ok(false);
            }
            self.sleep(left)?;
            // An event may be stale (sent for work we already did while awake): clear it and
            // look again; only the deadline ends the wait without work.
            self.end_of_interrupt()?;
        }
    }

    /// Whether the control channel has news (the backend changed state or went away): a
    /// zero-time poll of its descriptor, or a look at a channel without one.
    fn control_ready(&mut self) -> Result<bool, NetfrontError> {
        let Some(c) = &mut self.conn else {
            return Ok(false);
        };
        match c.readiness_fd() {
            Some(fd) => {
                let mut ready = [false];
                Ok(wait_any(&[fd], Some(Duration::ZERO), &mut ready)? > 0)
            }
            None => Ok(c.backend_closing()),
        }
    }

    /// Clears the events that woke the last sleep, now that the rings were looked at (late
    /// EOI: a notification sent while we worked is absorbed here, and the final check that
    /// follows sees its work).
    fn end_of_interrupt(&mut self) -> Result<(), NetfrontError> {
        for q in &mut self.queues {
            q.events.end_of_interrupt()?;
        }
        Ok(())
    }

    /// Sleeps on the event channels and the control channel; marks the channels that fired.
    /// Channels without descriptors (an in-process host) cut the sleep to 1 ms, and a control
    /// channel without one is looked at after it.
    fn sleep(&mut self, timeout: Option<Duration>) -> Result<(), NetfrontError> {
        let blind = self.queues.iter().any(|q| !q.events.has_fds())
            || self
                .conn
                .as_ref()
                .is_some_and(|c| c.readiness_fd().is_none());
        let timeout = if blind {
            Some(timeout.map_or(BLIND_SLEEP, |t| t.min(BLIND_SLEEP)))
        } else {
            timeout
        };
        let (control_fired, ready) = {
            let mut fds: Vec<BorrowedFd<'_>> = Vec::with_capacity(1 + 2 * self.queues.len());
            let control = self.conn.as_ref().and_then(FrontendControl::readiness_fd);
            if let Some(fd) = control {
                fds.push(fd);
            }
            for q in &self.queues {
                q.events.fds(&mut fds);
            }
            let mut ready = vec![false; fds.len()];
            wait_any(&fds, timeout, &mut ready)?;
            let mut it = ready.into_iter();
            let fired = control.is_some() && it.next() == Some(true);
            (fired, it.collect::<Vec<_>>())
        };
        if let Some(c) = self.conn.as_mut()
            && (control_fired || c.readiness_fd().is_none())
            && c.backend_closing()
        {
            self.backend_closing = true;
            return Err(BackendFault::Closed.into());
        }
        let mut it = ready.into_iter();
        for q in &mut self.queues {
            if q.events.has_fds() {
                q.events.mark_ready(&mut it);
            }
        }
        Ok(())
    }

    /// Closes: asks the backend to close and waits (up to the control-plane timeout) until it
    /// has released everything (or, when the backend asked first, answers it), then revokes
    /// every grant (rings, buffers, transfer offers). On one thread with an in-process
    /// backend, use [`start_close`](Self::start_close), poll the backend, then
    /// [`finish_close`](Self::finish_close).
    ///
    /// # Errors
    /// A control-plane failure or timeout; [`NetfrontError::GrantsInUse`] if the backend
    /// still holds grants (their frames are then never reused: the memory is simply kept).
    pub fn close(mut self) -> Result<CloseReport, NetfrontError> {
        self.start_close()?;
        let deadline = Instant::now() + self.timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if let Some(report) = self.finish_close(left)? {
                return Ok(report);
            }
            if left.is_zero() {
                return Err(xenbus::XenbusError::Timeout("the backend's Closed").into());
            }
            // A control channel without a descriptor cannot be waited on: look again soon.
            std::thread::sleep(BLIND_SLEEP.min(left));
        }
    }

    /// Starts closing: tells the backend (or, if it asked first, prepares to answer it).
    /// Nothing is sent after this; [`finish_close`](Self::finish_close) completes the close.
    ///
    /// # Errors
    /// A control-plane failure.
    pub fn start_close(&mut self) -> Result<(), NetfrontError> {
        if self.close_requested || self.finished {
            return Ok(());
        }
        self.close_requested = true;
        if let Some(c) = self.conn.as_mut()
            && !self.backend_closing
        {
            if c.backend_closing() {
                // It asked first: it released everything before it asked.
                self.backend_closing = true;
            } else {
                match c.request_close() {
                    Ok(()) | Err(xenbus::XenbusError::PeerClosed) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }

    /// Completes a close begun by [`start_close`](Self::start_close) once the backend has
    /// released everything, waiting at most `wait` for it: then every grant is revoked and
    /// the report returned (`None`: not yet; call again). A backend that went away released
    /// everything with its process.
    ///
    /// # Errors
    /// A control-plane failure; [`NetfrontError::GrantsInUse`] as for [`close`](Self::close).
    pub fn finish_close(&mut self, wait: Duration) -> Result<Option<CloseReport>, NetfrontError> {
        if !self.close_requested {
            self.start_close()?;
        }
        if self.finished {
            return Err(NetfrontError::Config("already closed".into()));
        }
        if let Some(mut conn) = self.conn.take() {
            if self.backend_closing {
                match conn.acknowledge_closed() {
                    Ok(()) | Err(xenbus::XenbusError::PeerClosed) => {}
                    Err(e) => return Err(e.into()),
                }
            } else {
                match conn.closed(wait) {
                    Ok(true) | Err(xenbus::XenbusError::PeerClosed) => {}
                    Ok(false) => {
                        self.conn = Some(conn);
                        return Ok(None);
                    }
                    Err(e) => {
                        self.conn = Some(conn);
                        return Err(e.into());
                    }
                }
            }
        }
        self.finished = true;
        self.revoke_all().map(Some)
    }

    /// Revokes every grant (after the backend let go).
    fn revoke_all(&mut self) -> Result<CloseReport, NetfrontError> {
        let mut revoked = 0;
        let mut in_use = 0;
        for q in &self.queues {
            let mut grants: Vec<GrantRef> = q.ring_grants.to_vec();
            grants.extend_from_slice(&q.tx.grefs);
            let transfers = match q.rx.buffers() {
                RxBuffers::Copy { grefs, .. } => {
                    grants.extend_from_slice(grefs);
                    Vec::new()
                }
                RxBuffers::Flip { grefs, held, .. } => grefs
                    .iter()
                    .zip(held)
                    .filter(|(_, h)| h.is_none())
                    .map(|(g, _)| *g)
                    .collect(),
            };
            for g in grants {
                match self.table.end_access(g) {
                    Ok(_) => revoked += 1,
                    Err(_) => in_use += 1,
                }
            }
            for g in transfers {
                match self.table.end_transfer(g) {
                    Ok(_) => revoked += 1,
                    Err(_) => in_use += 1,
                }
            }
        }
        if in_use > 0 {
            return Err(NetfrontError::GrantsInUse(in_use));
        }
        Ok(CloseReport { revoked })
    }
}

pub(crate) fn region(e: shared_mem::RegionError) -> NetfrontError {
    NetfrontError::Config(e.to_string())
}

impl<H: FrontendHost> Drop for Netfront<H> {
    fn drop(&mut self) {
        // Dropping without `close`: tell the backend (best effort) so it releases us, and
        // give it the control-plane timeout to do so before the memory goes.
        if let Some(mut conn) = self.conn.take() {
            if self.backend_closing {
                let _ = conn.acknowledge_closed();
            } else if self.close_requested || conn.request_close().is_ok() {
                let _ = conn.closed(self.timeout);
            }
        }
    }
}
