//! The frontend's view of a flip pool, with the frames it has offered: a flip may deliver only
//! a frame the backend owns, never one we still own or have on offer.

use grant_table::host::FramePool;
use grant_table::{FrameNumber, GrantError};

use crate::error::BackendFault;

/// Our pool view plus the frames on offer in accept-transfer grants.
#[derive(Debug)]
pub(crate) struct FlipPool {
    pool: FramePool,
    offered: Vec<bool>,
}

impl FlipPool {
    pub(crate) fn new(pool: FramePool) -> Self {
        let n = pool.frames() as usize;
        Self {
            pool,
            offered: vec![false; n],
        }
    }

    /// Frames we own and have not offered.
    pub(crate) fn owned_frames(&self) -> Vec<FrameNumber> {
        self.pool.owned_frames().collect()
    }

    /// Gives up `f` into an accept-transfer grant.
    pub(crate) fn offer(&mut self, f: FrameNumber) -> Result<(), GrantError> {
        self.pool.give(f)?;
        self.offered[f.0 as usize] = true;
        Ok(())
    }

    /// A transfer completed: `received` is ours now, `offered` (the frame of that grant) the
    /// backend's.
    ///
    /// # Errors
    /// [`BackendFault::FlippedFrame`] if `received` is outside the pool, ours, or on offer
    /// (the backend cannot own it).
    pub(crate) fn complete(
        &mut self,
        received: FrameNumber,
        offered: FrameNumber,
    ) -> Result<(), BackendFault> {
        let bad = BackendFault::FlippedFrame(received.0);
        if self
            .offered
            .get(received.0 as usize)
            .copied()
            .unwrap_or(true)
        {
            return Err(bad);
        }
        self.pool.receive(received).map_err(|_| bad)?;
        if let Some(o) = self.offered.get_mut(offered.0 as usize) {
            *o = false;
        }
        Ok(())
    }

    /// Copies bytes out of a frame we own.
    pub(crate) fn read(
        &self,
        frame: FrameNumber,
        offset: usize,
        buf: &mut [u8],
    ) -> Result<(), GrantError> {
        self.pool.read(frame, offset, buf)
    }
}
