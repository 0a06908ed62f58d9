//! The backend's handle: attaches to a ring the frontend initialised, consumes requests,
//! produces responses.

use bytemuck::Pod;
use crossbeam_utils::CachePadded;

use crate::direction::{Consumer, Producer, REQUESTS, RESPONSES};
use crate::error::{PeerError, RingError, SetupError};
use crate::layout::{REQ_PROD, RSP_PROD};
use crate::shared::{Entries, Sring, check_peer_prod};
use crate::sync::Ordering;
use shared_mem::SharedRegion;

/// The backend (driver domain) side of a shared ring: it owns `rsp_prod` and `req_event`.
///
/// Single owner: every operation takes `&mut self`. The frontend is untrusted: `req_prod` is
/// read once per batch and validated (`RING_REQUEST_PROD_OVERFLOW`, and never backwards), the
/// unconsumed count is clamped so the backend can never consume more than a ring's worth of
/// unanswered requests (`RING_REQUEST_CONS_OVERFLOW` cannot happen), and every request is
/// copied out of its slot exactly once. A frontend fault breaks the ring for good: every later
/// call returns the same [`PeerError`].
pub struct BackRing<Req, Rsp> {
    ring: Sring<Req, Rsp>,
    // Private indices on their own cache line(s), away from the front handle's.
    st: CachePadded<BackState>,
}

#[derive(Debug)]
struct BackState {
    req: Consumer,
    rsp: Producer,
    broken: Option<PeerError>,
}

impl<Req, Rsp> core::fmt::Debug for BackRing<Req, Rsp> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BackRing")
            .field("size", &self.ring.size())
            .field("state", &*self.st)
            .finish()
    }
}

impl<Req: Pod, Rsp: Pod> BackRing<Req, Rsp> {
    /// Attaches to the ring the frontend initialised in `region` (`BACK_RING_ATTACH` at the
    /// shared `rsp_prod`). Nothing shared is written: requests already posted stay posted.
    ///
    /// # Errors
    /// [`SetupError::TooSmall`] if the region cannot hold the header and one slot;
    /// [`SetupError::Peer`] if `req_prod - rsp_prod` exceeds the ring size.
    pub fn attach(region: SharedRegion) -> Result<Self, SetupError> {
        let ring = Sring::<Req, Rsp>::new(region)?;
        // Acquire on both: pairs with the frontend's Release stores, so the slots of any
        // requests already posted are visible to us.
        let rsp_prod = ring.load(RSP_PROD, Ordering::Acquire);
        let req_prod = ring.load(REQ_PROD, Ordering::Acquire);
        check_peer_prod(req_prod, rsp_prod, rsp_prod, ring.size())?;
        let st = BackState {
            req: Consumer::new(rsp_prod),
            rsp: Producer::new(rsp_prod),
            broken: None,
        };
        Ok(Self {
            ring,
            st: CachePadded::new(st),
        })
    }

    /// Number of entries in the ring (a power of two).
    pub fn size(&self) -> u32 {
        self.ring.size()
    }

    /// The shared memory this ring lives in.
    pub fn region(&self) -> &SharedRegion {
        self.ring.region()
    }

    /// The frontend's fault, if it broke the ring.
    pub fn broken(&self) -> Option<PeerError> {
        self.st.broken
    }

    /// Requests consumed but not answered yet.
    pub fn unanswered(&self) -> u32 {
        self.st.req.cons.wrapping_sub(self.st.rsp.pvt)
    }

    /// Requests the frontend has published and we have not consumed, after reading `req_prod`
    /// afresh (once, `Acquire`) and validating it; clamped as `RING_HAS_UNCONSUMED_REQUESTS`
    /// does.
    ///
    /// # Errors
    /// [`RingError::Peer`] if `req_prod` is more than a ring ahead of the oldest unanswered
    /// request or moved backwards; the ring is then broken.
    pub fn unconsumed_requests(&mut self) -> Result<u32, RingError> {
        if let Some(e) = self.st.broken {
            return Err(e.into());
        }
        let size = self.ring.size();
        let st = &mut *self.st;
        match st.req.refresh(&self.ring, REQUESTS, st.rsp.pvt, size) {
            // Validation already bounds this by the room left; the clamp states the rule.
            Ok(published) => Ok(published.min(size - st.req.cons.wrapping_sub(st.rsp.pvt))),
            Err(e) => {
                st.broken = Some(e);
                Err(e.into())
            }
        }
    }

