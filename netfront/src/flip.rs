//! The frontend's view of a flip pool, with the frames it has on offer: a flip may deliver
//! only a frame the backend owns: never one we own, nor one on offer in a grant whose transfer
//! has not completed.

use grant_table::FramePool;
use grant_table::{DomId, FrameNumber, GrantError, GrantRef, GrantTable, TransferState};

use crate::error::BackendFault;

/// Our pool view plus, per frame, the accept-transfer grant it is on offer in.
#[derive(Debug)]
pub(crate) struct FlipPool {
    pool: FramePool,
    offered_in: Vec<Option<GrantRef>>,
    /// The backend, whom the offers name.
    backend: DomId,
}

impl FlipPool {
    pub(crate) fn new(pool: FramePool, backend: DomId) -> Self {
        let n = pool.frames() as usize;
        Self {
            pool,
            offered_in: vec![None; n],
            backend,
        }
    }

    /// Frames we own and have not offered.
    pub(crate) fn owned_frames(&self) -> Vec<FrameNumber> {
        self.pool.owned_frames().collect()
    }

    /// Offers `f` to the backend in a new accept-transfer grant.
    pub(crate) fn offer(
        &mut self,
        f: FrameNumber,
        table: &mut GrantTable,
    ) -> Result<GrantRef, GrantError> {
        self.pool.give(f)?;
        let gref = match table.grant_transfer(self.backend, f) {
            Ok(g) => g,
            Err(e) => {
                // Not offered after all: still ours.
                self.pool.receive(f)?;
                return Err(e);
            }
        };
        self.offered_in[f.0 as usize] = Some(gref);
        Ok(gref)
    }

    /// The transfer into `gref` completed (and the grant was ended): `received` is ours now,
    /// `offered` (the frame of that grant) the backend's.
    ///
    /// # Errors
    /// [`BackendFault::FlippedFrame`] if `received` is outside the pool, ours, the frame of
    /// this very grant, or on offer in a grant whose transfer has not completed: the backend
    /// cannot own it. (A frame on offer in another grant whose transfer did complete is the
    /// backend's: with several queues, that grant's response may simply not be read yet.)
    pub(crate) fn complete(
        &mut self,
        received: FrameNumber,
        offered: FrameNumber,
        gref: GrantRef,
        table: &GrantTable,
    ) -> Result<(), BackendFault> {
        let bad = BackendFault::FlippedFrame(received.0);
        match self.offered_in.get(received.0 as usize) {
            None => return Err(bad),
            Some(Some(g)) => {
                let completed = matches!(table.transfer_state(*g), Ok(TransferState::Completed(_)));
                if *g == gref || !completed {
                    return Err(bad);
                }
                // That offer is the backend's now; its grant is settled later.
                self.offered_in[received.0 as usize] = None;
            }
            Some(None) => {}
        }
        self.pool.receive(received).map_err(|_| bad)?;
        if let Some(slot) = self.offered_in.get_mut(offered.0 as usize)
            && *slot == Some(gref)
        {
            *slot = None;
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
