//! The backend's packet memory: 4 KiB pages that hold packets between a guest's transmit and
//! their delivery, and reference-counted packet handles over them.
//!
//! Every vif's grant operations see this region as their `local` memory, so a packet copied in
//! from one guest is copied out to another with no bounce buffer, and no guest ever sees a
//! page of it: guests only get bytes copied (or flipped) into their own frames.

use grant_table::{FRAME_SIZE, FrameNumber};
use netif::Offload;
use shared_mem::SharedRegion;

/// Pages one packet may span (65535 bytes).
pub const MAX_PACKET_PAGES: usize = 16;

/// A packet in backend memory. A handle: copy it freely; the memory lives until every
/// delivery made with it is done (reference counted inside [`PacketMemory`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PacketId(u32);

#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    pages: [u32; MAX_PACKET_PAGES],
    npages: u8,
    len: u32,
    meta: Offload,
    refs: u32,
}

/// Pages and packet handles. Allocation is O(1) from free lists; nothing is allocated per
/// packet after start-up.
///
/// A one-page packet's slot keeps its page when the packet is freed (`free_one`), and the
/// next one-page packet takes the pair back in one step: most packets are of one page, and
/// netback's transmit poll went from 287 to 257 instructions a frame at 64 B (callgrind).
/// A packet of several pages takes parked pages back into `free_pages` when it needs them.
#[derive(Debug)]
pub struct PacketMemory {
    region: SharedRegion,
    /// Pages held by no slot.
    free_pages: Vec<u32>,
    slots: Vec<Slot>,
    /// Slots holding no page and no packet.
    free_slots: Vec<u32>,
    /// Slots holding one page and no packet (`npages` 1, `refs` 0), most recently freed last.
    free_one: Vec<u32>,
}

impl PacketMemory {
    /// Packet memory over any region (heap memory, a VMM's own), one packet page per whole
    /// 4 KiB of it. No guest ever reaches it: bytes only go to and from guests by grant copy.
    pub fn over(region: SharedRegion) -> Self {
        let pages = u32::try_from(region.len() / FRAME_SIZE).unwrap_or(u32::MAX);
        Self {
            region,
            free_pages: (0..pages).rev().collect(),
            slots: Vec::new(),
            free_slots: Vec::new(),
            free_one: Vec::new(),
        }
    }

    /// The pages, as grant operations address them (`CopyPtr::Local`).
    pub fn region(&self) -> &SharedRegion {
        &self.region
    }

    /// Pages not holding a packet.
    pub fn free_pages(&self) -> usize {
        self.free_pages.len() + self.free_one.len()
    }

    /// Packets held.
    pub fn packets(&self) -> usize {
        self.slots.len() - self.free_slots.len() - self.free_one.len()
    }

    /// Pages a packet of `len` bytes takes (at least one).
    #[inline]
    pub fn pages_for(len: u32) -> usize {
        (len as usize).div_ceil(FRAME_SIZE).max(1)
    }

    /// A packet of `len` bytes (contents undefined until written) with one reference, or
    /// `None` when `len` exceeds 65535 or memory is short (back-pressure: try later).
    #[inline(always)]
    pub fn alloc(&mut self, len: u32, meta: Offload) -> Option<PacketId> {
        if len as usize <= FRAME_SIZE
            && let Some(id) = self.free_one.pop()
        {
            // A slot with its page: only the packet's own fields to fill.
            let slot = &mut self.slots[id as usize];
            slot.len = len;
            slot.meta = meta;
            slot.refs = 1;
            return Some(PacketId(id));
        }
        let n = Self::pages_for(len);
        if len > 0xffff || self.free_pages() < n {
            return None;
        }
        if self.free_pages.len() < n {
            self.unpark(n);
        }
        let id = match self.free_slots.pop() {
            Some(i) => i,
            None => self.new_slot()?,
        };
        // Filled in place: a slot is 100 bytes, and this runs once per packet.
        let slot = &mut self.slots[id as usize];
        let from = self.free_pages.len() - n;
        if n == 1 {
            // Most packets: one page, without the `memcpy` call a slice copy of unknown
            // length makes.
            slot.pages[0] = self.free_pages[from];
        } else {
            slot.pages[..n].copy_from_slice(&self.free_pages[from..]);
        }
        self.free_pages.truncate(from);
        slot.npages = u8::try_from(n).ok()?;
        slot.len = len;
        slot.meta = meta;
        slot.refs = 1;
        Some(PacketId(id))
    }

