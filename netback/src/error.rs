//! Errors: what a frontend did wrong (disable that vif, tell whoever attached it) apart from
//! what failed here.

use grant_table::{GrantError, GrantStatus};
use io_ring::{PeerError, RingError};
use netif::TxErrorKind;

/// Why a vif was disabled: its frontend broke the protocol. Only that vif stops; the others go
/// on. Small and `Copy`: it is decided on the data path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VifFault {
    /// A ring's producer index is impossible (overflow, backwards).
    #[error("ring: {0}")]
    Ring(#[from] PeerError),
    /// A tx packet netback judges malicious (fatal severity).
    #[error("tx packet: {0}")]
    Tx(TxErrorKind),
}

/// Why a netback operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetbackError {
    /// The frontend's resources do not work (a ring grant refused, a descriptor missing or
    /// not mappable, a size that makes no sense): the frontend is at fault; it was not
    /// attached.
    #[error("frontend resources rejected: {0}")]
    BadFrontend(String),
    /// A ring grant was refused while attaching (the frontend's fault).
    #[error("ring grant {gref} refused: {status:?}")]
    RingGrant {
        /// The grant reference.
        gref: u32,
        /// Why.
        status: GrantStatus,
    },
    /// No vif with that id is attached.
    #[error("no such vif")]
    NoSuchVif,
    /// A local misuse of the API (for example parts built over another backend's memory).
    #[error("configuration: {0}")]
    Config(&'static str),
    /// Backend memory could not be created or mapped (local).
    #[error("backend memory: {0}")]
    Memory(GrantError),
    /// An event channel failed (local).
    #[error("event channel: {0}")]
    Event(#[from] event_channel::EventError),
    /// The control plane failed.
    #[error("control plane: {0}")]
    Xenbus(#[from] xenbus::XenbusError),
    /// A local ring misuse (a bug here, not the frontend's fault).
    #[error("ring: {0}")]
    Ring(RingError),
}
