//! A frontend's frames as a strict backend maps them: only the granted frames, each its own
//! page between inaccessible guard pages, so that an access outside a grant faults.

use std::io;
use std::os::fd::AsFd;

use grant_table::{FRAME_SIZE, FrameMemory, FrameNumber};
use shared_mem::SharedRegion;

use crate::remap::Window;

/// The frames of a frontend's memfd that it granted, mapped one by one into a window that is
/// otherwise `PROT_NONE`: granted frame `f` is the page at slot `2f + 1`, with an
/// inaccessible guard page on each side, and a frame never granted is not mapped at all.
///
/// A test mode ("never outside a grant", over real mappings): code that reads or writes a
/// byte outside the frame it was granted, through a bounds check it got wrong or unsafe code
/// with a bad pointer, gets `SIGSEGV` instead of the neighbouring frame, and the test dies.
/// Each frame is a region of its own, so the bounds-checked accessors already stop at its
/// end; the guards catch what gets past them.
///
/// It costs a mapping per granted frame (about two memory areas each, against the kernel's
/// `vm.max_map_count`, 65530 by default) and address space for twice the frontend's memory;
/// frames granted after it was made are not in it (netfront grants its buffers once, at
/// connect).
#[derive(Debug, Default)]
pub struct GuardedFrames {
    frames: Vec<Option<SharedRegion>>,
    mapped: usize,
}

impl GuardedFrames {
    /// Maps the frames of `fd` (a memfd of `len` bytes) that `granted` lists; frames past
    /// `len` are skipped.
    ///
    /// # Errors
    /// The address space cannot be reserved or a frame cannot be mapped (local failures).
    pub fn map(
        fd: &impl AsFd,
        len: usize,
        granted: impl IntoIterator<Item = FrameNumber>,
    ) -> io::Result<Self> {
        let count = len / FRAME_SIZE;
        let slots = count
            .checked_mul(2)
            .and_then(|n| n.checked_add(1))
            .ok_or(io::ErrorKind::InvalidInput)?;
        let window = Window::reserve(slots, false)?;
        let mut frames: Vec<Option<SharedRegion>> = vec![None; count];
        let mut mapped = 0;
        for f in granted {
            let i = f.0 as usize;
            let Some(entry) = frames.get_mut(i) else {
                continue;
            };
            if entry.is_none() {
                *entry = Some(window.map_frame_region(2 * i + 1, fd, f)?);
                mapped += 1;
            }
        }
        Ok(Self { frames, mapped })
    }

    /// How many frames are mapped.
    pub fn mapped(&self) -> usize {
        self.mapped
    }

    /// Whether `frame` is mapped.
    pub fn contains(&self, frame: FrameNumber) -> bool {
        self.frames
            .get(frame.0 as usize)
            .is_some_and(Option::is_some)
    }
}

impl FrameMemory for GuardedFrames {
    #[inline]
    fn locate(&self, frame: FrameNumber) -> Option<(&SharedRegion, usize)> {
        self.frames.get(frame.0 as usize)?.as_ref().map(|r| (r, 0))
    }
}
