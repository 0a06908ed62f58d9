//! The tx parser against Linux netback's rules, at every boundary, and on arbitrary input.

use proptest::prelude::*;
use pvnet_netif::wire::{
    ExtraInfo, TxRequest, extra_flags, extra_type, gso_type, status, tx_flags,
};
use pvnet_netif::{Severity, TxErrorKind, parse_tx, tx_responses};

const MORE: u16 = tx_flags::MORE_DATA;

/// A packet of `len` bytes: the first slot and one following slot per entry of `following`.
fn packet(first_len: u16, following: &[u16]) -> Vec<TxRequest> {
    let total = first_len + following.iter().sum::<u16>();
    let mut reqs = vec![TxRequest {
        gref: 100,
        offset: 0,
        flags: if following.is_empty() { 0 } else { MORE },
        id: 0,
        size: total,
    }];
    for (i, &size) in following.iter().enumerate() {
        let last = i + 1 == following.len();
        let n = u16::try_from(i).unwrap() + 1;
        reqs.push(TxRequest {
            gref: 100 + u32::from(n),
            offset: 0,
            flags: if last { 0 } else { MORE },
            id: n,
            size,
        });
    }
    reqs
}

#[test]
fn nineteen_data_slots_are_accepted_and_twenty_or_twenty_one_dropped() {
    let ok = parse_tx(&packet(100, &[10; 18])).unwrap();
    assert_eq!(ok.fragments().len(), 19);
    assert_eq!(ok.slots, 19);
    for following in [19usize, 20] {
        let reqs = packet(100, &vec![10; following]);
        let e = parse_tx(&reqs).unwrap_err();
        assert_eq!(e.severity, Severity::Drop, "{following} following");
        assert!(matches!(e.kind, TxErrorKind::TooManySlots(_)));
        assert_eq!(
            e.slots,
            following + 1,
            "every slot of the packet is consumed"
        );
    }
    let e = parse_tx(&packet(100, &[10; 21])).unwrap_err();
    assert_eq!(e.severity, Severity::Fatal);
    assert!(matches!(e.kind, TxErrorKind::MaliciousSlotCount(21)));
}

#[test]
fn xsa423_432_max_slot_packets_of_128_bytes_or_less_at_every_size() {
    // 19 data slots carrying 14..=128 bytes: the header may be split across slots.
    for total in 14u16..=128 {
        let following: Vec<u16> = (0..18)
            .map(|i| if i < (total - 14) % 19 { 1 } else { 0 })
            .collect();
        let first = total - following.iter().sum::<u16>();
        let p = parse_tx(&packet(first, &following)).unwrap();
        assert_eq!(p.len, total);
        assert_eq!(
            p.fragments().iter().map(|f| u32::from(f.len)).sum::<u32>(),
            u32::from(total)
        );
        assert_eq!(p.fragments().len(), 19);
    }
}

#[test]
fn xsa448_zero_length_fragments_in_every_position() {
    for at in 0..5 {
        let mut following = vec![100u16; 5];
        following[at] = 0;
        let p = parse_tx(&packet(60, &following)).unwrap();
        assert_eq!(p.fragments()[at + 1].len, 0);
        assert_eq!(
            p.fragments().iter().map(|f| u32::from(f.len)).sum::<u32>(),
            u32::from(p.len)
        );
    }
}

#[test]
fn a_slot_larger_than_what_remains_drops_the_whole_chain() {
    let mut reqs = packet(100, &[50, 50, 50]);
    reqs[0].size = 120; // 100 + 150 does not fit a 120-byte packet
    let e = parse_tx(&reqs).unwrap_err();
    assert_eq!(e.severity, Severity::Drop);
    assert!(matches!(
        e.kind,
        TxErrorKind::SlotLargerThanRemaining { .. }
    ));
    assert_eq!(e.slots, 4);
}

