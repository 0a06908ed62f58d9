//! A hand-made backend on the in-process host (feature `test-utils`), for hostile tests of
//! netfront: a [`Netfront`] connected in memory to a [`RawBackend`] whose rings, grant
//! operations and view of the frontend's memory are the test's to use as it likes (answer
//! anything, write any ring index or grant entry), on one thread with nothing waiting.
//!
//! ```
//! use pvnet_netfront::testing::raw_backend;
//! use pvnet_netfront::{BackendFault, NetfrontConfig, NetfrontError};
//! use netif::wire::TxResponse;
//!
//! let (mut nic, mut backend) = raw_backend(NetfrontConfig::default())?;
//! nic.send(&[0xff; 60], netif::Offload::default())?;
//! let req = backend.tx_requests()[0];
//! // An answer for a request that was never sent.
//! backend.respond_tx(&[TxResponse { id: req.id ^ 0x80, status: 0 }]);
//! assert!(matches!(nic.poll(), Err(NetfrontError::Broken(BackendFault::TxId(_)))));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use event_channel::{EventChannel, LocalPort, QueuePorts};
use grant_table::{Access, FRAME_SIZE, GrantMapping, GrantOps, GrantRef, HeldMapping, PeerGrants};
use grant_table::{FramePool, PoolSide};
use io_ring::BackRing;
use netif::wire::{RxRequest, RxResponse, TxRequest, TxResponse};
use shared_mem::SharedRegion;
use xenbus::local::{LocalBackend, LocalFrontend};
use xenbus::{BackendControl, BackendFeatures, RxMode};

use crate::{FrontMemory, Host, Netfront, NetfrontConfig, NetfrontError, PendingNetfront};

/// The frontend's side of the in-process host.
pub type LocalFrontendHost = Host<LocalPort, LocalFrontend>;

/// A netfront of the in-process host.
pub type LocalNetfront = Netfront<LocalFrontendHost>;

/// The backend's side of one in-memory connection, for a test to abuse. Queue 0 only.
#[derive(Debug)]
pub struct RawBackend {
    tx: BackRing<TxRequest, TxResponse>,
    rx: BackRing<RxRequest, RxResponse>,
    rings: Vec<HeldMapping>,
    grants: PeerGrants,
    table: SharedRegion,
    port: LocalPort,
    control: Option<LocalBackend>,
}

/// A netfront of configuration `cfg` (one queue, no split channels) connected in memory to a
/// [`RawBackend`] offering every feature; the receive buffers are posted.
///
/// # Errors
/// What connecting a netfront reports.
pub fn raw_backend(cfg: NetfrontConfig) -> Result<(LocalNetfront, RawBackend), NetfrontError> {
    raw_backend_offering(cfg, &BackendFeatures::default())
}

/// As [`raw_backend`], with a backend that offers `offered` (what the netfront may send).
///
/// # Errors
/// What connecting a netfront reports, a choice not offered included.
pub fn raw_backend_offering(
    cfg: NetfrontConfig,
    offered: &BackendFeatures,
) -> Result<(LocalNetfront, RawBackend), NetfrontError> {
    let layout = PendingNetfront::<LocalFrontendHost>::layout(&cfg)?;
    let frames = SharedRegion::new_zeroed(layout.frames_bytes);
    let table = SharedRegion::new_zeroed(layout.table_bytes);
    let pool =
        (cfg.choice.rx_mode == RxMode::Flip).then(|| SharedRegion::new_zeroed(layout.pool_bytes));
    let me = cfg.backend_domid;
    let (ours, theirs) = LocalPort::pair();
    let pending = PendingNetfront::<LocalFrontendHost>::new(
        cfg,
        FrontMemory::new(frames.clone(), table.clone(), pool.clone()),
        vec![QueuePorts::new(ours, None)],
    )?;
    let (back_ctl, front_ctl, _) = xenbus::local::connect(offered, pending.choice())?;
    let mut grants = PeerGrants::new(
        me,
        table.clone(),
        frames,
        SharedRegion::new_zeroed(FRAME_SIZE),
    );
    if let Some(pool) = pool {
        grants = grants.with_flip_pool(FramePool::split(pool, PoolSide::Backend));
    }
    let refs = pending.rings()[0];
    let bad = |s| NetfrontError::Config(format!("ring grant: {s:?}"));
    let tx_map = grants.map_held(refs.tx, Access::ReadWrite).map_err(bad)?;
    let rx_map = grants.map_held(refs.rx, Access::ReadWrite).map_err(bad)?;
    let ring = |e: io_ring::SetupError| NetfrontError::Config(e.to_string());
    let tx = BackRing::attach(tx_map.region().clone()).map_err(ring)?;
    let rx = BackRing::attach(rx_map.region().clone()).map_err(ring)?;
    let nic = pending.connect(front_ctl)?;
    Ok((
        nic,
        RawBackend {
            tx,
            rx,
            rings: vec![tx_map, rx_map],
            grants,
            table,
            port: theirs,
            control: Some(back_ctl),
        },
    ))
}

