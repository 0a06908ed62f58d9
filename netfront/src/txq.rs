//! One queue's transmit side: a pool of pre-granted buffers (granted read-only once at
//! connect), frames copied into them and posted as request chains, and completions validated
//! and reclaimed. Every buffer id has a page of its own, for any frame, and half of a page
//! shared with one other id, for a small frame (up to [`SMALL_BUFFER`] bytes, one slot).
//!
//! Why halves: at 1500 B, frames packed two to a page went 1.18x faster through netback's
//! copy than one to a page (`benches/pvnet/ab.sh`; BENCHMARKS.md, "Another machine: copies
//! the peer reads next, two frames to a page"): half as many pages for the same bytes, and
//! each page's two frames read one after the other.

use grant_table::{FRAME_SIZE, GrantRef};
use io_ring::FrontRing;
use netif::Offload;
use netif::wire::{ETH_HLEN, TxRequest, TxResponse, status, tx_flags};
use shared_mem::SharedRegion;
use xenbus::TxFeatures;

use crate::error::{BackendFault, NetfrontError, SendError};
use crate::stats::Stats;

/// A transmit queue's buffers and ring.
#[derive(Debug)]
pub(crate) struct TxQueue {
    pub(crate) ring: FrontRing<TxRequest, TxResponse>,
    /// The frames region and the first buffer page's frame number in it.
    frames: SharedRegion,
    first_frame: u32,
    /// Buffer id -> the grant of its page (granted for the whole connection).
    grefs: Vec<GrantRef>,
    /// The first page of the small buffers (id `i` has half `i % 2` of page `i / 2`).
    small_first: u32,
    /// Buffer id -> the grant of its small buffer's page (one grant per id: two requests in
    /// flight never share one).
    small_grefs: Vec<GrantRef>,
    free: Vec<u16>,
    /// Buffer id -> [`IN_FLIGHT`] (sent, not answered), with [`HEAD`] if it holds a frame's
    /// first slot (its answer counts the frame); 0 when ours. One byte, so sending a frame
    /// stores once for it.
    state: Vec<u8>,
    /// Ring requests pushed and not yet published.
    pub(crate) unpublished: bool,
}

/// Bytes of a small buffer: half a page.
pub(crate) const SMALL_BUFFER: usize = FRAME_SIZE / 2;
/// [`SMALL_BUFFER`] as a request's offset type.
const SMALL_BUFFER_U16: u16 = 2048;
const _: () = assert!(SMALL_BUFFER_U16 as usize == SMALL_BUFFER);

/// A buffer's [`TxQueue::state`] bit: sent and not answered.
const IN_FLIGHT: u8 = 1;
/// A buffer's [`TxQueue::state`] bit: it holds a frame's first slot.
const HEAD: u8 = 2;

/// Buffers taken for one frame and not yet pushed (or given back).
#[derive(Debug)]
pub(crate) struct Taken {
    ids: [u16; netif::MAX_DATA_SLOTS],
    n: usize,
}

impl Taken {
    /// Bytes the taken buffers hold.
    pub(crate) fn capacity(&self) -> usize {
        self.n * FRAME_SIZE
    }
}

impl TxQueue {
    /// A queue over `ring` whose buffers lie in `frames`: id `i`'s own page is frame
    /// `first + i`, granted as `grefs[i]`; its small buffer is half `i % 2` of frame
    /// `small_first + i / 2`, granted as `small_grefs[i]`.
    pub(crate) fn new(
        ring: FrontRing<TxRequest, TxResponse>,
        frames: SharedRegion,
        (first, grefs): (u32, Vec<GrantRef>),
        (small_first, small_grefs): (u32, Vec<GrantRef>),
    ) -> Self {
        let n = grefs.len();
        debug_assert_eq!(small_grefs.len(), n, "a small buffer per id");
        Self {
            ring,
            frames,
            first_frame: first,
            free: (0..u16::try_from(n).unwrap_or(u16::MAX)).rev().collect(),
            state: vec![0; n],
            grefs,
            small_first,
            small_grefs,
            unpublished: false,
        }
    }

