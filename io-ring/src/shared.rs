//! What the front and back handles share: the region with its geometry, the publish and
//! final-check barriers, the validation of a peer's producer index, and the draining iterator.

use core::marker::PhantomData;

use bytemuck::Pod;

use crate::error::{PeerError, SetupError};
use crate::layout::{Geometry, HEADER_BYTES, notify_needed, ring_size, slot_bytes};
use crate::sync::{Ordering, fence};
use shared_mem::SharedRegion;

/// A shared ring of `Req`/`Rsp` slots over a region: geometry plus typed slot access.
pub(crate) struct Sring<Req, Rsp> {
    region: SharedRegion,
    geo: Geometry,
    _types: PhantomData<fn() -> (Req, Rsp)>,
}

impl<Req: Pod, Rsp: Pod> Sring<Req, Rsp> {
    pub(crate) fn new(region: SharedRegion) -> Result<Self, SetupError> {
        let slot_bytes = const {
            let s = slot_bytes::<Req, Rsp>();
            assert!(
                s > 0 && s.is_multiple_of(4),
                "ring slots must be a non-zero multiple of 4 bytes"
            );
            s
        };
        let len = region.len();
        let size = ring_size(len, slot_bytes).ok_or(SetupError::TooSmall { len, slot_bytes })?;
        Ok(Self {
            region,
            geo: Geometry { size, slot_bytes },
            _types: PhantomData,
        })
    }
}

impl<Req, Rsp> Sring<Req, Rsp> {
    #[inline(always)]
    pub(crate) fn size(&self) -> u32 {
        self.geo.size
    }

    /// Bytes the header and slots occupy (the rest of the region, if any, is unused).
    pub(crate) fn used_bytes(&self) -> usize {
        self.geo.slot_offset(0) + self.geo.size as usize * self.geo.slot_bytes
    }

    pub(crate) fn region(&self) -> &SharedRegion {
        &self.region
    }

    /// Loads a header index. In bounds by construction: the region holds at least the header.
    #[inline(always)]
    pub(crate) fn load(&self, offset: usize, order: Ordering) -> u32 {
        self.region
            .load_u32(offset, order)
            .expect("header index inside the region")
    }

    /// Stores a header index. In bounds by construction.
    #[inline(always)]
    pub(crate) fn store(&self, offset: usize, value: u32, order: Ordering) {
        self.region
            .store_u32(offset, value, order)
            .expect("header index inside the region")
    }

    /// Bytes per slot, from the types: the geometry's `slot_bytes` as a constant, so a slot's
    /// offset and its padding compile to fixed stores (callgrind: a tx response took about
    /// 40 instructions with a run-time slot size, most of them the padding loop).
    const SLOT_BYTES: usize = slot_bytes::<Req, Rsp>();

    /// Writes `value` into the slot of ring index `idx`, zeroing the rest of the slot.
    #[inline(always)]
    pub(crate) fn write_slot<T: Pod>(&self, idx: u32, value: &T) {
        debug_assert_eq!(self.geo.slot_bytes, Self::SLOT_BYTES);
        let offset = HEADER_BYTES + (idx & (self.geo.size - 1)) as usize * Self::SLOT_BYTES;
        self.region
            .write_padded(offset, value, Self::SLOT_BYTES)
            .expect("slot inside the region by construction");
    }

    /// Publishes a producer index and says whether the consumer asked to be notified
    /// (`RING_PUSH_{REQUESTS,RESPONSES}_AND_CHECK_NOTIFY`).
    #[inline]
    pub(crate) fn publish(&self, prod_at: usize, event_at: usize, old: u32, new: u32) -> bool {
        // Release: every slot written before this store is visible to a consumer whose Acquire
        // load of the index reads `new` (ring.h's `xen_wmb()` before the index write).
        self.store(prod_at, new, Ordering::Release);
        // Full barrier (ring.h's `xen_mb()`): orders the index store above before the event
        // load below (StoreLoad), which Release/Acquire cannot. It pairs with the SeqCst fence
        // in `arm_event`: either the consumer's re-check sees `new`, or this load sees the
        // consumer's new event index and we notify. Without it both can miss (lost wakeup).
        fence(Ordering::SeqCst);
        // Relaxed: the event index is a plain number; the fence above orders this load.
        let event = self.load(event_at, Ordering::Relaxed);
        notify_needed(old, new, event)
    }

