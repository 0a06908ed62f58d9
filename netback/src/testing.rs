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

use event_channel::{LocalPort, QueuePorts};
use grant_table::host::{FramePool, PoolSide};
use grant_table::{FRAME_SIZE, PeerGrants};
use netfront::{FrontMemory, Netfront, NetfrontConfig, PendingNetfront};
use shared_mem::SharedRegion;
use xenbus::local::{LocalBackend, LocalFrontend};
use xenbus::{BackendFeatures, RxMode};

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
    let layout = PendingNetfront::<LocalFrontendHost>::layout(&cfg)?;
    let frames = SharedRegion::new_zeroed(layout.frames_bytes);
    let table = SharedRegion::new_zeroed(layout.table_bytes);
    let pool =
        (cfg.choice.rx_mode == RxMode::Flip).then(|| SharedRegion::new_zeroed(layout.pool_bytes));
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
