//! Xen grant tables (v1): how one domain lets another use, copy into or take its memory.
//!
//! - The **owner** (a frontend) keeps a [`GrantTable`] in pages shared with its peer. It grants
//!   the peer access to a frame (read-only or read-write) or offers to accept a transferred
//!   frame, and revokes grants when done. A revoke fails with [`GrantError::InUse`] while the
//!   peer has the grant in use, so a frame is never freed under a peer (XSA-396).
//! - The **grantee** (a backend) works on the owner's grants through [`GrantOps`]: batched
//!   copies and page flips with a per-operation [`GrantStatus`] (Xen's codes), and mappings that
//!   keep a grant in use while they live. Every entry is read once and validated (grantee,
//!   type, permission, frame range, copy range) before a byte moves; a bad one is an error
//!   status, never a panic or an access outside the granted frame.
//! - **Any host's memory**: the grantee ([`PeerGrants`]) reaches the owner's frames through
//!   [`FrameMemory`] (one region, several with holes ([`FrameRegions`]), a VMM's guest RAM
//!   (the `guest` module, feature `vm-memory`), memfds shared between processes (the
//!   `pvnet-process-host` crate)), so every host runs the one audited claim protocol.
//!   [`FramePool`] keeps exact ownership of page-flip frames on both sides.
//!
//! ```
//! use pvnet_grant_table::{PeerGrants, Access, CopyOp, CopyPtr, DomId, FrameNumber, GrantMapping, GrantOps, GrantStatus, GrantTable};
//! use shared_mem::SharedRegion;
//!
//! // The frontend's memory (4 frames) and grant table (1 page); the backend's own frame.
//! let frames = SharedRegion::new_zeroed(4 * 4096);
//! let mut table = GrantTable::new(SharedRegion::new_zeroed(4096))?;
//! let backend = DomId(0);
//! frames.copy_in(4096 + 10, b"hello from the frontend")?;
//! let gref = table.grant_access(backend, FrameNumber(1), true)?;
//!
//! // The backend copies out of the granted frame into its own frame 0...
//! let peer = PeerGrants::new(backend, table.region().clone(), frames.clone(), SharedRegion::new_zeroed(4096));
//! let mut ops = [CopyOp::new(
//!     CopyPtr::Grant { gref, offset: 10 },
//!     CopyPtr::Local { frame: FrameNumber(0), offset: 0 },
//!     23,
//! )];
//! peer.copy(&mut ops);
//! assert_eq!(ops[0].status, GrantStatus::Okay);
//! let mut got = [0u8; 23];
//! peer.local().copy_out(0, &mut got)?;
//! assert_eq!(&got, b"hello from the frontend");
//!
//! // ...cannot write through a read-only grant...
//! assert_eq!(peer.map(gref, Access::ReadWrite).unwrap_err(), GrantStatus::PermissionDenied);
//!
//! // ...and while it maps the grant, the frontend cannot revoke it.
//! let mapping = peer.map(gref, Access::ReadOnly).unwrap();
//! assert!(table.end_access(gref).is_err());
//! drop(mapping);
//! assert_eq!(table.end_access(gref)?, FrameNumber(1));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]
#![deny(unsafe_code)]

mod entry;
mod error;
mod frames;
mod grantee;
// The guest-memory host: one unsafe block, adopting guest RAM's mapping as shared memory.
#[cfg(all(feature = "vm-memory", not(loom)))]
#[allow(unsafe_code)]
pub mod guest;
mod ops;
mod owner;
mod pool;

pub use entry::{
    DomId, ENTRIES_PER_PAGE, FRAME_SIZE, FrameNumber, GrantEntryV1, GrantRef, GrantStatus,
    RESERVED_REFS, flags,
};
pub use error::GrantError;
pub use frames::{FrameMemory, FrameRegions, StrictFrames, permitted_frames};
pub use grantee::{HeldMapping, PeerGrants, PeerMapping};
pub use ops::{Access, CopyOp, CopyPtr, GrantMapping, GrantOps, TransferOp};
pub use owner::{GrantTable, TransferEnd, TransferState};
pub use pool::{FramePool, PoolSide};
