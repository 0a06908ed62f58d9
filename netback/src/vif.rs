//! One attached frontend (a vif): its mapped memory and rings, event channels, receive
//! backlog, credit and counters; attaching from a handshake and releasing everything.

use std::collections::VecDeque;

use event_channel::QueuePorts;
use grant_table::{Access, HeldMapping, PeerGrants};
use io_ring::BackRing;
use netif::wire::{RxRequest, RxResponse, TxRequest, TxResponse};
use xenbus::{BackendControl, FrontendChoice, Peer};

use crate::credit::{Credit, RateLimit};
use crate::error::{NetbackError, VifFault};
use crate::host::{BackendHost, VifParts};
use crate::memory::{PacketId, PacketMemory};
use crate::stats::VifStats;
use crate::uplink::VifId;

/// One queue pair of a vif.
#[derive(Debug)]
pub(crate) struct VifQueue<P> {
    pub(crate) tx: BackRing<TxRequest, TxResponse>,
    pub(crate) rx: BackRing<RxRequest, RxResponse>,
    rings: Vec<HeldMapping>,
    /// The queue's event channel(s).
    pub(crate) events: QueuePorts<P>,
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

impl<P: event_channel::EventChannel> VifQueue<P> {
    /// Notifies the frontend about the tx ring.
    pub(crate) fn notify_tx(&self) -> Result<(), NetbackError> {
        Ok(self.events.notify_tx()?)
    }

    /// Notifies the frontend about the rx ring (its own channel, if split).
    pub(crate) fn notify_rx(&self) -> Result<(), NetbackError> {
        Ok(self.events.notify_rx()?)
    }
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
    pub(crate) id: VifId,
    pub(crate) control: Option<H::Control>,
    /// The control channel's descriptor was reported readable: look at it in the next poll.
    pub(crate) control_ready: bool,
    pub(crate) peer: Option<Peer>,
    pub(crate) grants: PeerGrants<H::Memory>,
    pub(crate) choice: FrontendChoice,
    pub(crate) queues: Vec<VifQueue<H::Port>>,
    pub(crate) stats: VifStats,
    pub(crate) credit: Credit,
    pub(crate) fault: Option<VifFault>,
    /// Pages of backend memory the backlogs of this vif hold.
    pub(crate) backlog_pages: usize,
    /// No transmit work before this instant (credit exhausted, memory short).
    pub(crate) tx_blocked_until: Option<std::time::Instant>,
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
        let VifParts {
            choice,
            grants,
            queues: handed,
            control,
            peer,
        } = parts;
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
                tx,
                rx,
                rings,
                events: q.events,
                pending: Vec::new(),
                start: 0,
                tx_answers: Vec::new(),
                backlog: VecDeque::new(),
                rx_need: 0,
            });
        }
        vif.control = Some(control);
        Ok(vif)
    }

    /// Whether the frontend asked to close or went away: looked at when its descriptor was
    /// reported readable, or on every call for a channel without one (no system call then).
    pub(crate) fn closing(&mut self) -> bool {
        let Some(c) = self.control.as_mut() else {
            return false;
        };
        let look = std::mem::take(&mut self.control_ready) || c.readiness_fd().is_none();
        look && c.frontend_closing()
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
