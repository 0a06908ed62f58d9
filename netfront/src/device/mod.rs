//! The device: its state and counters. Building it is `layout.rs`, sending and receiving
//! `data.rs`, waiting `wait.rs`, closing `close.rs` (child modules: the fields stay private
//! to this module).

use std::time::Duration;

use event_channel::QueuePorts;
use grant_table::{DomId, FRAME_SIZE, GrantRef, GrantTable};
use io_ring::{ring_size, slot_bytes};
use netif::Offload;
use netif::wire::{RxRequest, RxResponse, TxRequest, TxResponse};

use xenbus::{FrontendChoice, TxFeatures};

use crate::error::{BackendFault, NetfrontError, SendError};
use crate::host::{FrontendHost, RingRefs};
use crate::process::ProcessHost;
use crate::rxq::{RxMemory, RxQueue, RxScratch};
use crate::stats::Stats;
use crate::txq::TxQueue;

pub use inplace::TxBuffer;

mod close;
mod data;
mod inplace;
mod layout;
mod wait;

/// Buffers per ring: the slots of the smaller of a queue's two rings, each one page (256 for
/// the netif rings), from io-ring's own rule, so the buffer pools cannot disagree with the
/// rings.
pub(crate) const RING_SLOTS: u32 = {
    let tx = ring_size(FRAME_SIZE, slot_bytes::<TxRequest, TxResponse>());
    let rx = ring_size(FRAME_SIZE, slot_bytes::<RxRequest, RxResponse>());
    match (tx, rx) {
        (Some(t), Some(r)) if t <= r => t,
        (Some(_), Some(r)) => r,
        _ => panic!("a netif ring fits in one page"),
    }
};

/// How to connect.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct NetfrontConfig {
    /// What to negotiate: MAC, MTU, receive mode, queues, scatter-gather, offloads, split
    /// event channels. Checked against what the backend offers.
    pub choice: FrontendChoice,
    /// Flip mode on the process host ([`Netfront::connect`]): map each received frame into a
    /// fixed receive slot (`mmap`), what a flip costs on real hardware, instead of reading it
    /// where it is in the pool. Other hosts give their own window
    /// ([`FrontMemory::with_flip_window`](crate::FrontMemory::with_flip_window)).
    pub flip_remap: bool,
    /// How long [`Netfront::wait`] polls the rings before sleeping (0: sleep at once).
    pub spin: Duration,
    /// Control-plane timeout (connect, close).
    pub timeout: Duration,
    /// The backend's domain, which every grant names (0 on the process host; a VMM's
    /// backend domain under Xen-on-KVM emulation).
    pub backend_domid: DomId,
    /// On the process host ([`Netfront::connect`]), the uids the listening backend process
    /// may run as, checked before anything is handed over (whoever listens receives this
    /// frontend's memory); `None`: this process's own uid and root.
    pub backend_uids: Option<Vec<u32>>,
    /// Receive buffers per queue in copy mode, one page each, between the ring's 256 slots
    /// and [`MAX_RX_BUFFERS`]; [`DEFAULT_RX_BUFFERS`] by default. Flip mode offers one
    /// frame per slot and ignores this.
    ///
    /// Buffers beyond the ring's slots wait their turn, and those of one-slot frames are
    /// posted in the order they came back: each is written again by the backend only after
    /// all the others. By then this side's cache has let its lines go, and the backend's
    /// copy takes them without asking this core for them. Measured on an Intel Xeon with 2
    /// MiB of L2 a core (BENCHMARKS.md, "Receive buffers the frontend has forgotten"): 1024
    /// buffers against 256 received 1.33x the frames of 1500 B and 1.20x of 64 B; 512 and
    /// 2048 gained less, and 4096 nothing (the pages then outgrow the TLBs). The buffers of
    /// a frame of several slots (GSO, jumbo frames) are posted again first instead, so that
    /// large frames circulate about a ring's worth: 64 KiB frames run as with 256 buffers.
    ///
    /// Each buffer costs a page of frame memory and a grant: 1024 buffers make a queue 5.5
    /// MiB and 1538 grants, against 2.5 MiB and 770 with 256 (Xen's default grant table of
    /// 64 pages holds 32768).
    pub rx_buffers: u32,
}

/// [`NetfrontConfig::rx_buffers`] by default.
pub const DEFAULT_RX_BUFFERS: u32 = 4 * RING_SLOTS;
/// The most receive buffers a queue may have ([`NetfrontConfig::rx_buffers`]): 64 MiB of
/// pages.
pub const MAX_RX_BUFFERS: u32 = 16384;

impl Default for NetfrontConfig {
    fn default() -> Self {
        Self {
            choice: FrontendChoice::default(),
            flip_remap: false,
            spin: Duration::ZERO,
            timeout: Duration::from_secs(5),
            // Dom0's, as on the process host.
            backend_domid: DomId(0),
            backend_uids: None,
            rx_buffers: DEFAULT_RX_BUFFERS,
        }
    }
}

/// What closing released.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CloseReport {
    /// Grants revoked (rings, buffers, transfer offers).
    pub revoked: usize,
    /// Of those, grants taken back from a backend that went away without answering, whose
    /// in-use marks it left behind ([`GrantTable::reclaim`](grant_table::GrantTable::reclaim)).
    pub reclaimed: usize,
}

#[derive(Debug)]
struct Queue<P> {
    tx: TxQueue,
    rx: RxQueue,
    events: QueuePorts<P>,
    ring_grants: [GrantRef; 2],
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
    /// The receive mode, with the memory it reads (the only record of it).
    rx_memory: RxMemory,
    queues: Vec<Queue<H::Port>>,
    /// What the backend takes (its offer); until connected, what the choice alone allows.
    limits: TxFeatures,
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

impl<H: FrontendHost> Netfront<H> {
    /// What this frontend chose: among it, what it can receive.
    pub fn choice(&self) -> &FrontendChoice {
        &self.choice
    }

    /// What this frontend may send: the backend's receive features (its offer), as Xen
    /// reads them. [`send`](Self::send) refuses a GSO packet of a kind not in it, or a
    /// frame longer than its limits, with [`SendError::OffloadNotNegotiated`] or
    /// [`SendError::TooLong`]; an IPv6 partial checksum without `ipv6_csum_offload` is the
    /// caller's to fill (netfront does not parse frames).
    pub fn tx_features(&self) -> TxFeatures {
        self.limits
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

    /// Whether a frame of `len` bytes (a GSO packet if `gso`) would be queued now, whichever
    /// queue its flow maps to: every queue has the buffers and ring slots for it. A `false`
    /// clears as [`poll`](Self::poll) reclaims completed transmits.
    pub fn can_send(&self, len: usize, gso: bool) -> bool {
        self.broken.is_none() && self.queues.iter().all(|q| q.tx.has_room(len, gso))
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
}