    /// Moves parked pages (of slots in `free_one`) back to `free_pages` until `n` are there
    /// (the caller saw that many free in all), freeing their slots.
    #[cold]
    #[inline(never)]
    fn unpark(&mut self, n: usize) {
        while self.free_pages.len() < n {
            let Some(id) = self.free_one.pop() else {
                return;
            };
            let s = &mut self.slots[id as usize];
            debug_assert!(s.npages == 1 && s.refs == 0, "a parked slot holds one page");
            self.free_pages.push(s.pages[0]);
            s.npages = 0;
            self.free_slots.push(id);
        }
    }

    /// A slot more, when every one holds a packet (only while the number of packets held
    /// grows to its peak: out of [`alloc`](Self::alloc)'s way).
    #[cold]
    #[inline(never)]
    fn new_slot(&mut self) -> Option<u32> {
        self.slots.push(Slot::default());
        u32::try_from(self.slots.len() - 1).ok()
    }

    /// A packet holding `bytes`, or `None` as for [`alloc`](Self::alloc).
    pub fn alloc_from(&mut self, bytes: &[u8], meta: Offload) -> Option<PacketId> {
        let id = self.alloc(u32::try_from(bytes.len()).ok()?, meta)?;
        for (i, chunk) in bytes.chunks(FRAME_SIZE).enumerate() {
            let page = self.slot(id).pages[i] as usize;
            self.region
                .copy_in(page * FRAME_SIZE, chunk)
                .expect("packet pages lie inside the region");
        }
        Some(id)
    }

    fn slot(&self, id: PacketId) -> &Slot {
        &self.slots[id.0 as usize]
    }

    /// The packet's length.
    #[inline]
    pub fn len(&self, id: PacketId) -> u32 {
        self.slot(id).len
    }

    /// The packet's offload metadata.
    #[inline]
    pub fn meta(&self, id: PacketId) -> Offload {
        self.slot(id).meta
    }

    /// Pages the packet holds.
    #[inline]
    pub fn npages(&self, id: PacketId) -> usize {
        usize::from(self.slot(id).npages)
    }

    /// For a packet of one page: that page, the packet's length and its offload metadata,
    /// with one look at its handle (a frame loop's three questions).
    #[inline]
    pub(crate) fn one_page(&self, id: PacketId) -> Option<(FrameNumber, u32, Offload)> {
        let s = self.slot(id);
        (s.npages == 1).then_some((FrameNumber(s.pages[0]), s.len, s.meta))
    }

    /// The `i`th page of the packet (bytes `i * 4096 ..`).
    #[inline]
    pub fn page(&self, id: PacketId, i: usize) -> FrameNumber {
        FrameNumber(self.slot(id).pages[i])
    }

    /// Copies the packet's bytes from `offset` into `buf` (as many as fit and exist); returns
    /// how many.
    pub fn read(&self, id: PacketId, offset: usize, buf: &mut [u8]) -> usize {
        let s = self.slot(id);
        let end = (s.len as usize).min(offset.saturating_add(buf.len()));
        let mut at = offset;
        while at < end {
            let (page, within) = (at / FRAME_SIZE, at % FRAME_SIZE);
            let n = (FRAME_SIZE - within).min(end - at);
            self.region
                .copy_out(
                    s.pages[page] as usize * FRAME_SIZE + within,
                    &mut buf[at - offset..at - offset + n],
                )
                .expect("packet pages lie inside the region");
            at += n;
        }
        end.saturating_sub(offset)
    }

