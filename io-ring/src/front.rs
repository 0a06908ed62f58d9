//! The frontend's handle: initialises the ring, produces requests, consumes responses.

use bytemuck::Pod;
use crossbeam_utils::CachePadded;

use crate::direction::{Consumer, Producer, REQUESTS, RESPONSES};
use crate::error::{PeerError, RingError, SetupError};
use crate::layout::{REQ_EVENT, REQ_PROD, RSP_EVENT, RSP_PROD};
use crate::shared::{Entries, Sring};
use crate::sync::Ordering;
use shared_mem::SharedRegion;

/// The frontend (guest) side of a shared ring: it owns `req_prod` and `rsp_event`.
///
/// Single owner: every operation takes `&mut self`. Requests are pushed privately with
/// [`push_request`](Self::push_request) and made visible in one batch by
/// [`publish_requests`](Self::publish_requests), which also says whether the backend must be
/// notified. Responses are drained with [`responses`](Self::responses), which reads `rsp_prod`
/// once and validates it. A backend that publishes an impossible `rsp_prod` breaks the ring for
/// good: every later call returns the same [`PeerError`].
pub struct FrontRing<Req, Rsp> {
    ring: Sring<Req, Rsp>,
    // Private indices on their own cache line(s), away from whatever the allocator puts next
    // to this handle (for example the back handle of an in-process pair).
    st: CachePadded<FrontState>,
}

#[derive(Debug)]
struct FrontState {
    req: Producer,
    rsp: Consumer,
    broken: Option<PeerError>,
}

impl<Req, Rsp> core::fmt::Debug for FrontRing<Req, Rsp> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FrontRing")
            .field("size", &self.ring.size())
            .field("state", &*self.st)
            .finish()
    }
}

impl<Req: Pod, Rsp: Pod> FrontRing<Req, Rsp> {
    /// Initialises the shared ring in `region` and returns the front handle
    /// (`SHARED_RING_INIT` + `FRONT_RING_INIT`): indices 0, event indices 1, header padding and
    /// every slot zeroed.
    ///
    /// # Errors
    /// [`SetupError::TooSmall`] if the region cannot hold the header and one slot.
    pub fn init(region: SharedRegion) -> Result<Self, SetupError> {
        Self::init_at(region, 0)
    }

