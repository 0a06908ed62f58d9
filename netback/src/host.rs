//! The host seam: what differs between a process pair, an in-process pair and a VMM, as the
//! backend sees it. A host supplies a frontend's frame memory (under the one grant claim
//! protocol, [`PeerGrants`]), its event channels and its control channel; netback's core is
//! written once over them (QEMU's `xen_backend_ops` model: one backend, real Xen or KVM
//! emulation behind it).

use event_channel::{EventChannel, QueuePorts};
use grant_table::{FrameMemory, GrantRef, PeerGrants};
use shared_mem::SharedRegion;
use xenbus::{BackendControl, FrontendChoice, Peer};

/// The types a host provides for each frontend.
pub trait BackendHost {
    /// The frontend's frames, as the backend reaches them.
    type Memory: FrameMemory + core::fmt::Debug;
    /// One end of an event channel to the frontend.
    type Port: EventChannel + core::fmt::Debug;
    /// The backend's end of the frontend's control channel.
    type Control: BackendControl + core::fmt::Debug;
}

/// A host given by its three types, for embedders with their own (a VMM's guest memory with
/// eventfds and its XenStore emulation; the in-process pair: heap memory,
/// [`LocalPort`](event_channel::LocalPort)s and [`xenbus::local`]).
#[derive(Debug)]
pub struct Host<M, P, C>(core::marker::PhantomData<Types<M, P, C>>);

/// The marker's payload: a function type, so `Host` is `Send`, `Sync` and `Copy` whatever the
/// types are.
type Types<M, P, C> = fn() -> (M, P, C);

impl<M, P, C> BackendHost for Host<M, P, C>
where
    M: FrameMemory + core::fmt::Debug,
    P: EventChannel + core::fmt::Debug,
    C: BackendControl + core::fmt::Debug,
{
    type Memory = M;
    type Port = P;
    type Control = C;
}

/// One queue pair of a frontend, as handed over: the grants of its two ring pages and its
/// event channel(s).
#[derive(Debug)]
pub struct QueueParts<P> {
    /// The grant of the transmit ring's page.
    pub tx_ring: GrantRef,
    /// The grant of the receive ring's page.
    pub rx_ring: GrantRef,
    /// The queue's event channel, or one per ring.
    pub events: QueuePorts<P>,
}

/// Everything a connected frontend handed over, from which
/// [`Netback::attach_parts`](crate::Netback::attach_parts) attaches a vif. The control plane checked `choice` against
/// the backend's offer before building this.
#[derive(Debug)]
pub struct VifParts<H: BackendHost> {
    choice: FrontendChoice,
    grants: PeerGrants<H::Memory>,
    queues: Vec<QueueParts<H::Port>>,
    control: H::Control,
    peer: Option<Peer>,
}

/// The parts, taken apart, for attaching.
pub(crate) type Taken<H> = (
    FrontendChoice,
    PeerGrants<<H as BackendHost>::Memory>,
    Vec<QueueParts<<H as BackendHost>::Port>>,
    <H as BackendHost>::Control,
    Option<Peer>,
);

impl<H: BackendHost> VifParts<H> {
    /// A frontend's parts: what it negotiated, its grants (over its frame memory; with its
    /// flip pool in flip mode), one [`QueueParts`] per queue and its control channel.
    pub fn new(
        choice: FrontendChoice,
        grants: PeerGrants<H::Memory>,
        queues: Vec<QueueParts<H::Port>>,
        control: H::Control,
    ) -> Self {
        Self {
            choice,
            grants,
            queues,
            control,
            peer: None,
        }
    }

    /// The grants' local memory (it must be the backend's packet memory).
    pub(crate) fn local_memory(&self) -> &SharedRegion {
        self.grants.local()
    }

    /// What is wrong with the frontend's memory, if anything: a grant table larger than
    /// `max_grant_frames` pages (its pin counts would be allocated here), or in flip mode no
    /// flip pool, or one whose backend half cannot hold a largest frame (it would wait for
    /// ever for frames it can never have: the backend owns half the pool at every poll).
    pub(crate) fn memory_fault(&self, max_grant_frames: u32) -> Option<String> {
        let pages = self.grants.table_entries() as usize * 8 / grant_table::FRAME_SIZE;
        if pages > max_grant_frames as usize {
            return Some(format!(
                "a grant table of {pages} pages (at most {max_grant_frames})"
            ));
        }
        if self.choice.rx_mode != xenbus::RxMode::Flip {
            return None;
        }
        let least = 2 * crate::memory::MAX_PACKET_PAGES;
        match self.grants.pool() {
            None => Some("flip mode without a flip pool".into()),
            Some(p) if (p.frames() as usize) < least => Some(format!(
                "a flip pool of {} frames (at least {least})",
                p.frames()
            )),
            Some(_) => None,
        }
    }

    /// Refuses the frontend (its parts are dropped).
    pub(crate) fn refuse(self, reason: &str) -> Result<(), xenbus::XenbusError> {
        self.control.refuse(reason)
    }

    /// Takes the parts apart.
    pub(crate) fn into_inner(self) -> Taken<H> {
        (
            self.choice,
            self.grants,
            self.queues,
            self.control,
            self.peer,
        )
    }

    /// Records who the frontend is (a process's credentials), for [`VifInfo`](crate::VifInfo).
    #[must_use]
    pub fn with_peer(mut self, peer: Peer) -> Self {
        self.peer = Some(peer);
        self
    }
}
