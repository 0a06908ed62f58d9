//! The message codec and the negotiation rules, on valid and hostile input.

use proptest::prelude::*;
use pvnet_xenbus::{
    BackendFeatures, DecodeError, FrontendChoice, Keys, MAX_KEYS, MAX_VALUE_LEN, Message,
    NegotiationError, RxMode, State, TxFeatures,
};

fn keys(pairs: &[(&str, &str)]) -> Keys {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn malformed_messages_are_typed_errors() {
    let good = Message::Frontend {
        state: State::Connected,
        keys: keys(&[("mtu", "1500")]),
    }
    .encode()
    .unwrap();
    assert_eq!(
        Message::decode(&good[..good.len() - 1]),
        Err(DecodeError::Truncated)
    );
    let mut trailing = good.clone();
    trailing.push(0);
    assert_eq!(Message::decode(&trailing), Err(DecodeError::Trailing(1)));
    let mut bad_state = good.clone();
    bad_state[1] = 9;
    assert_eq!(Message::decode(&bad_state), Err(DecodeError::BadState(9)));
    assert_eq!(Message::decode(&[7]), Err(DecodeError::BadKind(7)));
    assert_eq!(Message::decode(&[]), Err(DecodeError::Truncated));
    // The same key twice.
    let mut dup = vec![2u8, 4, 2, 0];
    for _ in 0..2 {
        dup.extend_from_slice(&[3, 0]);
        dup.extend_from_slice(b"mtu");
        dup.extend_from_slice(&[1, 0, b'1']);
    }
    assert_eq!(
        Message::decode(&dup),
        Err(DecodeError::DuplicateKey("mtu".into()))
    );
    // A key with a space, and one claiming more keys than allowed.
    let spaced = Message::Backend {
        state: State::InitWait,
        keys: keys(&[("a b", "1")]),
    };
    assert_eq!(spaced.encode(), Err(DecodeError::BadKey));
    let many = [2u8, 4, 0xff, 0xff];
    assert_eq!(
        Message::decode(&many),
        Err(DecodeError::TooManyKeys(0xffff))
    );
    assert!(Message::decode(&vec![1u8; pvnet_xenbus::MAX_MESSAGE + 1]).is_err());
}

#[test]
fn negotiation_checks_every_choice_against_the_offer() {
    let offer = {
        let mut c = BackendFeatures::default();
        c.rx_flip = false;
        c.gso_tcpv6 = false;
        c.split_event_channels = false;
        c.max_queues = 2;
        c
    };
    let ok = {
        let mut c = FrontendChoice::default();
        c.queues = 2;
        c.gso_tcpv4 = true;
        c.mtu = 9000;
        c
    };
    assert_eq!(
        FrontendChoice::from_keys(&ok.to_keys(), &offer),
        Ok(ok.clone())
    );
    for (bad, what) in [
        (
            {
                let mut c = ok.clone();
                c.rx_mode = RxMode::Flip;
                c
            },
            "feature-rx-flip",
        ),
        (
            {
                let mut c = ok.clone();
                c.split_event_channels = true;
                c
            },
            "feature-split-event-channels",
        ),
        (
            {
                let mut c = ok.clone();
                c.queues = 3;
                c
            },
            "multi-queue-max-queues",
        ),
        (
            {
                let mut c = ok.clone();
                c.sg = false;
                c.gso_tcpv4 = false;
                c.mtu = 9000;
                c
            },
            "feature-sg (for an MTU above 1500)",
        ),
    ] {
        assert_eq!(
            FrontendChoice::from_keys(&bad.to_keys(), &offer),
            Err(NegotiationError::NotOffered(what))
        );
    }
    // An MTU above 1500 towards a backend that takes one slot per packet.
    let one_slot = {
        let mut o = offer.clone();
        o.sg = false;
        o
    };
    assert_eq!(
        FrontendChoice::from_keys(&ok.to_keys(), &one_slot),
        Err(NegotiationError::NotOffered(
            "feature-sg (for an MTU above 1500)"
        ))
    );
    // What a frontend can receive is its own to say: Linux netfront's keys (sg, both GSO
    // kinds, IPv6 checksums, all 1) are accepted by a backend that takes none of them.
    let narrow = {
        let mut o = BackendFeatures::default();
        o.rx_flip = false;
        o.split_event_channels = false;
        o.sg = false;
        o.gso_tcpv4 = false;
        o.gso_tcpv6 = false;
        o.ipv6_csum_offload = false;
        o
    };
    let linux = {
        let mut c = FrontendChoice::default();
        c.sg = true;
        c.gso_tcpv4 = true;
        c.gso_tcpv6 = true;
        c.ipv6_csum_offload = true;
        c
    };
    assert_eq!(
        FrontendChoice::from_keys(&linux.to_keys(), &narrow),
        Ok(linux.clone())
    );
    // Malformed values.
    for (key, value) in [
        ("mtu", "0"),
        ("mtu", "01500"),
        ("mtu", "+1500"),
        ("mtu", "70000"),
        ("mac", "00:16:3e:00:00"),
        ("mac", "zz:16:3e:00:00:01"),
        ("feature-sg", "yes"),
    ] {
        let mut k = ok.to_keys();
        k.insert(key.into(), value.into());
        assert!(
            matches!(
                FrontendChoice::from_keys(&k, &offer),
                Err(NegotiationError::BadValue { .. })
            ),
            "{key}={value}"
        );
    }
    let mut no_mac = ok.to_keys();
    no_mac.remove("mac");
    assert_eq!(
        FrontendChoice::from_keys(&no_mac, &offer),
        Err(NegotiationError::Missing("mac"))
    );
    // An absent feature-no-csum-offload means IPv4 checksum offload is on.
    let mut k = ok.to_keys();
    k.remove("feature-no-csum-offload");
    assert!(
        FrontendChoice::from_keys(&k, &offer)
            .unwrap()
            .ipv4_csum_offload
    );
    assert_eq!(BackendFeatures::from_keys(&offer.to_keys()), Ok(offer));
}

fn key() -> impl Strategy<Value = String> {
    "[a-z0-9/-]{1,20}"
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = Message::decode(&bytes);
    }

    #[test]
    fn mutated_valid_messages_never_panic_and_stay_within_limits(
        kv in proptest::collection::btree_map(key(), "[ -~]{0,40}", 0..20),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
    ) {
        let mut bytes = Message::Frontend { state: State::Initialised, keys: kv }.encode().unwrap();
        for (at, v) in flips {
            let i = at % bytes.len();
            bytes[i] = v;
        }
        if let Ok(Message::Frontend { keys, .. } | Message::Backend { keys, .. }) = Message::decode(&bytes) {
            prop_assert!(keys.len() <= MAX_KEYS);
            prop_assert!(keys.keys().all(|k| !k.is_empty() && k.len() <= pvnet_xenbus::MAX_KEY_LEN));
        }
    }

    #[test]
    fn valid_messages_round_trip(
        kv in proptest::collection::btree_map(key(), "[ -~]{0,40}", 0..20),
        state in 0u8..9,
        backend in any::<bool>(),
    ) {
        let state = State::try_from(state).unwrap();
        let msg = if backend { Message::Backend { state, keys: kv } } else { Message::Frontend { state, keys: kv } };
        prop_assert_eq!(Message::decode(&msg.encode().unwrap()), Ok(msg));
    }
}

