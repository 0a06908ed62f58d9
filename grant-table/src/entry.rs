//! The v1 grant entry, its flags, and Xen's grant status codes.

use core::mem::offset_of;

use bytemuck::{Pod, Zeroable};

/// A grant reference: the index of an entry in the owner's grant table.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Pod, Zeroable)]
pub struct GrantRef(pub u32);

/// A domain id. In the process host, each process picks one at connect time.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Pod, Zeroable)]
pub struct DomId(pub u16);

/// A frame number: in the process host, a 4 KiB frame's offset in its memfd divided by 4096.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Pod, Zeroable)]
pub struct FrameNumber(pub u32);

/// Bytes per frame (and per grant).
pub const FRAME_SIZE: usize = 4096;
/// Grant entries per 4 KiB table page.
pub const ENTRIES_PER_PAGE: usize = FRAME_SIZE / size_of::<GrantEntryV1>();
/// References 0..8 are reserved (for the toolstack in Xen) and never granted.
pub const RESERVED_REFS: u32 = 8;

/// A v1 grant entry as it lies in the shared table (`grant_entry_v1_t`).
///
/// For reference and wire checks only: the table is never read or written as this struct.
/// `flags` and `domid` form one 32-bit word, accessed atomically (so a peer validates both in
/// one compare-and-swap, as Xen does), and `frame` is the next word.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct GrantEntryV1 {
    /// Type and state bits: see [`flags`].
    pub flags: u16,
    /// The domain allowed to use the grant (the grantee).
    pub domid: u16,
    /// The granted frame (permit_access), or the transferred frame (accept_transfer).
    pub frame: u32,
}

const _: () = {
    assert!(size_of::<GrantEntryV1>() == 8);
    assert!(offset_of!(GrantEntryV1, flags) == 0);
    assert!(offset_of!(GrantEntryV1, domid) == 2);
    assert!(offset_of!(GrantEntryV1, frame) == 4);
    assert!(ENTRIES_PER_PAGE == 512);
};

/// Grant entry flags (`GTF_*`).
pub mod flags {
    /// Type: not a grant.
    pub const INVALID: u16 = 0;
    /// Type: the grantee may map or copy the frame.
    pub const PERMIT_ACCESS: u16 = 1;
    /// Type: the grantee may transfer a frame to the owner.
    pub const ACCEPT_TRANSFER: u16 = 2;
    /// Type: transitive grant (v2 only; rejected here).
    pub const TRANSITIVE: u16 = 3;
    /// Mask of the type bits.
    pub const TYPE_MASK: u16 = 3;
    /// permit_access: the grantee may only read.
    pub const READONLY: u16 = 1 << 2;
    /// permit_access: the grantee is reading the frame (set and cleared by the grantee).
    pub const READING: u16 = 1 << 3;
    /// permit_access: the grantee is writing the frame (set and cleared by the grantee).
    pub const WRITING: u16 = 1 << 4;
    /// accept_transfer: the grantee has started a transfer.
    pub const TRANSFER_COMMITTED: u16 = 1 << 2;
    /// accept_transfer: the transfer is done and `frame` holds the new frame.
    pub const TRANSFER_COMPLETED: u16 = 1 << 3;
}

/// Byte offset of a grant entry's flags/domid word in the table.
pub(crate) fn entry_offset(gref: GrantRef) -> usize {
    gref.0 as usize * size_of::<GrantEntryV1>()
}

/// Byte offset of a grant entry's frame word.
pub(crate) fn frame_offset(gref: GrantRef) -> usize {
    entry_offset(gref) + offset_of!(GrantEntryV1, frame)
}

/// The flags/domid word as it lies in memory (little-endian fields, any host order).
pub(crate) fn pack(flags: u16, domid: DomId) -> u32 {
    let (f, d) = (flags.to_le_bytes(), domid.0.to_le_bytes());
    u32::from_ne_bytes([f[0], f[1], d[0], d[1]])
}

/// The inverse of [`pack`].
pub(crate) fn unpack(word: u32) -> (u16, DomId) {
    let b = word.to_ne_bytes();
    (
        u16::from_le_bytes([b[0], b[1]]),
        DomId(u16::from_le_bytes([b[2], b[3]])),
    )
}

/// The word with `bits` set in the flags half and the domid half untouched, for
/// `fetch_or` / `fetch_and` on the table.
pub(crate) fn flag_bits(bits: u16) -> u32 {
    pack(bits, DomId(0))
}

/// Xen's grant operation status codes (`GNTST_*`).
#[repr(i16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum GrantStatus {
    /// The operation succeeded.
    #[error("okay")]
    Okay = 0,
    /// Wrong entry type, an unstable entry, or another failure.
    #[error("general error")]
    GeneralError = -1,
    /// The entry names another grantee domain.
    #[error("bad domain")]
    BadDomain = -2,
    /// The reference is reserved or outside the table.
    #[error("bad grant reference")]
    BadGntref = -3,
    /// Unknown mapping handle.
    #[error("bad handle")]
    BadHandle = -4,
    /// Writing through a read-only grant.
    #[error("permission denied")]
    PermissionDenied = -8,
    /// The frame is outside the owner's memory (or not the owner's to give).
    #[error("bad page")]
    BadPage = -9,
    /// A copy segment crosses its frame, or a bad length.
    #[error("bad copy argument")]
    BadCopyArg = -10,
    /// Try again.
    #[error("try again")]
    Eagain = -12,
    /// Out of space.
    #[error("no space")]
    NoSpace = -13,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_puts_flags_at_offset_0_and_domid_at_2() {
        let w = pack(0x1234, DomId(0xabcd));
        assert_eq!(w.to_ne_bytes(), [0x34, 0x12, 0xcd, 0xab]);
        assert_eq!(unpack(w), (0x1234, DomId(0xabcd)));
        assert_eq!(unpack(flag_bits(flags::READING)).0, flags::READING);
        assert_eq!(entry_offset(GrantRef(3)), 24);
        assert_eq!(frame_offset(GrantRef(3)), 28);
        assert_eq!(GrantStatus::BadCopyArg as i16, -10);
    }
}
