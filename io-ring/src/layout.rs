//! The shared page layout of `io/ring.h`: a 64-byte header, then the slots.

use core::mem::offset_of;

use bytemuck::{Pod, Zeroable};

/// The shared ring header (`struct *_sring` up to `ring[]`), for layout reference.
///
/// The ring never reads or writes this struct as a whole: each index is its own atomic word,
/// at the offsets this struct fixes (and the asserts below check).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct SringHeader {
    /// Requests produced by the frontend (written by the frontend).
    pub req_prod: u32,
    /// "Notify me when `req_prod` passes this" (written by the backend).
    pub req_event: u32,
    /// Responses produced by the backend (written by the backend).
    pub rsp_prod: u32,
    /// "Notify me when `rsp_prod` passes this" (written by the frontend).
    pub rsp_event: u32,
    /// Ring-specific private bytes (`pvt`), zeroed at initialisation.
    pub pvt: [u8; 4],
    /// Padding up to the first slot, zeroed at initialisation.
    pub pad: [u8; 44],
}

/// Size of the header in bytes: the first slot starts here.
pub const HEADER_BYTES: usize = size_of::<SringHeader>();

const _: () = {
    assert!(HEADER_BYTES == 64);
    assert!(offset_of!(SringHeader, req_prod) == 0);
    assert!(offset_of!(SringHeader, req_event) == 4);
    assert!(offset_of!(SringHeader, rsp_prod) == 8);
    assert!(offset_of!(SringHeader, rsp_event) == 12);
    assert!(offset_of!(SringHeader, pvt) == 16);
    assert!(offset_of!(SringHeader, pad) == 20);
};

/// Byte offset of `req_prod`.
pub(crate) const REQ_PROD: usize = offset_of!(SringHeader, req_prod);
/// Byte offset of `req_event`.
pub(crate) const REQ_EVENT: usize = offset_of!(SringHeader, req_event);
/// Byte offset of `rsp_prod`.
pub(crate) const RSP_PROD: usize = offset_of!(SringHeader, rsp_prod);
/// Byte offset of `rsp_event`.
pub(crate) const RSP_EVENT: usize = offset_of!(SringHeader, rsp_event);

/// Size in bytes of one slot for a ring of `Req` and `Rsp`: the size of the C union of the two,
/// i.e. the larger size rounded up to the larger alignment.
///
/// ```
/// // netif tx: 12-byte requests, 4-byte responses.
/// assert_eq!(pvnet_io_ring::slot_bytes::<[u16; 6], [u16; 2]>(), 12);
/// // A C union of a 12-byte, 4-aligned and an 8-byte, 8-aligned struct is 16 bytes.
/// assert_eq!(pvnet_io_ring::slot_bytes::<[u32; 3], u64>(), 16);
/// ```
pub const fn slot_bytes<Req, Rsp>() -> usize {
    let size = max(size_of::<Req>(), size_of::<Rsp>());
    let align = max(align_of::<Req>(), align_of::<Rsp>());
    size.div_ceil(align) * align
}

const fn max(a: usize, b: usize) -> usize {
    if a > b { a } else { b }
}

/// The number of entries a ring of `slot_bytes`-byte slots has in `region_bytes` bytes of
/// memory (header included), as `__RING_SIZE` computes it: the slots that fit, rounded down to a
/// power of two. `None` if not even one slot fits or the slot size is zero.
///
/// ```
/// use pvnet_io_ring::ring_size;
/// assert_eq!(ring_size(4096, 12), Some(256)); // netif tx: 336 slots fit
/// assert_eq!(ring_size(4096, 8), Some(256)); // netif rx: 504 slots fit
/// assert_eq!(ring_size(4096, 16), Some(128)); // netif ctrl: 252 slots fit
/// assert_eq!(ring_size(2 * 4096, 12), Some(512));
/// assert_eq!(ring_size(4 * 4096, 12), Some(1024));
/// assert_eq!(ring_size(64, 12), None);
/// ```
pub const fn ring_size(region_bytes: usize, slot_bytes: usize) -> Option<u32> {
    if slot_bytes == 0 || region_bytes < HEADER_BYTES + slot_bytes {
        return None;
    }
    let fit = (region_bytes - HEADER_BYTES) / slot_bytes;
    // Indices are compared by wrapping u32 differences, so at most 2^31 entries are meaningful.
    let fit = if fit > (1 << 31) { 1 << 31 } else { fit };
    // `fit >= 1` here, so the shift below is in range.
    Some(1u32 << (usize::BITS - 1 - fit.leading_zeros()))
}

/// The geometry of one ring: its entry count and slot size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    /// Number of entries, a power of two.
    pub(crate) size: u32,
    /// Bytes per slot, a multiple of 4.
    pub(crate) slot_bytes: usize,
}

impl Geometry {
    /// Byte offset of the slot that ring index `idx` maps to.
    #[inline(always)]
    pub(crate) fn slot_offset(&self, idx: u32) -> usize {
        HEADER_BYTES + (idx & (self.size - 1)) as usize * self.slot_bytes
    }
}

/// Whether a producer that moved its index from `old` to `new` must notify a consumer that
/// asked to be woken when the index passes `event` (`RING_PUSH_*_AND_CHECK_NOTIFY`).
///
/// True exactly when `event` lies in `(old, new]`, computed with wrapping u32 arithmetic.
#[inline(always)]
pub(crate) fn notify_needed(old: u32, new: u32, event: u32) -> bool {
    new.wrapping_sub(event) < new.wrapping_sub(old)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_rule_matches_ring_h() {
        // event just passed
        assert!(notify_needed(0, 1, 1));
        // event not reached yet
        assert!(!notify_needed(0, 1, 2));
        // event already passed before this push
        assert!(!notify_needed(5, 6, 5));
        // across the 2^32 wrap
        assert!(notify_needed(u32::MAX - 1, 2, 0));
        assert!(!notify_needed(u32::MAX - 1, 2, 3));
        // nothing pushed: never notify
        assert!(!notify_needed(7, 7, 7));
    }

    #[test]
    fn sizes_round_down_to_powers_of_two() {
        assert_eq!(ring_size(HEADER_BYTES + 3 * 4, 4), Some(2));
        assert_eq!(ring_size(HEADER_BYTES + 4, 4), Some(1));
        assert_eq!(ring_size(HEADER_BYTES + 4, 0), None);
        assert_eq!(ring_size(usize::MAX, 4), Some(1 << 31));
    }
}