    /// Every grant of its buffers (to revoke at close).
    pub(crate) fn grants(&self) -> impl Iterator<Item = GrantRef> + '_ {
        self.grefs.iter().chain(&self.small_grefs).copied()
    }

    /// Buffers sent and not answered yet.
    pub(crate) fn in_flight(&self) -> usize {
        self.state.len() - self.free.len()
    }

    /// Whether a frame of `len` bytes (with a GSO extra if `gso`) fits now.
    pub(crate) fn has_room(&self, len: usize, gso: bool) -> bool {
        let slots = len.div_ceil(FRAME_SIZE).max(1);
        self.free.len() >= slots && self.ring.free_requests() as usize >= slots + usize::from(gso)
    }

    /// Checks a frame of `len` bytes with `meta` against what the backend takes.
    pub(crate) fn check(len: usize, meta: Offload, limits: TxFeatures) -> Result<(), SendError> {
        if len < usize::from(ETH_HLEN) {
            return Err(SendError::TooShort(len));
        }
        let max = if meta.gso.is_some() {
            limits.max_len_gso
        } else {
            limits.max_len
        };
        if len > max {
            return Err(SendError::TooLong { len, max });
        }
        if let Some(g) = meta.gso {
            let allowed = match g.kind {
                netif::GsoKind::TcpV4 => limits.gso_tcpv4,
                netif::GsoKind::TcpV6 => limits.gso_tcpv6,
            };
            if !allowed || g.size == 0 {
                return Err(SendError::OffloadNotNegotiated);
            }
        }
        Ok(())
    }

    /// Takes `pages` free buffers for one frame, with ring room for them and a GSO extra if
    /// `gso`; `None` when there is not enough of either.
    pub(crate) fn take(&mut self, pages: usize, gso: bool) -> Option<Taken> {
        let mut t = Taken {
            ids: [0; netif::MAX_DATA_SLOTS],
            n: 0,
        };
        t.n = self.take_ids(pages, gso, &mut t.ids)?;
        Some(t)
    }

    /// [`take`](Self::take) into the caller's `ids`; returns how many were taken.
    #[inline]
    fn take_ids(
        &mut self,
        pages: usize,
        gso: bool,
        ids: &mut [u16; netif::MAX_DATA_SLOTS],
    ) -> Option<usize> {
        let pages = pages.max(1);
        if pages > netif::MAX_DATA_SLOTS
            || self.free.len() < pages
            || (self.ring.free_requests() as usize) < pages + usize::from(gso)
        {
            return None;
        }
        for id in &mut ids[..pages] {
            *id = self.free.pop().expect("counted");
        }
        Some(pages)
    }

    /// Returns buffers taken and not sent.
    pub(crate) fn give_back(&mut self, t: &Taken) {
        self.free.extend_from_slice(&t.ids[..t.n]);
    }

    /// The frames region and, into `spans`, each taken buffer page as `(offset, 4096)`.
    pub(crate) fn spans<'s>(
        &self,
        t: &Taken,
        spans: &'s mut [(usize, usize); netif::MAX_DATA_SLOTS],
    ) -> (&SharedRegion, &'s [(usize, usize)]) {
        for (span, &id) in spans.iter_mut().zip(&t.ids[..t.n]) {
            *span = (self.page_offset(id), FRAME_SIZE);
        }
        (&self.frames, &spans[..t.n])
    }

    /// Where buffer `id`'s page starts in the frames region.
    fn page_offset(&self, id: u16) -> usize {
        (self.first_frame as usize + usize::from(id)) * FRAME_SIZE
    }

    /// Where buffer `id`'s small buffer starts within its page.
    #[inline(always)]
    fn small_within(id: u16) -> u16 {
        (id & 1) * SMALL_BUFFER_U16
    }

    /// The region offset of buffer `id`'s small buffer.
    #[inline(always)]
    fn small_offset(&self, id: u16) -> usize {
        (self.small_first as usize + usize::from(id / 2)) * FRAME_SIZE
            + usize::from(Self::small_within(id))
    }

    /// Copies a frame made of `parts` into buffers and pushes its request chain (not
    /// published).
    #[inline(always)]
    pub(crate) fn push_frame(
        &mut self,
        parts: &[&[u8]],
        meta: Offload,
        limits: TxFeatures,
    ) -> Result<usize, SendError> {
        if let [frame] = parts
            && frame.len() <= FRAME_SIZE
            && meta.gso.is_none()
        {
            return self.push_one(frame, meta, limits);
        }
        let len: usize = parts.iter().map(|p| p.len()).sum();
        Self::check(len, meta, limits)?;
        // The ids stay in this frame's own array, read back one at a time: a `Taken` moved
        // out of `take` was reloaded 16 bytes at a time over its 2-byte stores, a store
        // forwarding failure that waits for every older store to drain, the previous frame's
        // stores into shared lines (cache misses) included. perf put 79% of the frontend's
        // samples on that move.
        let mut ids = [0u16; netif::MAX_DATA_SLOTS];
        let n = self
            .take_ids(len.div_ceil(FRAME_SIZE), meta.gso.is_some(), &mut ids)
            .ok_or(SendError::Full)?;
        // Copy the parts into successive buffer pages.
        let mut page = 0;
        let mut within = 0;
        for part in parts {
            let mut part: &[u8] = part;
            while !part.is_empty() {
                let n = (FRAME_SIZE - within).min(part.len());
                self.frames
                    .copy_in(self.page_offset(ids[page]) + within, &part[..n])
                    .expect("buffer pages lie inside our frames");
                part = &part[n..];
                within += n;
                if within == FRAME_SIZE {
                    page += 1;
                    within = 0;
                }
            }
        }
        self.push_ids(&ids[..n], len, meta);
        Ok(len)
    }

    /// [`push_frame`](Self::push_frame) of the usual frame: one slice that fits one buffer
    /// page, without GSO. One buffer, one request, and no array of ids: zeroing that array
    /// on the stack was the frontend's costliest step at tx 64 B (perf), its stores queued
    /// behind the previous frames' stores into lines the backend holds.
    #[inline(always)]
    fn push_one(
        &mut self,
        frame: &[u8],
        meta: Offload,
        limits: TxFeatures,
    ) -> Result<usize, SendError> {
        let len = frame.len();
        Self::check(len, meta, limits)?;
        if self.ring.free_requests() == 0 {
            return Err(SendError::Full);
        }
        let id = self.free.pop().ok_or(SendError::Full)?;
        let (at, gref, offset) = if len <= SMALL_BUFFER {
            let within = Self::small_within(id);
            (
                self.small_offset(id),
                self.small_grefs[usize::from(id)],
                within,
            )
        } else {
            (self.page_offset(id), self.grefs[usize::from(id)], 0)
        };
        self.frames
            .copy_in(at, frame)
            .expect("buffer pages lie inside our frames");
        let req = TxRequest {
            gref: gref.0,
            offset,
            flags: meta.tx_flags(),
            id,
            size: u16::try_from(len).expect("at most a page"),
        };
        // Room was counted above, and nothing else pushes in between (`&mut self`).
        self.ring.push_request(&req).expect("ring room counted");
        self.state[usize::from(id)] = IN_FLIGHT | HEAD;
        self.unpublished = true;
        Ok(len)
    }

    /// Pushes the request chain of a frame of `len` bytes (checked) written into the taken
    /// buffers, giving back the pages it does not use. Not published.
    pub(crate) fn push_taken(&mut self, t: Taken, len: usize, meta: Offload) {
        self.push_ids(&t.ids[..t.n], len, meta);
    }

    /// [`push_taken`](Self::push_taken) of the buffers `taken`.
    #[inline(always)]
    fn push_ids(&mut self, taken: &[u16], len: usize, meta: Offload) {
        let slots = len.div_ceil(FRAME_SIZE).max(1);
        debug_assert!(slots <= taken.len(), "a frame longer than its buffers");
        self.free.extend_from_slice(&taken[slots..]);
        let extra = meta.gso_extra();
        let size = u16::try_from(len).expect("checked against 65535");
        for (k, &id) in taken[..slots].iter().enumerate() {
            let last = k + 1 == slots;
            let mut flags = if last { 0 } else { tx_flags::MORE_DATA };
            let chunk = if last {
                len - k * FRAME_SIZE
            } else {
                FRAME_SIZE
            };
            if k == 0 {
                flags |= meta.tx_flags();
                if extra.is_some() {
                    flags |= tx_flags::EXTRA_INFO;
                }
            }
            let req = TxRequest {
                gref: self.grefs[usize::from(id)].0,
                offset: 0,
                flags,
                id,
                // The first slot carries the whole packet's length.
                size: if k == 0 {
                    size
                } else {
                    u16::try_from(chunk).expect("a page")
                },
            };
            // Room was counted when the buffers were taken, and nothing else pushes
            // in between (both need `&mut self`).
            self.ring
                .push_request(&req)
                .expect("ring room counted at take");
            self.state[usize::from(id)] = if k == 0 { IN_FLIGHT | HEAD } else { IN_FLIGHT };
            if k == 0
                && let Some(e) = extra
            {
                self.ring
                    .push_request(&e.to_tx_slot())
                    .expect("ring room counted at take");
            }
        }
        self.unpublished = true;
    }

    /// Validates and reclaims every completion published. Returns how many buffers came back.
    pub(crate) fn reclaim(&mut self, stats: &mut Stats) -> Result<usize, NetfrontError> {
        let mut n = 0;
        let first_freed = self.free.len();
        let rsps = self.ring.responses().map_err(ring_error)?;
        for rsp in rsps {
            match rsp.status {
                status::NULL => continue,
                status::OKAY | status::ERROR | status::DROPPED => {}
                other => return Err(BackendFault::TxStatus(other).into()),
            }
            let id = rsp.id;
            let was = match self.state.get_mut(usize::from(id)) {
                Some(s) if *s & IN_FLIGHT != 0 => core::mem::take(s),
                _ => return Err(BackendFault::TxId(id).into()),
            };
            self.free.push(id);
            n += 1;
            // Every slot of a failed frame says so: count the frame once, at its first slot.
            if was & HEAD != 0 {
                match rsp.status {
                    status::DROPPED => stats.tx_dropped += 1,
                    status::ERROR => stats.tx_errors += 1,
                    _ => {}
                }
            }
        }
        // The free list is a stack: reversed, the buffers just freed are taken again in the
        // order they were sent, so the frames of a batch lie at rising addresses (both
        // halves of a small buffer's page in turn) as netback reads them. tx 1500 B 1.050
        // (1.041-1.055) against taking them in reverse (BENCHMARKS.md, "Another machine:
        // copies the peer reads next, two frames to a page").
        self.free[first_freed..].reverse();
        Ok(n)
    }
}

/// A ring error: the backend's fault if it is a peer error, ours otherwise.
pub(crate) fn ring_error(e: io_ring::RingError) -> NetfrontError {
    match e {
        io_ring::RingError::Peer(p) => NetfrontError::Broken(BackendFault::Ring(p)),
        other => NetfrontError::Ring(other),
    }
}
