//! The guest-memory host (feature `vm-memory`): a VMM's guest RAM, as rust-vmm's
//! [`vm_memory::GuestMemoryMmap`] holds it, as frame memory. Frame n is guest-physical
//! address n * 4096, in whichever region holds it; a frame in a hole or past the end of RAM is
//! `BadPage`. Every write the grantee makes into a granted frame is marked in that region's
//! dirty bitmap (vm-memory's `Bitmap`), so a VMM's live migration sees it.
//!
//! The grant table, rings and buffers of a guest's netfront live in guest frames too (as in
//! Xen-on-KVM emulation, where the guest places its grant table with `XENMAPSPACE_grant_table`);
//! [`GuestFrames::range`] gives a backend the guest's grant table, and a guest-side netfront
//! its memory, by guest-physical address.

use std::ptr::NonNull;
use std::sync::Arc;

use shared_mem::SharedRegion;
use vm_memory::bitmap::Bitmap;
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use crate::entry::{FRAME_SIZE, FrameNumber};
use crate::error::GrantError;
use crate::frames::FrameMemory;

/// One guest RAM region as shared memory.
#[derive(Debug)]
struct Region {
    /// Its first frame (guest-physical address / 4096).
    first: u32,
    /// Its frames.
    frames: u32,
    memory: SharedRegion,
    /// The region's index in the guest memory, for its dirty bitmap.
    index: usize,
}

/// Guest RAM as frame memory. Cheap to clone: it shares the guest memory.
pub struct GuestFrames<B: Bitmap + 'static = ()> {
    mem: Arc<GuestMemoryMmap<B>>,
    regions: Arc<[Region]>,
}

impl<B: Bitmap + 'static> Clone for GuestFrames<B> {
    fn clone(&self) -> Self {
        Self {
            mem: self.mem.clone(),
            regions: self.regions.clone(),
        }
    }
}

impl<B: Bitmap + 'static> core::fmt::Debug for GuestFrames<B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("GuestFrames")
            .field("regions", &self.regions)
            .finish_non_exhaustive()
    }
}

impl<B> GuestFrames<B>
where
    B: Bitmap + Send + Sync + 'static,
{
    /// Guest RAM `mem` as frame memory. Any size, any number of regions, anonymous or
    /// file-backed.
    ///
    /// # Errors
    /// [`GrantError::TooSmall`] if a region does not start on a 4 KiB boundary or is not a
    /// whole number of frames, or lies above the 2^32 frames (16 TiB) a v1 grant can name.
    pub fn new(mem: Arc<GuestMemoryMmap<B>>) -> Result<Self, GrantError> {
        let mut regions = Vec::new();
        for (index, r) in mem.iter().enumerate() {
            let start = r.start_addr().0;
            let len = usize::try_from(r.len()).unwrap_or(usize::MAX);
            let bad = |what| GrantError::TooSmall { len, what };
            if !start.is_multiple_of(FRAME_SIZE as u64)
                || len == 0
                || !len.is_multiple_of(FRAME_SIZE)
            {
                return Err(bad("a guest region of whole, aligned frames"));
            }
            let first =
                u32::try_from(start / FRAME_SIZE as u64).map_err(|_| bad("frames below 2^32"))?;
            let frames = u32::try_from(len / FRAME_SIZE).map_err(|_| bad("frames below 2^32"))?;
            first
                .checked_add(frames)
                .ok_or_else(|| bad("frames below 2^32"))?;
            let ptr = NonNull::new(r.as_ptr()).ok_or_else(|| bad("a mapped region"))?;
            let owner: Arc<dyn Send + Sync> = mem.clone();
            // SAFETY: `ptr .. ptr + len` is the region's live mapping (vm-memory's
            // `MmapRegion`: readable and writable, page aligned). It stays mapped as long as
            // the guest memory lives, and the region keeps that alive (`owner`). This process
            // reaches it only through `SharedRegion`'s atomics and bounds-checked copies;
            // the guest (vCPUs) writing it at any time is what `SharedRegion` is for.
            // vm-memory's own accessors (volatile) may be used on it meanwhile: they create no
            // Rust reference to its bytes either.
            let memory = unsafe { SharedRegion::from_raw_parts(ptr, len, Some(owner)) }
                .map_err(|_| bad("4-byte aligned memory"))?;
            regions.push(Region {
                first,
                frames,
                memory,
                index,
            });
        }
        regions.sort_by_key(|r| r.first);
        Ok(Self {
            mem,
            regions: regions.into(),
        })
    }

    /// `len` bytes of guest RAM from guest-physical address `addr`, if they lie in one
    /// region: the guest's grant table for a backend, or a guest-side frontend's memory.
    pub fn range(&self, addr: GuestAddress, len: usize) -> Option<SharedRegion> {
        let frame = u32::try_from(addr.0 / FRAME_SIZE as u64).ok()?;
        let r = self.region_of(FrameNumber(frame))?;
        let offset = usize::try_from(addr.0 - u64::from(r.first) * FRAME_SIZE as u64).ok()?;
        r.memory.subregion(offset, len).ok()
    }

    /// The guest memory.
    pub fn memory(&self) -> &Arc<GuestMemoryMmap<B>> {
        &self.mem
    }

    fn region_of(&self, frame: FrameNumber) -> Option<&Region> {
        let i = self
            .regions
            .partition_point(|r| r.first <= frame.0)
            .checked_sub(1)?;
        let r = &self.regions[i];
        (frame.0 - r.first < r.frames).then_some(r)
    }
}

impl<B> FrameMemory for GuestFrames<B>
where
    B: Bitmap + Send + Sync + 'static,
{
    #[inline]
    fn locate(&self, frame: FrameNumber) -> Option<(&SharedRegion, usize)> {
        let r = self.region_of(frame)?;
        Some((&r.memory, (frame.0 - r.first) as usize * FRAME_SIZE))
    }

    fn written(&self, frame: FrameNumber) {
        if let Some(r) = self.region_of(frame)
            && let Some(region) = self.mem.iter().nth(r.index)
        {
            region
                .bitmap()
                .mark_dirty((frame.0 - r.first) as usize * FRAME_SIZE, FRAME_SIZE);
        }
    }
}
