//! The backend's parser of a guest tx packet: a chain of copied tx request slots in, a validated
//! packet description or a typed error with Linux netback's severity out.

use crate::extras::Extras;
use crate::wire::{
    ETH_HLEN, ExtraInfo, PAGE_SIZE, TxRequest, TxResponse, extra_flags, extra_type, gso_type,
    status, tx_flags,
};

/// Following data slots (after the first) at which netback stops accepting and drops the packet
/// (`XEN_NETBK_LEGACY_SLOTS_MAX`, checked before each following slot is read).
pub const DROP_AT_FOLLOWING: u32 = 18;
/// Following data slots at which the frontend is judged malicious (`fatal_skb_slots`).
pub const FATAL_AT_FOLLOWING: u32 = 20;
/// Most data slots an accepted packet has (the first and 18 following).
pub const MAX_DATA_SLOTS: usize = DROP_AT_FOLLOWING as usize + 1;

/// How bad a malformed packet is, as Linux netback judges it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// Consume the packet's slots, answer each with `DROPPED`, go on.
    Drop,
    /// Consume the packet's slots, answer each with `ERROR`, go on.
    Error,
    /// The frontend is broken or malicious: disable this interface.
    Fatal,
}

/// What was wrong with a tx packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TxErrorKind {
    /// An extra slot was announced beyond the requests produced.
    #[error("extra slot missing")]
    MissingExtra,
    /// An extra slot of an unknown type.
    #[error("bad extra type {0}")]
    BadExtraType(u8),
    /// A data slot was announced (`more_data`) beyond the requests produced.
    #[error("packet runs past the requests produced")]
    RunsPastProduced,
    /// 19 or 20 following slots: dropped.
    #[error("too many slots: {0} following")]
    TooManySlots(u32),
    /// 21 or more following slots: malicious.
    #[error("malicious slot count: {0} following")]
    MaliciousSlotCount(u32),
    /// A following slot larger than what remains of the packet (a wrapped 16-bit size).
    #[error("slot of {size} bytes larger than the {remaining} remaining")]
    SlotLargerThanRemaining {
        /// The slot's size.
        size: u16,
        /// What remained of the packet.
        remaining: u16,
    },
    /// A slot crosses its page.
    #[error("slot at offset {offset} of {size} bytes crosses its page")]
    CrossesPage {
        /// Offset.
        offset: u16,
        /// Size.
        size: u16,
    },
    /// The first slot holds less than an Ethernet header.
    #[error("first slot of {0} bytes is shorter than an Ethernet header")]
    FirstTooShort(u16),
    /// A GSO extra with size 0.
    #[error("GSO size 0")]
    GsoSizeZero,
    /// A GSO extra of an unknown type.
    #[error("bad GSO type {0}")]
    BadGsoType(u8),
}

impl TxErrorKind {
    /// Linux netback's judgement of this error.
    pub fn severity(&self) -> Severity {
        match self {
            TxErrorKind::TooManySlots(_) | TxErrorKind::SlotLargerThanRemaining { .. } => {
                Severity::Drop
            }
            TxErrorKind::FirstTooShort(_) => Severity::Error,
            _ => Severity::Fatal,
        }
    }
}

/// A malformed tx packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind} ({severity:?})")]
pub struct TxError {
    /// What was wrong.
    pub kind: TxErrorKind,
    /// What to do about it.
    pub severity: Severity,
    /// Request slots the packet consumed, all of which must be answered (not meaningful when
    /// `severity` is `Fatal`).
    pub slots: usize,
    /// Extra slots among them, right after the first (answered with `NULL`).
    pub extra_slots: usize,
}

/// One data slot of an accepted packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxFragment {
    /// Grant of the page.
    pub gref: u32,
    /// Offset in the page.
    pub offset: u16,
    /// Bytes (0 is allowed: a zero-length fragment carries nothing, XSA-448).
    pub len: u16,
}

/// A validated tx packet: every fragment lies inside its page and the lengths add up to `len`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxPacket {
    /// The whole packet's length.
    pub len: u16,
    /// The first slot's flags (`csum_blank`, `data_validated`).
    pub flags: u16,
    fragments: [TxFragment; MAX_DATA_SLOTS],
    nfrags: usize,
    extras: Extras,
    /// Request slots consumed (first, extras, following).
    pub slots: usize,
    /// Extra slots among them.
    pub extra_slots: usize,
}

impl TxPacket {
    /// The data slots, first one first.
    #[inline]
    pub fn fragments(&self) -> &[TxFragment] {
        &self.fragments[..self.nfrags]
    }

