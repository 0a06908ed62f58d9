//! How long ago netback wrote each of a guest's receive buffers, counted in buffers written
//! since: the test for whether asking for a buffer's lines ahead of the copy pays, and for
//! which copy to make into it.
//!
//! A hint that reads a buffer's lines ahead of the copy into it (`RxQueue::prefetch_ahead`)
//! gains 1.10x at rx 1500 B when the frontend read that buffer long ago: its lines have left
//! the frontend's cache, and arrive here unshared. When the frontend read it a moment ago
//! (one buffer per ring slot, as Linux netfront and a netfront with `rx_buffers` 256 post
//! them, or the buffers of a large frame posted again at once), the hint takes the lines
//! from under the frontend while it may still be reading them, and the same frames ran at
//! 0.46-0.55x (BENCHMARKS.md, "Read ahead only into buffers left alone"). Into such a buffer
//! the CPU's string copy, which takes the lines over whole, is the faster copy on Intel
//! (`DestLines::PeerCached`; BENCHMARKS.md, "The string copy for buffers posted again at
//! once"). netback cannot see the frontend's cache, but it can see how recently it wrote a
//! buffer itself: a buffer written again within two rings' worth of buffers was posted
//! again at once, and its lines are likely still where the frontend read them.

use grant_table::DestLines;

/// The age, in rings' worth of buffers written since, from which a buffer counts as left
/// alone. A frontend that posts its buffers in turn with more buffers than slots (netfront's
/// default is four rings' worth) has each written again four rings later; one that posts
/// each buffer again as soon as it has read it, about one ring later.
const LEFT_ALONE_RINGS: u32 = 2;

/// For each grant reference a guest's receive requests used, when netback last wrote its
/// buffer, on a clock that counts buffers written, and whether the buffer had then been
/// posted again at once.
#[derive(Debug)]
pub(crate) struct BufferAges {
    /// Twice the buffers written so far (wrapping: after 2^31 a stale entry may look recent,
    /// which only withholds one hint). Even, so that bit 0 of each entry of `written_at` is
    /// free for that entry's own flag.
    clock: u32,
    /// For each reference, `clock` when its buffer was last written, with bit 0 set if it
    /// had then been written within two rings before ([`recycled`](Self::recycled)). Grown
    /// to the largest reference written (never beyond the guest's grant table, whose
    /// entries netback maps anyway: 4 bytes here for 8 there).
    written_at: Vec<u32>,
    /// Twice the age from which a buffer counts as left alone.
    left_alone: u32,
}

impl BufferAges {
    /// Ages for a ring of `ring_slots` slots.
    pub(crate) fn new(ring_slots: u32) -> Self {
        Self {
            clock: 0,
            written_at: Vec::new(),
            left_alone: ring_slots
                .saturating_mul(LEFT_ALONE_RINGS)
                .saturating_mul(2),
        }
    }

    /// Records that the buffer of `gref` was written now (or is about to be), and returns
    /// whether it had been left alone until then: at least two rings' worth of other
    /// buffers written since it last was, or never written. A reference from `entries` on
    /// (the guest's table size) is none: it is not recorded, so that a guest's request
    /// cannot make this grow beyond its own table, and counts as left alone.
    #[inline(always)]
    pub(crate) fn wrote(&mut self, gref: u32, entries: u32) -> bool {
        if gref >= entries {
            return true;
        }
        let i = gref as usize;
        if i >= self.written_at.len() {
            // Never written: old enough.
            let never = self.clock.wrapping_sub(self.left_alone).wrapping_sub(2);
            self.written_at.resize(i + 1, never);
        }
        // `clock - t` counts the write at `t` itself too.
        let alone = self.clock.wrapping_sub(self.written_at[i] & !1) > self.left_alone;
        self.written_at[i] = self.clock | u32::from(!alone);
        self.clock = self.clock.wrapping_add(2);
        alone
    }

    /// Whether, when the buffer of `gref` was last written, it had been written within two
    /// rings' worth of buffers before: a frontend that posts each buffer again as soon as it
    /// has read it, whose lines are likely still in its cache. False for a buffer never
    /// written.
    #[inline(always)]
    pub(crate) fn recycled(&self, gref: u32) -> bool {
        self.written_at
            .get(gref as usize)
            .is_some_and(|&t| t & 1 != 0)
    }

    /// The copy hint for a frame going into the buffer of `gref`: the frontend's cache
    /// likely holds its lines if the buffer was [`recycled`](Self::recycled).
    #[inline(always)]
    pub(crate) fn dest_lines(&self, gref: u32) -> DestLines {
        if self.recycled(gref) {
            DestLines::PeerCached
        } else {
            DestLines::Unknown
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{BufferAges, DestLines};

    /// The guest's table size in these tests.
    const E: u32 = 4096;

    /// Writes `n` buffers other than those the tests look at.
    fn others(ages: &mut BufferAges, n: u32) {
        for g in 0..n {
            ages.wrote(1000 + g % 2000, E);
        }
    }

    #[test]
    fn a_buffer_is_left_alone_after_two_rings_of_other_writes() {
        let mut ages = BufferAges::new(256);
        assert!(ages.wrote(7, E), "never written");
        assert!(!ages.recycled(7), "a first write is of a buffer left alone");
        others(&mut ages, 511);
        assert!(!ages.wrote(7, E), "511 buffers between");
        assert!(ages.recycled(7));
        assert_eq!(ages.dest_lines(7), DestLines::PeerCached);
        others(&mut ages, 512);
        assert!(ages.wrote(7, E), "512 buffers between");
        assert!(!ages.recycled(7));
        assert_eq!(ages.dest_lines(7), DestLines::Unknown);
        // References written later than a small one start old.
        assert!(ages.wrote(3, E));
        assert!(!ages.wrote(3, E));
        assert!(ages.recycled(3));
        assert!(!ages.recycled(4), "never written");
        assert!(!ages.recycled(E + 1), "beyond what was written");
    }

    #[test]
    fn references_beyond_the_table_are_not_recorded() {
        let mut ages = BufferAges::new(256);
        assert!(ages.wrote(E, E));
        assert!(ages.wrote(u32::MAX, E));
        assert!(ages.wrote(E, E), "still left alone");
        assert!(ages.written_at.is_empty(), "nothing grew");
        assert!(!ages.recycled(E));
    }

    #[test]
    fn the_clock_wraps() {
        let mut ages = BufferAges::new(256);
        ages.clock = 0u32.wrapping_sub(20);
        ages.wrote(5, E);
        others(&mut ages, 20);
        assert!(!ages.wrote(5, E), "20 buffers between, across the wrap");
        others(&mut ages, 600);
        assert!(ages.wrote(5, E));
        assert!(!ages.recycled(5));
    }
}
