//! The grantee's operations over an owner's grant table and frame memory: the one claim
//! protocol every host uses.

use core::sync::atomic::Ordering;
use std::cell::Cell;

use shared_mem::SharedRegion;

use crate::entry::{
    DomId, FRAME_SIZE, FrameNumber, GrantEntryV1, GrantRef, GrantStatus, RESERVED_REFS,
    entry_offset, flag_bits, flags, frame_offset, pack, unpack,
};
use crate::frames::FrameMemory;
use crate::ops::{Access, CopyOp, CopyPtr, GrantMapping, GrantOps, TransferOp};
use crate::pool::FramePool;

/// How many times an entry is re-read when the owner keeps changing it under us (Xen gives up
/// after 4 too: "shared grant entry is unstable").
const ACQUIRE_TRIES: usize = 4;

/// How many of our operations hold a grant (Xen's pin counts, private to the grantee).
#[derive(Clone, Copy, Debug, Default)]
struct Pins {
    read: u32,
    write: u32,
    /// Persistent claims held for copies: bit 0 a read claim, bit 1 a write claim.
    held: u8,
    /// The frame those claims validated.
    frame: u32,
}

/// The grantee (backend) side: the owner's grant table and its frame memory (any
/// [`FrameMemory`]: the process host's one mapping, a VMM's guest RAM), our own frames, and
/// optionally a flip pool.
///
/// Every operation reads the entry's flags/domid word once and claims it with one
/// compare-and-swap that validates type, grantee and permission together (as Xen's
/// `_set_status_v1` does), reads the frame number once, and checks it against the owner's
/// memory before touching a byte. While an operation or a [`PeerMapping`] uses a grant, its
/// `reading` (and `writing`) bit is set, so the owner's revoke fails instead of freeing a
/// frame in use (XSA-396).
///
/// One owner: not `Sync` (pin counts are plain cells).
pub struct PeerGrants<M = SharedRegion> {
    me: DomId,
    table: SharedRegion,
    entries: u32,
    frames: M,
    local: SharedRegion,
    pool: Option<FramePool>,
    pins: Box<[Cell<Pins>]>,
    persistent: bool,
}

impl<M: FrameMemory> core::fmt::Debug for PeerGrants<M> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PeerGrants")
            .field("me", &self.me)
            .field("entries", &self.entries)
            .field("local_frames", &(self.local.len() / FRAME_SIZE))
            .field("pinned", &self.pinned())
            .finish_non_exhaustive()
    }
}

impl<M: FrameMemory> PeerGrants<M> {
    /// Grantee `me`, over the owner's `table` and `frames`, with our own frames in `local`.
    pub fn new(me: DomId, table: SharedRegion, frames: M, local: SharedRegion) -> Self {
        let entries = u32::try_from(table.len() / size_of::<GrantEntryV1>()).unwrap_or(u32::MAX);
        let pins = (0..entries).map(|_| Cell::new(Pins::default())).collect();
        Self {
            me,
            table,
            entries,
            frames,
            local,
            pool: None,
            pins,
            persistent: false,
        }
    }

    /// Keeps the grants that copies use claimed after each copy (Xen's persistent grants):
    /// the first copy through a grant claims it with one compare-and-swap, later ones reuse
    /// the claim and the frame it validated, so a stream of copies through the same buffers
    /// pays no atomic operation per copy. While a claim is held the owner cannot revoke the
    /// grant (it is in use); [`release_persistent`](Self::release_persistent) lets them all go
    /// (before acknowledging the owner's close). For owners that grant buffers for a whole
    /// connection, as netfront does.
    #[must_use]
    pub fn with_persistent_copies(mut self) -> Self {
        self.persistent = true;
        self
    }

    /// Releases every claim [`with_persistent_copies`](Self::with_persistent_copies) kept;
    /// returns how many grants were held.
    pub fn release_persistent(&self) -> usize {
        let mut n = 0;
        for (i, cell) in self.pins.iter().enumerate() {
            let held = cell.get().held;
            if held == 0 {
                continue;
            }
            let mut p = cell.get();
            p.held = 0;
            cell.set(p);
            let gref = GrantRef(u32::try_from(i).unwrap_or(u32::MAX));
            if held & 1 != 0 {
                self.release(gref, false);
            }
            if held & 2 != 0 {
                self.release(gref, true);
            }
            n += 1;
        }
        n
    }

