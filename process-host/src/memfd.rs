//! Creating and mapping memfd-backed memory: a process's frames, grant table and flip pool,
//! shared with its peer by descriptor and mapped `MAP_SHARED` on both sides (as dom0 maps a
//! guest through gntdev).

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::Arc;

use memmap2::{MmapOptions, MmapRaw};
use nix::fcntl::{FallocateFlags, FcntlArg, SealFlag, fallocate, fcntl};
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
/// alive. Pages are faulted in as they are touched (a peer's memory is never populated here:
/// a hostile peer could hand over a large sparse file).
///
/// # Errors
/// The file is shorter than `bytes` ([`io::ErrorKind::InvalidInput`]) or cannot be mapped.
pub fn map_shared(fd: &impl AsFd, bytes: usize) -> io::Result<SharedRegion> {
    check_len(fd, bytes)?;
    map(fd, bytes, false)
}

/// For memory this process made and will offer ([`Offer::memory`](crate::Offer::memory)):
/// allocates every page of `fd`'s first `bytes` bytes now (`fallocate`) and maps them shared,
/// read-write, with the page tables filled (`MAP_POPULATE`).
///
/// A frontend's buffers are all written in the steady state (receive buffers are posted in
/// turn), so this costs nothing it would not cost later. It moves the cost out of the data
/// path: otherwise the peer's first copy into each page allocates and zeroes it, and a
/// short run pays for it per frame (BENCHMARKS.md, "Receive buffers the frontend has
/// forgotten"). And a lack of memory is an error here, at connect, not a `SIGBUS` in the
/// peer on its first touch of a page.
///
/// # Errors
/// The file is shorter than `bytes` ([`io::ErrorKind::InvalidInput`]); the memory cannot be
/// allocated (`ENOSPC`, `ENOMEM`) or mapped.
pub fn map_owned(fd: &impl AsFd, bytes: usize) -> io::Result<SharedRegion> {
    check_len(fd, bytes)?;
    let len = i64::try_from(bytes).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    if len > 0 {
        fallocate(fd.as_fd(), FallocateFlags::empty(), 0, len)?;
    }
    map(fd, bytes, true)
}

/// Refuses to map `bytes` bytes of a shorter file.
fn check_len(fd: &impl AsFd, bytes: usize) -> io::Result<()> {
    let len = nix::sys::stat::fstat(fd.as_fd())?.st_size;
    if usize::try_from(len).unwrap_or(0) < bytes {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("the file has {len} bytes, {bytes} were to be mapped"),
        ));
    }
    Ok(())
}

/// Maps the first `bytes` bytes of `fd` (its length checked by the caller), with `populate`
/// [`map_owned`]'s `MAP_POPULATE`.
fn map(fd: &impl AsFd, bytes: usize, populate: bool) -> io::Result<SharedRegion> {
    let mut options = MmapOptions::new();
    options.len(bytes);
    if populate {
        options.populate();
    }
    let map = Arc::new(options.map_raw(&fd.as_fd())?);
    let ptr = NonNull::new(map.as_mut_ptr()).ok_or(io::ErrorKind::InvalidData)?;
    // SAFETY: `map` is a live shared read-write mapping of `bytes` bytes, kept alive by the
    // region (the `Arc` owner) for as long as any clone of it exists, and this process touches
    // it only through `SharedRegion`. The peer writing it concurrently is what the type is for.
    let region = unsafe { SharedRegion::from_raw_parts(ptr, bytes, Some(map as Arc<MmapRaw>)) };
    region.map_err(io::Error::other)
}
