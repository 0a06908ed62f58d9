//! The in-process host (feature `test-utils`): a netfront and a netback in one process, over
//! heap memory, in-process event channels ([`LocalPort`]) and the in-memory control plane
//! ([`xenbus::local`]), with no descriptor, socket or thread. One thread steps both drivers
//! deterministically: send, [`Netback::poll`], receive, close. What virtio-queue's mock driver
//! is to a VMM's unit tests; the project's own tests use it too.
//!
//! ```
//! use std::time::Duration;
//! use pvnet_netback::testing::{connect, local_backend};
//! use pvnet_netback::{Echo, NetbackConfig};
//! use netfront::NetfrontConfig;
//! use xenbus::BackendFeatures;
//!
//! let mut backend = local_backend(NetbackConfig::default(), Echo)?;
//! let (_vif, mut nic) = connect(&mut backend, &BackendFeatures::default(), NetfrontConfig::default())?;
//! let frame = [0x5au8; 1514];
//! nic.send(&frame, netif::Offload::default())?;
//! backend.poll()?; // the frame goes to the echo uplink and straight back into nic's ring
//! let mut echoed = Vec::new();
//! nic.receive(64, |rx| echoed.extend_from_slice(rx.data))?;
//! assert_eq!(echoed, frame);
//!
//! nic.start_close()?;
//! backend.poll()?; // sees the close, releases the vif, answers Closed
//! let report = nic.finish_close(Duration::ZERO)?.expect("the backend let go");
//! assert_eq!(backend.take_closed()[0].pinned, 0);
//! assert!(report.revoked > 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use event_channel::{EventChannel, LocalPort, QueuePorts};
use grant_table::{
    FRAME_SIZE, FrameMemory, FrameNumber, GrantRef, GrantTable, PeerGrants, StrictFrames,
};
use grant_table::{FramePool, PoolSide};
use io_ring::FrontRing;
use netfront::{FrontMemory, Netfront, NetfrontConfig, PendingNetfront};
use netif::wire::{RxRequest, RxResponse, TxRequest, TxResponse};
use shared_mem::SharedRegion;
use xenbus::local::{LocalBackend, LocalFrontend};
use xenbus::{BackendFeatures, FrontendControl, RxMode};

use crate::host::{Host, QueueParts, VifParts};
use crate::memory::PacketMemory;
use crate::uplink::{Uplink, VifId};
use crate::{Netback, NetbackConfig, NetbackError};

/// The backend's side of the in-process host: heap frames, [`LocalPort`]s, [`LocalBackend`].
pub type LocalBackendHost = Host<SharedRegion, LocalPort, LocalBackend>;

/// The frontend's side of the in-process host.
pub type LocalFrontendHost = netfront::Host<LocalPort, LocalFrontend>;

/// A netfront of the in-process host.
pub type LocalNetfront = Netfront<LocalFrontendHost>;

/// A netback of the in-process host, its packet memory on the heap.
///
/// # Errors
/// [`NetbackError::Event`] if its waker (an eventfd) cannot be created.
pub fn local_backend<U: Uplink>(
    cfg: NetbackConfig,
    uplink: U,
) -> Result<Netback<U, LocalBackendHost>, NetbackError> {
    heap_backend(cfg, uplink)
}

/// A netback of any host with its packet memory on the heap.
fn heap_backend<U: Uplink, H: crate::BackendHost>(
    cfg: NetbackConfig,
    uplink: U,
) -> Result<Netback<U, H>, NetbackError> {
    let pages = cfg.memory_pages as usize;
    let mem = PacketMemory::over(SharedRegion::new_zeroed(pages * FRAME_SIZE));
    Netback::with_memory(cfg, uplink, mem)
}