    /// Publishes a producer index without the notification check (`RING_PUSH_*`).
    #[inline]
    pub(crate) fn publish_unchecked(&self, prod_at: usize, new: u32) {
        // Release: as in `publish`, slots before index. No full barrier: nothing is loaded
        // after this store, so there is no StoreLoad order to enforce.
        self.store(prod_at, new, Ordering::Release);
    }

    /// Asks the producer to notify when its index passes `event`, then orders that request
    /// before the caller's re-check (the first half of `RING_FINAL_CHECK_FOR_*`).
    #[inline]
    pub(crate) fn arm_event(&self, event_at: usize, event: u32) {
        // Relaxed: ordered before the caller's re-check of the producer index by the fence.
        self.store(event_at, event, Ordering::Relaxed);
        // Full barrier (ring.h's `xen_mb()` in the final check): the event store must be
        // visible before we re-read the producer index (StoreLoad). Pairs with the SeqCst fence
        // in `publish`; see there.
        fence(Ordering::SeqCst);
    }

    /// A copy of the entry at ring index `idx` (once; the copy is ours).
    #[inline(always)]
    pub(crate) fn read_entry<T: Pod>(&self, idx: u32) -> T {
        read_slot(&self.region, self.geo, idx)
    }

    /// Iterator over the next `count` entries from `*cons`, advancing `*cons` as it goes.
    pub(crate) fn entries<'a, T: Pod>(&'a self, cons: &'a mut u32, count: u32) -> Entries<'a, T> {
        Entries {
            region: &self.region,
            geo: self.geo,
            cons,
            remaining: count,
            _t: PhantomData,
        }
    }
}

/// Copies the entry at ring index `idx` out of its slot (once; the copy is ours).
#[inline(always)]
fn read_slot<T: Pod>(region: &SharedRegion, geo: Geometry, idx: u32) -> T {
    region
        .read(geo.slot_offset(idx))
        .expect("slot inside the region by construction")
}

/// Checks a producer index the peer published.
///
/// `base` is the oldest entry whose slot is not yet free again (back: `rsp_prod_pvt`; front:
/// `rsp_cons`), `seen` the producer index validated last time, and `limit` how many entries
/// a correct peer can have produced past `base`. Returns how far `prod` is past `base`.
#[inline(always)]
pub(crate) fn check_peer_prod(
    prod: u32,
    base: u32,
    seen: u32,
    limit: u32,
) -> Result<u32, PeerError> {
    let ahead = prod.wrapping_sub(base);
    if ahead > limit {
        return Err(PeerError::ProducerOverflow {
            prod,
            base,
            ahead,
            limit,
        });
    }
    if ahead < seen.wrapping_sub(base) {
        return Err(PeerError::ProducerWentBackwards { seen, prod });
    }
    Ok(ahead)
}

/// The entries a consumer drains from the ring, each copied out of its slot exactly once.
///
/// Returned by [`BackRing::requests`](crate::BackRing::requests) and
/// [`FrontRing::responses`](crate::FrontRing::responses). Each `next()` consumes one entry;
/// entries not iterated stay on the ring for the next call.
pub struct Entries<'a, T> {
    region: &'a SharedRegion,
    geo: Geometry,
    cons: &'a mut u32,
    remaining: u32,
    _t: PhantomData<fn() -> T>,
}

impl<T> core::fmt::Debug for Entries<'_, T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Entries")
            .field("cons", &*self.cons)
            .field("remaining", &self.remaining)
            .finish()
    }
}

impl<T: Pod> Iterator for Entries<'_, T> {
    type Item = T;

    #[inline]
    fn next(&mut self) -> Option<T> {
        if self.remaining == 0 {
            return None;
        }
        let entry = read_slot(self.region, self.geo, *self.cons);
        *self.cons = self.cons.wrapping_add(1);
        self.remaining -= 1;
        Some(entry)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining as usize, Some(self.remaining as usize))
    }
}

impl<T: Pod> ExactSizeIterator for Entries<'_, T> {}
impl<T: Pod> core::iter::FusedIterator for Entries<'_, T> {}
