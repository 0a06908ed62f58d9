//! One attached frontend (a vif): its mapped memory and rings, event channels, receive
//! backlog, credit and counters; attaching from a handshake and releasing everything.

use std::collections::VecDeque;
use std::os::fd::{AsFd, OwnedFd};

use event_channel::{EventFdPort, QueuePorts};
use grant_table::host::{BACKEND_DOMID, FramePool, HeldMapping, PeerGrants, PoolSide, map_shared};
use grant_table::{Access, FRAME_SIZE, GrantRef};
use io_ring::BackRing;
use netif::wire::{RxRequest, RxResponse, TxRequest, TxResponse};
use shared_mem::SharedRegion;
use xenbus::{BackendConnection, EventFds, FrontendChoice, RxMode};

use crate::credit::{Credit, RateLimit};
use crate::error::{NetbackError, VifFault};
use crate::memory::{PacketId, PacketMemory};
use crate::stats::VifStats;
use crate::uplink::VifId;

/// The largest memory a frontend may hand over in one descriptor (1 GiB): bounds what a
/// hostile frontend can make us map.
const MAX_MAPPED: usize = 1 << 30;

/// One queue pair of a vif.
#[derive(Debug)]
pub(crate) struct VifQueue {
    pub(crate) tx: BackRing<TxRequest, TxResponse>,
    pub(crate) rx: BackRing<RxRequest, RxResponse>,
    rings: Vec<HeldMapping>,
    /// The queue's event channel(s).
    pub(crate) events: QueuePorts,
    /// Tx requests copied out of the ring and not answered yet (`pending[start..]`).
    pub(crate) pending: Vec<TxRequest>,
    pub(crate) start: usize,
    /// Answers decided by this poll, written at its end.
    pub(crate) tx_answers: Vec<crate::tx::TxAnswer>,
    /// Frames waiting for receive buffers, oldest first.
    pub(crate) backlog: VecDeque<PacketId>,
    /// Rx requests the frame at the head of the backlog needs (0: not waiting).
    pub(crate) rx_need: u32,
}

impl VifQueue {
    /// Notifies the frontend about the tx ring.
    pub(crate) fn notify_tx(&self) -> Result<(), NetbackError> {
        Ok(self.events.notify_tx()?)
    }

    /// Notifies the frontend about the rx ring (its own channel, if split).
    pub(crate) fn notify_rx(&self) -> Result<(), NetbackError> {
        Ok(self.events.notify_rx()?)
    }
}

/// An attached frontend.
#[derive(Debug)]
pub(crate) struct Vif {
    pub(crate) id: VifId,
    pub(crate) conn: Option<BackendConnection>,
    pub(crate) grants: PeerGrants,
    pub(crate) choice: FrontendChoice,
    pub(crate) queues: Vec<VifQueue>,
    pub(crate) stats: VifStats,
    pub(crate) credit: Credit,
    pub(crate) fault: Option<VifFault>,
    /// Pages of backend memory the backlogs of this vif hold.
    pub(crate) backlog_pages: usize,
    /// No transmit work before this instant (credit exhausted, memory short).
    pub(crate) tx_blocked_until: Option<std::time::Instant>,
}

fn map_fd(fd: Option<OwnedFd>, what: &str) -> Result<SharedRegion, NetbackError> {
    let fd = fd.ok_or_else(|| NetbackError::BadFrontend(format!("{what}: descriptor missing")))?;
    let st = nix::sys::stat::fstat(fd.as_fd())
        .map_err(|e| NetbackError::BadFrontend(format!("{what}: {e}")))?;
    let len = usize::try_from(st.st_size).unwrap_or(0);
    if len == 0 || len % FRAME_SIZE != 0 || len > MAX_MAPPED {
        return Err(NetbackError::BadFrontend(format!(
            "{what}: {len} bytes is not a whole number of pages up to 1 GiB"
        )));
    }
    map_shared(&fd, len).map_err(|e| NetbackError::BadFrontend(format!("{what}: {e}")))
}

