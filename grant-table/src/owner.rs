//! The owner's side (the frontend): a grant table in shared pages, grant and revoke.

use core::sync::atomic::Ordering;

use shared_mem::SharedRegion;

use crate::entry::{
    DomId, FrameNumber, GrantEntryV1, GrantRef, RESERVED_REFS, entry_offset, flags, frame_offset,
    pack, unpack,
};
use crate::error::GrantError;

/// How many times a revoke re-reads an entry the peer keeps changing before reporting it in use.
const REVOKE_TRIES: usize = 8;

/// What the owner granted on a reference (its private record; the shared entry is the peer's
/// view and may be scribbled on).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Reserved,
    Free,
    Access {
        domid: DomId,
        frame: FrameNumber,
        readonly: bool,
    },
    Transfer {
        domid: DomId,
        offered: FrameNumber,
    },
}

/// How a transfer grant ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransferEnd {
    /// No transfer had started: the grant is revoked and the offered frame is still ours.
    Cancelled {
        /// The frame offered in exchange, never taken.
        offered: FrameNumber,
    },
    /// The peer transferred a frame to us: it is ours now, and the offered frame is the peer's.
    Completed {
        /// The frame received.
        received: FrameNumber,
        /// The frame offered in exchange, now the peer's.
        offered: FrameNumber,
    },
}

/// The state of a transfer grant, as the peer has left it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransferState {
    /// Nothing yet.
    Pending,
    /// The peer started the transfer and has not finished it.
    Committed,
    /// Done: this frame is ours (after [`GrantTable::end_transfer`]).
    Completed(FrameNumber),
}

/// The owner's grant table (v1 entries) in memory shared with the peer.
///
/// Single owner (`&mut self`). Grant references come from a free list in O(1); references
/// `0..8` are reserved. Grants are meant to live long (a buffer pool is granted once and reused
/// for every packet), and revoking one the peer still has in use fails with
/// [`GrantError::InUse`]: the caller must not reuse that frame until a later revoke succeeds.
pub struct GrantTable {
    table: SharedRegion,
    slots: Vec<Slot>,
    free: Vec<u32>,
}

impl core::fmt::Debug for GrantTable {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("GrantTable")
            .field("entries", &self.slots.len())
            .field("free", &self.free.len())
            .finish_non_exhaustive()
    }
}

impl GrantTable {
    /// Takes over `table` (any number of 4 KiB pages: 512 entries each), clearing every entry.
    ///
    /// # Errors
    /// [`GrantError::TooSmall`] if the table has room for no grant beyond the reserved ones.
    pub fn new(table: SharedRegion) -> Result<Self, GrantError> {
        let entries = table.len() / size_of::<GrantEntryV1>();
        let entries = u32::try_from(entries).unwrap_or(u32::MAX);
        if entries <= RESERVED_REFS {
            return Err(GrantError::TooSmall {
                len: table.len(),
                what: "grant table",
            });
        }
        table
            .zero(0, entries as usize * size_of::<GrantEntryV1>())
            .map_err(io_other)?;
        let slots = (0..entries)
            .map(|r| {
                if r < RESERVED_REFS {
                    Slot::Reserved
                } else {
                    Slot::Free
                }
            })
            .collect();
        // Hand out low references first.
        let free = (RESERVED_REFS..entries).rev().collect();
        Ok(Self { table, slots, free })
    }

    /// The shared table memory (to hand to the peer).
    pub fn region(&self) -> &SharedRegion {
        &self.table
    }

    /// Grant references not in use.
    pub fn free_count(&self) -> usize {
        self.free.len()
    }