    /// Drains the published requests, each copied out of its slot once as the iterator
    /// advances.
    ///
    /// `req_prod` is read (once, `Acquire`, validated) only when the requests known from the
    /// previous read are all consumed. While a backlog is known the frontend's index is left
    /// alone, as an SPSC queue caches its peer's index: on the shared header's cache line, that
    /// read is the costliest step of a small batch. A bad `req_prod` is therefore reported by
    /// the first call that reads it, never acted on: only entries that a validated read
    /// published are consumed. [`unconsumed_requests`](Self::unconsumed_requests) and the final
    /// checks always read afresh.
    ///
    /// # Errors
    /// As [`unconsumed_requests`](Self::unconsumed_requests).
    #[inline]
    pub fn requests(&mut self) -> Result<Entries<'_, Req>, RingError> {
        let count = match self.st.req.known() {
            known if known > 0 && self.st.broken.is_none() => known,
            _ => self.unconsumed_requests()?,
        };
        Ok(self.ring.entries(&mut self.st.req.cons, count))
    }

    /// A copy of the request `ahead` places after the next one to consume, if the last look at
    /// `req_prod` ([`requests`](Self::requests), [`unconsumed_requests`](Self::unconsumed_requests))
    /// already counted it; nothing is consumed and `req_prod` is not read again. For hints
    /// about work to come (netback asks for the lines of the buffer a frame will go to a few
    /// frames ahead): the copy is the frontend's to change until it is consumed, so nothing
    /// may rely on it.
    #[inline]
    pub fn peek_request(&self, ahead: u32) -> Option<Req> {
        (self.st.broken.is_none() && ahead < self.st.req.known())
            .then(|| self.ring.read_entry(self.st.req.cons.wrapping_add(ahead)))
    }

    /// Writes `rsp` as the answer to the oldest unanswered request, into that request's slot,
    /// zeroing the rest of the slot. Not visible until
    /// [`publish_responses`](Self::publish_responses).
    ///
    /// # Errors
    /// [`RingError::NoRequestToAnswer`] if every consumed request is answered already;
    /// [`RingError::Peer`] if the ring is broken.
    #[inline(always)]
    pub fn push_response(&mut self, rsp: &Rsp) -> Result<(), RingError> {
        if let Some(e) = self.st.broken {
            return Err(e.into());
        }
        if self.unanswered() == 0 {
            return Err(RingError::NoRequestToAnswer);
        }
        self.st.rsp.push(&self.ring, rsp);
        Ok(())
    }

    /// Publishes every pushed response with one index store and says whether the frontend
    /// asked to be notified (`RING_PUSH_RESPONSES_AND_CHECK_NOTIFY`). Send the event only if
    /// `true`.
    ///
    /// The decision covers everything published since the last checked publish, including
    /// batches published with [`publish_responses_no_notify`](Self::publish_responses_no_notify).
    #[must_use = "notify the frontend when this returns true, or it may sleep forever"]
    #[inline]
    pub fn publish_responses(&mut self) -> bool {
        self.st.rsp.publish(&self.ring, RESPONSES)
    }

    /// Publishes every pushed response with one `Release` index store and no notification
    /// check (`RING_PUSH_RESPONSES`): no full barrier, so it costs no more than an SPSC
    /// queue's publish.
    ///
    /// For a frontend that busy-polls this ring. A frontend that sleeps after its final check
    /// sees these responses when it next looks, or is notified at the next
    /// [`publish_responses`](Self::publish_responses), which makes up for every unchecked
    /// publish before it: a wakeup can be late this way, never lost.
    #[inline]
    pub fn publish_responses_no_notify(&mut self) {
        self.st.rsp.publish_no_notify(&self.ring, RESPONSES);
    }

    /// Before sleeping: asks to be notified at the next request and re-checks
    /// (`RING_FINAL_CHECK_FOR_REQUESTS`). `Ok(true)` means requests are waiting: drain them
    /// instead of sleeping.
    ///
    /// # Errors
    /// As [`unconsumed_requests`](Self::unconsumed_requests).
    pub fn final_check_requests(&mut self) -> Result<bool, RingError> {
        self.final_check_requests_ahead(1)
    }

    /// Before sleeping until at least `needed` requests wait (clamped to 1 ..= ring size):
    /// asks to be notified when the frontend's producer index reaches `req_cons + needed`,
    /// and re-checks. `Ok(true)` means `needed` requests are there now. This is the rx side's
    /// check, where a packet needs several posted buffers at once (netback sets `req_event =
    /// req_cons + needed` the same way); [`final_check_requests_ahead`] would report a
    /// single waiting request as work and never arm.
    ///
    /// [`final_check_requests_ahead`]: Self::final_check_requests_ahead
    ///
    /// # Errors
    /// As [`unconsumed_requests`](Self::unconsumed_requests).
    pub fn final_check_requests_for(&mut self, needed: u32) -> Result<bool, RingError> {
        let needed = needed.clamp(1, self.size());
        if self.unconsumed_requests()? >= needed {
            return Ok(true);
        }
        // Wake me when `req_prod` reaches `req_cons + needed` (the next request that makes
        // the count); `arm` issues the full barrier before the re-check.
        self.st.req.arm(&self.ring, REQUESTS, needed);
        Ok(self.unconsumed_requests()? >= needed)
    }

    /// Like [`final_check_requests`](Self::final_check_requests), but asks to be woken only
    /// after `ahead` more requests (clamped to 1 ..= ring size), to batch wakeups.
    ///
    /// The backend cannot know whether `ahead` more requests will ever come: a frontend that
    /// posts fewer waits until its next notification. Use values above 1 only where the
    /// frontend is known to keep the ring busy.
    ///
    /// # Errors
    /// As [`unconsumed_requests`](Self::unconsumed_requests).
    pub fn final_check_requests_ahead(&mut self, ahead: u32) -> Result<bool, RingError> {
        if self.unconsumed_requests()? > 0 {
            return Ok(true);
        }
        self.st
            .req
            .arm(&self.ring, REQUESTS, ahead.clamp(1, self.size()));
        Ok(self.unconsumed_requests()? > 0)
    }
}
