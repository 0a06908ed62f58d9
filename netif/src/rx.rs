//! The frontend's parser of a received packet: a chain of copied rx response slots (and the ids
//! it posted in those slots) in, a validated packet or a typed error out.

use crate::extras::Extras;
use crate::tx::{MAX_DATA_SLOTS, Severity};
use crate::wire::{ExtraInfo, PAGE_SIZE, RxResponse, extra_flags, extra_type, gso_type, rx_flags};

/// What was wrong with a received packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RxErrorKind {
    /// The packet's slots run past the responses published: backends publish whole packets.
    #[error("packet runs past the responses published")]
    Incomplete,
    /// A response carries another id than the buffer posted in its slot.
    #[error("response id {got} in the slot of posted buffer {posted}")]
    WrongId {
        /// The id in the response.
        got: u16,
        /// The id posted in that slot.
        posted: u16,
    },
    /// A slot's data runs past its page.
    #[error("slot data at offset {offset} of {len} bytes leaves its page")]
    CrossesPage {
        /// Offset.
        offset: u16,
        /// Length.
        len: u16,
    },
    /// An extra of an unknown type.
    #[error("bad extra type {0}")]
    BadExtraType(u8),
    /// The backend reported an error for this packet (a negative status).
    #[error("backend status {0}")]
    Status(i16),
    /// More data slots than a packet may have.
    #[error("too many slots: {0}")]
    TooManySlots(usize),
    /// A GSO extra with size 0 or an unknown type.
    #[error("bad GSO extra: type {kind}, size {size}")]
    BadGso {
        /// GSO type.
        kind: u8,
        /// GSO size.
        size: u16,
    },
}

impl RxErrorKind {
    /// What the frontend does: drop the packet (its slots consumed), or mark the backend broken.
    pub fn severity(&self) -> Severity {
        match self {
            RxErrorKind::Status(_) | RxErrorKind::TooManySlots(_) | RxErrorKind::BadGso { .. } => {
                Severity::Drop
            }
            _ => Severity::Fatal,
        }
    }
}

/// A malformed received packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind} ({severity:?})")]
pub struct RxError {
    /// What was wrong.
    pub kind: RxErrorKind,
    /// Drop the packet, or the backend is broken.
    pub severity: Severity,
    /// Response slots the packet consumed (their buffers can be posted again).
    pub slots: usize,
}

/// One data slot of a received packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxFragment {
    /// The posted buffer's id.
    pub id: u16,
    /// Offset of the data in the buffer's page.
    pub offset: u16,
    /// Bytes.
    pub len: u16,
}

/// A validated received packet: every fragment inside its page, ids matching the buffers
/// posted, lengths adding up to `len`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxPacket {
    /// Total bytes.
    pub len: u32,
    /// The first slot's flags.
    pub flags: u16,
    fragments: [RxFragment; MAX_DATA_SLOTS],
    nfrags: usize,
    extras: Extras,
    /// Response slots consumed (data and extras).
    pub slots: usize,
}

impl RxPacket {
    /// The data slots, first one first.
    #[inline]
    pub fn fragments(&self) -> &[RxFragment] {
        &self.fragments[..self.nfrags]
    }

    /// The extra of a type (one of [`extra_type`](crate::wire::extra_type)), if the packet
    /// carried one.
    pub fn extra(&self, kind: u8) -> Option<ExtraInfo> {
        self.extras.get(kind)
    }

    /// The GSO extra as `(type, size)`, validated.
    pub fn gso(&self) -> Option<(u8, u16)> {
        self.extras.gso()
    }

    /// Whether the checksum is known good.
    pub fn data_validated(&self) -> bool {
        self.flags & rx_flags::DATA_VALIDATED != 0
    }

    /// Whether the checksum is blank.
    pub fn csum_blank(&self) -> bool {
        self.flags & rx_flags::CSUM_BLANK != 0
    }
}

/// Parses the received packet that starts at `rsps[0]`. `rsps` holds copies of the responses
/// published and not yet consumed, and `posted[i]` the id of the buffer posted in the slot of
/// `rsps[i]` (the same length). Extras follow the first data slot.
///
/// # Errors
/// An [`RxError`]: `Drop` (consume `slots` responses, re-post their buffers) or `Fatal` (the
/// backend is broken).
pub fn parse_rx(rsps: &[RxResponse], posted: &[u16]) -> Result<RxPacket, RxError> {
    let mut packet = RxPacket::default();
    parse_rx_into(rsps, posted, &mut packet).map(|()| packet)
}

/// [`parse_rx`] into a packet the caller keeps (a frontend's scratch), so the description is
/// built in place rather than returned and moved. On error `out` holds nothing meaningful.
///
/// # Errors
/// As [`parse_rx`].
#[inline]
pub fn parse_rx_into(
    rsps: &[RxResponse],
    posted: &[u16],
    out: &mut RxPacket,
) -> Result<(), RxError> {
    // The usual packet, one slot and no extras, valid: what `parse_general` concludes for it,
    // without its closures or a call (inlined into the frontend's receive). Anything else,
    // valid or not, goes the general way; a test checks that both agree on every first slot.
    if let (Some(first), Some(&id)) = (rsps.first(), posted.first())
        && let Some(frag) = rx_one_slot(first, id)
    {
        out.fragments[0] = frag;
        out.extras = Extras::default();
        out.len = u32::from(frag.len);
        out.flags = first.flags;
        out.nfrags = 1;
        out.slots = 1;
        return Ok(());
    }
    parse_general(rsps, posted, out)
}