    /// A claim for a copy: a held persistent one, or a new one (kept if persistent). Returns
    /// the frame and whether the caller must release the claim after the copy.
    #[inline(always)]
    fn claim_for_copy(
        &self,
        gref: GrantRef,
        write: bool,
    ) -> Result<(Located<'_>, bool), GrantStatus> {
        let bit = if write { 2 } else { 1 };
        if self.persistent
            && let Some(cell) = self.pins.get(gref.0 as usize)
        {
            let p = cell.get();
            // A write claim also allows reading.
            if p.held & bit != 0 || (!write && p.held & 2 != 0) {
                let frame = FrameNumber(p.frame);
                // Located when claimed; a FrameMemory that changed its mind is refused.
                let (region, at) = self.frames.locate(frame).ok_or(GrantStatus::BadPage)?;
                return Ok((Located { frame, region, at }, false));
            }
        }
        let claimed = self.acquire(gref, write)?;
        if !self.persistent {
            return Ok((claimed, true));
        }
        let cell = &self.pins[gref.0 as usize];
        let mut p = cell.get();
        p.held |= bit;
        p.frame = claimed.frame.0;
        cell.set(p);
        Ok((claimed, false))
    }

    /// Performs one copy now and sets its status: what [`GrantOps::copy`] does for each op
    /// of a batch, without the batch. Inlined, so a caller that copies as it goes (netback
    /// copies each packet as it takes it and answers it at once) pays no call and keeps no
    /// list; the batch's prefetch is then the caller's, with [`prefetch`](Self::prefetch).
    #[inline]
    pub fn copy_one(&self, op: &mut CopyOp) {
        op.status = if self.persistent && self.copy_held(op).is_some() {
            GrantStatus::Okay
        } else {
            self.copy_general(op)
        };
    }

    /// Hints that bytes `offset..offset + len` of the frame behind `gref` will be read soon:
    /// a software prefetch of each of their lines (at least the one at `offset`; none past
    /// the frame). The frame is the one a held persistent claim validated, or else the one
    /// the owner's entry names now (its frame word read once), as long as it is one of the
    /// owner's frames. No claim is taken and no byte of the frame read or written (a hint),
    /// so any reference, offset and length may be passed, a peer's garbage included: the
    /// worst it can do is aim the prefetch at another of the owner's own lines.
    ///
    /// Issued for a batch before its copies, it lets the batch's misses (lines the owner has
    /// just written) overlap instead of queueing. Issued for a buffer the owner read long
    /// before and a copy will write, it brings the lines in from the shared cache ahead of
    /// the copy's stores, which then find them here. Through an entry rather than a held
    /// claim (an owner that grants per packet, as Linux netfront does, cannot be held), the
    /// same hints made netback's receive 1.12-1.53x and transmit at 64 B 1.19-1.21x faster
    /// (BENCHMARKS.md, "Hints for grants not held").
    #[inline]
    pub fn prefetch(&self, gref: GrantRef, offset: u16, len: u16) {
        self.prefetch_lines(gref, offset, len, false);
    }

    /// As [`prefetch`](Self::prefetch), for lines a copy will write: asked for with the
    /// intent to own them (`prefetchw`). For a buffer the owner read a moment ago, whose
    /// lines its core still holds: they come over once, owned, instead of shared and then
    /// taken over again by the copy's stores.
    #[inline]
    pub fn prefetch_for_write(&self, gref: GrantRef, offset: u16, len: u16) {
        self.prefetch_lines(gref, offset, len, true);
    }

    #[inline(always)]
    fn prefetch_lines(&self, gref: GrantRef, offset: u16, len: u16, write: bool) {
        if let Some((region, at)) = self.hint_frame(gref) {
            let start = usize::from(offset);
            let end = (start + usize::from(len.max(1))).min(FRAME_SIZE);
            if write {
                if start < end {
                    region.prefetch_for_write(at + start, end - start);
                }
                return;
            }
            let mut line = start;
            while line < end {
                region.prefetch(at + line);
                // The next line's start: lines are 64 bytes, frames line-aligned.
                line = (line | 63) + 1;
            }
        }
    }