    /// The extra of a type (one of [`extra_type`](crate::wire::extra_type)), if the packet
    /// carried one.
    pub fn extra(&self, kind: u8) -> Option<ExtraInfo> {
        self.extras.get(kind)
    }

    /// The GSO extra as `(type, size)`, validated.
    #[inline]
    pub fn gso(&self) -> Option<(u8, u16)> {
        self.extras.gso()
    }

    /// Whether the checksum is blank (the backend fills it).
    #[inline]
    pub fn csum_blank(&self) -> bool {
        self.flags & tx_flags::CSUM_BLANK != 0
    }

    /// Whether the checksum is known good.
    #[inline]
    pub fn data_validated(&self) -> bool {
        self.flags & tx_flags::DATA_VALIDATED != 0
    }
}

/// Parses the tx packet that starts at `reqs[0]`. `reqs` holds copies of every request
/// produced and not yet consumed (read once from the ring); nothing here reads shared memory.
///
/// # Errors
/// A [`TxError`] with netback's severity; for `Drop` and `Error`, `slots` requests were
/// consumed and must each be answered ([`tx_responses`]).
pub fn parse_tx(reqs: &[TxRequest]) -> Result<TxPacket, TxError> {
    let mut packet = TxPacket::default();
    parse_tx_into(reqs, &mut packet).map(|()| packet)
}

/// [`parse_tx`] into a packet the caller keeps (a backend's per-poll scratch), so the ~200-byte
/// description is built in place rather than returned and moved. On error `out` holds
/// nothing meaningful.
///
/// # Errors
/// As [`parse_tx`].
#[inline]
pub fn parse_tx_into(reqs: &[TxRequest], out: &mut TxPacket) -> Result<(), TxError> {
    // The usual packet, one slot and no extras, valid: what `parse_general` concludes for it,
    // without its loops or a call (inlined into the backend's poll). Anything else, valid or
    // not, goes the general way; a test checks that both agree on every first slot.
    if let Some(first) = reqs.first()
        && let Some(frag) = tx_one_slot(first)
    {
        out.extras = Extras::default();
        out.fragments[0] = frag;
        out.len = first.size;
        out.flags = first.flags;
        out.nfrags = 1;
        out.slots = 1;
        out.extra_slots = 0;
        return Ok(());
    }
    parse_general(reqs, out)
}

/// The usual packet's one fragment: `first` a packet by itself (no extras, no following
/// slots) and valid, a frame of at least an Ethernet header inside its page. `None` for any
/// other first slot, valid or not, which only [`parse_tx_into`] may judge. A backend may
/// take such a packet without parsing: [`parse_tx_into`] would conclude the same (a packet
/// of this one fragment, `len` its size, `flags` the slot's) by the same test.
#[inline(always)]
#[must_use]
pub fn tx_one_slot(first: &TxRequest) -> Option<TxFragment> {
    (first.flags & (tx_flags::EXTRA_INFO | tx_flags::MORE_DATA) == 0
        && first.size >= ETH_HLEN
        && u32::from(first.offset) + u32::from(first.size) <= PAGE_SIZE)
        .then_some(TxFragment {
            gref: first.gref,
            offset: first.offset,
            len: first.size,
        })
}