    /// Writes `head` then the packet's bytes to `fd` with one `writev(2)`, straight from
    /// packet memory (a TAP's virtio header, then the frame); returns what `writev` did.
    ///
    /// # Errors
    /// The write's own (`WouldBlock`, `Interrupted` included: the caller decides).
    pub fn write_to(
        &self,
        id: PacketId,
        fd: std::os::fd::BorrowedFd<'_>,
        head: &[u8],
    ) -> std::io::Result<usize> {
        let s = self.slot(id);
        let len = s.len as usize;
        let mut spans = [(0, 0); MAX_PACKET_PAGES];
        for (i, (span, &page)) in spans
            .iter_mut()
            .zip(&s.pages[..usize::from(s.npages)])
            .enumerate()
        {
            *span = (
                page as usize * FRAME_SIZE,
                (len - i * FRAME_SIZE).min(FRAME_SIZE),
            );
        }
        self.region
            .write_vectored_to(fd, head, &spans[..usize::from(s.npages)])
    }

    /// References the packet has (deliveries pending plus its holder's).
    pub fn refs(&self, id: PacketId) -> u32 {
        self.slot(id).refs
    }

    /// Adds a reference (one more delivery) and returns `true`, if the packet is held; a
    /// packet already released (its last reference gone) gets none and `false`: its page may
    /// hold the next packet's bytes, so nothing may be delivered from it.
    #[inline]
    pub fn retain(&mut self, id: PacketId) -> bool {
        let s = &mut self.slots[id.0 as usize];
        debug_assert!(s.refs > 0, "packet retained after its release");
        if s.refs == 0 {
            return false;
        }
        s.refs += 1;
        true
    }