    /// The frame behind `gref`, for a hint: the one a held persistent claim validated, or
    /// else the one the owner's entry names now (its frame word read once, Relaxed, and not
    /// checked beyond being one of the owner's frames: a hint reads and writes no byte, so a
    /// stale or hostile entry can only aim a prefetch elsewhere in the owner's own memory).
    #[inline(always)]
    fn hint_frame(&self, gref: GrantRef) -> Option<(&SharedRegion, usize)> {
        let cell = self.pins.get(gref.0 as usize)?;
        if self.persistent && cell.get().held != 0 {
            return self.frames.locate(FrameNumber(cell.get().frame));
        }
        if gref.0 < RESERVED_REFS {
            return None;
        }
        let frame = self
            .table
            .load_u32(frame_offset(gref), Ordering::Relaxed)
            .ok()?;
        self.frames.locate(FrameNumber(frame))
    }

    /// Adds the flip pool shared with this owner (our view of it), for [`GrantOps::transfer`].
    #[must_use]
    pub fn with_flip_pool(mut self, pool: FramePool) -> Self {
        self.pool = Some(pool);
        self
    }

    /// Entries in the owner's grant table (the grantee keeps a pin count for each).
    pub fn table_entries(&self) -> u32 {
        self.entries
    }

    /// Our view of the flip pool, if any.
    pub fn pool(&self) -> Option<&FramePool> {
        self.pool.as_ref()
    }

    /// The owner's frame memory.
    pub fn frames(&self) -> &M {
        &self.frames
    }

    /// Our own frames.
    pub fn local(&self) -> &SharedRegion {
        &self.local
    }

    /// Grants currently held by our operations, mappings or persistent claims (0 when idle
    /// and released: nothing in use).
    pub fn pinned(&self) -> usize {
        self.pins.iter().filter(|p| p.get().read > 0).count()
    }