/// A refusal's reason arrives as it was said, or as a prefix of it when it is long: cut on a
/// character boundary (before, the cut fell inside a character and the lossy decode made a
/// different string of it); bytes that are not UTF-8 are a malformed message.
#[test]
fn a_refusal_reason_survives_the_trip() {
    let short = Message::Refused("flip mode without a flip pool: ünïcödé".into());
    assert_eq!(Message::decode(&short.encode().unwrap()).unwrap(), short);
    // 300 bytes of two-byte characters: the cut at 256 bytes falls between two of them.
    let long: String = "é".repeat(150);
    let Message::Refused(got) =
        Message::decode(&Message::Refused(long.clone()).encode().unwrap()).unwrap()
    else {
        panic!("not a refusal");
    };
    assert!(
        got.len() <= MAX_VALUE_LEN && long.starts_with(&got),
        "{got}"
    );
    assert_eq!(got.len(), 256);
    // Three-byte characters: the cut moves back to the last whole one.
    let long: String = "€".repeat(100);
    let Message::Refused(got) =
        Message::decode(&Message::Refused(long.clone()).encode().unwrap()).unwrap()
    else {
        panic!("not a refusal");
    };
    assert_eq!(got.len(), 255);
    assert!(long.starts_with(&got));
    // A peer's reason that is not UTF-8.
    let mut bad = Message::Refused("ab".into()).encode().unwrap();
    let n = bad.len();
    bad[n - 1] = 0xff;
    assert_eq!(
        Message::decode(&bad),
        Err(DecodeError::BadValue("reason".into()))
    );
}

proptest! {
    #[test]
    fn any_reason_arrives_as_a_prefix(reason in ".{0,300}") {
        let msg = Message::Refused(reason.clone());
        let Ok(Message::Refused(got)) = Message::decode(&msg.encode().unwrap()) else {
            panic!("a refusal decodes");
        };
        prop_assert!(reason.starts_with(&got));
        prop_assert!(got.len() <= MAX_VALUE_LEN);
        if reason.len() <= MAX_VALUE_LEN {
            prop_assert_eq!(got, reason);
        }
    }
}

#[test]
fn what_a_frontend_may_send_is_the_backends_offer() {
    let all = BackendFeatures::default();
    let f = TxFeatures::new(&all, 1500);
    assert!(f.sg && f.gso_tcpv4 && f.gso_tcpv6 && f.ipv6_csum_offload);
    assert_eq!((f.max_len, f.max_len_gso), (1514, 65535));
    assert_eq!(TxFeatures::new(&all, 9000).max_len, 9014);
    assert_eq!(TxFeatures::new(&all, pvnet_xenbus::MAX_MTU).max_len, 65535);
    // GSO only with scatter-gather: a GSO packet spans pages.
    let one_slot = {
        let mut o = all.clone();
        o.sg = false;
        o
    };
    let f = TxFeatures::new(&one_slot, 1500);
    assert!(!f.sg && !f.gso_tcpv4 && !f.gso_tcpv6);
    assert_eq!((f.max_len, f.max_len_gso), (1514, 1514));
    assert_eq!(TxFeatures::new(&one_slot, 1280).max_len, 1294);
    let v4_only = {
        let mut o = all.clone();
        o.gso_tcpv6 = false;
        o.ipv6_csum_offload = false;
        o
    };
    let f = TxFeatures::new(&v4_only, 1500);
    assert!(f.gso_tcpv4 && !f.gso_tcpv6 && !f.ipv6_csum_offload);
    assert_eq!(f.max_len_gso, 65535);
    // The keys a backend wrote are what a frontend reads back.
    assert_eq!(
        TxFeatures::new(
            &BackendFeatures::from_keys(&v4_only.to_keys()).unwrap(),
            1500
        ),
        f
    );
}
