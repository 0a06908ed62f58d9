//! The device: connecting (memory, grants, rings, event channels, handshake), sending,
//! receiving, waiting, counters and closing.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use event_channel::{EventFdPort, QueuePorts, SpinBudget, SpinStep, wait_any};
use grant_table::host::{
    BACKEND_DOMID, FramePool, PoolSide, RemapWindow, create_memfd, map_shared,
};
use grant_table::{ENTRIES_PER_PAGE, FRAME_SIZE, FrameNumber, GrantRef, GrantTable, RESERVED_REFS};
use io_ring::FrontRing;
use netif::Offload;
use netif::wire::{RxRequest, RxResponse, TxRequest, TxResponse};

use xenbus::{EventFds, FrontendChoice, FrontendConnection, QueueResources, Resources, RxMode};

use crate::error::{BackendFault, NetfrontError, SendError};
use crate::flip::FlipPool;
use crate::rxq::{FlipCtx, RxBuffers, RxFrame, RxQueue, RxScratch};
use crate::stats::Stats;
use crate::txq::{TxLimits, TxQueue, ring_error};

/// Buffers per ring (both rings of a queue are one page: 256 slots each).
const RING_SLOTS: u32 = 256;

/// How to connect.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct NetfrontConfig {
    /// What to negotiate: MAC, MTU, receive mode, queues, scatter-gather, offloads, split
    /// event channels. Checked against what the backend offers.
    pub choice: FrontendChoice,
    /// Flip mode: map each received frame into a fixed receive slot (`mmap`), what a flip
    /// costs on real hardware, instead of reading it where it is in the pool.
    pub flip_remap: bool,
    /// How long [`Netfront::wait`] polls the rings before sleeping (0: sleep at once).
    pub spin: Duration,
    /// Control-plane timeout (connect, close).
    pub timeout: Duration,
}