    /// Grants `domid` access to `frame` (read-only or read-write). The entry's frame and domid
    /// are visible to the peer before its flags make the grant valid.
    ///
    /// # Errors
    /// [`GrantError::TableFull`].
    pub fn grant_access(
        &mut self,
        domid: DomId,
        frame: FrameNumber,
        readonly: bool,
    ) -> Result<GrantRef, GrantError> {
        let gref = self.take_ref()?;
        self.store(frame_offset(gref), frame.0, Ordering::Relaxed);
        let f = flags::PERMIT_ACCESS | if readonly { flags::READONLY } else { 0 };
        // Release: the frame written above is visible to a peer that sees these flags (Xen's
        // "write barrier, then flags").
        self.store(entry_offset(gref), pack(f, domid), Ordering::Release);
        self.slots[gref.0 as usize] = Slot::Access {
            domid,
            frame,
            readonly,
        };
        Ok(gref)
    }

    /// Whether the peer currently has an access grant in use (`reading` or `writing` set).
    pub fn in_use(&self, gref: GrantRef) -> bool {
        if !matches!(self.slot(gref), Some(Slot::Access { .. })) {
            return false;
        }
        let (f, _) = unpack(self.load(entry_offset(gref), Ordering::Acquire));
        f & (flags::READING | flags::WRITING) != 0
    }

    /// Revokes an access grant and returns its frame, now free for reuse.
    ///
    /// # Errors
    /// [`GrantError::InUse`] while the peer has the grant in use (the grant stays, and the
    /// frame must not be reused: XSA-396); [`GrantError::NotGranted`] if `gref` is not an access
    /// grant.
    pub fn end_access(&mut self, gref: GrantRef) -> Result<FrameNumber, GrantError> {
        let Some(Slot::Access { frame, .. }) = self.slot(gref) else {
            return Err(GrantError::NotGranted(gref));
        };
        let at = entry_offset(gref);
        for _ in 0..REVOKE_TRIES {
            // Acquire: if the peer has cleared its in-use bits, its accesses to the frame
            // happened before (it clears them with Release).
            let word = self.load(at, Ordering::Acquire);
            let (f, _) = unpack(word);
            if f & (flags::READING | flags::WRITING) != 0 {
                return Err(GrantError::InUse(gref));
            }
            // AcqRel: the peer's acquire (a compare-and-swap setting `reading`) now either
            // fails on the zeroed entry or happened before this, and then we saw its bit.
            let swapped =
                self.table
                    .compare_exchange_u32(at, word, 0, Ordering::AcqRel, Ordering::Acquire);
            if matches!(swapped, Ok(Ok(_))) {
                self.release_ref(gref);
                return Ok(frame);
            }
        }
        // The peer keeps changing the entry: treat it as in use.
        Err(GrantError::InUse(gref))
    }

    /// Offers `domid` a transfer into this domain, giving up `offered` in exchange
    /// (`accept_transfer`). The peer writes the received frame into the entry.
    ///
    /// # Errors
    /// [`GrantError::TableFull`].
    pub fn grant_transfer(
        &mut self,
        domid: DomId,
        offered: FrameNumber,
    ) -> Result<GrantRef, GrantError> {
        let gref = self.take_ref()?;
        self.store(frame_offset(gref), offered.0, Ordering::Relaxed);
        // Release: the offered frame is visible before the grant is.
        self.store(
            entry_offset(gref),
            pack(flags::ACCEPT_TRANSFER, domid),
            Ordering::Release,
        );
        self.slots[gref.0 as usize] = Slot::Transfer { domid, offered };
        Ok(gref)
    }

    /// Where a transfer grant stands.
    ///
    /// # Errors
    /// [`GrantError::NotGranted`] if `gref` is not a transfer grant;
    /// [`GrantError::PeerMisbehaved`] if the peer rewrote its type.
    pub fn transfer_state(&self, gref: GrantRef) -> Result<TransferState, GrantError> {
        let Some(Slot::Transfer { .. }) = self.slot(gref) else {
            return Err(GrantError::NotGranted(gref));
        };
        // Acquire: pairs with the peer's Release when it sets `transfer_completed`, so the
        // frame read below is the one it wrote.
        let (f, _) = unpack(self.load(entry_offset(gref), Ordering::Acquire));
        if f & flags::TYPE_MASK != flags::ACCEPT_TRANSFER {
            return Err(GrantError::PeerMisbehaved {
                gref,
                what: "transfer grant's type changed",
            });
        }
        Ok(if f & flags::TRANSFER_COMPLETED != 0 {
            TransferState::Completed(FrameNumber(
                self.load(frame_offset(gref), Ordering::Relaxed),
            ))
        } else if f & flags::TRANSFER_COMMITTED != 0 {
            TransferState::Committed
        } else {
            TransferState::Pending
        })
    }

