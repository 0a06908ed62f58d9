//! The rx parser: what a frontend accepts from a backend, and what breaks the backend.

use proptest::prelude::*;
use pvnet_netif::wire::{ExtraInfo, RxResponse, extra_type, gso_type, rx_flags};
use pvnet_netif::{RxErrorKind, Severity, parse_rx};

const MORE: u16 = rx_flags::MORE_DATA;

/// Data responses for slot lengths `lens`, ids 10, 11, ...; and the ids posted.
fn chain(lens: &[i16]) -> (Vec<RxResponse>, Vec<u16>) {
    let rsps: Vec<RxResponse> = lens
        .iter()
        .enumerate()
        .map(|(i, &status)| RxResponse {
            id: 10 + u16::try_from(i).unwrap(),
            offset: 0,
            flags: if i + 1 < lens.len() { MORE } else { 0 },
            status,
        })
        .collect();
    let posted = rsps.iter().map(|r| r.id).collect();
    (rsps, posted)
}

#[test]
fn a_multi_slot_packet_with_a_gso_extra_is_accepted() {
    let (mut rsps, mut posted) = chain(&[4096, 4096, 100]);
    rsps[0].flags |= rx_flags::EXTRA_INFO | rx_flags::DATA_VALIDATED;
    rsps.insert(
        1,
        bytemuck::cast(ExtraInfo::gso(1448, gso_type::TCPV4, false)),
    );
    posted.insert(1, 99); // the extra's slot: its id bytes are the extra's
    let p = parse_rx(&rsps, &posted).unwrap();
    assert_eq!(p.len, 8292);
    assert_eq!(p.slots, 4);
    assert_eq!(
        p.fragments().iter().map(|f| f.id).collect::<Vec<_>>(),
        [10, 11, 12]
    );
    assert_eq!(p.gso(), Some((gso_type::TCPV4, 1448)));
    assert!(p.data_validated());
}

#[test]
fn what_breaks_the_backend() {
    let (rsps, mut posted) = chain(&[100, 100]);
    posted[1] = 7;
    let e = parse_rx(&rsps, &posted).unwrap_err();
    assert_eq!(
        (e.kind, e.severity),
        (RxErrorKind::WrongId { got: 11, posted: 7 }, Severity::Fatal)
    );

    let (mut rsps, posted) = chain(&[200]);
    rsps[0].offset = 3900;
    assert_eq!(
        parse_rx(&rsps, &posted).unwrap_err().severity,
        Severity::Fatal
    );

    let (rsps, posted) = chain(&[100, 100, 100]);
    let e = parse_rx(&rsps[..2], &posted[..2]).unwrap_err();
    assert_eq!(
        (e.kind, e.severity),
        (RxErrorKind::Incomplete, Severity::Fatal)
    );

    let (mut rsps, mut posted) = chain(&[100]);
    rsps[0].flags |= rx_flags::EXTRA_INFO;
    rsps.push(bytemuck::cast(ExtraInfo {
        kind: 9,
        flags: 0,
        data: [0; 6],
    }));
    posted.push(0);
    assert_eq!(
        parse_rx(&rsps, &posted).unwrap_err().kind,
        RxErrorKind::BadExtraType(9)
    );
}

#[test]
fn what_drops_just_the_packet_consuming_all_its_slots() {
    let (rsps, posted) = chain(&[100, -1, 100]);
    let e = parse_rx(&rsps, &posted).unwrap_err();
    assert_eq!(
        (e.kind, e.severity, e.slots),
        (RxErrorKind::Status(-1), Severity::Drop, 3)
    );

    let (rsps, posted) = chain(&[10; 20]);
    let e = parse_rx(&rsps, &posted).unwrap_err();
    assert_eq!(
        (e.kind, e.severity, e.slots),
        (RxErrorKind::TooManySlots(20), Severity::Drop, 20)
    );
    assert!(parse_rx(&chain(&[10; 19]).0, &chain(&[10; 19]).1).is_ok());

    let (mut rsps, mut posted) = chain(&[100]);
    rsps[0].flags |= rx_flags::EXTRA_INFO;
    rsps.push(bytemuck::cast(ExtraInfo::gso(0, gso_type::TCPV6, false)));
    posted.push(0);
    let e = parse_rx(&rsps, &posted).unwrap_err();
    assert_eq!((e.severity, e.slots), (Severity::Drop, 2));
}

fn arbitrary_response() -> impl Strategy<Value = (RxResponse, u16)> {
    (
        0u16..8,
        prop_oneof![0u16..4096, any::<u16>()],
        0u16..32,
        prop_oneof![0i16..4097, any::<i16>()],
        any::<bool>(),
    )
        .prop_map(|(id, offset, flags, status, posted_matches)| {
            let r = RxResponse {
                id,
                offset,
                flags,
                status,
            };
            (
                r,
                if posted_matches {
                    id
                } else {
                    id.wrapping_add(1)
                },
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_responses_never_panic_and_accepted_packets_are_sound(
        slots in proptest::collection::vec(arbitrary_response(), 0..30),
    ) {
        let (rsps, posted): (Vec<RxResponse>, Vec<u16>) = slots.into_iter().unzip();
        match parse_rx(&rsps, &posted) {
            Ok(p) => {
                prop_assert!(p.slots >= 1 && p.slots <= rsps.len());
                prop_assert!(p.fragments().len() <= pvnet_netif::MAX_DATA_SLOTS);
                prop_assert_eq!(p.len, p.fragments().iter().map(|f| u32::from(f.len)).sum::<u32>());
                for f in p.fragments() {
                    prop_assert!(u32::from(f.offset) + u32::from(f.len) <= 4096);
                }
                if let Some((kind, size)) = p.gso() {
                    prop_assert!(size > 0 && (kind == gso_type::TCPV4 || kind == gso_type::TCPV6));
                }
                prop_assert!(p.extra(extra_type::NONE).is_none());
            }
            Err(e) => {
                prop_assert_eq!(e.severity, e.kind.severity());
                prop_assert!(e.slots <= rsps.len());
            }
        }
    }
}