#[test]
fn page_crossing_slots_are_fatal_first_or_following() {
    let mut reqs = packet(100, &[200]);
    reqs[1].offset = 3900;
    assert!(matches!(
        parse_tx(&reqs).unwrap_err().kind,
        TxErrorKind::CrossesPage { .. }
    ));
    let mut reqs = packet(200, &[]);
    reqs[0].offset = 3900;
    assert_eq!(parse_tx(&reqs).unwrap_err().severity, Severity::Fatal);
    // Exactly to the end of the page is fine.
    let mut reqs = packet(196, &[]);
    reqs[0].offset = 3900;
    assert!(parse_tx(&reqs).is_ok());
}

#[test]
fn a_first_slot_shorter_than_an_ethernet_header_is_an_error_response() {
    let e = parse_tx(&packet(13, &[100])).unwrap_err();
    assert_eq!(e.kind, TxErrorKind::FirstTooShort(13));
    assert_eq!(e.severity, Severity::Error);
    assert_eq!(e.slots, 2);
    assert!(parse_tx(&packet(14, &[100])).is_ok());
}

#[test]
fn chains_running_past_the_produced_requests_are_fatal() {
    let reqs = packet(100, &[10, 10]);
    let e = parse_tx(&reqs[..2]).unwrap_err();
    assert_eq!(
        (e.kind, e.severity),
        (TxErrorKind::RunsPastProduced, Severity::Fatal)
    );
    let mut first = packet(100, &[]);
    first[0].flags |= tx_flags::EXTRA_INFO;
    assert_eq!(
        parse_tx(&first).unwrap_err().kind,
        TxErrorKind::MissingExtra
    );
    assert_eq!(parse_tx(&[]).unwrap_err().severity, Severity::Fatal);
}

fn with_extras(extras: &[ExtraInfo], following: &[u16]) -> Vec<TxRequest> {
    let mut reqs = packet(100, following);
    reqs[0].flags |= tx_flags::EXTRA_INFO;
    let slots: Vec<TxRequest> = extras.iter().map(|e| e.to_tx_slot()).collect();
    reqs.splice(1..1, slots);
    reqs
}

#[test]
fn gso_and_extras_are_validated() {
    let p = parse_tx(&with_extras(
        &[ExtraInfo::gso(1448, gso_type::TCPV4, false)],
        &[500],
    ))
    .unwrap();
    assert_eq!(p.gso(), Some((gso_type::TCPV4, 1448)));
    assert_eq!((p.slots, p.extra_slots), (3, 1));

    let e = parse_tx(&with_extras(
        &[ExtraInfo::gso(0, gso_type::TCPV4, false)],
        &[],
    ))
    .unwrap_err();
    assert_eq!(
        (e.kind, e.severity),
        (TxErrorKind::GsoSizeZero, Severity::Fatal)
    );
    let e = parse_tx(&with_extras(&[ExtraInfo::gso(1448, 7, false)], &[])).unwrap_err();
    assert_eq!(e.kind, TxErrorKind::BadGsoType(7));
    for bad in [extra_type::NONE, extra_type::MAX, 200] {
        let extra = ExtraInfo {
            kind: bad,
            flags: 0,
            data: [0; 6],
        };
        let e = parse_tx(&with_extras(&[extra], &[])).unwrap_err();
        assert_eq!(
            (e.kind, e.severity),
            (TxErrorKind::BadExtraType(bad), Severity::Fatal)
        );
    }
    // A chain of two extras, then the data.
    let mcast = ExtraInfo {
        kind: extra_type::MCAST_ADD,
        flags: 0,
        data: [1, 0, 0x5e, 0, 0, 1],
    };
    let p = parse_tx(&with_extras(
        &[ExtraInfo::gso(1000, gso_type::TCPV6, true), mcast],
        &[10],
    ))
    .unwrap();
    assert_eq!(
        p.extra(extra_type::MCAST_ADD).unwrap().mcast_addr(),
        [1, 0, 0x5e, 0, 0, 1]
    );
    assert_eq!((p.slots, p.extra_slots), (4, 2));
    // The extra chain's `more` flag promising one that was not produced.
    let reqs = with_extras(
        &[ExtraInfo {
            kind: extra_type::MCAST_ADD,
            flags: extra_flags::MORE,
            data: [0; 6],
        }],
        &[],
    );
    let e = parse_tx(&reqs).unwrap_err();
    assert_eq!(
        (e.kind, e.severity),
        (TxErrorKind::MissingExtra, Severity::Fatal)
    );
}

