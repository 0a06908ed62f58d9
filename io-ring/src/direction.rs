//! One direction of the ring, from each end: the producer's and the consumer's private state
//! and the protocol steps on them. The frontend produces requests and consumes responses; the
//! backend consumes requests and produces responses. Both handles are built from these halves,
//! so the rules of `ring.h` are written once.

use bytemuck::Pod;

use crate::error::PeerError;
use crate::layout::{REQ_EVENT, REQ_PROD, RSP_EVENT, RSP_PROD};
use crate::shared::{Sring, check_peer_prod};
use crate::sync::Ordering;

/// The header words of one direction: its producer index and its event index.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Direction {
    prod: usize,
    event: usize,
}

/// Requests: `req_prod` and `req_event`.
pub(crate) const REQUESTS: Direction = Direction {
    prod: REQ_PROD,
    event: REQ_EVENT,
};
/// Responses: `rsp_prod` and `rsp_event`.
pub(crate) const RESPONSES: Direction = Direction {
    prod: RSP_PROD,
    event: RSP_EVENT,
};

/// The producing end's private indices.
#[derive(Debug)]
pub(crate) struct Producer {
    /// Next index to fill (`req_prod_pvt` / `rsp_prod_pvt`).
    pub(crate) pvt: u32,
    /// The producer index last published: we are its only legitimate writer, so we never read
    /// it back from shared memory.
    pub(crate) published: u32,
    /// The producer index at the last publish that checked for a notification. The notify rule
    /// covers everything since, so unchecked publishes in between lose no wakeup.
    checked: u32,
}

impl Producer {
    pub(crate) fn new(start: u32) -> Self {
        Self {
            pvt: start,
            published: start,
            checked: start,
        }
    }

    /// Writes `value` into the slot at `pvt` (the rest of the slot zeroed) and advances `pvt`;
    /// the caller has checked there is room.
    #[inline(always)]
    pub(crate) fn push<Req, Rsp, T: Pod>(&mut self, ring: &Sring<Req, Rsp>, value: &T) {
        ring.write_slot(self.pvt, value);
        self.pvt = self.pvt.wrapping_add(1);
    }

    /// Publishes up to `pvt` and says whether the consumer asked to be notified
    /// (`RING_PUSH_*_AND_CHECK_NOTIFY`, with `old` = the last checked publish).
    #[inline]
    pub(crate) fn publish<Req, Rsp>(&mut self, ring: &Sring<Req, Rsp>, dir: Direction) -> bool {
        let (old, new) = (self.checked, self.pvt);
        if old == new {
            return false;
        }
        self.published = new;
        self.checked = new;
        ring.publish(dir.prod, dir.event, old, new)
    }

    /// Publishes up to `pvt` without the notification check (`RING_PUSH_*`).
    #[inline]
    pub(crate) fn publish_no_notify<Req, Rsp>(&mut self, ring: &Sring<Req, Rsp>, dir: Direction) {
        if self.published != self.pvt {
            self.published = self.pvt;
            ring.publish_unchecked(dir.prod, self.pvt);
        }
    }
}

/// The consuming end's private indices.
#[derive(Debug)]
pub(crate) struct Consumer {
    /// Next index to consume (`req_cons` / `rsp_cons`).
    pub(crate) cons: u32,
    /// The peer's producer index as last read and validated.
    seen: u32,
}

impl Consumer {
    pub(crate) fn new(start: u32) -> Self {
        Self {
            cons: start,
            seen: start,
        }
    }

    /// Entries published as of the last validated read, not consumed yet.
    #[inline(always)]
    pub(crate) fn known(&self) -> u32 {
        self.seen.wrapping_sub(self.cons)
    }

    /// Reads the peer's producer index once and validates it: at most `limit` entries past
    /// `base` (the oldest entry whose slot is not free again), and never backwards. Returns the
    /// entries now known.
    #[inline]
    pub(crate) fn refresh<Req, Rsp>(
        &mut self,
        ring: &Sring<Req, Rsp>,
        dir: Direction,
        base: u32,
        limit: u32,
    ) -> Result<u32, PeerError> {
        // Acquire: pairs with the peer's Release store of its producer index, so the slots read
        // after this are the ones it wrote before publishing (ring.h's `rmb`).
        let prod = ring.load(dir.prod, Ordering::Acquire);
        check_peer_prod(prod, base, self.seen, limit)?;
        self.seen = prod;
        Ok(self.known())
    }

    /// Asks the producer to notify once its index passes `cons + ahead`, ordered before the
    /// caller's re-check (the first half of `RING_FINAL_CHECK_FOR_*`).
    #[inline]
    pub(crate) fn arm<Req, Rsp>(&self, ring: &Sring<Req, Rsp>, dir: Direction, ahead: u32) {
        ring.arm_event(dir.event, self.cons.wrapping_add(ahead));
    }
}
