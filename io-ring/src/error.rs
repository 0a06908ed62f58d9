//! Ring errors: small `Copy` values, split into "the peer misbehaved" and "local misuse".

/// Something the peer wrote into the shared ring that a correct peer never writes.
///
/// Fatal for the ring: the handle stays broken and returns the same error from then on. A
/// backend disconnects that frontend (only); a frontend marks its device broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeerError {
    /// The peer's producer index claims more entries than the ring can hold
    /// (`RING_REQUEST_PROD_OVERFLOW` on the back, `RING_RESPONSE_PROD_OVERFLOW` on the front,
    /// where "can hold" is the number of requests actually outstanding).
    #[error(
        "peer producer index {prod} is {ahead} entries past {base}, more than the {limit} allowed"
    )]
    ProducerOverflow {
        /// The producer index the peer published.
        prod: u32,
        /// The oldest entry not yet answered (back) or consumed (front).
        base: u32,
        /// `prod - base` (wrapping).
        ahead: u32,
        /// The most entries that can legitimately be ahead of `base`.
        limit: u32,
    },
    /// The peer's producer index moved backwards.
    #[error("peer producer index went backwards from {seen} to {prod}")]
    ProducerWentBackwards {
        /// The index seen before.
        seen: u32,
        /// The index seen now.
        prod: u32,
    },
}

/// Why a ring operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RingError {
    /// The peer misbehaved: see [`PeerError`]. The ring is broken for good.
    #[error("peer misbehaved: {0}")]
    Peer(#[from] PeerError),
    /// Local: no free request slot (the frontend must wait for responses).
    #[error("ring is full")]
    Full,
    /// Local: the backend tried to answer more requests than it has consumed
    /// (the response would overwrite a request the backend has not read).
    #[error("no consumed request left to answer")]
    NoRequestToAnswer,
}

impl RingError {
    /// Whether the peer is to blame (disconnect it) rather than the local caller.
    pub fn is_peer_fault(&self) -> bool {
        matches!(self, RingError::Peer(_))
    }
}

/// Why a ring could not be initialised (front) or attached (back).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// The memory is too small for the header and one slot.
    #[error("{len} bytes cannot hold a ring header and one {slot_bytes}-byte slot")]
    TooSmall {
        /// Bytes given.
        len: usize,
        /// Bytes per slot.
        slot_bytes: usize,
    },
    /// The ring as found is inconsistent (`req_prod - rsp_prod > size`): the frontend is faulty.
    #[error("refusing ring: {0}")]
    Peer(#[from] PeerError),
}
