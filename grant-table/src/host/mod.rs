//! The process host: a domain is a process, its I/O memory a memfd of 4 KiB frames, its grant
//! table memfd pages too, all shared with the peer by fd and mapped `MAP_SHARED` there.

mod memory;
mod peer;
mod pool;
mod remap;

pub use memory::{create_memfd, frames_in, map_shared};
pub use peer::{PeerGrants, PeerMapping};
pub use pool::FramePool;
pub use remap::RemapWindow;
