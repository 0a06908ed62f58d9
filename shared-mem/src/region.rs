//! Memory shared with a peer, reached only through 32-bit atomic words.
//!
//! This module is the only place in pvnet's libraries with `unsafe` code for shared memory, and
//! it has one unsafe constructor: [`SharedRegion::from_raw_parts`]. Everything after it is bounds-checked safe
//! code, in the manner of vm-memory's `volatile_memory.rs`.
//!
//! Why atomics and not plain or volatile reads: the peer (another thread, another process,
//! another domain) writes this memory while we read it. A Rust reference to plain data in such
//! memory would promise the compiler that nobody else changes it, and a plain read racing a
//! write is a data race. An `AtomicU32` is the type whose contract *is* "others may change
//! this at any time", so a `&[AtomicU32]` over peer-writable memory is sound, and every
//! access is a single word-sized load or store on every platform pvnet targets (on x86-64 a
//! `Relaxed` atomic load or store is a plain `mov`). Slots are copied out word by word into
//! a local value and only the local copy is ever inspected: no reference to a slot exists.
//!
//! Under `--cfg loom` the region is an array of loom's atomics instead, so the model checker
//! sees every shared access, including slot contents.

use alloc::sync::Arc;
use core::fmt;
#[cfg(not(loom))]
use core::ptr::NonNull;

use bytemuck::Pod;

use crate::sync::AtomicU32;
use crate::sync::Ordering;

/// Why a region could not be created or accessed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegionError {
    /// The base pointer is not aligned to 4 bytes.
    #[error("shared region base {addr:#x} is not 4-byte aligned")]
    Misaligned {
        /// The offending address.
        addr: usize,
    },
    /// A byte offset is not a multiple of 4, or the access runs past the end of the region.
    #[error(
        "access of {len} bytes at offset {offset} is unaligned or outside a {size}-byte region"
    )]
    OutOfBounds {
        /// Byte offset of the access.
        offset: usize,
        /// Length of the access in bytes.
        len: usize,
        /// Size of the region in bytes.
        size: usize,
    },
}

/// A region of memory shared with a peer, accessed only as 32-bit atomic words.
///
/// Cloning is cheap and yields another handle to the same memory (a front ring and a back ring
/// in one process each hold one). Heap regions ([`SharedRegion::new_zeroed`]) keep their
/// memory alive themselves; regions over foreign memory ([`SharedRegion::from_raw_parts`]) rely
/// on the caller's promise, optionally backed by an owner object kept alive by every clone.
#[derive(Clone)]
pub struct SharedRegion {
    #[cfg(not(loom))]
    base: NonNull<AtomicU32>,
    #[cfg(not(loom))]
    words: usize,
    #[cfg(not(loom))]
    _owner: Option<Arc<dyn Send + Sync>>,
    #[cfg(loom)]
    cells: Arc<[AtomicU32]>,
    /// Under loom: the window of `cells` this region covers (for sub-regions).
    #[cfg(loom)]
    window: core::ops::Range<usize>,
}

// SAFETY: the region is only ever accessed through `&AtomicU32`, which is `Sync`; the base
// pointer is never dereferenced as anything but atomics, and the owner (if any) is
// `Send + Sync`. Moving the handle to another thread or sharing it is therefore as safe as
// sharing an `&[AtomicU32]`.
#[cfg(not(loom))]
unsafe impl Send for SharedRegion {}
// SAFETY: as for `Send` above: all access is atomic.
#[cfg(not(loom))]
unsafe impl Sync for SharedRegion {}

impl fmt::Debug for SharedRegion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedRegion")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

/// Words in one page of a heap region.
#[cfg(not(loom))]
const HEAP_PAGE_WORDS: usize = 1024;

/// One page of a heap region: page-aligned, and `size_of` a multiple of its alignment, so a
/// slice of them is one contiguous run of words.
#[cfg(not(loom))]
#[repr(C, align(4096))]
struct HeapPage([AtomicU32; HEAP_PAGE_WORDS]);

#[cfg(not(loom))]
const _: () = assert!(core::mem::size_of::<HeapPage>() == 4096);

impl SharedRegion {
    /// Allocates a zeroed region of `len` bytes on the heap (rounded down to whole words),
    /// starting on a 4096-byte boundary, as the memory of every real host does (so frames
    /// and cache lines fall where they would in a mapping).
    ///
    /// For tests and for rings between threads of one process.
    pub fn new_zeroed(len: usize) -> Self {
        let words = len / 4;
        #[cfg(not(loom))]
        {
            let cells: alloc::boxed::Box<[HeapPage]> = (0..words.div_ceil(HEAP_PAGE_WORDS))
                .map(|_| HeapPage([const { AtomicU32::new(0) }; HEAP_PAGE_WORDS]))
                .collect();
            // A boxed slice's pointer is never null (dangling but aligned when empty), and the
            // heap memory it points to stays put when the box moves into the `Arc` below. The
            // pages are contiguous arrays of atomics, so the first page's first word starts
            // `words` consecutive `AtomicU32`s.
            let base = NonNull::from(&*cells).cast::<AtomicU32>();
            Self {
                base,
                words,
                _owner: Some(Arc::new(cells)),
            }
        }
        #[cfg(loom)]
        {
            Self {
                cells: (0..words).map(|_| AtomicU32::new(0)).collect(),
                window: 0..words,
            }
        }
    }

