//! A window of page slots into which pool frames are mapped (`MAP_FIXED`): what a page flip
//! costs on real hardware (a page-table update and a TLB flush), measurable here.

use std::num::NonZeroUsize;
use std::os::fd::AsFd;
use std::ptr::NonNull;
use std::sync::Arc;

use nix::sys::mman::{MapFlags, ProtFlags, mmap, mmap_anonymous, munmap};
use shared_mem::SharedRegion;

use crate::entry::{FRAME_SIZE, FrameNumber};
use crate::error::GrantError;

/// The reserved address range; unmapped when the last user drops it.
struct Window {
    base: NonNull<std::ffi::c_void>,
    len: NonZeroUsize,
}

// SAFETY: `Window` only records an address range that this process mapped; it dereferences
// nothing and its one operation (munmap on drop) is thread-safe.
unsafe impl Send for Window {}
// SAFETY: as above: no shared state is read or written through it.
unsafe impl Sync for Window {}

impl Drop for Window {
    fn drop(&mut self) {
        // SAFETY: `base..base+len` is the range `RemapWindow::new` mapped; every region over it
        // holds this `Window` alive, so nothing uses the range any more.
        let _ = unsafe { munmap(self.base, self.len.get()) };
    }
}

/// `slots` page slots at fixed addresses. Each starts as a private zero page; [`remap`]
/// puts a pool frame there, replacing whatever was mapped before, so a buffer keeps its
/// address while the frame behind it changes: a frontend that receives flipped frames reads
/// them in its own rx slots. Read and write the slots through [`region`](Self::region).
///
/// [`remap`]: Self::remap
pub struct RemapWindow {
    window: Arc<Window>,
    slots: usize,
    region: SharedRegion,
}

impl core::fmt::Debug for RemapWindow {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RemapWindow")
            .field("slots", &self.slots)
            .finish_non_exhaustive()
    }
}

impl RemapWindow {
    /// Reserves `slots` page slots, each mapped to a private zero page.
    ///
    /// # Errors
    /// [`GrantError::Io`] if the address space cannot be reserved.
    pub fn new(slots: usize) -> Result<Self, GrantError> {
        let len = NonZeroUsize::new(slots.max(1) * FRAME_SIZE)
            .ok_or(nix::Error::EINVAL)
            .map_err(std::io::Error::from)?;
        // SAFETY: a fresh anonymous mapping at an address the kernel chooses replaces nothing.
        let base = unsafe {
            mmap_anonymous(
                None,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_PRIVATE,
            )
        }
        .map_err(std::io::Error::from)?;
        let window = Arc::new(Window { base, len });
        let owner: Arc<dyn Send + Sync> = window.clone();
        // SAFETY: the range is mapped read-write for as long as `window` lives, which the
        // region keeps alive; slots are only ever replaced by other read-write mappings of
        // the same size (`remap`), never unmapped, so every address stays valid.
        let region = unsafe { SharedRegion::from_raw_parts(base.cast(), len.get(), Some(owner)) }
            .map_err(|e| GrantError::Io(std::io::Error::other(e)))?;
        Ok(Self {
            window,
            slots,
            region,
        })
    }

    /// The slots as memory: slot `s` is bytes `s * 4096 ..`.
    pub fn region(&self) -> &SharedRegion {
        &self.region
    }

    /// Number of slots.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Maps `frame` of the pool memfd `pool` into `slot`, shared, replacing the slot's mapping.
    ///
    /// # Errors
    /// [`GrantError::NotOwned`] if `slot` is outside the window; [`GrantError::Io`] if the
    /// mapping fails (the slot keeps its old mapping).
    pub fn remap(
        &self,
        slot: usize,
        pool: &impl AsFd,
        frame: FrameNumber,
    ) -> Result<(), GrantError> {
        if slot >= self.slots {
            return Err(GrantError::NotOwned(
                u32::try_from(slot).unwrap_or(u32::MAX),
            ));
        }
        let addr = NonZeroUsize::new(self.window.base.as_ptr() as usize + slot * FRAME_SIZE)
            .ok_or(nix::Error::EINVAL)
            .map_err(std::io::Error::from)?;
        let page = NonZeroUsize::new(FRAME_SIZE)
            .ok_or(nix::Error::EINVAL)
            .map_err(std::io::Error::from)?;
        let offset = i64::from(frame.0) * FRAME_SIZE as i64;
        // SAFETY: `addr` is one page inside our own window (slot checked above); MAP_FIXED
        // replaces exactly that page with another read-write mapping of the same size, so
        // every pointer into the window stays valid (readers see the old or the new frame).
        unsafe {
            mmap(
                Some(addr),
                page,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED | MapFlags::MAP_FIXED,
                pool.as_fd(),
                offset,
            )
        }
        .map_err(std::io::Error::from)?;
        Ok(())
    }
}
