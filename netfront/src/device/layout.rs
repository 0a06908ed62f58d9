//! Laying a frontend out in the memory its host gives, granting it, and connecting it.

use event_channel::QueuePorts;
use grant_table::{ENTRIES_PER_PAGE, FRAME_SIZE, FrameNumber, GrantTable, RESERVED_REFS};
use grant_table::{FramePool, PoolSide};
use io_ring::FrontRing;
use netif::wire::{RxRequest, RxResponse, TxRequest, TxResponse};
use xenbus::{BackendFeatures, FrontendChoice, FrontendControl, RxMode, TxFeatures};

use super::{MAX_RX_BUFFERS, Netfront, NetfrontConfig, PendingNetfront, Queue, RING_SLOTS};
use crate::error::NetfrontError;
use crate::flip::FlipPool;
use crate::host::{FrontMemory, FrontendHost, Layout, RingRefs};
use crate::rxq::{RxMemory, RxQueue, RxScratch};
use crate::stats::Stats;
use crate::txq::TxQueue;

/// Frames of our memory per queue: two ring pages, the tx buffers' own pages, the rx buffers
/// (copy mode; `rx_pages` of them, 0 in flip mode) and the tx buffers' small halves.
fn frames_per_queue(rx_pages: u32) -> u32 {
    2 + RING_SLOTS + rx_pages + RING_SLOTS / 2
}

/// Receive buffers per queue: pages of our frames in copy mode, as configured (checked);
/// accept-transfer offers of pool frames in flip mode, one per ring slot.
fn rx_buffers(cfg: &NetfrontConfig) -> Result<u32, NetfrontError> {
    match cfg.choice.rx_mode {
        RxMode::Copy if (RING_SLOTS..=MAX_RX_BUFFERS).contains(&cfg.rx_buffers) => {
            Ok(cfg.rx_buffers)
        }
        RxMode::Copy => Err(NetfrontError::Config(format!(
            "between {RING_SLOTS} and {MAX_RX_BUFFERS} receive buffers"
        ))),
        RxMode::Flip => Ok(RING_SLOTS),
    }
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
        let rx = rx_buffers(cfg)?;
        // Grants: the ring pages, one per tx buffer, one per small tx buffer, and one per
        // rx buffer (access grants for copy buffers, accept-transfer grants in flip mode).
        let entries = RESERVED_REFS as usize + nq * (2 + 2 * RING_SLOTS + rx) as usize;
        Ok(Layout {
            frames_bytes: nq * frames_per_queue(if copy { rx } else { 0 }) as usize * FRAME_SIZE,
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
        let rx_count = rx_buffers(&cfg)?;
        let per_queue = frames_per_queue(if copy { rx_count } else { 0 });
        let mut table = GrantTable::new(table)?;
        let mut rx_memory = match (copy, pool) {
            (true, _) => RxMemory::Copy {
                frames: frames.clone(),
            },
            (false, Some(pool)) if pool.len() >= layout.pool_bytes => RxMemory::Flip {
                pool: FlipPool::new(FramePool::split(pool, PoolSide::Frontend), backend),
                window: remap,
            },
            (false, _) => return Err(NetfrontError::Config("flip mode needs a flip pool".into())),
        };
        let mut queues = Vec::with_capacity(nq);
        let mut rings = Vec::with_capacity(nq);
        let mut offers = match &rx_memory {
            RxMemory::Copy { .. } => Vec::new(),
            RxMemory::Flip { pool, .. } => pool.owned_frames(),
        }
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
            // After the rx buffers (copy mode) or the tx pages (flip mode): the last
            // `RING_SLOTS / 2` frames of the queue.
            let small_first = base + per_queue - RING_SLOTS / 2;
            let small_grefs = (0..RING_SLOTS)
                .map(|i| {
                    table.grant_access(backend, FrameNumber(frame_base + small_first + i / 2), true)
                })
                .collect::<Result<Vec<_>, _>>()?;
            let (rx_grefs, rx_first) = match &mut rx_memory {
                RxMemory::Copy { .. } => {
                    let first = base + 2 + RING_SLOTS;
                    let grefs = (0..rx_count)
                        .map(|i| {
                            table.grant_access(backend, FrameNumber(frame_base + first + i), false)
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    (grefs, first as usize)
                }
                RxMemory::Flip { pool, .. } => {
                    let mut grefs = Vec::with_capacity(RING_SLOTS as usize);
                    for _ in 0..RING_SLOTS {
                        let frame = offers
                            .next()
                            .ok_or_else(|| NetfrontError::Config("flip pool too small".into()))?;
                        grefs.push(pool.offer(frame, &mut table)?);
                    }
                    (grefs, q * RING_SLOTS as usize)
                }
            };
            rings.push(RingRefs {
                tx: tx_ref,
                rx: rx_ref,
            });
            queues.push(Queue {
                tx: TxQueue::new(
                    tx_ring,
                    frames.clone(),
                    (tx_first, tx_grefs),
                    (small_first, small_grefs),
                ),
                rx: RxQueue::new(rx_ring, rx_grefs, rx_first),
                events,
                ring_grants: [tx_ref, rx_ref],
            });
        }
        let dev = Netfront {
            conn: None,
            table,
            rx_memory,
            queues,
            // Set again from the backend's offer on connecting; nothing is sent before.
            limits: TxFeatures::new(&BackendFeatures::default(), choice.mtu),
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

    /// Every queue's event channel ports, in the order of
    /// [`Resources::event_channels`](xenbus::Resources::event_channels).
    pub(crate) fn ports_mut(&mut self) -> impl Iterator<Item = &mut H::Port> {
        self.dev
            .queues
            .iter_mut()
            .flat_map(|q| q.events.ports_mut())
    }

    /// What this frontend will negotiate.
    pub fn choice(&self) -> &FrontendChoice {
        &self.dev.choice
    }

    /// The backend attached (the control plane said `Connected`): takes what it may send
    /// from the backend's offer ([`FrontendControl::offered`]), posts every receive buffer
    /// and returns the device.
    ///
    /// # Errors
    /// A local failure to notify the backend.
    pub fn connect(self, control: H::Control) -> Result<Netfront<H>, NetfrontError> {
        let mut dev = self.dev;
        dev.limits = TxFeatures::new(control.offered(), dev.choice.mtu);
        dev.conn = Some(control);
        dev.refill()?;
        Ok(dev)
    }
}

fn region(e: shared_mem::RegionError) -> NetfrontError {
    NetfrontError::Config(e.to_string())
}