    /// Creates a region over `len` bytes of memory at `ptr` (rounded down to whole words).
    ///
    /// `owner`, if given, is kept alive for as long as any clone of the region exists: pass the
    /// mapping (for example an `Arc<memmap2::MmapRaw>`) to tie the memory's lifetime to the
    /// region's.
    ///
    /// # Errors
    /// [`RegionError::Misaligned`] if `ptr` is not 4-byte aligned.
    ///
    /// # Safety
    /// For as long as this region or any clone of it exists (or, with an `owner`, for as long as
    /// that owner lives):
    /// - `ptr .. ptr + len` must be valid for reads and writes and not be deallocated or
    ///   unmapped;
    /// - this process must access that memory only atomically (through this type or through
    ///   other atomics), never through Rust references to non-atomic data.
    ///
    /// Other processes or domains may write the memory in any way at any time: that is what
    /// this type is for, and no such write can cause undefined behaviour on this side.
    #[cfg(not(loom))]
    pub unsafe fn from_raw_parts(
        ptr: NonNull<u8>,
        len: usize,
        owner: Option<Arc<dyn Send + Sync>>,
    ) -> Result<Self, RegionError> {
        let addr = ptr.as_ptr() as usize;
        if !addr.is_multiple_of(core::mem::align_of::<AtomicU32>()) {
            return Err(RegionError::Misaligned { addr });
        }
        Ok(Self {
            base: ptr.cast(),
            words: len / 4,
            _owner: owner,
        })
    }

    /// The memory as a slice of atomic words.
    #[cfg(not(loom))]
    #[inline(always)]
    fn cells(&self) -> &[AtomicU32] {
        // SAFETY: `base` is non-null and 4-byte aligned (checked or guaranteed by `Arc`), and
        // `words * 4` bytes from it are valid for reads and writes for the life of `self`
        // (from_raw_parts' contract, or the `Arc` we hold). `AtomicU32` has the size and
        // alignment of `u32` and permits concurrent mutation through shared references, so
        // a shared slice of them over memory others write is sound.
        unsafe { core::slice::from_raw_parts(self.base.as_ptr(), self.words) }
    }

    /// The memory as a slice of atomic words.
    #[cfg(loom)]
    #[inline(always)]
    fn cells(&self) -> &[AtomicU32] {
        &self.cells[self.window.clone()]
    }

    /// A region over `len` bytes of this one from byte `offset` (both multiples of 4), sharing
    /// its memory and keeping it alive: for example one granted frame inside a mapped memfd.
    ///
    /// # Errors
    /// [`RegionError::OutOfBounds`] if the range is unaligned or does not fit.
    pub fn subregion(&self, offset: usize, len: usize) -> Result<SharedRegion, RegionError> {
        let cells = self.span(offset, len)?;
        #[cfg(not(loom))]
        {
            Ok(Self {
                base: NonNull::from(cells).cast::<AtomicU32>(),
                words: cells.len(),
                _owner: self._owner.clone(),
            })
        }
        #[cfg(loom)]
        {
            let start = self.window.start + offset / 4;
            Ok(Self {
                cells: self.cells.clone(),
                window: start..start + cells.len(),
            })
        }
    }

    /// The base address of the region, for handing the memory to foreign code (C, a device).
    ///
    /// Reading or writing through this pointer is `unsafe` and subject to the rules of
    /// [`SharedRegion::from_raw_parts`].
    #[cfg(not(loom))]
    pub fn as_ptr(&self) -> *mut u8 {
        self.base.as_ptr().cast()
    }

    /// The size of the region in bytes (always a multiple of 4).
    #[inline]
    pub fn len(&self) -> usize {
        self.cells().len() * 4
    }