impl RawBackend {
    /// The transmit ring (requests in, responses out).
    pub fn tx(&mut self) -> &mut BackRing<TxRequest, TxResponse> {
        &mut self.tx
    }

    /// The receive ring.
    pub fn rx(&mut self) -> &mut BackRing<RxRequest, RxResponse> {
        &mut self.rx
    }

    /// The receive ring's page as raw memory (header at byte 0: `rsp_prod` at byte 8).
    pub fn rx_page(&self) -> &SharedRegion {
        self.rings[1].region()
    }

    /// The frontend's grant table as raw memory (entry n at byte 8n).
    pub fn table(&self) -> &SharedRegion {
        &self.table
    }

    /// Grant operations on the frontend's grants (copy, map, transfer), as a backend has.
    pub fn grants(&self) -> &PeerGrants {
        &self.grants
    }

    /// Every transmit request published so far.
    ///
    /// # Panics
    /// If the frontend's indices are impossible (netfront never writes such).
    pub fn tx_requests(&mut self) -> Vec<TxRequest> {
        self.tx.requests().expect("a sane frontend").collect()
    }

    /// The bytes of the transmitted frame whose data requests are `reqs` (in order, extras
    /// left out), read through read-only mappings of their grants, each at its request's
    /// offset.
    ///
    /// # Panics
    /// If a grant cannot be mapped or a slot's bytes lie outside its page.
    pub fn tx_frame(&self, reqs: &[TxRequest]) -> Vec<u8> {
        let total = usize::from(reqs[0].size);
        let mut out = Vec::with_capacity(total);
        for r in reqs {
            let m = self
                .grants
                .map(GrantRef(r.gref), Access::ReadOnly)
                .expect("a transmit buffer's grant maps");
            let n = (total - out.len()).min(FRAME_SIZE - usize::from(r.offset));
            let mut bytes = vec![0; n];
            m.read(usize::from(r.offset), &mut bytes)
                .expect("inside the page");
            out.extend_from_slice(&bytes);
            if out.len() == total {
                break;
            }
        }
        out
    }

    /// The first `n` posted receive requests (netfront posts them all at connect).
    ///
    /// # Panics
    /// If fewer are posted, or the indices are impossible.
    pub fn rx_requests(&mut self, n: usize) -> Vec<RxRequest> {
        let reqs: Vec<RxRequest> = self
            .rx
            .requests()
            .expect("a sane frontend")
            .take(n)
            .collect();
        assert_eq!(reqs.len(), n, "posted receive requests");
        reqs
    }

    /// Pushes `rsps` onto the transmit ring, publishes and notifies.
    ///
    /// # Panics
    /// If more responses are pushed than requests taken (a test's mistake).
    pub fn respond_tx(&mut self, rsps: &[TxResponse]) {
        for r in rsps {
            self.tx.push_response(r).expect("a request to answer");
        }
        let _ = self.tx.publish_responses();
        self.notify();
    }

    /// Pushes `rsps` onto the receive ring, publishes and notifies.
    ///
    /// # Panics
    /// As [`respond_tx`](Self::respond_tx).
    pub fn respond_rx(&mut self, rsps: &[RxResponse]) {
        for r in rsps {
            self.rx.push_response(r).expect("a request to answer");
        }
        let _ = self.rx.publish_responses();
        self.notify();
    }

    /// Notifies the frontend.
    pub fn notify(&self) {
        let _ = self.port.notify();
    }

    /// Answers the frontend's close once it asked (the grants it mapped released first),
    /// so its `finish_close` completes: `true` if it had asked.
    pub fn answer_close(&mut self) -> bool {
        if !self
            .control
            .as_mut()
            .is_some_and(BackendControl::frontend_closing)
        {
            return false;
        }
        for m in self.rings.drain(..) {
            self.grants.unmap_held(m);
        }
        if let Some(c) = self.control.take() {
            let _ = c.acknowledge_closed();
        }
        true
    }

    /// Answers `Closed` at once, keeping the ring mappings (a backend that lies about having
    /// let go): their grants stay in use.
    pub fn answer_close_keeping_mappings(&mut self) {
        if let Some(c) = self.control.take() {
            let _ = c.acknowledge_closed();
        }
    }

    /// Goes away as a killed backend process does: nothing released, nothing answered (the
    /// in-use marks of its ring mappings stay in the frontend's grant table).
    pub fn vanish(self) {
        drop(self);
    }
}