    /// Ends a transfer grant: cancels it if no transfer started, or collects the received
    /// frame if one completed.
    ///
    /// # Errors
    /// [`GrantError::TransferInProgress`] if a transfer started and has not completed (try
    /// again); [`GrantError::NotGranted`]; [`GrantError::PeerMisbehaved`].
    pub fn end_transfer(&mut self, gref: GrantRef) -> Result<TransferEnd, GrantError> {
        let Some(Slot::Transfer { offered, .. }) = self.slot(gref) else {
            return Err(GrantError::NotGranted(gref));
        };
        let at = entry_offset(gref);
        for _ in 0..REVOKE_TRIES {
            match self.transfer_state(gref)? {
                TransferState::Pending => {
                    let word = self.load(at, Ordering::Acquire);
                    if unpack(word).0 & flags::TRANSFER_COMMITTED != 0 {
                        continue;
                    }
                    let swapped = self.table.compare_exchange_u32(
                        at,
                        word,
                        0,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    );
                    if matches!(swapped, Ok(Ok(_))) {
                        self.release_ref(gref);
                        return Ok(TransferEnd::Cancelled { offered });
                    }
                }
                TransferState::Committed => return Err(GrantError::TransferInProgress(gref)),
                TransferState::Completed(received) => {
                    self.store(at, 0, Ordering::Release);
                    self.release_ref(gref);
                    return Ok(TransferEnd::Completed { received, offered });
                }
            }
        }
        Err(GrantError::TransferInProgress(gref))
    }

    /// Takes back a grant whose grantee is gone for good (its domain died; on Xen the
    /// hypervisor then tears its mappings down and clears their marks): clears the entry
    /// whatever its in-use bits or transfer state say, and frees the reference. Returns
    /// whether the entry still said it was in use (a mark the dead grantee left). Never for a
    /// grantee that may still run: it could go on using the frame.
    ///
    /// # Errors
    /// [`GrantError::NotGranted`] if `gref` is not granted.
    pub fn reclaim(&mut self, gref: GrantRef) -> Result<bool, GrantError> {
        if !matches!(
            self.slot(gref),
            Some(Slot::Access { .. } | Slot::Transfer { .. })
        ) {
            return Err(GrantError::NotGranted(gref));
        }
        let at = entry_offset(gref);
        // Acquire: whatever the grantee last wrote is before this; nobody writes after.
        let (f, _) = unpack(self.load(at, Ordering::Acquire));
        let marked = f & (flags::READING | flags::WRITING | flags::TRANSFER_COMMITTED) != 0;
        self.store(at, 0, Ordering::Release);
        self.release_ref(gref);
        Ok(marked)
    }

    fn slot(&self, gref: GrantRef) -> Option<Slot> {
        self.slots.get(gref.0 as usize).copied()
    }

    fn take_ref(&mut self) -> Result<GrantRef, GrantError> {
        self.free.pop().map(GrantRef).ok_or(GrantError::TableFull)
    }

    fn release_ref(&mut self, gref: GrantRef) {
        self.slots[gref.0 as usize] = Slot::Free;
        self.free.push(gref.0);
    }

    /// Loads an entry word; in bounds because every reference here came from our own slots.
    fn load(&self, offset: usize, order: Ordering) -> u32 {
        self.table
            .load_u32(offset, order)
            .expect("grant entry inside the table by construction")
    }

    fn store(&self, offset: usize, value: u32, order: Ordering) {
        self.table
            .store_u32(offset, value, order)
            .expect("grant entry inside the table by construction");
    }
}

fn io_other(e: shared_mem::RegionError) -> GrantError {
    GrantError::Io(std::io::Error::other(e))
}