    /// Whether the region is empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.cells().is_empty()
    }

    /// Loads the 32-bit word at byte `offset` with the given ordering.
    ///
    /// # Errors
    /// [`RegionError::OutOfBounds`] if `offset` is unaligned or past the end.
    #[inline]
    pub fn load_u32(&self, offset: usize, order: Ordering) -> Result<u32, RegionError> {
        Ok(self.cell(offset, 4)?.load(order))
    }

    /// Stores `value` into the 32-bit word at byte `offset` with the given ordering.
    ///
    /// # Errors
    /// [`RegionError::OutOfBounds`] if `offset` is unaligned or past the end.
    #[inline]
    pub fn store_u32(&self, offset: usize, value: u32, order: Ordering) -> Result<(), RegionError> {
        self.cell(offset, 4)?.store(value, order);
        Ok(())
    }

    /// Copies a `T` out of the region at byte `offset`, one `Relaxed` word load at a time
    /// (a `T` whose size is not a multiple of 4 reads the whole last word and keeps its prefix).
    ///
    /// The result is a private copy: the peer may change the memory afterwards without
    /// affecting it, and it is read exactly once. Ordering against the peer's writes comes from
    /// the caller's `Acquire` load of the index that published them.
    ///
    /// # Errors
    /// [`RegionError::OutOfBounds`] if `offset` is unaligned or the value does not fit.
    #[inline]
    pub fn read<T: Pod>(&self, offset: usize) -> Result<T, RegionError> {
        let cells = self.span(offset, size_of::<T>().next_multiple_of(4))?;
        let mut value = T::zeroed();
        let mut chunks = bytemuck::bytes_of_mut(&mut value).chunks_exact_mut(4);
        // Relaxed: the caller's Acquire load of the producer index orders these reads after
        // the peer's writes; each word needs only to be read atomically.
        for (chunk, cell) in (&mut chunks).zip(cells) {
            chunk.copy_from_slice(&cell.load(Ordering::Relaxed).to_ne_bytes());
        }
        // A size that is not a multiple of 4 (never for Xen's rings; compiled away otherwise).
        let rest = chunks.into_remainder();
        if let (false, Some(cell)) = (rest.is_empty(), cells.last()) {
            rest.copy_from_slice(&cell.load(Ordering::Relaxed).to_ne_bytes()[..rest.len()]);
        }
        Ok(value)
    }

    /// Writes `value` into the region at byte `offset` and zeroes the rest of a `span`-byte
    /// slot after it, one `Relaxed` word store at a time.
    ///
    /// Every byte of the slot is written, so nothing stale or private leaks to the peer
    /// through padding or a shorter value (XSA-216).
    ///
    /// # Errors
    /// [`RegionError::OutOfBounds`] if `offset` is unaligned, `span` is smaller than a `T` or
    /// not a multiple of 4, or the slot does not fit.
    #[inline(always)]
    pub fn write_padded<T: Pod>(
        &self,
        offset: usize,
        value: &T,
        span: usize,
    ) -> Result<(), RegionError> {
        if span < size_of::<T>() || !span.is_multiple_of(4) {
            return Err(self.out_of_bounds(offset, span));
        }
        let cells = self.span(offset, span)?;
        let bytes = bytemuck::bytes_of(value);
        let whole = bytes.len() / 4;
        let (head, tail) = cells.split_at(whole);
        // Relaxed: the caller's Release store of the producer index publishes these writes;
        // each word needs only to be written atomically.
        for (chunk, cell) in bytes.chunks_exact(4).zip(head) {
            cell.store(
                u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]),
                Ordering::Relaxed,
            );
        }
        // The partial last word of an odd-sized value (never for Xen's rings), then zeroes to
        // the end of the slot.
        let mut last = [0u8; 4];
        let rest = &bytes[whole * 4..];
        last[..rest.len()].copy_from_slice(rest);
        let mut fill = Some(u32::from_ne_bytes(last));
        for cell in tail {
            cell.store(fill.take().unwrap_or(0), Ordering::Relaxed);
        }
        Ok(())
    }

    /// Atomically replaces the word at byte `offset` with `new` if it holds `current`
    /// (`compare_exchange`). `Ok(Ok(previous))` on success, `Ok(Err(actual))` if the word held
    /// something else.
    ///
    /// # Errors
    /// [`RegionError::OutOfBounds`] if `offset` is unaligned or past the end.
    #[inline]
    pub fn compare_exchange_u32(
        &self,
        offset: usize,
        current: u32,
        new: u32,
        success: Ordering,
        failure: Ordering,
    ) -> Result<Result<u32, u32>, RegionError> {
        Ok(self
            .cell(offset, 4)?
            .compare_exchange(current, new, success, failure))
    }

    /// Atomically ORs `bits` into the word at byte `offset`; returns the previous value.
    ///
    /// # Errors
    /// [`RegionError::OutOfBounds`] if `offset` is unaligned or past the end.
    #[inline]
    pub fn fetch_or_u32(
        &self,
        offset: usize,
        bits: u32,
        order: Ordering,
    ) -> Result<u32, RegionError> {
        Ok(self.cell(offset, 4)?.fetch_or(bits, order))
    }

    /// Atomically ANDs `bits` into the word at byte `offset`; returns the previous value.
    ///
    /// # Errors
    /// [`RegionError::OutOfBounds`] if `offset` is unaligned or past the end.
    #[inline]
    pub fn fetch_and_u32(
        &self,
        offset: usize,
        bits: u32,
        order: Ordering,
    ) -> Result<u32, RegionError> {
        Ok(self.cell(offset, 4)?.fetch_and(bits, order))
    }

    /// Copies `dst.len()` bytes from the region at byte `offset` into `dst`.
    ///
    /// Payload copy: bytes the peer writes meanwhile may or may not be seen, and a multi-byte
    /// value may tear, as with any copy of memory another party writes. Order it against the
    /// peer with the protocol's own atomics (a grant's flags, a ring index).
    ///
    /// # Errors
    /// [`RegionError::OutOfBounds`] if the range does not fit.
    #[inline]
    pub fn copy_out(&self, offset: usize, dst: &mut [u8]) -> Result<(), RegionError> {
        self.check_bytes(offset, dst.len())?;
        #[cfg(not(loom))]
        // SAFETY: `offset + dst.len()` is inside the region (checked above), which is valid for
        // reads for its whole life; `dst` is a distinct, exclusively borrowed local buffer.
        unsafe {
            raw_copy(self.byte_ptr(offset), dst.as_mut_ptr(), dst.len());
        }
        #[cfg(loom)]
        for (i, b) in dst.iter_mut().enumerate() {
            *b = self.loom_byte(offset + i);
        }
        Ok(())
    }

    /// Copies `src` into the region at byte `offset`.
    ///
    /// # Errors
    /// [`RegionError::OutOfBounds`] if the range does not fit.
    #[inline]
    pub fn copy_in(&self, offset: usize, src: &[u8]) -> Result<(), RegionError> {
        self.check_bytes(offset, src.len())?;
        #[cfg(not(loom))]
        // SAFETY: `offset + src.len()` is inside the region (checked above), which is valid for
        // writes for its whole life; `src` is a distinct borrowed local buffer.
        unsafe {
            raw_copy(src.as_ptr(), self.byte_ptr(offset), src.len());
        }
        #[cfg(loom)]
        for (i, b) in src.iter().enumerate() {
            self.loom_set_byte(offset + i, *b);
        }
        Ok(())
    }

    /// Copies `len` bytes from this region at `offset` to `dst` at `dst_offset`, without a
    /// bounce buffer (a grant copy between two shared areas). Overlapping ranges of the same
    /// memory are copied as `memmove` copies them, as if through a temporary buffer (Xen
    /// leaves an overlapping grant copy's result mixed; either way there is no undefined
    /// behaviour).
    ///
    /// # Errors
    /// [`RegionError::OutOfBounds`] if either range does not fit.
    #[inline]
    pub fn copy_to(
        &self,
        offset: usize,
        dst: &SharedRegion,
        dst_offset: usize,
        len: usize,
    ) -> Result<(), RegionError> {
        self.check_bytes(offset, len)?;
        dst.check_bytes(dst_offset, len)?;
        #[cfg(not(loom))]
        // SAFETY: both ranges are inside their regions (checked above), valid for reads and
        // writes respectively for the life of the borrows; `raw_copy` tolerates overlap.
        unsafe {
            raw_copy(self.byte_ptr(offset), dst.byte_ptr(dst_offset), len);
        }
        #[cfg(loom)]
        {
            // Through a temporary, as `memmove` copies overlapping ranges.
            let bytes: alloc::vec::Vec<u8> = (0..len).map(|i| self.loom_byte(offset + i)).collect();
            for (i, b) in bytes.into_iter().enumerate() {
                dst.loom_set_byte(dst_offset + i, b);
            }
        }
        Ok(())
    }

    /// Sets `len` bytes from `offset` to `byte`.
    ///
    /// # Errors
    /// [`RegionError::OutOfBounds`] if the range does not fit.
    pub fn fill(&self, offset: usize, len: usize, byte: u8) -> Result<(), RegionError> {
        self.check_bytes(offset, len)?;
        let chunk = [byte; 256];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(chunk.len());
            self.copy_in(offset + done, &chunk[..n])?;
            done += n;
        }
        Ok(())
    }

    /// The address of byte `offset`. Plain (wrapping) arithmetic: callers check the range
    /// before using the pointer.
    #[cfg(not(loom))]
    #[inline(always)]
    fn byte_ptr(&self, offset: usize) -> *mut u8 {
        self.base.as_ptr().cast::<u8>().wrapping_add(offset)
    }

    /// Checks that `len` bytes at `offset` (any alignment) lie inside the region.
    #[inline(always)]
    fn check_bytes(&self, offset: usize, len: usize) -> Result<(), RegionError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len() => Ok(()),
            _ => Err(self.out_of_bounds(offset, len)),
        }
    }

    #[cfg(loom)]
    fn loom_byte(&self, at: usize) -> u8 {
        self.cells()[at / 4].load(Ordering::Relaxed).to_ne_bytes()[at % 4]
    }

    /// Under loom only: a byte store as two read-modify-writes on its word (clear the byte,
    /// then set it), never a plain load. Atomic against other writers of the same word, and it
    /// keeps loom's search complete: loom 0.7 misses interleavings where a plain load precedes
    /// the store (found while writing the grant-table models; see DESIGN.md).
    #[cfg(loom)]
    fn loom_set_byte(&self, at: usize, byte: u8) {
        let cell = &self.cells()[at / 4];
        let mut mask = [0u8; 4];
        mask[at % 4] = 0xff;
        let mut value = [0u8; 4];
        value[at % 4] = byte;
        cell.fetch_and(!u32::from_ne_bytes(mask), Ordering::Relaxed);
        cell.fetch_or(u32::from_ne_bytes(value), Ordering::Relaxed);
    }

    /// Hints that the cache line at `offset` will be read soon (a software prefetch), so the
    /// misses of a batch overlap instead of each stalling in turn: the peer's freshly written
    /// packet lines come from another core's cache. A hint only: it reads nothing, cannot
    /// fault, and does nothing out of bounds, under loom, or off x86-64.
    #[inline]
    pub fn prefetch(&self, offset: usize) {
        #[cfg(all(target_arch = "x86_64", not(loom)))]
        if offset < self.len() {
            let p = self.byte_ptr(offset).cast_const().cast::<i8>();
            // SAFETY: `prefetcht0` is a hint: it never faults and changes no memory or
            // register state; `p` lies inside the region (checked above) and SSE is part of
            // the x86-64 baseline.
            unsafe { core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p) };
        }
        #[cfg(not(all(target_arch = "x86_64", not(loom))))]
        let _ = offset;
    }

    /// Hints that the bytes `offset..offset + len` (at least the line at `offset`) will be
    /// written soon: each of their cache lines is asked for with the intent to own it
    /// (`prefetchw`), so that a line another core holds comes over once, owned, instead of
    /// shared first and then taken over by the store. A hint only, as
    /// [`prefetch`](Self::prefetch): it reads and writes nothing, cannot fault, and does
    /// nothing past the region's end, under loom, or off x86-64. On a CPU without
    /// `prefetchw` it is a read prefetch of each line.
    #[inline]
    pub fn prefetch_for_write(&self, offset: usize, len: usize) {
        #[cfg(all(target_arch = "x86_64", not(loom)))]
        {
            let end = offset.saturating_add(len.max(1)).min(self.len());
            let owned = prefetchw_supported();
            let mut at = offset;
            while at < end {
                if owned {
                    let p = self.byte_ptr(at).cast_const();
                    // SAFETY: `prefetchw` is a hint: it never faults and changes no memory,
                    // register or flag; `p` lies inside the region (`at < end <= len`). The
                    // CPU has the instruction (CPUID's PRFCHW bit, `owned`): older x86-64
                    // CPUs may not decode it.
                    unsafe {
                        core::arch::asm!(
                            "prefetchw [{p}]",
                            p = in(reg) p,
                            options(nostack, preserves_flags, readonly)
                        );
                    }
                } else {
                    self.prefetch(at);
                }
                // The next line's start: lines are 64 bytes, counted from the region's start
                // (a region that does not start on a line only shifts which ones are asked
                // for).
                at = (at | 63) + 1;
            }
        }
        #[cfg(not(all(target_arch = "x86_64", not(loom))))]
        let _ = (offset, len);
    }

    /// Zeroes `len` bytes from `offset` (both multiples of 4).
    ///
    /// # Errors
    /// [`RegionError::OutOfBounds`] if the range is unaligned or does not fit.
    #[inline]
    pub fn zero(&self, offset: usize, len: usize) -> Result<(), RegionError> {
        for cell in self.span(offset, len)? {
            cell.store(0, Ordering::Relaxed);
        }
        Ok(())
    }

    /// The single word at `offset`, checked.
    #[inline(always)]
    fn cell(&self, offset: usize, len: usize) -> Result<&AtomicU32, RegionError> {
        self.span(offset, len)?
            .first()
            .ok_or(self.out_of_bounds(offset, len))
    }

    /// The words covering `len` bytes at `offset`: both must be multiples of 4 and in bounds.
    #[inline(always)]
    fn span(&self, offset: usize, len: usize) -> Result<&[AtomicU32], RegionError> {
        if !offset.is_multiple_of(4) || !len.is_multiple_of(4) {
            return Err(self.out_of_bounds(offset, len));
        }
        let first = offset / 4;
        let cells = self.cells();
        first
            .checked_add(len / 4)
            .and_then(|end| cells.get(first..end))
            .ok_or(self.out_of_bounds(offset, len))
    }

    #[cold]
    fn out_of_bounds(&self, offset: usize, len: usize) -> RegionError {
        RegionError::OutOfBounds {
            offset,
            len,
            size: self.len(),
        }
    }
}

