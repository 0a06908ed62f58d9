//! The process host: a domain is a process, its I/O memory a memfd of 4 KiB frames, its grant
//! table memfd pages too, all shared with the peer by fd and mapped `MAP_SHARED` there.

// Under loom there is no real memory to map: the model checks the grant protocol over heap
// regions of loom atomics.
#[cfg(not(loom))]
#[allow(unsafe_code)]
mod memory;
mod pool;
#[cfg(not(loom))]
#[allow(unsafe_code)]
mod remap;

#[cfg(not(loom))]
pub use memory::{create_memfd, map_shared};
// The grantee is host-independent; re-exported here, where process-host users found it.
pub use crate::grantee::{HeldMapping, PeerGrants, PeerMapping};
pub use pool::{FramePool, PoolSide};
#[cfg(not(loom))]
pub use remap::RemapWindow;

use shared_mem::SharedRegion;

use crate::entry::FRAME_SIZE;

/// The backend's domain id on the process host: frontends grant to it.
pub const BACKEND_DOMID: crate::DomId = crate::DomId(0);

/// Whole frames in a region.
pub fn frames_in(region: &SharedRegion) -> u32 {
    u32::try_from(region.len() / FRAME_SIZE).unwrap_or(u32::MAX)
}
