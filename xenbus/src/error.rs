//! The control plane's errors, split into "the peer misbehaved" and "local failure".

use crate::message::DecodeError;
use crate::negotiate::NegotiationError;

/// Why a control-plane step failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum XenbusError {
    /// The peer's uid is not on the allow-list: a connecting frontend's (it was told so),
    /// or the listening process's, which is then not the backend the frontend trusts.
    #[error("peer uid {uid} is not allowed")]
    NotAllowed {
        /// The peer's uid (SO_PEERCRED).
        uid: u32,
    },
    /// A frontend of this uid connected while as many of the uid's handshakes as allowed were
    /// in progress: it was told to retry later, and dropped.
    #[error("uid {uid} has too many handshakes in progress")]
    Busy {
        /// The peer's uid (SO_PEERCRED).
        uid: u32,
    },
    /// The backend refused us, with its reason.
    #[error("refused by the backend: {0}")]
    Refused(String),
    /// The peer did not answer in time (it stalled mid-handshake).
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// The peer closed the connection.
    #[error("peer closed the connection")]
    PeerClosed,
    /// The peer sent bytes that are not a message.
    #[error("malformed message: {0}")]
    Decode(#[from] DecodeError),
    /// The peer's keys are unacceptable.
    #[error("negotiation: {0}")]
    Negotiation(#[from] NegotiationError),
    /// The peer sent a valid message at the wrong time.
    #[error("expected {expected}, got {got}")]
    Unexpected {
        /// What the protocol expected.
        expected: &'static str,
        /// What came.
        got: String,
    },
    /// The peer sent the wrong descriptors for what its keys describe.
    #[error("descriptors: {0}")]
    BadFds(String),
    /// A local system call failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl XenbusError {
    /// Whether the peer is to blame (drop that peer; the listener goes on).
    pub fn is_peer_fault(&self) -> bool {
        !matches!(self, XenbusError::Io(_))
    }
}