/// The most spans one vectored read or write takes (besides its local head): a 64 KiB frame
/// in 4 KiB pages is 17.
pub const MAX_SPANS: usize = 32;

#[cfg(all(feature = "std", unix, not(loom)))]
impl SharedRegion {
    /// The `iovec`s of `spans` (`(offset, len)` pairs) after `first`, every span checked
    /// against the region.
    fn iovecs(
        &self,
        first: libc::iovec,
        spans: &[(usize, usize)],
    ) -> std::io::Result<([libc::iovec; MAX_SPANS + 1], usize)> {
        let empty = libc::iovec {
            iov_base: core::ptr::null_mut(),
            iov_len: 0,
        };
        let mut iov = [empty; MAX_SPANS + 1];
        if spans.len() > MAX_SPANS {
            return Err(std::io::ErrorKind::InvalidInput.into());
        }
        iov[0] = first;
        for (v, &(offset, len)) in iov[1..].iter_mut().zip(spans) {
            self.check_bytes(offset, len)
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
            *v = libc::iovec {
                iov_base: self.byte_ptr(offset).cast(),
                iov_len: len,
            };
        }
        Ok((iov, spans.len() + 1))
    }

    /// Reads from `fd` with one `readv(2)`: first into the local buffer `head` (a TAP's
    /// virtio header, say), then into `spans` of this region (`(offset, len)` pairs), in
    /// order; so a frame lands in shared memory with no copy of ours. Returns the bytes read
    /// (head included). The kernel writes the region as the peer may: no Rust reference to
    /// it is made.
    ///
    /// # Errors
    /// A span outside the region or more than [`MAX_SPANS`] of them (`InvalidInput`), or the
    /// read's own error (`Interrupted` and `WouldBlock` included: the caller decides).
    pub fn read_vectored_from(
        &self,
        fd: std::os::fd::BorrowedFd<'_>,
        head: &mut [u8],
        spans: &[(usize, usize)],
    ) -> std::io::Result<usize> {
        use std::os::fd::AsRawFd;
        let first = libc::iovec {
            iov_base: head.as_mut_ptr().cast(),
            iov_len: head.len(),
        };
        let (iov, n) = self.iovecs(first, spans)?;
        let count = libc::c_int::try_from(n).unwrap_or(libc::c_int::MAX);
        // SAFETY: `iov[..n]` lives on this stack for the call; its first entry is `head`, an
        // exclusively borrowed local buffer, and every other lies inside this region (checked
        // by `iovecs`), which is valid for writes while `self` is borrowed. The kernel writes
        // those bytes as a peer may write them at any time (the contract of
        // `from_raw_parts`): no Rust reference into the region exists to be invalidated, and
        // a hostile peer writing the same bytes meanwhile only garbles its own data.
        let r = unsafe { libc::readv(fd.as_raw_fd(), iov.as_ptr(), count) };
        usize::try_from(r).map_err(|_| std::io::Error::last_os_error())
    }