    /// Claims a grant for reading (and writing): validates it and marks it in use. Returns
    /// its frame and where that frame is (located once, here).
    fn acquire(&self, gref: GrantRef, write: bool) -> Result<Located<'_>, GrantStatus> {
        if gref.0 < RESERVED_REFS || gref.0 >= self.entries {
            return Err(GrantStatus::BadGntref);
        }
        let at = entry_offset(gref);
        let need = flags::READING | if write { flags::WRITING } else { 0 };
        let mut claimed = false;
        for _ in 0..ACQUIRE_TRIES {
            // Acquire: pairs with the owner's Release store of the flags, so the frame number
            // read below is the one it wrote before granting.
            let word = self
                .table
                .load_u32(at, Ordering::Acquire)
                .map_err(|_| GrantStatus::BadGntref)?;
            let (f, domid) = unpack(word);
            if f & flags::TYPE_MASK != flags::PERMIT_ACCESS {
                return Err(GrantStatus::GeneralError);
            }
            if domid != self.me {
                return Err(GrantStatus::BadDomain);
            }
            if write && f & flags::READONLY != 0 {
                return Err(GrantStatus::PermissionDenied);
            }
            if f & need == need {
                claimed = true;
                break;
            }
            // AcqRel: the claim is ordered before our frame accesses, and against the owner's
            // revoke (a compare-and-swap to 0): exactly one of the two wins.
            let new = pack(f | need, domid);
            if let Ok(Ok(_)) =
                self.table
                    .compare_exchange_u32(at, word, new, Ordering::AcqRel, Ordering::Acquire)
            {
                claimed = true;
                break;
            }
        }
        if !claimed {
            return Err(GrantStatus::GeneralError);
        }
        let cell = &self.pins[gref.0 as usize];
        let mut pins = cell.get();
        pins.read += 1;
        pins.write += u32::from(write);
        cell.set(pins);
        // Read once; only this copy is used. Relaxed: ordered by the claim above.
        let frame = self
            .table
            .load_u32(frame_offset(gref), Ordering::Relaxed)
            .unwrap_or(u32::MAX);
        let frame = FrameNumber(frame);
        let Some((region, at)) = self.frames.locate(frame) else {
            self.release(gref, write);
            return Err(GrantStatus::BadPage);
        };
        Ok(Located { frame, region, at })
    }

    /// Drops one claim; clears the in-use bits when the last claim of their kind goes.
    fn release(&self, gref: GrantRef, write: bool) {
        let cell = &self.pins[gref.0 as usize];
        let mut pins = cell.get();
        pins.read = pins.read.saturating_sub(1);
        if write {
            pins.write = pins.write.saturating_sub(1);
        }
        cell.set(pins);
        let mut clear = 0;
        if pins.read == 0 {
            clear |= flags::READING;
        }
        if pins.write == 0 {
            clear |= flags::WRITING;
        }
        // Release: our accesses to the frame happen before an owner that sees the bits clear
        // (and then revokes and reuses the frame).
        let _ = self
            .table
            .fetch_and_u32(entry_offset(gref), !flag_bits(clear), Ordering::Release);
    }

    /// Resolves one end of a copy: claims a grant if it is one. Returns the memory, the byte
    /// offset in it, and the grant's claim to release and frame (if it is a grant).
    #[inline(always)]
    fn resolve(
        &self,
        ptr: CopyPtr,
        len: u16,
        write: bool,
    ) -> Result<(&SharedRegion, usize, Option<GrantClaim>), GrantStatus> {
        let (CopyPtr::Grant { offset, .. } | CopyPtr::Local { offset, .. }) = ptr;
        if usize::from(offset) + usize::from(len) > FRAME_SIZE {
            return Err(GrantStatus::BadCopyArg);
        }
        match ptr {
            CopyPtr::Grant { gref, .. } => {
                let (c, release) = self.claim_for_copy(gref, write)?;
                Ok((
                    c.region,
                    c.at + usize::from(offset),
                    Some((gref, release, c.frame)),
                ))
            }
            CopyPtr::Local { frame, .. } => {
                let (region, at) = self.local.locate(frame).ok_or(GrantStatus::BadPage)?;
                Ok((region, at + usize::from(offset), None))
            }
        }
    }

    /// The copy of a persistent backend's transmit path: from a grant whose claim is held
    /// into one of our frames. The frame that claim validated is located, both ends are
    /// bounds-checked and the bytes copied, with none of the general path's claim
    /// bookkeeping. `None` when the copy is of another kind or anything is off, having done
    /// nothing: [`copy_general`](Self::copy_general) then performs it or finds its exact status.
    ///
    /// Copies into a held grant (the receive path) take the general path: the same shortcut
    /// for them ran 7-13% slower at 64 B for 49 fewer instructions a frame
    /// (`benches/pvnet/ab.sh`, three builds), a code-generation effect, not a saving. Since
    /// netback copies each frame as it takes it ([`copy_one`](Self::copy_one)), the shortcut
    /// would save 6 instructions a frame (callgrind, 2026-12-07).
    #[inline(always)]
    fn copy_held(&self, op: &CopyOp) -> Option<()> {
        let (CopyPtr::Grant { gref, offset }, CopyPtr::Local { frame, offset: to }) =
            (op.source, op.dest)
        else {
            return None;
        };
        let len = usize::from(op.len);
        // Any held claim allows reading (a write claim too).
        let p = self.pins.get(gref.0 as usize)?.get();
        if p.held == 0
            || usize::from(offset) + len > FRAME_SIZE
            || usize::from(to) + len > FRAME_SIZE
        {
            return None;
        }
        let (src, at) = self.frames.locate(FrameNumber(p.frame))?;
        let (dst, dst_at) = self.local.locate(frame)?;
        src.copy_to(at + usize::from(offset), dst, dst_at + usize::from(to), len)
            .ok()
    }

    #[inline(always)]
    fn copy_general(&self, op: &CopyOp) -> GrantStatus {
        let (src, src_at, src_grant) = match self.resolve(op.source, op.len, false) {
            Ok(r) => r,
            Err(status) => return status,
        };
        let status = match self.resolve(op.dest, op.len, true) {
            Ok((dst, dst_at, dst_grant)) => {
                let len = usize::from(op.len);
                let copied = src.copy_to(src_at, dst, dst_at, len);
                if let Some((g, release, frame)) = dst_grant {
                    if copied.is_ok() {
                        self.frames.written(frame);
                    }
                    if release {
                        self.release(g, true);
                    }
                }
                if copied.is_ok() {
                    GrantStatus::Okay
                } else {
                    GrantStatus::BadCopyArg
                }
            }
            Err(status) => status,
        };
        if let Some((g, true, _)) = src_grant {
            self.release(g, false);
        }
        status
    }

    fn transfer_one(&self, op: &TransferOp) -> GrantStatus {
        let Some(pool) = &self.pool else {
            return GrantStatus::GeneralError;
        };
        if !pool.owns(op.frame) {
            return GrantStatus::BadPage;
        }
        if op.gref.0 < RESERVED_REFS || op.gref.0 >= self.entries {
            return GrantStatus::BadGntref;
        }
        let at = entry_offset(op.gref);
        let Ok(word) = self.table.load_u32(at, Ordering::Acquire) else {
            return GrantStatus::BadGntref;
        };
        let (f, domid) = unpack(word);
        if f & flags::TYPE_MASK != flags::ACCEPT_TRANSFER || f & flags::TRANSFER_COMMITTED != 0 {
            return GrantStatus::GeneralError;
        }
        if domid != self.me {
            return GrantStatus::BadDomain;
        }
        // The frame offered in exchange: read once, and it must be a pool frame the owner has
        // (not ours), or the accounting would break.
        let offered = FrameNumber(
            self.table
                .load_u32(frame_offset(op.gref), Ordering::Relaxed)
                .unwrap_or(u32::MAX),
        );
        if offered.0 >= pool.frames() || pool.owns(offered) {
            return GrantStatus::BadPage;
        }
        let committed = pack(f | flags::TRANSFER_COMMITTED, domid);
        if !matches!(
            self.table.compare_exchange_u32(
                at,
                word,
                committed,
                Ordering::AcqRel,
                Ordering::Acquire
            ),
            Ok(Ok(_))
        ) {
            // The owner changed (or cancelled) the grant meanwhile.
            return GrantStatus::GeneralError;
        }
        // Committed: from here the flip completes. Both ownership changes happen together.
        let swapped = pool.give(op.frame).and_then(|()| pool.receive(offered));
        debug_assert!(
            swapped.is_ok(),
            "checked above: we own op.frame and not offered"
        );
        let _ = self
            .table
            .store_u32(frame_offset(op.gref), op.frame.0, Ordering::Relaxed);
        // Release: the new frame number (and the frame's contents, written before the flip)
        // are visible to an owner that sees `transfer_completed`.
        let _ =
            self.table
                .fetch_or_u32(at, flag_bits(flags::TRANSFER_COMPLETED), Ordering::Release);
        GrantStatus::Okay
    }
}

