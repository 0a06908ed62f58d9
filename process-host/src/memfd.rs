//! Creating and mapping memfd-backed memory: a process's frames, grant table and flip pool,
//! shared with its peer by descriptor and mapped `MAP_SHARED` on both sides (as dom0 maps a
//! guest through gntdev).

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::Arc;

use memmap2::{MmapOptions, MmapRaw};
use nix::sys::memfd::{MFdFlags, memfd_create};
use shared_mem::SharedRegion;

/// Creates a memfd of `bytes` bytes (zero-filled), close-on-exec, for frames or a grant table.
///
/// # Errors
/// The memfd cannot be created or sized.
pub fn create_memfd(name: &CStr, bytes: usize) -> io::Result<OwnedFd> {
    let fd = memfd_create(name, MFdFlags::MFD_CLOEXEC)?;
    let len = i64::try_from(bytes).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    nix::unistd::ftruncate(&fd, len)?;
    Ok(fd)
}

/// Maps `bytes` bytes of `fd` shared, read-write, as a [`SharedRegion`] that keeps the mapping
/// alive.
///
/// # Errors
/// The file is shorter than `bytes` ([`io::ErrorKind::InvalidInput`]) or cannot be mapped.
pub fn map_shared(fd: &impl AsFd, bytes: usize) -> io::Result<SharedRegion> {
    let len = nix::sys::stat::fstat(fd.as_fd())?.st_size;
    if usize::try_from(len).unwrap_or(0) < bytes {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("the file has {len} bytes, {bytes} were to be mapped"),
        ));
    }
    let map = Arc::new(MmapOptions::new().len(bytes).map_raw(&fd.as_fd())?);
    let ptr = NonNull::new(map.as_mut_ptr()).ok_or(io::ErrorKind::InvalidData)?;
    // SAFETY: `map` is a live shared read-write mapping of `bytes` bytes, kept alive by the
    // region (the `Arc` owner) for as long as any clone of it exists, and this process touches
    // it only through `SharedRegion`. The peer writing it concurrently is what the type is for.
    let region = unsafe { SharedRegion::from_raw_parts(ptr, bytes, Some(map as Arc<MmapRaw>)) };
    region.map_err(io::Error::other)
}