impl Vif {
    /// Maps what the frontend handed over and attaches to its rings.
    pub(crate) fn attach(
        id: VifId,
        mut conn: BackendConnection,
        local: SharedRegion,
        rate: Option<RateLimit>,
    ) -> Result<Self, NetbackError> {
        let res = conn.resources.clone();
        let frames = map_fd(conn.take_fd(res.frames), "frames")?;
        let table = map_fd(conn.take_fd(res.grant_table), "grant table")?;
        // Netfront grants its buffers once for the connection: copies keep their claims.
        let mut grants =
            PeerGrants::new(BACKEND_DOMID, table, frames, local).with_persistent_copies();
        if conn.choice.rx_mode == RxMode::Flip {
            let i = res
                .flip_pool
                .ok_or_else(|| NetbackError::BadFrontend("flip mode without a flip pool".into()))?;
            let pool = map_fd(conn.take_fd(i), "flip pool")?;
            grants = grants.with_flip_pool(FramePool::split(pool, PoolSide::Backend));
        }
        let mut queues = Vec::with_capacity(res.queues.len());
        let mut vif = Self {
            id,
            conn: None,
            grants,
            choice: conn.choice.clone(),
            queues: Vec::new(),
            stats: VifStats::default(),
            credit: Credit::new(rate),
            fault: None,
            backlog_pages: 0,
            tx_blocked_until: None,
        };
        let mut take = |e: EventFds| -> Result<EventFdPort, NetbackError> {
            let rx = conn.take_fd(e.backend_waits);
            let tx = conn.take_fd(e.backend_notifies);
            match (rx, tx) {
                (Some(rx), Some(tx)) => Ok(EventFdPort::from_fds(rx, tx)?),
                _ => Err(NetbackError::BadFrontend("event descriptor missing".into())),
            }
        };
        for q in &res.queues {
            let result = (|| {
                let mut rings = Vec::with_capacity(2);
                for gref in [q.tx_ring_ref, q.rx_ring_ref] {
                    match vif.grants.map_held(GrantRef(gref), Access::ReadWrite) {
                        Ok(m) => rings.push(m),
                        Err(status) => {
                            for m in rings {
                                vif.grants.unmap_held(m);
                            }
                            return Err(NetbackError::RingGrant { gref, status });
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
                        return Err(NetbackError::BadFrontend(format!("ring: {e}")));
                    }
                };
                Ok(VifQueue {
                    tx,
                    rx,
                    rings,
                    events: QueuePorts::new(
                        take(q.tx_event)?,
                        q.rx_event.map(&mut take).transpose()?,
                    ),
                    pending: Vec::new(),
                    start: 0,
                    tx_answers: Vec::new(),
                    backlog: VecDeque::new(),
                    rx_need: 0,
                })
            })();
            match result {
                Ok(queue) => queues.push(queue),
                Err(e) => {
                    vif.queues = queues;
                    vif.unmap_rings();
                    return Err(e);
                }
            }
        }
        vif.queues = queues;
        vif.conn = Some(conn);
        Ok(vif)
    }

    /// Whether the vif still carries traffic.
    pub(crate) fn active(&self) -> bool {
        self.fault.is_none()
    }

    /// Disables the vif for `fault`: it carries nothing more; its rings stay mapped until the
    /// frontend closes.
    pub(crate) fn disable(&mut self, fault: VifFault, mem: &mut PacketMemory) {
        if self.fault.is_none() {
            self.fault = Some(fault);
        }
        self.drop_backlog(mem);
    }

    /// Writes the decided transmit answers of every queue.
    pub(crate) fn flush_tx_answers(&mut self) -> Result<(), NetbackError> {
        for q in 0..self.queues.len() {
            self.flush_tx_answers_of(q)?;
        }
        Ok(())
    }

    /// Frees every frame waiting for this vif (counted as dropped).
    pub(crate) fn drop_backlog(&mut self, mem: &mut PacketMemory) {
        for q in &mut self.queues {
            for p in q.backlog.drain(..) {
                mem.release(p);
                self.stats.rx_dropped += 1;
            }
            q.rx_need = 0;
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

    /// Releases everything of this frontend: backlog (counted as dropped), ring mappings, its
    /// memory and event channels. Returns the control connection (to acknowledge `Closed`
    /// once this is done), the grants still pinned (0 unless something leaked) and the final
    /// counters.
    pub(crate) fn release(
        mut self,
        mem: &mut PacketMemory,
    ) -> (Option<BackendConnection>, usize, VifStats) {
        self.drop_backlog(mem);
        self.unmap_rings();
        self.grants.release_persistent();
        let pinned = self.grants.pinned();
        (self.conn.take(), pinned, self.stats)
    }
}
