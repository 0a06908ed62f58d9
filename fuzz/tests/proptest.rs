//! The fuzzing harnesses under proptest, on every CI run: arbitrary bytes, and bytes shaped
//! like their inputs (whole slots, messages with valid headers).

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn tx_parser(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        pvnet_fuzz::tx_parser(&bytes);
    }

    #[test]
    fn tx_parser_small_fields(slots in proptest::collection::vec(
        (0u32..8, 0u16..4200, 0u16..16, any::<u16>(), 0u16..2000), 1..24)) {
        let mut bytes = Vec::new();
        for (gref, offset, flags, id, size) in slots {
            bytes.extend_from_slice(&gref.to_le_bytes());
            bytes.extend_from_slice(&offset.to_le_bytes());
            bytes.extend_from_slice(&flags.to_le_bytes());
            bytes.extend_from_slice(&id.to_le_bytes());
            bytes.extend_from_slice(&size.to_le_bytes());
        }
        pvnet_fuzz::tx_parser(&bytes);
    }

    #[test]
    fn rx_parser(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        pvnet_fuzz::rx_parser(&bytes);
    }

    #[test]
    fn control(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        pvnet_fuzz::control(&bytes);
    }

    #[test]
    fn control_frontend_keys(pairs in proptest::collection::vec(
        (prop::sample::select(vec![
            "request-rx-copy", "feature-sg", "multi-queue-num-queues", "frames-fd",
            "grant-table-fd", "flip-pool-fd", "tx-ring-ref", "rx-ring-ref", "event-channel",
            "queue-0/tx-ring-ref", "queue-0/rx-ring-ref", "queue-0/event-channel", "mtu", "mac",
        ]), "[0-9a-f:,]{0,12}"), 0..16)) {
        let keys: xenbus::Keys = pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        let msg = xenbus::Message::Frontend { state: xenbus::State::Connected, keys };
        if let Ok(bytes) = msg.encode() {
            pvnet_fuzz::control(&bytes);
        }
    }

    /// A backend's offer with real keys (0 or 1 mostly), read as a frontend reads it.
    #[test]
    fn control_backend_keys(pairs in proptest::collection::vec(
        (prop::sample::select(vec![
            "feature-sg", "feature-gso-tcpv4", "feature-gso-tcpv6", "feature-ipv6-csum-offload",
            "feature-rx-copy", "feature-rx-flip", "feature-split-event-channels",
            "multi-queue-max-queues", "feature-no-csum-offload", "mtu",
        ]), prop_oneof![Just("0".to_owned()), Just("1".to_owned()), "[0-9]{0,6}"]), 0..12)) {
        let keys: xenbus::Keys = pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        let msg = xenbus::Message::Backend { state: xenbus::State::InitWait, keys };
        if let Ok(bytes) = msg.encode() {
            pvnet_fuzz::control(&bytes);
        }
    }

    #[test]
    fn ring(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        pvnet_fuzz::ring(&bytes);
    }

    #[test]
    fn ring_indices(req_prod in any::<u32>(), rsp_prod in any::<u32>()) {
        let mut bytes = Vec::new();
        for w in [req_prod, 0, rsp_prod, 0] {
            bytes.extend_from_slice(&w.to_le_bytes());
        }
        pvnet_fuzz::ring(&bytes);
    }
}
