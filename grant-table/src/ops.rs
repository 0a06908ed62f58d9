//! The grantee's side (the backend): batched operations on someone else's grants.

use crate::entry::{FrameNumber, GrantRef, GrantStatus};

/// What a mapping may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Read only (allowed on any access grant).
    ReadOnly,
    /// Read and write (refused on a read-only grant).
    ReadWrite,
}

/// One end of a copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CopyPtr {
    /// Bytes in the owner's frame behind a grant.
    Grant {
        /// The grant.
        gref: GrantRef,
        /// Byte offset in the granted frame.
        offset: u16,
    },
    /// Bytes in one of our own frames.
    Local {
        /// Our frame.
        frame: FrameNumber,
        /// Byte offset in it.
        offset: u16,
    },
}

/// One copy of a batch (`gnttab_copy`): `len` bytes from `source` to `dest`, neither crossing
/// its 4 KiB frame. `status` is written by the operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CopyOp {
    /// Where the bytes come from.
    pub source: CopyPtr,
    /// Where they go.
    pub dest: CopyPtr,
    /// How many bytes.
    pub len: u16,
    /// The result, set by [`GrantOps::copy`].
    pub status: GrantStatus,
}

impl CopyOp {
    /// A copy not yet performed (status `GeneralError` until it is).
    pub fn new(source: CopyPtr, dest: CopyPtr, len: u16) -> Self {
        Self {
            source,
            dest,
            len,
            status: GrantStatus::GeneralError,
        }
    }
}

/// One page flip of a batch (`gnttab_transfer`): our `frame` becomes the owner's, delivered
/// through its accept-transfer grant `gref`, and the frame the owner offered there becomes
/// ours. `status` is written by the operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransferOp {
    /// Our frame (in the flip pool) to give.
    pub frame: FrameNumber,
    /// The owner's accept-transfer grant.
    pub gref: GrantRef,
    /// The result, set by [`GrantOps::transfer`].
    pub status: GrantStatus,
}

impl TransferOp {
    /// A transfer not yet performed.
    pub fn new(frame: FrameNumber, gref: GrantRef) -> Self {
        Self {
            frame,
            gref,
            status: GrantStatus::GeneralError,
        }
    }
}

/// A mapped grant: the entry stays marked in use (`reading`, and `writing` if writable) until
/// this is dropped, so the owner cannot revoke it meanwhile.
pub trait GrantMapping {
    /// The mapped frame.
    fn frame(&self) -> FrameNumber;
    /// Whether writes are allowed.
    fn writable(&self) -> bool;
    /// Copies bytes out of the mapped frame.
    ///
    /// # Errors
    /// [`GrantStatus::BadCopyArg`] if the range leaves the frame.
    fn read(&self, offset: usize, buf: &mut [u8]) -> Result<(), GrantStatus>;
    /// Copies bytes into the mapped frame.
    ///
    /// # Errors
    /// [`GrantStatus::PermissionDenied`] on a read-only mapping; [`GrantStatus::BadCopyArg`]
    /// if the range leaves the frame.
    fn write(&self, offset: usize, buf: &[u8]) -> Result<(), GrantStatus>;
}

/// The grantee's operations on an owner's grants, each validated on its own: a bad reference,
/// domain, type, permission, frame or range is an error status for that operation, never a
/// panic or an access outside the granted frame.
///
/// Implemented over any host's frame memory by [`PeerGrants`](crate::PeerGrants); real Xen
/// (`/dev/xen/gntdev`) or a VMM that owns guest memory would be others.
pub trait GrantOps {
    /// The guard [`map`](Self::map) returns.
    type Mapping<'a>: GrantMapping
    where
        Self: 'a;

    /// Performs a batch of copies, setting each op's status.
    fn copy(&self, ops: &mut [CopyOp]);

    /// Maps a grant.
    ///
    /// # Errors
    /// The status that refused it.
    fn map(&self, gref: GrantRef, access: Access) -> Result<Self::Mapping<'_>, GrantStatus>;

    /// Performs a batch of page flips, setting each op's status.
    fn transfer(&self, ops: &mut [TransferOp]);
}
