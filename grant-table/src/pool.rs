//! The flip pool: frames that change owner by page flip, with exact accounting.

use std::cell::Cell;

use shared_mem::SharedRegion;

use crate::entry::{FRAME_SIZE, FrameNumber};
use crate::error::GrantError;

/// Which side of a connection a pool view belongs to (see [`FramePool::split`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolSide {
    /// The frontend: owns the lower half at first.
    Frontend,
    /// The backend: owns the upper half at first.
    Backend,
}

/// One side's view of a frame pool shared by exactly one frontend / backend pair.
///
/// Every frame is owned by exactly one side. Each side keeps its own record and changes it
/// only at the flip: the backend gives a frame and takes the one offered in exchange
/// ([`PeerGrants::transfer`](crate::PeerGrants)); the frontend gives a frame when it
/// offers it ([`give`](Self::give)) and takes one when a transfer completes
/// ([`receive`](Self::receive)). A side reads and writes only frames it owns through this type.
/// Not `Sync`: one owner.
pub struct FramePool {
    region: SharedRegion,
    owned: Box<[Cell<bool>]>,
}

impl core::fmt::Debug for FramePool {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FramePool")
            .field("frames", &self.owned.len())
            .field("owned", &self.owned_count())
            .finish()
    }
}

impl FramePool {
    /// A view of the pool in `region` where this side owns the frames for which `ours` is true.
    pub fn new(region: SharedRegion, ours: impl Fn(FrameNumber) -> bool) -> Self {
        let owned = (0..frames_in(&region))
            .map(|f| Cell::new(ours(FrameNumber(f))))
            .collect();
        Self { region, owned }
    }

    /// The view of `side` under pvnet's convention for a connection's pool: the frontend
    /// starts with the lower half of the frames (to offer in accept-transfer grants) and the
    /// backend with the upper half (to fill and flip). Both sides agree without a message.
    pub fn split(region: SharedRegion, side: PoolSide) -> Self {
        let half = frames_in(&region) / 2;
        match side {
            PoolSide::Frontend => Self::new(region, |f| f.0 < half),
            PoolSide::Backend => Self::new(region, |f| f.0 >= half),
        }
    }

    /// Frames in the pool.
    pub fn frames(&self) -> u32 {
        u32::try_from(self.owned.len()).unwrap_or(u32::MAX)
    }

    /// The pool memory.
    pub fn region(&self) -> &SharedRegion {
        &self.region
    }

    /// Whether `frame` is in the pool and ours.
    pub fn owns(&self, frame: FrameNumber) -> bool {
        self.owned.get(frame.0 as usize).is_some_and(Cell::get)
    }

    /// Frames we own.
    pub fn owned_count(&self) -> usize {
        self.owned.iter().filter(|c| c.get()).count()
    }

    /// The frames we own, lowest first.
    pub fn owned_frames(&self) -> impl Iterator<Item = FrameNumber> + '_ {
        (0..self.frames())
            .map(FrameNumber)
            .filter(|f| self.owns(*f))
    }

    /// Gives up `frame` (we offer it, or flip it away).
    ///
    /// # Errors
    /// [`GrantError::NotOwned`] if it is not ours.
    pub fn give(&self, frame: FrameNumber) -> Result<(), GrantError> {
        self.owned_cell(frame, true)?.set(false);
        Ok(())
    }

    /// Takes `frame` (a flip delivered it to us).
    ///
    /// # Errors
    /// [`GrantError::BadFlippedFrame`] if it is outside the pool or already ours: the peer
    /// handed us a frame it does not own.
    pub fn receive(&self, frame: FrameNumber) -> Result<(), GrantError> {
        self.owned_cell(frame, false)
            .map_err(|_| GrantError::BadFlippedFrame(frame.0))?
            .set(true);
        Ok(())
    }

    /// Copies bytes into a frame we own.
    ///
    /// # Errors
    /// [`GrantError::NotOwned`] if the frame is not ours or the range leaves it.
    pub fn write(&self, frame: FrameNumber, offset: usize, data: &[u8]) -> Result<(), GrantError> {
        self.check(frame, offset, data.len())?;
        self.region
            .copy_in(frame.0 as usize * FRAME_SIZE + offset, data)
            .map_err(|_| GrantError::NotOwned(frame.0))
    }

    /// Copies bytes out of a frame we own.
    ///
    /// # Errors
    /// [`GrantError::NotOwned`] if the frame is not ours or the range leaves it.
    pub fn read(
        &self,
        frame: FrameNumber,
        offset: usize,
        buf: &mut [u8],
    ) -> Result<(), GrantError> {
        self.check(frame, offset, buf.len())?;
        self.region
            .copy_out(frame.0 as usize * FRAME_SIZE + offset, buf)
            .map_err(|_| GrantError::NotOwned(frame.0))
    }

    fn check(&self, frame: FrameNumber, offset: usize, len: usize) -> Result<(), GrantError> {
        if !self.owns(frame) || offset.checked_add(len).is_none_or(|end| end > FRAME_SIZE) {
            return Err(GrantError::NotOwned(frame.0));
        }
        Ok(())
    }

    fn owned_cell(&self, frame: FrameNumber, want: bool) -> Result<&Cell<bool>, GrantError> {
        match self.owned.get(frame.0 as usize) {
            Some(c) if c.get() == want => Ok(c),
            _ => Err(GrantError::NotOwned(frame.0)),
        }
    }
}

/// Whole frames in a region.
fn frames_in(region: &SharedRegion) -> u32 {
    u32::try_from(region.len() / FRAME_SIZE).unwrap_or(u32::MAX)
}