#[test]
fn every_consumed_slot_is_answered_extras_with_null() {
    let reqs = with_extras(&[ExtraInfo::gso(1448, gso_type::TCPV4, false)], &[500, 500]);
    let p = parse_tx(&reqs).unwrap();
    let rsps: Vec<_> = tx_responses(&reqs, p.slots, p.extra_slots, status::OKAY).collect();
    assert_eq!(rsps.len(), 4);
    assert_eq!((rsps[0].id, rsps[0].status), (0, status::OKAY));
    assert_eq!(rsps[1].status, status::NULL);
    assert_eq!((rsps[2].id, rsps[3].id), (1, 2));
}

fn arbitrary_slot() -> impl Strategy<Value = TxRequest> {
    (
        any::<u32>(),
        prop_oneof![0u16..4096, any::<u16>()],
        0u16..32,
        any::<u16>(),
        prop_oneof![0u16..2000, any::<u16>()],
    )
        .prop_map(|(gref, offset, flags, id, size)| TxRequest {
            gref,
            offset,
            flags,
            id,
            size,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_slots_never_panic_and_accepted_packets_are_sound(
        reqs in proptest::collection::vec(arbitrary_slot(), 0..40),
    ) {
        match parse_tx(&reqs) {
            Ok(p) => {
                prop_assert!(p.slots <= reqs.len());
                prop_assert_eq!(p.slots, 1 + p.extra_slots + p.fragments().len() - 1);
                prop_assert!(p.fragments().len() <= pvnet_netif::MAX_DATA_SLOTS);
                let sum: u32 = p.fragments().iter().map(|f| u32::from(f.len)).sum();
                prop_assert_eq!(sum, u32::from(p.len), "lengths add up");
                for f in p.fragments() {
                    prop_assert!(u32::from(f.offset) + u32::from(f.len) <= 4096, "inside its page");
                }
                prop_assert!(p.fragments()[0].len >= 14);
                if let Some((kind, size)) = p.gso() {
                    prop_assert!(size > 0 && (kind == gso_type::TCPV4 || kind == gso_type::TCPV6));
                }
            }
            Err(e) => {
                prop_assert_eq!(e.severity, e.kind.severity());
                if e.severity != Severity::Fatal {
                    prop_assert!(e.slots >= 1 && e.slots <= reqs.len(), "answerable slots");
                    prop_assert!(e.extra_slots < e.slots);
                }
            }
        }
    }

    #[test]
    fn well_formed_packets_are_accepted_exactly(
        first in 14u16..1500,
        following in proptest::collection::vec(0u16..4096, 0..=18),
        offsets in proptest::collection::vec(0u16..4096, 19),
        gso in proptest::option::of((1u16..9000, prop_oneof![Just(gso_type::TCPV4), Just(gso_type::TCPV6)])),
    ) {
        let total: u32 = u32::from(first) + following.iter().map(|&s| u32::from(s)).sum::<u32>();
        prop_assume!(total <= 0xffff);
        let mut reqs = packet(first, &following);
        for (r, o) in reqs.iter_mut().zip(&offsets) {
            let len = if r.id == 0 { first } else { r.size };
            r.offset = (*o).min(4096 - len);
        }
        if let Some((size, kind)) = gso {
            reqs[0].flags |= tx_flags::EXTRA_INFO;
            reqs.insert(1, ExtraInfo::gso(size, kind, false).to_tx_slot());
        }
        let p = parse_tx(&reqs).unwrap();
        prop_assert_eq!(u32::from(p.len), total);
        prop_assert_eq!(p.fragments().len(), following.len() + 1);
        prop_assert_eq!(p.slots, reqs.len());
        prop_assert_eq!(p.gso(), gso.map(|(s, k)| (k, s)));
    }
}
