//! Creating and mapping memfd-backed memory: a process's frames, grant table and flip pool,
//! shared with its peer by descriptor and mapped `MAP_SHARED` on both sides (as dom0 maps a
//! guest through gntdev).

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::Arc;

use memmap2::{MmapOptions, MmapRaw};
use nix::fcntl::{FcntlArg, SealFlag, fcntl};
use nix::sys::memfd::{MFdFlags, memfd_create};
use shared_mem::SharedRegion;

/// The seals shared memory carries before it is handed to a peer: its size can never change
/// (a peer that shrank it would kill the other process with SIGBUS on its next access), and
/// no one can add or remove a seal.
pub const SEALS: SealFlag = SealFlag::F_SEAL_SHRINK
    .union(SealFlag::F_SEAL_GROW)
    .union(SealFlag::F_SEAL_SEAL);

/// Creates a memfd of `bytes` bytes (zero-filled), close-on-exec, for frames or a grant table,
/// sealed with [`SEALS`]: its size is fixed for good, whoever else comes to hold it.
///
/// # Errors
/// The memfd cannot be created, sized or sealed.
pub fn create_memfd(name: &CStr, bytes: usize) -> io::Result<OwnedFd> {
    let fd = memfd_create(name, MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING)?;
    let len = i64::try_from(bytes).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    nix::unistd::ftruncate(&fd, len)?;
    fcntl(&fd, FcntlArg::F_ADD_SEALS(SEALS))?;
    Ok(fd)
}

/// Checks that `fd` is shared memory a peer cannot resize: a memfd (or other shmem file)
/// carrying every one of [`SEALS`], and returns its size. Anything else (a file that is not
/// shmem, a memfd without the seals) is refused with the reason.
///
/// # Errors
/// [`io::ErrorKind::InvalidInput`] with the reason.
pub fn check_sealed(fd: &impl AsFd) -> io::Result<usize> {
    let refuse = |why: String| io::Error::new(io::ErrorKind::InvalidInput, why);
    let seals = fcntl(fd.as_fd(), FcntlArg::F_GET_SEALS)
        .map_err(|e| refuse(format!("not a memfd ({e})")))?;
    let seals = SealFlag::from_bits_truncate(seals);
    if !seals.contains(SEALS) {
        return Err(refuse(format!(
            "a memfd without the seals it must carry (has {seals:?}, needs {SEALS:?})"
        )));
    }
    let len = nix::sys::stat::fstat(fd.as_fd())?.st_size;
    usize::try_from(len).map_err(|_| refuse(format!("size {len}")))
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
