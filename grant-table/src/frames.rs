//! Frame memory: how a grantee reaches the frames an owner's grants name.
//!
//! A grant names a frame number; what memory backs that number is the host's business. On the
//! process host it is one memfd mapping (frame n at byte n * 4096); in a VMM it is guest RAM,
//! several regions with holes between them. [`PeerGrants`](crate::PeerGrants) runs the one
//! claim protocol over any [`FrameMemory`], so no host writes its own.

use shared_mem::SharedRegion;

use crate::entry::{DomId, FRAME_SIZE, FrameNumber, GrantEntryV1, flags};

/// The frames `table` (an owner's v1 grant table) grants `grantee` access to right now: a
/// snapshot, for building a strict test memory ([`StrictFrames`], or a host's guarded
/// mapping) from what the owner granted. Entries are read once each, without ordering (the
/// owner may change them meanwhile; a later grant is not in the snapshot).
pub fn permitted_frames(table: &SharedRegion, grantee: DomId) -> Vec<FrameNumber> {
    let entry = core::mem::size_of::<GrantEntryV1>();
    (0..table.len() / entry)
        .filter_map(|i| table.read::<GrantEntryV1>(i * entry).ok())
        .filter(|e| e.flags & flags::TYPE_MASK == flags::PERMIT_ACCESS && e.domid == grantee.0)
        .map(|e| FrameNumber(e.frame))
        .collect()
}

/// The owner's memory as the grantee sees it: frame number -> 4 KiB of shared memory.
///
/// Implementations must be consistent: a frame that resolves once resolves to the same memory
/// for as long as the value lives (a grantee caches resolved frames of persistent claims).
pub trait FrameMemory {
    /// Where `frame` lives: a region holding the whole frame and the byte offset of the frame
    /// in it; `None` when no memory backs that frame (a hole, past the end), which the grant
    /// operations report as [`BadPage`](crate::GrantStatus::BadPage).
    fn locate(&self, frame: FrameNumber) -> Option<(&SharedRegion, usize)>;

    /// Told after the grantee wrote into `frame` (a copy into a granted frame, a writable
    /// mapping ending), so a VMM can record it in its dirty log for live migration. Does
    /// nothing by default.
    fn written(&self, frame: FrameNumber) {
        let _ = frame;
    }
}

/// One region: frame n at byte n * 4096 (the process host's memfd, a test's heap memory).
impl FrameMemory for SharedRegion {
    #[inline]
    fn locate(&self, frame: FrameNumber) -> Option<(&SharedRegion, usize)> {
        let at = (frame.0 as usize).checked_mul(FRAME_SIZE)?;
        (at.checked_add(FRAME_SIZE)? <= self.len()).then_some((self, at))
    }
}

/// Only the frames listed, each a region of its own (a strict test memory): a grantee that
/// reaches one byte past a frame's end, or a frame not listed, gets a bounds error or
/// `BadPage`, never the neighbouring frame. A test runs its traffic over it to prove that
/// every access stays inside a granted frame.
#[derive(Clone, Debug, Default)]
pub struct StrictFrames {
    frames: Vec<Option<SharedRegion>>,
}

impl StrictFrames {
    /// The frames of `region` (frame n at byte n * 4096) that `granted` lists; any other
    /// frame is not there.
    pub fn new(region: &SharedRegion, granted: impl IntoIterator<Item = FrameNumber>) -> Self {
        let mut frames = Vec::new();
        for f in granted {
            let i = f.0 as usize;
            let Some(page) = i
                .checked_mul(FRAME_SIZE)
                .and_then(|at| region.subregion(at, FRAME_SIZE).ok())
            else {
                continue;
            };
            if frames.len() <= i {
                frames.resize(i + 1, None);
            }
            frames[i] = Some(page);
        }
        Self { frames }
    }
}

impl FrameMemory for StrictFrames {
    fn locate(&self, frame: FrameNumber) -> Option<(&SharedRegion, usize)> {
        self.frames.get(frame.0 as usize)?.as_ref().map(|r| (r, 0))
    }
}

/// Several regions at chosen frame numbers, with holes between them: guest RAM as a VMM lays
/// it out (below and above a PCI hole, say). Frames in no region are `BadPage`.
#[derive(Clone, Debug, Default)]
pub struct FrameRegions {
    /// (first frame, region), sorted by first frame, not overlapping.
    regions: Vec<(u32, SharedRegion)>,
}

impl FrameRegions {
    /// No memory yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `region` (a whole number of frames) at frame number `first`.
    ///
    /// # Errors
    /// [`GrantError::TooSmall`](crate::GrantError::TooSmall) if the region is empty or not a
    /// whole number of frames, or overlaps a region added before (or runs past frame 2^32).
    pub fn add(
        &mut self,
        first: FrameNumber,
        region: SharedRegion,
    ) -> Result<(), crate::GrantError> {
        let bad = |what| crate::GrantError::TooSmall {
            len: region.len(),
            what,
        };
        if region.is_empty() || !region.len().is_multiple_of(FRAME_SIZE) {
            return Err(bad("a region of whole frames"));
        }
        let count = u32::try_from(region.len() / FRAME_SIZE).map_err(|_| bad("frame count"))?;
        let end = first
            .0
            .checked_add(count)
            .ok_or_else(|| bad("frames below 2^32"))?;
        let i = self.regions.partition_point(|(f, _)| *f < first.0);
        let clash_before = i > 0 && {
            let (f, r) = &self.regions[i - 1];
            u64::from(*f) + (r.len() / FRAME_SIZE) as u64 > u64::from(first.0)
        };
        let clash_after = self.regions.get(i).is_some_and(|(f, _)| *f < end);
        if clash_before || clash_after {
            return Err(bad("a region not overlapping another"));
        }
        self.regions.insert(i, (first.0, region));
        Ok(())
    }

    /// The regions, by first frame.
    pub fn regions(&self) -> impl Iterator<Item = (FrameNumber, &SharedRegion)> {
        self.regions.iter().map(|(f, r)| (FrameNumber(*f), r))
    }
}

impl FrameMemory for FrameRegions {
    fn locate(&self, frame: FrameNumber) -> Option<(&SharedRegion, usize)> {
        // The last region starting at or below the frame.
        let i = self
            .regions
            .partition_point(|(f, _)| *f <= frame.0)
            .checked_sub(1)?;
        let (first, region) = &self.regions[i];
        let at = ((frame.0 - first) as usize).checked_mul(FRAME_SIZE)?;
        (at.checked_add(FRAME_SIZE)? <= region.len()).then_some((region, at))
    }
}