    /// Drops a reference; the pages are free when the last goes. A packet already free is
    /// left as it is: released once more than retained, it would otherwise enter a free list
    /// twice and later hold two packets' bytes at once. (A handle kept past its release while
    /// its slot holds a new packet cannot be told apart: it is the caller's to drop.) Always
    /// inlined: the receive loop called it out of line, 13 of its 27 instructions a frame the
    /// call's own (callgrind, rx 64 B).
    #[inline(always)]
    pub fn release(&mut self, id: PacketId) {
        let s = &mut self.slots[id.0 as usize];
        debug_assert!(s.refs > 0, "packet released more often than retained");
        if s.refs != 1 {
            // Another reference remains, or none did (already free: nothing to do).
            s.refs = s.refs.saturating_sub(1);
            return;
        }
        s.refs = 0;
        let n = usize::from(s.npages);
        if n == 1 {
            // The slot keeps its page for the next one-page packet.
            self.free_one.push(id.0);
            return;
        }
        self.free_pages.extend_from_slice(&s.pages[..n]);
        s.npages = 0;
        self.free_slots.push(id.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alloc_write_read_release_accounts_every_page() {
        let mut m = PacketMemory::new(40).unwrap();
        let bytes: Vec<u8> = (0..65535u32).map(|i| (i * 7 % 251) as u8).collect();
        let a = m.alloc_from(&bytes, Offload::default()).unwrap();
        assert_eq!(m.npages(a), 16);
        assert_eq!(m.free_pages(), 24);
        let mut back = vec![0u8; 70000];
        assert_eq!(m.read(a, 0, &mut back), 65535);
        assert_eq!(&back[..65535], &bytes[..]);
        assert_eq!(m.read(a, 65530, &mut back[..100]), 5);
        assert!(m.alloc(65535, Offload::default()).is_some());
        assert!(m.alloc(65535, Offload::default()).is_none(), "8 pages left");
        assert!(m.retain(a));
        m.release(a);
        assert_eq!(m.free_pages(), 8);
        m.release(a);
        assert_eq!(m.free_pages(), 24);
        assert!(m.alloc(65536, Offload::default()).is_none(), "too long");
    }

    #[test]
    fn freed_one_page_packets_lend_their_pages_to_larger_ones() {
        let mut m = PacketMemory::new(20).unwrap();
        let small: Vec<PacketId> = (0..20u8)
            .map(|i| m.alloc_from(&[i; 60], Offload::default()).unwrap())
            .collect();
        assert_eq!((m.free_pages(), m.packets()), (0, 20));
        assert!(
            m.alloc(1, Offload::default()).is_none(),
            "every page holds a packet"
        );
        for &p in &small[..18] {
            m.release(p);
        }
        assert_eq!((m.free_pages(), m.packets()), (18, 2));
        // The last page freed is the first one taken again, with its slot.
        let again = m.alloc(100, Offload::default()).unwrap();
        assert_eq!(again, small[17]);
        assert_eq!((m.len(again), m.npages(again), m.refs(again)), (100, 1, 1));
        // 16 pages: all of them from parked slots.
        let big = m.alloc_from(&[7u8; 65535], Offload::default()).unwrap();
        assert_eq!((m.npages(big), m.free_pages(), m.packets()), (16, 1, 4));
        assert!(m.alloc(4097, Offload::default()).is_none(), "one page left");
        let last = m.alloc_from(&[9u8; 4096], Offload::default()).unwrap();
        assert_eq!((m.free_pages(), m.packets()), (0, 5));
        let mut back = vec![0u8; 65535];
        assert_eq!(m.read(big, 0, &mut back), 65535);
        assert!(back.iter().all(|&b| b == 7));
        assert_eq!(m.read(last, 0, &mut back[..4096]), 4096);
        assert!(back[..4096].iter().all(|&b| b == 9));
        for p in [small[18], small[19], again, big, last] {
            m.release(p);
        }
        assert_eq!((m.free_pages(), m.packets()), (20, 0));
        // 16 pages free and 4 parked: a packet of 3 pages takes 3 of the parked ones back.
        assert!(m.alloc(65535, Offload::default()).is_some());
        assert!(m.alloc(3 * 4096, Offload::default()).is_some());
        assert!(m.alloc(64, Offload::default()).is_some());
        assert_eq!((m.free_pages(), m.packets()), (0, 3));
    }

    /// Released once too often, or retained after its release, a packet's slot and page go
    /// back to the free lists once: the next two packets get pages of their own. (Debug
    /// builds stop at the extra call with a panic, before it changes anything.)
    #[test]
    fn a_packet_released_twice_is_freed_once() {
        let mut m = PacketMemory::new(4).unwrap();
        for len in [60, 3 * 4096] {
            let p = m.alloc(len, Offload::default()).unwrap();
            m.release(p);
            let again = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| m.release(p)));
            assert_eq!(again.is_err(), cfg!(debug_assertions));
            let kept = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| m.retain(p)));
            assert!(
                kept.is_err() || matches!(kept, Ok(false)),
                "a released packet is not retained"
            );
            assert_eq!((m.free_pages(), m.packets()), (4, 0));
            let a = m.alloc_from(&[1; 60], Offload::default()).unwrap();
            let b = m.alloc_from(&[2; 60], Offload::default()).unwrap();
            assert_ne!(m.page(a, 0), m.page(b, 0), "two packets, one page");
            let mut back = [0u8; 60];
            m.read(a, 0, &mut back);
            assert_eq!(back, [1; 60]);
            m.release(a);
            m.release(b);
        }
    }

    #[test]
    fn a_packet_is_written_straight_from_its_pages() {
        use std::io::Read;
        use std::os::fd::AsFd;
        use std::os::unix::net::UnixStream;

        let mut m = PacketMemory::new(40).unwrap();
        let bytes: Vec<u8> = (0..9000u32).map(|i| (i * 7 % 251) as u8).collect();
        let a = m.alloc_from(&bytes, Offload::default()).unwrap();
        let (tx, mut rx) = UnixStream::pair().unwrap();
        assert_eq!(m.write_to(a, tx.as_fd(), b"hd").unwrap(), 9002);
        let mut back = vec![0u8; 9002];
        rx.read_exact(&mut back).unwrap();
        assert_eq!(&back[..2], b"hd");
        assert_eq!(&back[2..], &bytes[..]);
    }
}
