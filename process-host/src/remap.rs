//! A window of page slots into which pool frames are mapped (`MAP_FIXED`): what a page flip
//! costs on real hardware (a page-table update and a TLB flush), measurable here.

use std::io;
use std::num::NonZeroUsize;
use std::os::fd::AsFd;
use std::ptr::NonNull;
use std::sync::Arc;

use nix::sys::mman::{MapFlags, ProtFlags, mmap, mmap_anonymous, munmap};
use shared_mem::SharedRegion;

use grant_table::{FRAME_SIZE, FrameNumber};

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
    /// The address space cannot be reserved.
    pub fn new(slots: usize) -> io::Result<Self> {
        let len = slots
            .max(1)
            .checked_mul(FRAME_SIZE)
            .and_then(NonZeroUsize::new)
            .ok_or(io::ErrorKind::InvalidInput)?;
        // SAFETY: a fresh anonymous mapping at an address the kernel chooses replaces nothing.
        let base = unsafe {
            mmap_anonymous(
                None,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_PRIVATE,
            )
        }?;
        let window = Arc::new(Window { base, len });
        let owner: Arc<dyn Send + Sync> = window.clone();
        // SAFETY: the range is mapped read-write for as long as `window` lives, which the
        // region keeps alive; slots are only ever replaced by other read-write mappings of
        // the same size (`remap`), never unmapped, so every address stays valid.
        let region = unsafe { SharedRegion::from_raw_parts(base.cast(), len.get(), Some(owner)) }
            .map_err(io::Error::other)?;
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
    /// [`io::ErrorKind::InvalidInput`] if `slot` is outside the window; the mapping's error if
    /// it fails (the slot keeps its old mapping).
    pub fn remap(&self, slot: usize, pool: &impl AsFd, frame: FrameNumber) -> io::Result<()> {
        if slot >= self.slots {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("slot {slot} is outside a window of {}", self.slots),
            ));
        }
        let addr = NonZeroUsize::new(self.window.base.as_ptr() as usize + slot * FRAME_SIZE)
            .ok_or(io::ErrorKind::InvalidInput)?;
        let page = NonZeroUsize::new(FRAME_SIZE).ok_or(io::ErrorKind::InvalidInput)?;
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
        }?;
        Ok(())
    }
}