    /// Like [`init`](Self::init), with every index starting at `start` instead of 0.
    ///
    /// The protocol allows any start (a backend attaches to whatever `rsp_prod` holds); tests
    /// use starts near 2^32 to exercise index wrap-around.
    ///
    /// # Errors
    /// [`SetupError::TooSmall`] if the region cannot hold the header and one slot.
    pub fn init_at(region: SharedRegion, start: u32) -> Result<Self, SetupError> {
        let ring = Sring::new(region)?;
        // Zero the header padding and every slot: the peer must see nothing stale (XSA-403).
        ring.region()
            .zero(0, ring.used_bytes())
            .expect("ring fits in its region by construction");
        ring.store(REQ_PROD, start, Ordering::Relaxed);
        ring.store(RSP_PROD, start, Ordering::Relaxed);
        ring.store(REQ_EVENT, start.wrapping_add(1), Ordering::Relaxed);
        // Release: a backend that attaches after reading this store sees the whole
        // initialised page. (Handing the page to the backend normally synchronises anyway.)
        ring.store(RSP_EVENT, start.wrapping_add(1), Ordering::Release);
        let st = FrontState {
            req: Producer::new(start),
            rsp: Consumer::new(start),
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

    /// The backend's fault, if it broke the ring.
    pub fn broken(&self) -> Option<PeerError> {
        self.st.broken
    }

    /// Requests that can be pushed before the ring is full (`RING_FREE_REQUESTS`).
    pub fn free_requests(&self) -> u32 {
        self.size() - self.outstanding()
    }

    /// Requests pushed (published or not) whose responses have not been consumed yet.
    pub fn outstanding(&self) -> u32 {
        self.st.req.pvt.wrapping_sub(self.st.rsp.cons)
    }

    /// Writes `req` into the next free slot. Not visible to the backend until
    /// [`publish_requests`](Self::publish_requests).
    ///
    /// # Errors
    /// [`RingError::Full`] if no slot is free; [`RingError::Peer`] if the ring is broken.
    #[inline(always)]
    pub fn push_request(&mut self, req: &Req) -> Result<(), RingError> {
        if let Some(e) = self.st.broken {
            return Err(e.into());
        }
        if self.free_requests() == 0 {
            return Err(RingError::Full);
        }
        self.st.req.push(&self.ring, req);
        Ok(())
    }

    /// Publishes every pushed request with one index store and says whether the backend asked
    /// to be notified (`RING_PUSH_REQUESTS_AND_CHECK_NOTIFY`). Send the event only if `true`.
    ///
    /// The decision covers everything published since the last checked publish, including
    /// batches published with [`publish_requests_no_notify`](Self::publish_requests_no_notify).
    #[must_use = "notify the backend when this returns true, or it may sleep forever"]
    #[inline]
    pub fn publish_requests(&mut self) -> bool {
        self.st.req.publish(&self.ring, REQUESTS)
    }

    /// Publishes every pushed request with one `Release` index store and no notification
    /// check (`RING_PUSH_REQUESTS`): no full barrier, so it costs no more than an SPSC queue's
    /// publish.
    ///
    /// For a backend that busy-polls this ring. A backend that sleeps after its final check
    /// sees these requests when it next looks, or is notified at the next
    /// [`publish_requests`](Self::publish_requests), which makes up for every unchecked
    /// publish before it: a wakeup can be late this way, never lost.
    #[inline]
    pub fn publish_requests_no_notify(&mut self) {
        self.st.req.publish_no_notify(&self.ring, REQUESTS);
    }

    /// Responses the backend has published and we have not consumed, after reading `rsp_prod`
    /// afresh (once, `Acquire`) and validating it.
    ///
    /// # Errors
    /// [`RingError::Peer`] if `rsp_prod` claims more responses than requests published or
    /// moved backwards; the ring is then broken.
    pub fn unconsumed_responses(&mut self) -> Result<u32, RingError> {
        if let Some(e) = self.st.broken {
            return Err(e.into());
        }
        let st = &mut *self.st;
        // A correct backend answers only requests we published.
        let limit = st.req.published.wrapping_sub(st.rsp.cons);
        st.rsp
            .refresh(&self.ring, RESPONSES, st.rsp.cons, limit)
            .map_err(|e| {
                st.broken = Some(e);
                e.into()
            })
    }

    /// Drains the published responses, each copied out of its slot once as the iterator
    /// advances.
    ///
    /// `rsp_prod` is read (once, `Acquire`, validated) only when the responses known from the
    /// previous read are all consumed, as an SPSC queue caches its peer's index. A bad
    /// `rsp_prod` is reported by the first call that reads it, never acted on.
    /// [`unconsumed_responses`](Self::unconsumed_responses) and the final checks always read
    /// afresh.
    ///
    /// # Errors
    /// As [`unconsumed_responses`](Self::unconsumed_responses).
    #[inline]
    pub fn responses(&mut self) -> Result<Entries<'_, Rsp>, RingError> {
        let count = match self.st.rsp.known() {
            known if known > 0 && self.st.broken.is_none() => known,
            _ => self.unconsumed_responses()?,
        };
        Ok(self.ring.entries(&mut self.st.rsp.cons, count))
    }

    /// Before sleeping: asks to be notified at the next response and re-checks
    /// (`RING_FINAL_CHECK_FOR_RESPONSES`). `Ok(true)` means responses are waiting: drain them
    /// instead of sleeping.
    ///
    /// # Errors
    /// As [`unconsumed_responses`](Self::unconsumed_responses).
    pub fn final_check_responses(&mut self) -> Result<bool, RingError> {
        self.final_check_responses_ahead(1)
    }

    /// Like [`final_check_responses`](Self::final_check_responses), but asks to be woken only
    /// after `ahead` more responses (clamped to the requests outstanding, at least 1), to batch
    /// wakeups, as Linux netfront's tx completion does with half its outstanding requests.
    ///
    /// # Errors
    /// As [`unconsumed_responses`](Self::unconsumed_responses).
    pub fn final_check_responses_ahead(&mut self, ahead: u32) -> Result<bool, RingError> {
        if self.unconsumed_responses()? > 0 {
            return Ok(true);
        }
        let published = self.st.req.published.wrapping_sub(self.st.rsp.cons);
        self.st
            .rsp
            .arm(&self.ring, RESPONSES, ahead.min(published).max(1));
        Ok(self.unconsumed_responses()? > 0)
    }
}