    /// Writes to `fd` with one `writev(2)`: the local buffer `head`, then `spans` of this
    /// region in order (a frame straight out of shared memory). Returns the bytes written.
    /// Bytes a peer changes meanwhile may go out old or new, as with
    /// [`copy_out`](Self::copy_out).
    ///
    /// # Errors
    /// As [`read_vectored_from`](Self::read_vectored_from), for the write.
    pub fn write_vectored_to(
        &self,
        fd: std::os::fd::BorrowedFd<'_>,
        head: &[u8],
        spans: &[(usize, usize)],
    ) -> std::io::Result<usize> {
        use std::os::fd::AsRawFd;
        let first = libc::iovec {
            iov_base: head.as_ptr().cast_mut().cast(),
            iov_len: head.len(),
        };
        let (iov, n) = self.iovecs(first, spans)?;
        let count = libc::c_int::try_from(n).unwrap_or(libc::c_int::MAX);
        // SAFETY: `iov[..n]` lives on this stack for the call; `writev` only reads through
        // it: `head` is a borrowed local buffer, every other entry lies inside this region
        // (checked by `iovecs`), valid for reads while `self` is borrowed. The kernel's
        // reads are not Rust accesses, so a peer writing the same bytes is no data race.
        let r = unsafe { libc::writev(fd.as_raw_fd(), iov.as_ptr(), count) };
        usize::try_from(r).map_err(|_| std::io::Error::last_os_error())
    }
}