/// A claimed frame and where it is: a region holding the whole frame and its offset there.
struct Located<'a> {
    frame: FrameNumber,
    region: &'a SharedRegion,
    at: usize,
}

/// The grant end of a resolved copy: the grant, whether its claim is released after the copy
/// (not a persistent one), and its frame.
type GrantClaim = (GrantRef, bool, FrameNumber);

/// A grant mapped for as long as the caller likes (a ring page the backend keeps for the
/// whole connection), not tied to a borrow of [`PeerGrants`]: Xen's map handle. The grant stays
/// in use (the owner cannot revoke it) until [`PeerGrants::unmap_held`] takes the handle back;
/// dropping the handle instead leaves the grant in use (the frontend then cannot reuse that
/// frame: a leak, never an access to freed memory).
#[must_use = "a held mapping keeps the grant in use until PeerGrants::unmap_held"]
#[derive(Debug)]
pub struct HeldMapping {
    gref: GrantRef,
    frame: FrameNumber,
    writable: bool,
    region: SharedRegion,
}

impl HeldMapping {
    /// The mapped frame as shared memory.
    pub fn region(&self) -> &SharedRegion {
        &self.region
    }

    /// The grant it maps.
    pub fn gref(&self) -> GrantRef {
        self.gref
    }

    /// The owner's frame behind it.
    pub fn frame(&self) -> FrameNumber {
        self.frame
    }
}

