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

/// A reserved address range of page slots; unmapped when the last user drops it.
///
/// Its invariant, which the regions made over it rely on: a slot that is mapped read-write
/// (at reservation, or by [`Window::map_frame`]) stays mapped read-write, one page, until the
/// window is dropped. Slots are only ever replaced by another read-write shared page, never
/// unmapped or made inaccessible; slots reserved inaccessible stay so unless mapped.
pub(crate) struct Window {
    base: NonNull<std::ffi::c_void>,
    len: NonZeroUsize,
}

// SAFETY: `Window` only records an address range that this process mapped; it dereferences
// nothing and its operations (mmap over its own slots, munmap on drop) are thread-safe.
unsafe impl Send for Window {}
// SAFETY: as above: no shared state is read or written through it.
unsafe impl Sync for Window {}

impl Drop for Window {
    fn drop(&mut self) {
        // SAFETY: `base..base+len` is the range `Window::reserve` mapped; every region over it
        // holds this `Window` alive, so nothing uses the range any more.
        let _ = unsafe { munmap(self.base, self.len.get()) };
    }
}

impl Window {
    /// Reserves `pages` page slots (at least one): private zero pages if `accessible`, else
    /// `PROT_NONE` (any access faults) without reserving memory for them.
    pub(crate) fn reserve(pages: usize, accessible: bool) -> io::Result<Arc<Self>> {
        let len = pages
            .max(1)
            .checked_mul(FRAME_SIZE)
            .and_then(NonZeroUsize::new)
            .ok_or(io::ErrorKind::InvalidInput)?;
        let (prot, flags) = if accessible {
            (
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_PRIVATE,
            )
        } else {
            (
                ProtFlags::PROT_NONE,
                MapFlags::MAP_PRIVATE | MapFlags::MAP_NORESERVE,
            )
        };
        // SAFETY: a fresh anonymous mapping at an address the kernel chooses replaces nothing.
        let base = unsafe { mmap_anonymous(None, len, prot, flags) }?;
        Ok(Arc::new(Self { base, len }))
    }

    /// Number of page slots.
    pub(crate) fn pages(&self) -> usize {
        self.len.get() / FRAME_SIZE
    }

    /// Maps `frame` of the memfd `fd` into `slot`, read-write and shared, replacing the slot's
    /// mapping.
    ///
    /// # Errors
    /// [`io::ErrorKind::InvalidInput`] if `slot` is outside the window; the mapping's error if
    /// it fails (the slot keeps its old mapping).
    pub(crate) fn map_frame(
        &self,
        slot: usize,
        fd: &impl AsFd,
        frame: FrameNumber,
    ) -> io::Result<()> {
        if slot >= self.pages() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("slot {slot} is outside a window of {}", self.pages()),
            ));
        }
        let addr = NonZeroUsize::new(self.base.as_ptr() as usize + slot * FRAME_SIZE)
            .ok_or(io::ErrorKind::InvalidInput)?;
        let page = NonZeroUsize::new(FRAME_SIZE).ok_or(io::ErrorKind::InvalidInput)?;
        let offset = i64::from(frame.0) * FRAME_SIZE as i64;
        // SAFETY: `addr` is one page inside our own window (slot checked above); MAP_FIXED
        // replaces exactly that page with a read-write mapping of the same size, so every
        // region over the window stays valid (the invariant above: readers see the old or the
        // new frame).
        unsafe {
            mmap(
                Some(addr),
                page,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED | MapFlags::MAP_FIXED,
                fd.as_fd(),
                offset,
            )
        }?;
        Ok(())
    }

    /// [`map_frame`](Self::map_frame), then a region over exactly that slot (its neighbours
    /// stay outside it).
    ///
    /// # Errors
    /// As [`map_frame`](Self::map_frame).
    pub(crate) fn map_frame_region(
        self: &Arc<Self>,
        slot: usize,
        fd: &impl AsFd,
        frame: FrameNumber,
    ) -> io::Result<SharedRegion> {
        self.map_frame(slot, fd, frame)?;
        let ptr = self
            .base
            .as_ptr()
            .cast::<u8>()
            .wrapping_add(slot * FRAME_SIZE);
        let ptr = NonNull::new(ptr).ok_or(io::ErrorKind::InvalidInput)?;
        let owner: Arc<dyn Send + Sync> = self.clone();
        // SAFETY: the slot was just mapped read-write (one page, inside the window), and by
        // the window's invariant stays so for as long as the window lives, which the region
        // keeps alive.
        unsafe { SharedRegion::from_raw_parts(ptr, FRAME_SIZE, Some(owner)) }
            .map_err(io::Error::other)
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
        let window = Window::reserve(slots, true)?;
        let base = window.base.cast::<u8>();
        let len = window.len.get();
        let owner: Arc<dyn Send + Sync> = window.clone();
        // SAFETY: the range was reserved read-write and, by the window's invariant, stays
        // read-write for as long as `window` lives, which the region keeps alive (slots are
        // only replaced by read-write pages of the same size, never unmapped).
        let region = unsafe { SharedRegion::from_raw_parts(base, len, Some(owner)) }
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
        self.window.map_frame(slot, pool, frame)
    }
}
