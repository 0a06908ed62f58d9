//! Creating and mapping memfd-backed memory.

use std::ffi::CStr;
use std::os::fd::{AsFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::Arc;

use memmap2::{MmapOptions, MmapRaw};
use nix::sys::memfd::{MFdFlags, memfd_create};
use shared_mem::SharedRegion;

use crate::error::GrantError;

/// Creates a memfd of `bytes` bytes (zero-filled), close-on-exec, for frames or a grant table.
///
/// # Errors
/// [`GrantError::Io`] if the memfd cannot be created or sized.
pub fn create_memfd(name: &CStr, bytes: usize) -> Result<OwnedFd, GrantError> {
    let fd = memfd_create(name, MFdFlags::MFD_CLOEXEC).map_err(std::io::Error::from)?;
    nix::unistd::ftruncate(
        &fd,
        i64::try_from(bytes)
            .map_err(|_| nix::Error::EINVAL)
            .map_err(std::io::Error::from)?,
    )
    .map_err(std::io::Error::from)?;
    Ok(fd)
}

/// Maps `bytes` bytes of `fd` shared, read-write, as a [`SharedRegion`] that keeps the mapping
/// alive (this process's view of the peer's frames or grant table, as dom0 maps a guest
/// through gntdev).
///
/// # Errors
/// [`GrantError::Io`] if the mapping fails; [`GrantError::TooSmall`] if the file is shorter
/// than `bytes`.
pub fn map_shared(fd: &impl AsFd, bytes: usize) -> Result<SharedRegion, GrantError> {
    let len = nix::sys::stat::fstat(fd.as_fd())
        .map_err(std::io::Error::from)?
        .st_size;
    if usize::try_from(len).unwrap_or(0) < bytes {
        return Err(GrantError::TooSmall {
            len: usize::try_from(len).unwrap_or(0),
            what: "mapping",
        });
    }
    let map = Arc::new(MmapOptions::new().len(bytes).map_raw(&fd.as_fd())?);
    let ptr = NonNull::new(map.as_mut_ptr()).ok_or(GrantError::TooSmall {
        len: 0,
        what: "mapping",
    })?;
    // SAFETY: `map` is a live shared read-write mapping of `bytes` bytes, kept alive by the
    // region (the `Arc` owner) for as long as any clone of it exists, and this process touches
    // it only through `SharedRegion`. The peer writing it concurrently is what the type is for.
    let region = unsafe { SharedRegion::from_raw_parts(ptr, bytes, Some(map as Arc<MmapRaw>)) };
    region.map_err(|e| GrantError::Io(std::io::Error::other(e)))
}