impl<M: FrameMemory> PeerGrants<M> {
    /// Maps `gref` until [`unmap_held`](Self::unmap_held) (see [`HeldMapping`]).
    ///
    /// # Errors
    /// The status that refused it.
    pub fn map_held(&self, gref: GrantRef, access: Access) -> Result<HeldMapping, GrantStatus> {
        let writable = access == Access::ReadWrite;
        let c = self.acquire(gref, writable)?;
        let Ok(region) = c.region.subregion(c.at, FRAME_SIZE) else {
            self.release(gref, writable);
            return Err(GrantStatus::BadPage);
        };
        Ok(HeldMapping {
            gref,
            frame: c.frame,
            writable,
            region,
        })
    }

    /// Ends a held mapping: the grant is no longer in use by it.
    pub fn unmap_held(&self, mapping: HeldMapping) {
        if mapping.writable {
            self.frames.written(mapping.frame);
        }
        self.release(mapping.gref, mapping.writable);
    }
}

/// A mapped grant: the owner's frame, in use until dropped.
pub struct PeerMapping<'a, M: FrameMemory = SharedRegion> {
    grants: &'a PeerGrants<M>,
    gref: GrantRef,
    frame: FrameNumber,
    writable: bool,
    memory: &'a SharedRegion,
    base: usize,
}

impl<M: FrameMemory> core::fmt::Debug for PeerMapping<'_, M> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PeerMapping")
            .field("gref", &self.gref)
            .field("frame", &self.frame)
            .field("writable", &self.writable)
            .finish()
    }
}

impl<M: FrameMemory> PeerMapping<'_, M> {
    fn at(&self, offset: usize, len: usize) -> Result<usize, GrantStatus> {
        match offset.checked_add(len) {
            Some(end) if end <= FRAME_SIZE => Ok(self.base + offset),
            _ => Err(GrantStatus::BadCopyArg),
        }
    }

    /// The mapped frame as shared memory, for structures that live in a granted page (a ring
    /// the frontend granted). Use it only while this mapping lives: the grant is in use (and
    /// the owner cannot revoke it) exactly as long.
    pub fn region(&self) -> SharedRegion {
        self.memory
            .subregion(self.base, FRAME_SIZE)
            .expect("a located frame lies inside its region (FrameMemory's contract)")
    }
}

impl<M: FrameMemory> GrantMapping for PeerMapping<'_, M> {
    fn frame(&self) -> FrameNumber {
        self.frame
    }

    fn writable(&self) -> bool {
        self.writable
    }

    fn read(&self, offset: usize, buf: &mut [u8]) -> Result<(), GrantStatus> {
        let at = self.at(offset, buf.len())?;
        self.memory
            .copy_out(at, buf)
            .map_err(|_| GrantStatus::BadCopyArg)
    }

    fn write(&self, offset: usize, buf: &[u8]) -> Result<(), GrantStatus> {
        if !self.writable {
            return Err(GrantStatus::PermissionDenied);
        }
        let at = self.at(offset, buf.len())?;
        self.memory
            .copy_in(at, buf)
            .map_err(|_| GrantStatus::BadCopyArg)
    }
}

impl<M: FrameMemory> Drop for PeerMapping<'_, M> {
    fn drop(&mut self) {
        if self.writable {
            self.grants.frames.written(self.frame);
        }
        self.grants.release(self.gref, self.writable);
    }
}

impl<M: FrameMemory> GrantOps for PeerGrants<M> {
    type Mapping<'a>
        = PeerMapping<'a, M>
    where
        M: 'a;

    fn copy(&self, ops: &mut [CopyOp]) {
        // The sources' first lines asked for now, so the batch's misses (the owner's freshly
        // written data) overlap.
        for op in ops.iter() {
            if let CopyPtr::Grant { gref, offset } = op.source {
                self.prefetch(gref, offset, 1);
            }
        }
        for op in ops {
            self.copy_one(op);
        }
    }

    fn map(&self, gref: GrantRef, access: Access) -> Result<PeerMapping<'_, M>, GrantStatus> {
        let writable = access == Access::ReadWrite;
        let c = self.acquire(gref, writable)?;
        Ok(PeerMapping {
            grants: self,
            gref,
            frame: c.frame,
            writable,
            memory: c.region,
            base: c.at,
        })
    }

    fn transfer(&self, ops: &mut [TransferOp]) {
        for op in ops {
            op.status = self.transfer_one(op);
        }
    }
}