/// [`parse_tx_into`] for every packet: extras, following slots, and every error.
fn parse_general(reqs: &[TxRequest], out: &mut TxPacket) -> Result<(), TxError> {
    let fail = |kind: TxErrorKind, slots: usize, extra_slots: usize| TxError {
        kind,
        severity: kind.severity(),
        slots,
        extra_slots,
    };
    let Some(first) = reqs.first().copied() else {
        return Err(fail(TxErrorKind::RunsPastProduced, 0, 0));
    };
    let mut idx = 1;

    // Extras, chained by their `more` flag, right after the first slot.
    out.extras = Extras::default();
    let extras = &mut out.extras;
    if first.flags & tx_flags::EXTRA_INFO != 0 {
        loop {
            let Some(slot) = reqs.get(idx) else {
                return Err(fail(TxErrorKind::MissingExtra, idx, idx - 1));
            };
            idx += 1;
            let extra = ExtraInfo::from_tx_slot(slot);
            if extra.kind == extra_type::NONE || extra.kind >= extra_type::MAX {
                return Err(fail(TxErrorKind::BadExtraType(extra.kind), idx, idx - 1));
            }
            extras.insert(extra);
            if extra.flags & extra_flags::MORE == 0 {
                break;
            }
        }
    }
    let extra_slots = idx - 1;

    // Following data slots (netback's xenvif_count_requests).
    let fragments = &mut out.fragments;
    let mut nfrags = 1;
    let mut remaining = first.size;
    let mut following = 0u32;
    let mut dropped: Option<TxErrorKind> = None;
    let mut more = first.flags & tx_flags::MORE_DATA != 0;
    while more {
        if following >= FATAL_AT_FOLLOWING {
            return Err(fail(
                TxErrorKind::MaliciousSlotCount(following + 1),
                idx,
                extra_slots,
            ));
        }
        if dropped.is_none() && following >= DROP_AT_FOLLOWING {
            dropped = Some(TxErrorKind::TooManySlots(following + 1));
        }
        let Some(slot) = reqs.get(idx).copied() else {
            return Err(fail(TxErrorKind::RunsPastProduced, idx, extra_slots));
        };
        idx += 1;
        following += 1;
        if dropped.is_none() && slot.size > remaining {
            dropped = Some(TxErrorKind::SlotLargerThanRemaining {
                size: slot.size,
                remaining,
            });
        }
        remaining = remaining.wrapping_sub(slot.size);
        if u32::from(slot.offset) + u32::from(slot.size) > PAGE_SIZE {
            return Err(fail(
                TxErrorKind::CrossesPage {
                    offset: slot.offset,
                    size: slot.size,
                },
                idx,
                extra_slots,
            ));
        }
        if dropped.is_none() {
            fragments[nfrags] = TxFragment {
                gref: slot.gref,
                offset: slot.offset,
                len: slot.size,
            };
            nfrags += 1;
        }
        more = slot.flags & tx_flags::MORE_DATA != 0;
    }
    if let Some(kind) = dropped {
        return Err(fail(kind, idx, extra_slots));
    }

    // The first slot's own bytes: what the following slots left of the packet.
    if remaining < ETH_HLEN {
        return Err(fail(
            TxErrorKind::FirstTooShort(remaining),
            idx,
            extra_slots,
        ));
    }
    if u32::from(first.offset) + u32::from(remaining) > PAGE_SIZE {
        return Err(fail(
            TxErrorKind::CrossesPage {
                offset: first.offset,
                size: remaining,
            },
            idx,
            extra_slots,
        ));
    }
    fragments[0] = TxFragment {
        gref: first.gref,
        offset: first.offset,
        len: remaining,
    };

    if let Some((kind, size)) = extras.gso() {
        if size == 0 {
            return Err(fail(TxErrorKind::GsoSizeZero, idx, extra_slots));
        }
        if !matches!(kind, gso_type::TCPV4 | gso_type::TCPV6) {
            return Err(fail(TxErrorKind::BadGsoType(kind), idx, extra_slots));
        }
    }
    out.len = first.size;
    out.flags = first.flags;
    out.nfrags = nfrags;
    out.slots = idx;
    out.extra_slots = extra_slots;
    Ok(())
}

/// The responses to the first `slots` requests of `reqs`, in order: the first and every data
/// slot answered with `status` and its id, each extra slot with `NULL`.
pub fn tx_responses(
    reqs: &[TxRequest],
    slots: usize,
    extra_slots: usize,
    status: i16,
) -> impl Iterator<Item = TxResponse> + '_ {
    reqs.iter().take(slots).enumerate().map(move |(i, req)| {
        if (1..=extra_slots).contains(&i) {
            TxResponse {
                id: 0,
                status: status::NULL,
            }
        } else {
            TxResponse { id: req.id, status }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 20_000, ..ProptestConfig::default() })]

        /// The one-slot shortcut decides exactly as the general parser: same result, same
        /// packet, for any first slot (whatever follows it).
        #[test]
        fn the_one_slot_shortcut_agrees_with_the_general_parser(
            gref in any::<u32>(),
            offset in prop_oneof![0u16..4096, any::<u16>()],
            flags in prop_oneof![0u16..16, any::<u16>()],
            id in any::<u16>(),
            size in prop_oneof![0u16..64, 4000u16..4200, any::<u16>()],
            next in any::<[u16; 6]>(),
        ) {
            let first = TxRequest { gref, offset, flags, id, size };
            let follow = TxRequest {
                gref: u32::from(next[0]),
                offset: next[1] % 4096,
                flags: next[2] % 8,
                id: next[3],
                size: next[4] % 4096,
            };
            let reqs = [first, follow];
            let (mut fast, mut slow) = (TxPacket::default(), TxPacket::default());
            let a = parse_tx_into(&reqs, &mut fast);
            let b = parse_general(&reqs, &mut slow);
            prop_assert_eq!(a, b);
            if a.is_ok() {
                prop_assert_eq!(fast, slow);
            }
        }
    }
}
