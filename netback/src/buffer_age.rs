//! How long ago netback wrote each of a guest's receive buffers, counted in buffers written
//! since: the test for how to ask for a buffer's lines ahead of the copy into it.
//!
//! A hint that reads a buffer's lines ahead of the copy (`RxQueue::prefetch_ahead`) gains
//! 1.10x at rx 1500 B when the frontend read that buffer long ago: its lines have left the
//! frontend's cache, and arrive here unshared. When the frontend read it a moment ago (one
//! buffer per ring slot, as Linux netfront and a netfront with `rx_buffers` 256 post them,
//! or the buffers of a large frame posted again at once), the read brings them over shared
//! and the copy's stores must take them over again: 0.46-0.55x. Those lines are asked for
//! to be owned instead (`prefetchw`), which gains 1.3-1.7x up to 1500 B (BENCHMARKS.md,
//! "Buffers posted again at once: owned ahead"). netback cannot see the frontend's cache,
//! but it can see how recently it wrote a buffer itself: a buffer written again within two
//! rings' worth of buffers was posted again at once, and its lines are likely still where
//! the frontend read them.

/// The age, in rings' worth of buffers written since, from which a buffer counts as left
/// alone. A frontend that posts its buffers in turn with more buffers than slots (netfront's
/// default is four rings' worth) has each written again four rings later; one that posts
/// each buffer again as soon as it has read it, about one ring later.
const LEFT_ALONE_RINGS: u32 = 2;

/// For each grant reference a guest's receive requests used, when netback last wrote its
/// buffer, on a clock that counts buffers written.
#[derive(Debug)]
pub(crate) struct BufferAges {
    /// Buffers written so far (wrapping: after 2^32 a stale entry may look recent, which
    /// only withholds one hint).
    clock: u32,
    /// `clock` when each reference's buffer was last written, grown to the largest reference
    /// written (never beyond the guest's grant table, whose entries netback maps anyway:
    /// 4 bytes here for 8 there).
    written_at: Vec<u32>,
    /// The age from which a buffer counts as left alone.
    left_alone: u32,
}

impl BufferAges {
    /// Ages for a ring of `ring_slots` slots.
    pub(crate) fn new(ring_slots: u32) -> Self {
        Self {
            clock: 0,
            written_at: Vec::new(),
            left_alone: ring_slots.saturating_mul(LEFT_ALONE_RINGS),
        }
    }

    /// Records that the buffer of `gref` was written now (or is about to be), and returns
    /// whether it had been [left alone](Self::left_alone) until then: one look at the entry
    /// for both. A reference from `entries` on (the guest's table size) is none: it is not
    /// recorded, so that a guest's request cannot make this grow beyond its own table, and
    /// counts as left alone.
    #[inline(always)]
    pub(crate) fn wrote(&mut self, gref: u32, entries: u32) -> bool {
        if gref >= entries {
            return true;
        }
        let i = gref as usize;
        if i >= self.written_at.len() {
            // Never written: old enough.
            let never = self.clock.wrapping_sub(self.left_alone).wrapping_sub(1);
            self.written_at.resize(i + 1, never);
        }
        // `clock - t` counts the write at `t` itself too.
        let alone = self.clock.wrapping_sub(self.written_at[i]) > self.left_alone;
        self.written_at[i] = self.clock;
        self.clock = self.clock.wrapping_add(1);
        alone
    }

    /// Whether at least two rings' worth of other buffers were written after the buffer of
    /// `gref` last was (or it never was). (netback asks [`wrote`](Self::wrote), which
    /// answers the same as it records.)
    #[cfg(test)]
    pub(crate) fn left_alone(&self, gref: u32) -> bool {
        // `clock - t` counts the write at `t` itself too.
        self.written_at
            .get(gref as usize)
            .is_none_or(|&t| self.clock.wrapping_sub(t) > self.left_alone)
    }
}

#[cfg(test)]
mod tests {
    use super::BufferAges;

    /// The guest's table size in these tests.
    const E: u32 = 4096;

    #[test]
    fn a_buffer_is_left_alone_after_two_rings_of_other_writes() {
        let mut ages = BufferAges::new(256);
        assert!(ages.left_alone(7), "never written");
        ages.wrote(7, E);
        assert!(!ages.left_alone(7));
        for g in 0..511 {
            ages.wrote(1000 + g, E);
        }
        assert!(!ages.left_alone(7), "511 buffers since");
        ages.wrote(2000, E);
        assert!(ages.left_alone(7), "512 buffers since");
        // References written later than a small one start old.
        assert!(ages.left_alone(3));
        ages.wrote(3, E);
        assert!(!ages.left_alone(3));
    }

    /// `wrote` answers what `left_alone` said just before it.
    #[test]
    fn wrote_answers_as_left_alone_did() {
        let mut ages = BufferAges::new(4);
        for step in 0..64u32 {
            let gref = (step * 7) % 13;
            let before = ages.left_alone(gref);
            assert_eq!(ages.wrote(gref, E), before, "step {step}");
        }
    }

    #[test]
    fn references_beyond_the_table_are_not_recorded() {
        let mut ages = BufferAges::new(256);
        ages.wrote(E, E);
        ages.wrote(u32::MAX, E);
        assert!(ages.written_at.is_empty(), "nothing grew");
        assert!(ages.left_alone(E));
    }

    #[test]
    fn the_clock_wraps() {
        let mut ages = BufferAges::new(256);
        ages.clock = u32::MAX - 10;
        ages.wrote(5, E);
        for _ in 0..20 {
            ages.wrote(6, E);
        }
        assert!(!ages.left_alone(5), "21 buffers since, across the wrap");
        for _ in 0..600 {
            ages.wrote(6, E);
        }
        assert!(ages.left_alone(5));
    }
}
