//! Errors of the owner side and of the process host.

use crate::entry::GrantRef;

/// Why a grant-table operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GrantError {
    /// Local: every grant reference is in use.
    #[error("grant table full")]
    TableFull,
    /// Local: the reference is not a grant of the kind this call needs.
    #[error("{0:?} is not granted (or not of this kind)")]
    NotGranted(GrantRef),
    /// The peer has the grant in use (reading / writing): it cannot be revoked yet, and its
    /// frame must not be reused (XSA-396).
    #[error("{0:?} is in use by the peer")]
    InUse(GrantRef),
    /// A transfer into this grant has started but not completed: try again.
    #[error("transfer into {0:?} in progress")]
    TransferInProgress(GrantRef),
    /// The peer wrote a grant entry in a way a correct peer never does.
    #[error("peer misbehaved on {gref:?}: {what}")]
    PeerMisbehaved {
        /// The entry.
        gref: GrantRef,
        /// What was wrong.
        what: &'static str,
    },
    /// A flip delivered a frame outside the pool, or one this side already owns: the peer
    /// handed over a frame that was not its to give.
    #[error("flip delivered frame {0}, which the peer did not own")]
    BadFlippedFrame(u32),
    /// Local: the memory given is too small or misshapen.
    #[error("memory of {len} bytes is too small: {what}")]
    TooSmall {
        /// Bytes given.
        len: usize,
        /// What it was for.
        what: &'static str,
    },
    /// Local: a frame-pool operation on a frame this side does not own, or outside the pool.
    #[error("frame {0} is not owned by this side")]
    NotOwned(u32),
    /// A system call of the process host failed.
    #[error("process host I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl GrantError {
    /// Whether the peer is to blame (disconnect it) rather than the local caller.
    pub fn is_peer_fault(&self) -> bool {
        matches!(
            self,
            GrantError::PeerMisbehaved { .. } | GrantError::BadFlippedFrame(_)
        )
    }
}