/// Why an in-process connection failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The frontend side (configuration, memory, negotiation).
    #[error("frontend: {0}")]
    Frontend(#[from] netfront::NetfrontError),
    /// The backend side (the rings did not attach).
    #[error("backend: {0}")]
    Backend(#[from] NetbackError),
    /// The control plane refused the choice.
    #[error("control plane: {0}")]
    Control(#[from] xenbus::XenbusError),
}

/// Connects a new netfront of configuration `cfg` to `backend`, which offers `offered`:
/// allocates the frontend's memory on the heap, lays it out and grants it, negotiates in
/// memory, attaches the vif and posts the receive buffers. The frontend's memory is seen by
/// the backend exactly as granted (grant table, frames, flip pool), as on any host.
///
/// # Errors
/// [`ConnectError`].
pub fn connect<U: Uplink>(
    backend: &mut Netback<U, LocalBackendHost>,
    offered: &BackendFeatures,
    cfg: NetfrontConfig,
) -> Result<(VifId, LocalNetfront), ConnectError> {
    connect_over(backend, offered, cfg, None, |frames, _| frames)
}

/// As [`connect`], with the frontend's flip pool (flip mode) in memory the caller made and
/// keeps, to look at or prepare what the backend flips (a canary over stale pages, say).
///
/// # Errors
/// [`ConnectError`]; a pool smaller than the [`PendingNetfront::layout`] asks is refused.
pub fn connect_with_pool<U: Uplink>(
    backend: &mut Netback<U, LocalBackendHost>,
    offered: &BackendFeatures,
    cfg: NetfrontConfig,
    pool: SharedRegion,
) -> Result<(VifId, LocalNetfront), ConnectError> {
    connect_over(backend, offered, cfg, Some(pool), |frames, _| frames)
}

/// The backend's side of the strict in-process host: the backend sees only the frames the
/// frontend granted, each on its own ([`StrictFrames`]).
pub type StrictBackendHost = Host<StrictFrames, LocalPort, LocalBackend>;

/// A netback of the strict in-process host (see [`connect_strict`]).
///
/// # Errors
/// As [`local_backend`].
pub fn strict_backend<U: Uplink>(
    cfg: NetbackConfig,
    uplink: U,
) -> Result<Netback<U, StrictBackendHost>, NetbackError> {
    heap_backend(cfg, uplink)
}

/// As [`connect`], but the backend's view of the frontend's memory holds only the frames
/// the frontend's grant table names once netfront has laid itself out, each a region of its
/// own: a backend access one byte past a granted frame fails its bounds check (a lost frame,
/// which the traffic tests see), and a frame never granted is not there at all.
///
/// # Errors
/// [`ConnectError`].
pub fn connect_strict<U: Uplink>(
    backend: &mut Netback<U, StrictBackendHost>,
    offered: &BackendFeatures,
    cfg: NetfrontConfig,
) -> Result<(VifId, LocalNetfront), ConnectError> {
    let grantee = cfg.backend_domid;
    connect_over(backend, offered, cfg, None, move |frames, table| {
        StrictFrames::new(&frames, grant_table::permitted_frames(table, grantee))
    })
}

/// [`connect`] over the frame memory `memory` makes of the frontend's frames (given its
/// grant table, filled in by then), with the flip pool given or made here.
fn connect_over<U: Uplink, M: FrameMemory + core::fmt::Debug>(
    backend: &mut Netback<U, Host<M, LocalPort, LocalBackend>>,
    offered: &BackendFeatures,
    cfg: NetfrontConfig,
    pool: Option<SharedRegion>,
    memory: impl FnOnce(SharedRegion, &SharedRegion) -> M,
) -> Result<(VifId, LocalNetfront), ConnectError> {
    let layout = PendingNetfront::<LocalFrontendHost>::layout(&cfg)?;
    let frames = SharedRegion::new_zeroed(layout.frames_bytes);
    let table = SharedRegion::new_zeroed(layout.table_bytes);
    let pool = (cfg.choice.rx_mode == RxMode::Flip)
        .then(|| pool.unwrap_or_else(|| SharedRegion::new_zeroed(layout.pool_bytes)));
    let backend_domid = cfg.backend_domid;
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for _ in 0..cfg.choice.queues {
        let (tx_front, tx_back) = LocalPort::pair();
        let (rx_front, rx_back) = if cfg.choice.split_event_channels {
            let (f, b) = LocalPort::pair();
            (Some(f), Some(b))
        } else {
            (None, None)
        };
        ours.push(QueuePorts::new(tx_front, rx_front));
        theirs.push(QueuePorts::new(tx_back, rx_back));
    }
    let pending = PendingNetfront::<LocalFrontendHost>::new(
        cfg,
        FrontMemory::new(frames.clone(), table.clone(), pool.clone()),
        ours,
    )?;
    let (back_ctl, front_ctl, choice) = xenbus::local::connect(offered, pending.choice())?;
    let frames = memory(frames, &table);
    // Netfront grants its buffers for the whole connection: copies keep their claims.
    let mut grants = PeerGrants::new(
        backend_domid,
        table,
        frames,
        backend.memory().region().clone(),
    )
    .with_persistent_copies();
    if let Some(pool) = pool {
        grants = grants.with_flip_pool(FramePool::split(pool, PoolSide::Backend));
    }
    let queues = pending
        .rings()
        .iter()
        .zip(theirs)
        .map(|(r, events)| QueueParts {
            tx_ring: r.tx,
            rx_ring: r.rx,
            events,
        })
        .collect();
    let vif = backend.attach_parts(VifParts::new(choice, grants, queues, back_ctl))?;
    Ok((vif, pending.connect(front_ctl)?))
}

/// A hand-made frontend on the in-process host, for hostile tests: its rings, grant table
/// and frames are plain memory the test may write anything into, at any time (ring slots and
/// indices, grant entries, buffer bytes), with none of netfront's checks in the way. One
/// queue, `buffers` buffer frames granted writable after the two ring frames.
#[derive(Debug)]
pub struct RawFrontend {
    tx: FrontRing<TxRequest, TxResponse>,
    rx: FrontRing<RxRequest, RxResponse>,
    frames: SharedRegion,
    table: GrantTable,
    buffers: Vec<GrantRef>,
    port: LocalPort,
    control: Option<LocalFrontend>,
}

/// Attaches a [`RawFrontend`] with `buffers` buffer frames to `backend`, which offers
/// `offered` (the default choice: copy, one queue, no split channels).
///
/// # Errors
/// [`ConnectError`].
pub fn raw_frontend<U: Uplink>(
    backend: &mut Netback<U, LocalBackendHost>,
    offered: &BackendFeatures,
    buffers: u32,
) -> Result<(VifId, RawFrontend), ConnectError> {
    let frames = SharedRegion::new_zeroed((2 + buffers as usize) * FRAME_SIZE);
    let table_mem = SharedRegion::new_zeroed(FRAME_SIZE);
    let mut table = GrantTable::new(table_mem.clone()).map_err(netfront::NetfrontError::from)?;
    let backend_domid = NetfrontConfig::default().backend_domid;
    let mut grant = |f: u32| {
        table
            .grant_access(backend_domid, FrameNumber(f), false)
            .map_err(netfront::NetfrontError::from)
    };
    let (tx_ref, rx_ref) = (grant(0)?, grant(1)?);
    let buffers = (2..2 + buffers)
        .map(&mut grant)
        .collect::<Result<Vec<_>, _>>()?;
    let page = |f: usize| {
        frames
            .subregion(f * FRAME_SIZE, FRAME_SIZE)
            .expect("the ring frames are inside the frames")
    };
    let ring = |e: io_ring::SetupError| netfront::NetfrontError::Config(e.to_string());
    let tx = FrontRing::init(page(0)).map_err(ring)?;
    let rx = FrontRing::init(page(1)).map_err(ring)?;
    let (port, theirs) = LocalPort::pair();
    let (back_ctl, front_ctl, choice) =
        xenbus::local::connect(offered, &xenbus::FrontendChoice::default())?;
    let grants = PeerGrants::new(
        backend_domid,
        table_mem,
        frames.clone(),
        backend.memory().region().clone(),
    );
    let queues = vec![QueueParts {
        tx_ring: tx_ref,
        rx_ring: rx_ref,
        events: QueuePorts::new(theirs, None),
    }];
    let vif = backend.attach_parts(VifParts::new(choice, grants, queues, back_ctl))?;
    Ok((
        vif,
        RawFrontend {
            tx,
            rx,
            frames,
            table,
            buffers,
            port,
            control: Some(front_ctl),
        },
    ))
}

impl RawFrontend {
    /// The transmit ring, to push requests (anything) and read responses.
    pub fn tx(&mut self) -> &mut FrontRing<TxRequest, TxResponse> {
        &mut self.tx
    }

    /// The receive ring.
    pub fn rx(&mut self) -> &mut FrontRing<RxRequest, RxResponse> {
        &mut self.rx
    }

    /// All its frames as raw shared memory: frame 0 the transmit ring's page (header at byte
    /// 0), frame 1 the receive ring's, then the buffers.
    pub fn frames(&self) -> &SharedRegion {
        &self.frames
    }

    /// Its grant table (the owner's side), to grant, revoke, or look at entries.
    pub fn table(&mut self) -> &mut GrantTable {
        &mut self.table
    }

    /// The grant of buffer `i`.
    ///
    /// # Panics
    /// If there is no buffer `i` (a test's mistake).
    pub fn buffer(&self, i: usize) -> GrantRef {
        self.buffers[i]
    }

    /// Writes `bytes` at the start of buffer `i`.
    ///
    /// # Panics
    /// If they do not fit in the buffer frames (a test's mistake).
    pub fn fill(&self, i: usize, bytes: &[u8]) {
        self.frames
            .copy_in((2 + i) * FRAME_SIZE, bytes)
            .expect("inside the buffer frames");
    }

    /// Notifies the backend (any number of times: an event storm is a loop of these).
    pub fn notify(&self) {
        // A backend that released the vif dropped its end: nothing to tell then.
        let _ = self.port.notify();
    }

    /// Pushes `reqs` onto the transmit ring, publishes and notifies.
    ///
    /// # Panics
    /// If they do not fit in the ring (a test's mistake).
    pub fn send(&mut self, reqs: &[TxRequest]) {
        for r in reqs {
            self.tx.push_request(r).expect("room in the ring");
        }
        let _ = self.tx.publish_requests();
        self.notify();
    }

    /// Every transmit response published so far.
    ///
    /// # Panics
    /// If the backend's ring indices are impossible (netback never writes such).
    pub fn tx_responses(&mut self) -> Vec<TxResponse> {
        self.tx.responses().expect("a sane backend").collect()
    }

    /// Every receive response published so far.
    ///
    /// # Panics
    /// As [`tx_responses`](Self::tx_responses).
    pub fn rx_responses(&mut self) -> Vec<RxResponse> {
        self.rx.responses().expect("a sane backend").collect()
    }

    /// Asks the backend to close; its next poll releases the vif.
    pub fn close(&mut self) {
        if let Some(c) = self.control.as_mut() {
            let _ = c.request_close();
        }
    }

    /// Vanishes without a word, as a killed guest does.
    pub fn vanish(mut self) {
        self.control = None;
    }
}