// SAFETY: the C standard's `void *memmove(void *, const void *, size_t)`, which every C
// library provides and Rust's own code already relies on (`core` lowers its copies to it).
#[cfg(all(not(loom), target_arch = "x86_64"))]
unsafe extern "C" {
    /// The C library's `memmove`: glibc chooses its copy loop per CPU when the program
    /// starts (vector moves, `rep movsb` above a size it tunes per CPU, non-temporal stores
    /// for copies the size of the cache). Declared to be called only from inline assembly:
    /// called from Rust, the compiler would know it as the `memmove` intrinsic and could see
    /// through it.
    fn memmove(dst: *mut u8, src: *const u8, len: usize) -> *mut u8;
}

/// Copies `len` bytes from `src` to `dst` as one opaque operation (overlapping ranges as
/// `memmove` does).
///
/// On x86-64 this is a call to the C library's `memmove` from inline assembly. Inline assembly
/// is opaque to the compiler, so a peer writing the memory concurrently is not a data race in
/// Rust's model and the copy cannot be split, merged or re-read by the optimiser. It was
/// `rep movsb`: between two processes on this project's AMD Zen machines, 1500-byte frames
/// went 1.26x faster through `memmove` and 65535-byte ones the same, and on AMD `rep movsb`
/// is 5-8x slower when the destination lies 16 bytes past the source's page offset, a case
/// glibc's `memmove` steers around (BENCHMARKS.md, "The copy primitive"). Elsewhere it is
/// `ptr::copy` (memmove), the practice of vm-memory and every VMM for guest payload.
///
/// # Safety
/// `src` must be valid for reads and `dst` for writes of `len` bytes.
#[cfg(not(loom))]
#[inline(always)]
unsafe fn raw_copy(src: *const u8, dst: *mut u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the caller guarantees both ranges, and `memmove` reads only `src..src + len` and
    // writes only `dst..dst + len` (and its own stack frame), whatever the bytes it reads:
    // a peer changing them mid-copy changes what is copied, never where. The call follows
    // the C ABI: the arguments are in `rdi`, `rsi` and `rdx`, `clobber_abi("C")` tells the
    // compiler that every caller-saved register (the return value's `rax` among them) and
    // the flags are lost, and without `nostack` the stack pointer is aligned for a call and
    // the memory below it is the block's to use (the return address). The direction flag is
    // clear on entry, as the ABI requires. Without `nomem`, the compiler treats the block as
    // reading and writing any memory, so it orders it with the surrounding code.
    unsafe {
        core::arch::asm!(
            "call {memmove}",
            memmove = sym memmove,
            in("rdi") dst,
            in("rsi") src,
            in("rdx") len,
            clobber_abi("C"),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    // SAFETY: the caller guarantees both ranges; `copy` tolerates overlap.
    unsafe {
        core::ptr::copy(src, dst, len);
    }
}

/// Whether the CPU has `prefetchw` (CPUID leaf 0x8000_0001, ECX bit 8, "PRFCHW" or
/// "3DNowPrefetch"). Asked of the CPU once, then remembered (Relaxed: every thread computes
/// the same answer, so a race only asks twice).
#[cfg(all(not(loom), target_arch = "x86_64"))]
#[inline(always)]
fn prefetchw_supported() -> bool {
    use core::sync::atomic::{AtomicU8, Ordering::Relaxed};
    /// 0: not asked yet; 1: yes; 2: no.
    static HAS: AtomicU8 = AtomicU8::new(0);
    match HAS.load(Relaxed) {
        1 => true,
        2 => false,
        _ => {
            let yes = cpu_has_prefetchw();
            HAS.store(if yes { 1 } else { 2 }, Relaxed);
            yes
        }
    }
}

/// [`prefetchw_supported`]'s question, asked of the CPU.
#[cfg(all(not(loom), target_arch = "x86_64"))]
#[cold]
fn cpu_has_prefetchw() -> bool {
    use core::arch::x86_64::__cpuid;
    // SAFETY: `cpuid` exists on every x86-64 CPU and only writes the four registers the
    // intrinsic returns; leaf 0x8000_0000 gives the highest extended leaf, and 0x8000_0001 is
    // asked for only if it exists. (The intrinsic is a safe function in Rust 1.95, an unsafe
    // one in the workspace's oldest supported Rust, 1.91.)
    #[allow(unused_unsafe)]
    let highest = unsafe { __cpuid(0x8000_0000) }.eax;
    if highest < 0x8000_0001 {
        return false;
    }
    // SAFETY: as above; the leaf exists (checked against `highest`).
    #[allow(unused_unsafe)]
    let ecx = unsafe { __cpuid(0x8000_0001) }.ecx;
    ecx & (1 << 8) != 0
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn heap_regions_start_on_a_page_and_hold_every_word() {
        for len in [0, 4, 4095, 4096, 3 * 4096 + 12] {
            let r = SharedRegion::new_zeroed(len);
            assert_eq!(r.as_ptr() as usize % 4096, 0, "len {len}");
            assert_eq!(r.len(), len / 4 * 4);
            if len >= 4 {
                let last = r.len() - 4;
                r.store_u32(last, 7, Ordering::Relaxed).unwrap();
                assert_eq!(r.load_u32(last, Ordering::Relaxed).unwrap(), 7);
            }
        }
    }

    #[test]
    fn read_write_round_trip_and_padding() {
        let r = SharedRegion::new_zeroed(64);
        r.store_u32(8, 0xdead_beef, Ordering::Relaxed).unwrap();
        r.write_padded(16, &[1u16, 2u16], 12).unwrap();
        assert_eq!(r.read::<[u16; 2]>(16).unwrap(), [1, 2]);
        r.store_u32(20, 7, Ordering::Relaxed).unwrap();
        r.write_padded(16, &[3u16, 4u16], 12).unwrap();
        assert_eq!(
            r.load_u32(20, Ordering::Relaxed).unwrap(),
            0,
            "padding must be zeroed"
        );
        assert_eq!(r.load_u32(8, Ordering::Relaxed).unwrap(), 0xdead_beef);
    }

    #[test]
    fn bounds_and_alignment_are_checked() {
        let r = SharedRegion::new_zeroed(16);
        assert!(r.load_u32(16, Ordering::Relaxed).is_err());
        assert!(r.load_u32(2, Ordering::Relaxed).is_err());
        assert!(r.read::<[u32; 2]>(12).is_err());
        assert!(
            r.write_padded(0, &0u64, 4).is_err(),
            "span smaller than the value"
        );
        assert!(r.zero(usize::MAX - 3, 4).is_err());
        assert!(r.read::<u32>(12).is_ok());
    }

    #[test]
    fn bulk_copies_are_bounds_checked_and_exact() {
        let a = SharedRegion::new_zeroed(64);
        let b = SharedRegion::new_zeroed(64);
        a.copy_in(3, b"hello, world").unwrap();
        let mut out = [0u8; 12];
        a.copy_out(3, &mut out).unwrap();
        assert_eq!(&out, b"hello, world");
        a.copy_to(3, &b, 50, 12).unwrap();
        b.copy_out(50, &mut out).unwrap();
        assert_eq!(&out, b"hello, world");
        assert!(a.copy_in(60, b"12345").is_err());
        assert!(a.copy_out(usize::MAX, &mut out).is_err());
        assert!(a.copy_to(0, &b, 53, 12).is_err());
        b.fill(0, 64, 0xab).unwrap();
        assert_eq!(b.load_u32(60, Ordering::Relaxed).unwrap(), 0xabab_abab);
        // Nothing outside the written ranges changed.
        assert_eq!(
            a.load_u32(0, Ordering::Relaxed).unwrap().to_ne_bytes()[..3],
            [0, 0, 0]
        );
        assert_eq!(
            a.load_u32(12, Ordering::Relaxed).unwrap().to_ne_bytes()[3],
            0
        );
    }

    /// Overlapping ranges of one region, either way round, copy as `memmove` does: the
    /// destination ends up holding what the source held before the copy.
    #[test]
    fn overlapping_copies_within_a_region_are_memmove() {
        let pattern: [u8; 300] = core::array::from_fn(|i| (i * 13 + 1).to_le_bytes()[0]);
        for (from, to, len) in [
            (0usize, 7usize, 250usize),
            (7, 0, 250),
            (64, 65, 200),
            (65, 64, 200),
        ] {
            let r = SharedRegion::new_zeroed(512);
            r.copy_in(0, &pattern).unwrap();
            r.copy_to(from, &r, to, len).unwrap();
            let mut out = [0u8; 250];
            r.copy_out(to, &mut out[..len]).unwrap();
            assert_eq!(
                out[..len],
                pattern[from..from + len],
                "{from} -> {to}, {len} B"
            );
        }
    }

    /// Every length from 0 to 300 at odd offsets: each byte lands where it should and nothing
    /// around it changes.
    #[test]
    fn copies_of_every_length_are_exact() {
        let pattern: [u8; 400] = core::array::from_fn(|i| (i * 7 + 3).to_le_bytes()[0]);
        let a = SharedRegion::new_zeroed(512);
        a.copy_in(5, &pattern).unwrap();
        for len in 0..=300usize {
            for (from, to) in [(5usize, 9usize), (21, 0), (5, 211)] {
                let b = SharedRegion::new_zeroed(512);
                b.fill(0, 512, 0xee).unwrap();
                a.copy_to(from, &b, to, len).unwrap();
                let mut got = [0u8; 512];
                b.copy_out(0, &mut got).unwrap();
                let want = &pattern[from - 5..from - 5 + len];
                assert_eq!(&got[to..to + len], want, "len {len}, {from} -> {to}");
                assert!(got[..to].iter().all(|&x| x == 0xee), "before, len {len}");
                assert!(
                    got[to + len..].iter().all(|&x| x == 0xee),
                    "after, len {len}"
                );
                let mut out = [0u8; 300];
                a.copy_out(from, &mut out[..len]).unwrap();
                assert_eq!(&out[..len], want, "copy_out, len {len}");
            }
        }
    }

    /// Copies of frame sizes and beyond (where `memmove` switches to its larger loops and,
    /// on some CPUs, to `rep movsb` or non-temporal stores): each byte lands where it should,
    /// nothing around it changes, overlapping ranges come out as `memmove`'s, and bounds are
    /// checked.
    #[test]
    fn large_copies_are_exact() {
        const N: usize = 3 * 4096;
        let pattern: alloc::vec::Vec<u8> = (0..N).map(|i| (i * 11 + 5).to_le_bytes()[0]).collect();
        let src = SharedRegion::new_zeroed(N + 64);
        src.copy_in(0, &pattern).unwrap();
        for len in [511, 1024, 1279, 1280, 1281, 1500, 2048, 4095, 4096, 8195] {
            for (from, to) in [(0usize, 0usize), (3, 17), (64, 5)] {
                let dst = SharedRegion::new_zeroed(N + 64);
                dst.fill(0, dst.len(), 0xee).unwrap();
                src.copy_to(from, &dst, to, len).unwrap();
                let mut got = alloc::vec![0u8; dst.len()];
                dst.copy_out(0, &mut got).unwrap();
                let want = &pattern[from..from + len];
                assert_eq!(&got[to..to + len], want, "len {len}, {from} -> {to}");
                assert!(got[..to].iter().all(|&x| x == 0xee), "before, len {len}");
                assert!(
                    got[to + len..].iter().all(|&x| x == 0xee),
                    "after, len {len}"
                );
            }
        }
        // Overlap within one region, either way round: as if through a temporary buffer.
        for (from, to) in [(0usize, 7usize), (7, 0), (0, 64), (64, 0)] {
            let len = 4096 + 100;
            let r = SharedRegion::new_zeroed(N + 64);
            r.copy_in(0, &pattern).unwrap();
            r.copy_to(from, &r, to, len).unwrap();
            let mut out = alloc::vec![0u8; len];
            r.copy_out(to, &mut out).unwrap();
            assert_eq!(out[..], pattern[from..from + len], "{from} -> {to}");
        }
        let small = SharedRegion::new_zeroed(4096);
        assert!(src.copy_to(0, &small, 1, 4096).is_err());
        assert!(small.copy_to(1, &src, 0, 4096).is_err());
    }

    /// Both prefetch hints, in bounds and far out of them: no fault, no byte changed.
    #[test]
    fn prefetches_change_nothing() {
        let r = SharedRegion::new_zeroed(8192);
        r.copy_in(100, &[9; 64]).unwrap();
        for offset in [0, 100, 4095, 8191, 8192, usize::MAX] {
            r.prefetch(offset);
            for len in [0, 1, 64, 1500, 8192, usize::MAX] {
                r.prefetch_for_write(offset, len);
            }
        }
        let mut all = alloc::vec![0u8; 8192];
        r.copy_out(0, &mut all).unwrap();
        assert!(all[100..164].iter().all(|&b| b == 9));
        assert!(all[..100].iter().chain(&all[164..]).all(|&b| b == 0));
        #[cfg(target_arch = "x86_64")]
        assert_eq!(
            prefetchw_supported(),
            cpu_has_prefetchw(),
            "remembered as asked"
        );
    }

    #[test]
    fn subregions_share_memory_and_check_bounds() {
        let r = SharedRegion::new_zeroed(64);
        let sub = r.subregion(16, 32).unwrap();
        assert_eq!(sub.len(), 32);
        sub.store_u32(4, 9, Ordering::Relaxed).unwrap();
        assert_eq!(r.load_u32(20, Ordering::Relaxed).unwrap(), 9);
        assert!(
            sub.load_u32(32, Ordering::Relaxed).is_err(),
            "bounded by the sub-region"
        );
        assert!(r.subregion(48, 32).is_err());
        assert!(r.subregion(2, 4).is_err());
        drop(r);
        assert_eq!(
            sub.load_u32(4, Ordering::Relaxed).unwrap(),
            9,
            "keeps the memory alive"
        );
    }

    #[test]
    fn compare_exchange_reports_the_actual_value() {
        let r = SharedRegion::new_zeroed(8);
        assert_eq!(
            r.compare_exchange_u32(4, 0, 7, Ordering::AcqRel, Ordering::Acquire),
            Ok(Ok(0))
        );
        assert_eq!(
            r.compare_exchange_u32(4, 0, 9, Ordering::AcqRel, Ordering::Acquire),
            Ok(Err(7))
        );
        assert!(
            r.compare_exchange_u32(8, 0, 9, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        );
    }

    #[test]
    fn foreign_memory_must_be_aligned() {
        let mut buf = [0u32; 4];
        let base = NonNull::new(buf.as_mut_ptr().cast::<u8>()).unwrap();
        let odd = NonNull::new(base.as_ptr().wrapping_add(1)).unwrap();
        // SAFETY: `buf` outlives the region and is not touched by this test while it lives;
        // this call fails on alignment before the pointer is kept.
        let misaligned = unsafe { SharedRegion::from_raw_parts(odd, 8, None) };
        assert!(matches!(misaligned, Err(RegionError::Misaligned { .. })));
        // SAFETY: as above.
        let region = unsafe { SharedRegion::from_raw_parts(base, 16, None) }.unwrap();
        region.store_u32(12, 5, Ordering::Relaxed).unwrap();
        assert_eq!(region.len(), 16);
        drop(region);
        assert_eq!(buf[3], 5);
    }

    #[cfg(feature = "std")]
    #[test]
    fn vectored_io_lands_in_the_spans_and_checks_them() {
        use std::io::{Read, Write};
        use std::os::fd::AsFd;
        use std::os::unix::net::UnixStream;

        let r = SharedRegion::new_zeroed(64);
        let (mut a, b) = UnixStream::pair().unwrap();
        a.write_all(b"HDRabcdefghij").unwrap();
        let mut head = [0u8; 3];
        let n = r
            .read_vectored_from(b.as_fd(), &mut head, &[(40, 4), (8, 16)])
            .unwrap();
        assert_eq!((n, &head), (13, b"HDR"));
        let mut out = [0u8; 4];
        r.copy_out(40, &mut out).unwrap();
        assert_eq!(&out, b"abcd");
        let mut out = [0u8; 6];
        r.copy_out(8, &mut out).unwrap();
        assert_eq!(&out, b"efghij");

        let n = r
            .write_vectored_to(b.as_fd(), b"<", &[(8, 6), (40, 4)])
            .unwrap();
        assert_eq!(n, 11);
        let mut back = [0u8; 11];
        a.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"<efghijabcd");

        let err = |res: std::io::Result<usize>| res.unwrap_err().kind();
        let out_of_bounds = r.read_vectored_from(b.as_fd(), &mut head, &[(60, 8)]);
        assert_eq!(err(out_of_bounds), std::io::ErrorKind::InvalidInput);
        let too_many = [(0, 1); MAX_SPANS + 1];
        let res = r.write_vectored_to(b.as_fd(), b"", &too_many);
        assert_eq!(err(res), std::io::ErrorKind::InvalidInput);
    }
}