impl Default for NetfrontConfig {
    fn default() -> Self {
        Self {
            choice: FrontendChoice::default(),
            flip_remap: false,
            spin: Duration::ZERO,
            timeout: Duration::from_secs(5),
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
struct Queue {
    tx: TxQueue,
    rx: RxQueue,
    events: QueuePorts,
    ring_grants: [GrantRef; 2],
}

/// A flip mode pool and what reads it.
#[derive(Debug)]
struct Flip {
    pool: FlipPool,
    fd: OwnedFd,
    window: Option<RemapWindow>,
}

/// A paravirtual NIC: the guest side of one connection to a netback. Single owner
/// (`&mut self`); frames within a queue are never reordered, and a flow always uses one queue.
///
/// Close it with [`close`](Self::close), which reports whether every grant came back. Dropping
/// it closes too, best effort: it tells the backend and waits for its answer (up to the
/// control-plane timeout) before the memory goes.
#[derive(Debug)]
pub struct Netfront {
    conn: Option<FrontendConnection>,
    table: GrantTable,
    flip: Option<Flip>,
    queues: Vec<Queue>,
    limits: TxLimits,
    choice: FrontendChoice,
    spin: Duration,
    broken: Option<BackendFault>,
    /// The backend asked to close (answer `Closed`, do not ask again).
    backend_closing: bool,
    stats: Stats,
    scratch: RxScratch,
}

/// Frames queued by [`Netfront::batch`], published together when it returns.
#[derive(Debug)]
pub struct TxBatch<'a> {
    dev: &'a mut Netfront,
}

impl TxBatch<'_> {
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

fn event_pair(fds: &mut Vec<OwnedFd>) -> Result<(EventFdPort, EventFds), NetfrontError> {
    let (ours, theirs) = EventFdPort::pair()?;
    let (waits, notifies) = theirs.clone_fds()?;
    fds.push(waits);
    fds.push(notifies);
    Ok((
        ours,
        EventFds {
            backend_waits: fds.len() - 2,
            backend_notifies: fds.len() - 1,
        },
    ))
}

impl Netfront {
    /// Connects to the backend listening at `path`: allocates and grants rings and buffer
    /// pools, hands them over with the event channels, and posts every receive buffer.
    ///
    /// # Errors
    /// A choice the backend does not offer, a refused or timed-out handshake
    /// ([`NetfrontError::Xenbus`]), or a local failure to set up memory.
    pub fn connect(path: &Path, cfg: NetfrontConfig) -> Result<Self, NetfrontError> {
        let choice = cfg.choice.clone();
        let nq = usize::try_from(choice.queues).unwrap_or(0);
        if nq == 0 {
            return Err(NetfrontError::Config("at least one queue".into()));
        }
        let pending = xenbus::connect(path, cfg.timeout)?;
        let copy = choice.rx_mode == RxMode::Copy;
        let per_queue = frames_per_queue(copy);
        let frames_len = nq * per_queue as usize * FRAME_SIZE;
        let frames_fd = create_memfd(c"netfront-frames", frames_len)?;
        let frames = map_shared(&frames_fd, frames_len)?;
        // Grants: the ring pages and one per buffer of each ring (access grants for copy
        // buffers, accept-transfer grants in flip mode).
        let entries = RESERVED_REFS as usize + nq * (2 + 2 * RING_SLOTS as usize);
        let table_len = entries.div_ceil(ENTRIES_PER_PAGE) * FRAME_SIZE;
        let table_fd = create_memfd(c"netfront-grants", table_len)?;
        let mut table = GrantTable::new(map_shared(&table_fd, table_len)?)?;
        let mut fds: Vec<OwnedFd> = vec![frames_fd.try_clone().map_err(io)?, table_fd];
        let mut flip = if copy {
            None
        } else {
            let len = 2 * nq * RING_SLOTS as usize * FRAME_SIZE;
            let fd = create_memfd(c"netfront-flip-pool", len)?;
            let pool = FlipPool::new(FramePool::split(map_shared(&fd, len)?, PoolSide::Frontend));
            let window = if cfg.flip_remap {
                Some(RemapWindow::new(nq * RING_SLOTS as usize)?)
            } else {
                None
            };
            fds.push(fd.try_clone().map_err(io)?);
            Some(Flip { pool, fd, window })
        };
        let flip_pool = flip.as_ref().map(|_| 2);

        let mut queues = Vec::with_capacity(nq);
        let mut resources = Vec::with_capacity(nq);
        let mut offers = flip
            .as_ref()
            .map(|f| f.pool.owned_frames())
            .unwrap_or_default()
            .into_iter();
        for q in 0..nq {
            let base = u32::try_from(q).unwrap_or(u32::MAX) * per_queue;
            let page = |f: u32| frames.subregion(f as usize * FRAME_SIZE, FRAME_SIZE);
            let tx_ref = table.grant_access(BACKEND_DOMID, FrameNumber(base), false)?;
            let rx_ref = table.grant_access(BACKEND_DOMID, FrameNumber(base + 1), false)?;
            let tx_ring = FrontRing::<TxRequest, TxResponse>::init(page(base).map_err(region)?)
                .map_err(|e| NetfrontError::Config(e.to_string()))?;
            let rx_ring = FrontRing::<RxRequest, RxResponse>::init(page(base + 1).map_err(region)?)
                .map_err(|e| NetfrontError::Config(e.to_string()))?;
            let tx_first = base + 2;
            let tx_grefs = (0..RING_SLOTS)
                .map(|i| table.grant_access(BACKEND_DOMID, FrameNumber(tx_first + i), true))
                .collect::<Result<Vec<_>, _>>()?;
            let bufs = if copy {
                let first = base + 2 + RING_SLOTS;
                let grefs = (0..RING_SLOTS)
                    .map(|i| table.grant_access(BACKEND_DOMID, FrameNumber(first + i), false))
                    .collect::<Result<Vec<_>, _>>()?;
                RxBuffers::Copy {
                    frames: frames.clone(),
                    first_frame: first,
                    grefs,
                }
            } else {
                let pool = &mut flip.as_mut().expect("flip mode").pool;
                let mut grefs = Vec::with_capacity(RING_SLOTS as usize);
                for _ in 0..RING_SLOTS {
                    let f = offers
                        .next()
                        .ok_or_else(|| NetfrontError::Config("flip pool too small".into()))?;
                    grefs.push(pool.offer(f, &mut table)?);
                }
                RxBuffers::Flip {
                    grefs,
                    held: vec![None; RING_SLOTS as usize],
                    window_base: q * RING_SLOTS as usize,
                }
            };
            let (tx_event, tx_fds) = event_pair(&mut fds)?;
            let rx_pair = if choice.split_event_channels {
                Some(event_pair(&mut fds)?)
            } else {
                None
            };
            resources.push(QueueResources {
                tx_ring_ref: tx_ref.0,
                rx_ring_ref: rx_ref.0,
                tx_event: tx_fds,
                rx_event: rx_pair.as_ref().map(|(_, e)| *e),
            });
            queues.push(Queue {
                tx: TxQueue::new(tx_ring, frames.clone(), tx_first, tx_grefs),
                rx: RxQueue::new(rx_ring, bufs),
                events: QueuePorts::new(tx_event, rx_pair.map(|(p, _)| p)),
                ring_grants: [tx_ref, rx_ref],
            });
        }
        let res = Resources {
            frames: 0,
            grant_table: 1,
            flip_pool,
            queues: resources,
        };
        let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(AsFd::as_fd).collect();
        let conn = pending.finish(&choice, &res, &borrowed)?;
        drop(borrowed);
        drop(fds);
        let max_len = if choice.sg {
            (choice.mtu as usize + 14).min(65535)
        } else {
            1514
        };
        let mut dev = Self {
            conn: Some(conn),
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
            broken: None,
            backend_closing: false,
            stats: Stats::default(),
            scratch: RxScratch::default(),
        };
        dev.refill()?;
        Ok(dev)
    }

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
    pub fn batch<R>(&mut self, f: impl FnOnce(&mut TxBatch<'_>) -> R) -> Result<R, SendError> {
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
                Some(Flip { pool, fd, window }) => {
                    let fd: &OwnedFd = fd;
                    let fd = fd.as_fd();
                    (Some(pool), window.as_ref().map(move |w| (w, fd)))
                }
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

    /// Whether the control socket is readable (the backend changed state or went away).
    fn control_ready(&self) -> Result<bool, NetfrontError> {
        let Some(c) = &self.conn else {
            return Ok(false);
        };
        let mut ready = [false];
        Ok(wait_any(&[c.as_fd()], Some(Duration::ZERO), &mut ready)? > 0)
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

    /// Sleeps on the event channels and the control socket; marks the channels that fired.
    fn sleep(&mut self, timeout: Option<Duration>) -> Result<(), NetfrontError> {
        let ready = {
            let mut fds: Vec<BorrowedFd<'_>> = Vec::with_capacity(1 + 2 * self.queues.len());
            if let Some(c) = &self.conn {
                fds.push(c.as_fd());
            }
            for q in &self.queues {
                q.events.fds(&mut fds);
            }
            let mut ready = vec![false; fds.len()];
            wait_any(&fds, timeout, &mut ready)?;
            ready
        };
        let mut it = ready.into_iter();
        if let Some(c) = self.conn.as_mut()
            && it.next() == Some(true)
            && c.backend_closing(Duration::ZERO).unwrap_or(true)
        {
            self.backend_closing = true;
            return Err(BackendFault::Closed.into());
        }
        for q in &mut self.queues {
            q.events.mark_ready(&mut it);
        }
        Ok(())
    }

    /// Closes: asks the backend to close and waits until it has released everything (or,
    /// when the backend asked first, answers it), then revokes every grant (rings, buffers,
    /// transfer offers).
    ///
    /// # Errors
    /// A control-plane failure; [`NetfrontError::GrantsInUse`] if the backend still holds
    /// grants (their frames are then never reused: the memory is simply kept).
    pub fn close(mut self) -> Result<CloseReport, NetfrontError> {
        if let Some(conn) = self.conn.take() {
            let closed = if self.backend_closing {
                // The backend asked to close: it released everything before asking.
                conn.acknowledge_closed()
            } else {
                conn.close()
            };
            // A backend that already went away has released everything with its process.
            match closed {
                Ok(()) | Err(xenbus::XenbusError::PeerClosed) => {}
                Err(e) => return Err(e.into()),
            }
        }
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

fn io(e: std::io::Error) -> NetfrontError {
    NetfrontError::Memory(grant_table::GrantError::Io(e))
}

fn region(e: shared_mem::RegionError) -> NetfrontError {
    NetfrontError::Config(e.to_string())
}

impl Drop for Netfront {
    fn drop(&mut self) {
        // Dropping without `close`: tell the backend (best effort) so it releases us.
        if let Some(conn) = self.conn.take() {
            let _ = if self.backend_closing {
                conn.acknowledge_closed()
            } else {
                conn.close()
            };
        }
    }
}