/// The usual packet's one fragment: `first` (answering the buffer posted as `posted`) a
/// packet by itself (no extras, no following slots) and valid: its id the one posted, a
/// status that is a length, the data inside the page. `None` for any other first slot,
/// valid or not, which only [`parse_rx_into`] may judge. A frontend may take such a packet
/// without parsing: [`parse_rx_into`] would conclude the same (a packet of this one
/// fragment, `len` its length, `flags` the slot's) by the same test.
#[inline(always)]
#[must_use]
pub fn rx_one_slot(first: &RxResponse, posted: u16) -> Option<RxFragment> {
    (first.flags & (rx_flags::EXTRA_INFO | rx_flags::MORE_DATA) == 0
        && first.id == posted
        && first.status >= 0
        && u32::from(first.offset) + u32::from(first.status.unsigned_abs()) <= PAGE_SIZE)
        .then_some(RxFragment {
            id: posted,
            offset: first.offset,
            len: first.status.unsigned_abs(),
        })
}

/// [`parse_rx_into`] for every packet: extras, following slots, and every error.
fn parse_general(rsps: &[RxResponse], posted: &[u16], out: &mut RxPacket) -> Result<(), RxError> {
    let fail = |kind: RxErrorKind, slots: usize| RxError {
        kind,
        severity: kind.severity(),
        slots,
    };
    let n = rsps.len().min(posted.len());
    let data_slot = |i: usize| -> Result<RxFragment, RxErrorKind> {
        let r = rsps[i];
        if r.id != posted[i] {
            return Err(RxErrorKind::WrongId {
                got: r.id,
                posted: posted[i],
            });
        }
        if r.status < 0 {
            return Err(RxErrorKind::Status(r.status));
        }
        let len = r.status.unsigned_abs();
        if u32::from(r.offset) + u32::from(len) > PAGE_SIZE {
            return Err(RxErrorKind::CrossesPage {
                offset: r.offset,
                len,
            });
        }
        Ok(RxFragment {
            id: r.id,
            offset: r.offset,
            len,
        })
    };
    if n == 0 {
        return Err(fail(RxErrorKind::Incomplete, 0));
    }
    let first = rsps[0];
    let fragments = &mut out.fragments;
    // A packet-level problem (drop) is remembered while the chain is walked to its end.
    let mut dropped: Option<RxErrorKind> = None;
    match data_slot(0) {
        Ok(f) => fragments[0] = f,
        Err(k) if k.severity() == Severity::Fatal => return Err(fail(k, 1)),
        Err(k) => dropped = Some(k),
    }
    let mut idx = 1;

    out.extras = Extras::default();
    let extras = &mut out.extras;
    if first.flags & rx_flags::EXTRA_INFO != 0 {
        loop {
            if idx >= n {
                return Err(fail(RxErrorKind::Incomplete, idx));
            }
            let extra: ExtraInfo = bytemuck::cast(rsps[idx]);
            idx += 1;
            if extra.kind == extra_type::NONE || extra.kind >= extra_type::MAX {
                return Err(fail(RxErrorKind::BadExtraType(extra.kind), idx));
            }
            extras.insert(extra);
            if extra.flags & extra_flags::MORE == 0 {
                break;
            }
        }
    }

    let mut nfrags = 1;
    let mut more = first.flags & rx_flags::MORE_DATA != 0;
    while more {
        if idx >= n {
            return Err(fail(RxErrorKind::Incomplete, idx));
        }
        let r = rsps[idx];
        idx += 1;
        match data_slot(idx - 1) {
            Err(k) if k.severity() == Severity::Fatal => return Err(fail(k, idx)),
            Err(k) => {
                dropped.get_or_insert(k);
            }
            Ok(f) if nfrags < MAX_DATA_SLOTS => {
                fragments[nfrags] = f;
                nfrags += 1;
            }
            Ok(_) => {
                dropped.get_or_insert(RxErrorKind::TooManySlots(nfrags + 1));
            }
        }
        more = r.flags & rx_flags::MORE_DATA != 0;
    }
    if let Some(k) = dropped {
        return Err(fail(k, idx));
    }
    if let Some((kind, size)) = extras.gso()
        && (size == 0 || !matches!(kind, gso_type::TCPV4 | gso_type::TCPV6))
    {
        return Err(fail(RxErrorKind::BadGso { kind, size }, idx));
    }
    out.len = fragments[..nfrags].iter().map(|f| u32::from(f.len)).sum();
    out.flags = first.flags;
    out.nfrags = nfrags;
    out.slots = idx;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 20_000, ..ProptestConfig::default() })]

        /// The one-slot shortcut decides exactly as the general parser: same result, same
        /// packet, for any first slot and posted id (whatever follows them).
        #[test]
        fn the_one_slot_shortcut_agrees_with_the_general_parser(
            id in prop_oneof![0u16..4, any::<u16>()],
            posted in prop_oneof![0u16..4, any::<u16>()],
            offset in prop_oneof![0u16..4096, any::<u16>()],
            flags in prop_oneof![0u16..64, any::<u16>()],
            status in prop_oneof![-2i16..64, 4000i16..4200, any::<i16>()],
            next in any::<[u16; 4]>(),
        ) {
            let first = RxResponse { id, offset, flags, status };
            let follow = RxResponse {
                id: next[0] % 4,
                offset: next[1] % 4096,
                flags: next[2] % 8,
                status: i16::try_from(next[3] % 4096).unwrap_or(0),
            };
            let rsps = [first, follow];
            let ids = [posted, next[0] % 4];
            let (mut fast, mut slow) = (RxPacket::default(), RxPacket::default());
            let a = parse_rx_into(&rsps, &ids, &mut fast);
            let b = parse_general(&rsps, &ids, &mut slow);
            prop_assert_eq!(a, b);
            if a.is_ok() {
                prop_assert_eq!(fast, slow);
            }
        }
    }
}
