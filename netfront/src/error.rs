//! Errors: the backend's misbehaviour (the device goes `broken`) apart from local failures
//! and from a caller's mistake with one frame.

use io_ring::PeerError;
use netif::RxErrorKind;

/// What the backend did wrong. The device is `broken` from then on: every call returns
/// [`NetfrontError::Broken`] with this. Small and `Copy`: decided on the data path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BackendFault {
    /// A ring's producer index is impossible (more responses than requests, backwards).
    #[error("ring: {0}")]
    Ring(#[from] PeerError),
    /// A tx response names a buffer id we have not sent (or twice).
    #[error("tx response for id {0}, which is not in flight")]
    TxId(u16),
    /// A tx response with a status no backend sends.
    #[error("tx response with status {0}")]
    TxStatus(i16),
    /// A received packet the netif parser judges fatal (wrong id, data outside its page,
    /// a chain running past the responses published).
    #[error("rx: {0}")]
    Rx(RxErrorKind),
    /// A page flip delivered a frame that is not in the pool, or one we own already.
    #[error("flipped frame {0} is not the backend's to give")]
    FlippedFrame(u32),
    /// A flip answered before its transfer completed.
    #[error("rx response for a transfer not completed")]
    TransferIncomplete,
    /// The backend closed the connection or went away.
    #[error("the backend closed")]
    Closed,
}

/// Why a frame was not queued. The device is fine (except for `Broken`); the frame was not sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// No room in the ring or no free buffer: reclaim with [`Netfront::poll`](crate::Netfront::poll)
    /// or [`wait`](crate::Netfront::wait), then retry.
    #[error("transmit queue full")]
    Full,
    /// Longer than allowed (65535 with scatter-gather, the MTU's frame without GSO, 1514
    /// without scatter-gather).
    #[error("frame of {len} bytes exceeds {max}")]
    TooLong {
        /// The frame's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Shorter than an Ethernet header.
    #[error("frame of {0} bytes is shorter than an Ethernet header")]
    TooShort(usize),
    /// Offload metadata the backend did not agree to (GSO of that kind, or a GSO size of 0).
    #[error("offload not negotiated")]
    OffloadNotNegotiated,
    /// The device is broken.
    #[error("device broken: {0}")]
    Broken(BackendFault),
    /// The frames were queued and published, but notifying the backend failed (a local
    /// event-channel error); it sees them at its next look.
    #[error("notifying the backend failed")]
    Notify,
}

/// Why a netfront operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetfrontError {
    /// The backend misbehaved earlier or now; the device is broken.
    #[error("device broken: {0}")]
    Broken(BackendFault),
    /// The configuration cannot work (local).
    #[error("configuration: {0}")]
    Config(String),
    /// Memory or grants could not be set up (local).
    #[error("memory: {0}")]
    Memory(#[from] grant_table::GrantError),
    /// An event channel failed (local).
    #[error("event channel: {0}")]
    Event(#[from] event_channel::EventError),
    /// The control plane failed (refused, timed out, or the backend vanished).
    #[error("control plane: {0}")]
    Xenbus(#[from] xenbus::XenbusError),
    /// A local ring misuse (a bug here, not the backend's fault).
    #[error("ring: {0}")]
    Ring(io_ring::RingError),
    /// After closing, grants the backend still had in use (it did not release them).
    #[error("{0} grants still in use after close")]
    GrantsInUse(usize),
}

impl From<BackendFault> for NetfrontError {
    fn from(f: BackendFault) -> Self {
        NetfrontError::Broken(f)
    }
}
