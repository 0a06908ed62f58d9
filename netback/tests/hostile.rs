//! Hostile frontends, on the in-process host: a hand-made frontend
//! ([`pvnet_netback::testing::RawFrontend`]) writes what netfront never would into its rings
//! and memory. Netback answers drop- and error-severity packets and goes on, disables the vif
//! on a fatal one (and only that vif: a well-behaved netfront on the same backend keeps
//! streaming), and never panics, loops or touches memory outside the frontend's grants.
//! Everything is stepped on one thread, so each check is deterministic.

mod common;

use common::{frame, req, round_trip};
use grant_table::GrantRef;
use netif::TxErrorKind;
use netif::wire::{RxRequest, TxRequest, TxResponse, status, tx_flags};
use proptest::prelude::*;
use pvnet_netback::testing::{
    LocalBackendHost, LocalNetfront, connect, local_backend, raw_frontend,
};
use pvnet_netback::{Echo, Netback, NetbackConfig, TxMode, VifFault};
use xenbus::BackendFeatures;

type Backend = Netback<Echo, LocalBackendHost>;

fn backend() -> Backend {
    local_backend(NetbackConfig::default(), Echo).unwrap()
}

fn ok(id: u16) -> TxResponse {
    TxResponse {
        id,
        status: status::OKAY,
    }
}

/// Closes everything and returns the closed vifs: none may keep a grant pinned or a packet
/// in backend memory.
fn close_all(backend: &mut Backend, nic: Option<LocalNetfront>) -> Vec<pvnet_netback::ClosedVif> {
    if let Some(mut nic) = nic {
        nic.start_close().unwrap();
        backend.poll().unwrap();
        nic.finish_close(std::time::Duration::ZERO)
            .unwrap()
            .expect("released");
    }
    backend.poll().unwrap();
    let closed = backend.take_closed();
    assert!(closed.iter().all(|v| v.pinned == 0), "grants released");
    assert_eq!(backend.memory().packets(), 0, "no packet left");
    closed
}

#[test]
fn drop_and_error_packets_are_answered_and_the_vif_goes_on() {
    let mut backend = backend();
    let (_, mut raw) = raw_frontend(&mut backend, &BackendFeatures::default(), 4).unwrap();
    let b: Vec<GrantRef> = (0..4).map(|i| raw.buffer(i)).collect();
    raw.fill(0, &frame(1, 1, 0, 200));
    // 1. First slot shorter than an Ethernet header: ERROR.
    raw.send(&[req(b[0], 0, 0, 1, 10)]);
    backend.poll().unwrap();
    assert_eq!(
        raw.tx_responses(),
        [TxResponse {
            id: 1,
            status: status::ERROR
        }]
    );
    // 2. A following slot larger than what remains of the packet: every slot DROPPED.
    raw.send(&[
        req(b[0], 0, tx_flags::MORE_DATA, 2, 100),
        req(b[1], 0, 0, 3, 150),
    ]);
    backend.poll().unwrap();
    let dropped = |id| TxResponse {
        id,
        status: status::DROPPED,
    };
    assert_eq!(raw.tx_responses(), [dropped(2), dropped(3)]);
    // 3. A grant that is not ours to use: the copy fails, ERROR.
    raw.send(&[req(GrantRef(400), 0, 0, 4, 60)]);
    backend.poll().unwrap();
    assert_eq!(
        raw.tx_responses(),
        [TxResponse {
            id: 4,
            status: status::ERROR
        }]
    );
    // 4. Zero-length fragments around real data (XSA-448): accepted.
    raw.send(&[
        req(b[0], 0, tx_flags::MORE_DATA, 5, 200),
        req(b[1], 0, tx_flags::MORE_DATA, 6, 0),
        req(b[2], 0, 0, 7, 0),
    ]);
    backend.poll().unwrap();
    assert_eq!(raw.tx_responses(), [ok(5), ok(6), ok(7)]);
    raw.close();
    let closed = close_all(&mut backend, None);
    let v = &closed[0];
    assert!(v.fault.is_none(), "{:?}", v.fault);
    assert_eq!(
        (v.stats.tx_errors, v.stats.tx_dropped, v.stats.tx_packets),
        (2, 1, 1)
    );
}

#[test]
fn fatal_packets_disable_only_their_vif() {
    type Attack = fn(&mut pvnet_netback::testing::RawFrontend);
    let cases: [(&str, Attack); 4] = [
        ("page-crossing slot", |raw| {
            let b = raw.buffer(0);
            raw.send(&[req(b, 4000, 0, 1, 200)]);
        }),
        // Behind good packets in the same poll: they were copied and handed on when the
        // fault ends the poll, and none of them may stay in backend memory (`close_all`
        // checks that no packet is left).
        ("page-crossing slot after good ones", |raw| {
            let (b1, b2, b3) = (raw.buffer(1), raw.buffer(2), raw.buffer(3));
            raw.fill(1, &frame(1, 1, 1, 60));
            raw.fill(2, &frame(1, 1, 2, 60));
            raw.send(&[
                req(b1, 0, 0, 101, 60),
                req(b2, 0, 0, 102, 60),
                req(b3, 4000, 0, 103, 200),
            ]);
        }),
        ("21 following slots", |raw| {
            let b = raw.buffer(0);
            let mut reqs = vec![req(b, 0, tx_flags::MORE_DATA, 0, 2000)];
            reqs.extend(
                (1..=21).map(|i| req(b, 0, if i < 21 { tx_flags::MORE_DATA } else { 0 }, i, 10)),
            );
            raw.send(&reqs);
        }),
        ("req_prod far ahead (XSA-39)", |raw| {
            // Written straight into the shared header, as a hostile guest can.
            raw.frames()
                .store_u32(0, 1000, core::sync::atomic::Ordering::Release)
                .unwrap();
            raw.notify();
        }),
    ];
    for (name, attack) in cases {
        let mut backend = backend();
        let features = BackendFeatures::default();
        let (_, mut good) = connect(&mut backend, &features, Default::default()).unwrap();
        round_trip(&mut backend, &mut good, 0);
        let (bad_id, mut raw) = raw_frontend(&mut backend, &features, 4).unwrap();
        // One good packet first: the vif is attached and serving when the attack comes.
        raw.fill(0, &frame(1, 1, 0, 60));
        let b = raw.buffer(0);
        raw.send(&[req(b, 0, 0, 100, 60)]);
        backend.poll().unwrap();
        assert_eq!(raw.tx_responses(), [ok(100)], "{name}");
        attack(&mut raw);
        // The good vif keeps working meanwhile and after.
        for seq in 1..50 {
            round_trip(&mut backend, &mut good, seq);
        }
        let fault = backend
            .vifs()
            .iter()
            .find(|v| v.id == bad_id)
            .and_then(|v| v.fault)
            .unwrap_or_else(|| panic!("{name}: not disabled"));
        match (name, fault) {
            (
                "page-crossing slot" | "page-crossing slot after good ones",
                VifFault::Tx(TxErrorKind::CrossesPage { .. }),
            )
            | ("21 following slots", VifFault::Tx(TxErrorKind::MaliciousSlotCount(_)))
            | ("req_prod far ahead (XSA-39)", VifFault::Ring(_)) => {}
            (n, f) => panic!("{n}: unexpected fault {f:?}"),
        }
        // A disabled vif's descriptors leave the sleep set; its frontend can still close.
        raw.close();
        let closed = close_all(&mut backend, Some(good));
        assert_eq!(closed.len(), 2, "{name}");
        assert_eq!(
            closed.iter().filter(|v| v.fault.is_none()).count(),
            1,
            "{name}"
        );
    }
}

/// A receive buffer whose grant is bad: that frame fails (counted), the vif goes on, and the
/// good buffer gets the frame's bytes exactly.
#[test]
fn a_bad_receive_grant_fails_one_frame() {
    let mut backend = backend();
    let (_, mut raw) = raw_frontend(&mut backend, &BackendFeatures::default(), 4).unwrap();
    let b3 = raw.buffer(3);
    raw.rx()
        .push_request(&RxRequest {
            id: 7,
            pad: 0,
            gref: 999,
        })
        .unwrap();
    raw.rx()
        .push_request(&RxRequest {
            id: 8,
            pad: 0,
            gref: b3.0,
        })
        .unwrap();
    let _ = raw.rx().publish_requests();
    let f = frame(1, 1, 0, 100);
    raw.fill(0, &f);
    let b0 = raw.buffer(0);
    raw.send(&[req(b0, 0, 0, 1, 100), req(b0, 0, 0, 2, 100)]);
    backend.poll().unwrap();
    let rsps = raw.rx_responses();
    assert_eq!(rsps.len(), 2);
    assert_eq!((rsps[0].id, rsps[0].status), (7, status::ERROR));
    assert_eq!((rsps[1].id, rsps[1].status), (8, 100));
    let mut got = vec![0u8; 100];
    raw.frames()
        .copy_out(5 * grant_table::FRAME_SIZE, &mut got)
        .unwrap();
    assert_eq!(got, f);
    raw.close();
    let closed = close_all(&mut backend, None);
    let v = &closed[0];
    assert!(v.fault.is_none());
    assert_eq!((v.stats.rx_errors, v.stats.rx_packets), (1, 1));
}

/// A frontend that notifies without end (XSA-332) buys no more work than its rings hold: the
/// backend's polls stay bounded and another vif keeps being served.
#[test]
fn an_event_storm_does_not_starve_others() {
    let mut backend = backend();
    let features = BackendFeatures::default();
    let (_, mut good) = connect(&mut backend, &features, Default::default()).unwrap();
    let (_, raw) = raw_frontend(&mut backend, &features, 4).unwrap();
    for seq in 0..500 {
        for _ in 0..100 {
            raw.notify();
        }
        round_trip(&mut backend, &mut good, seq);
        // Nothing on the storming vif's rings: its events bought no work.
        assert_eq!(backend.poll().unwrap(), 0);
    }
    raw.vanish();
    let closed = close_all(&mut backend, Some(good));
    assert!(closed.iter().all(|v| v.fault.is_none()));
}

/// A frontend that vanishes (a killed guest) is released at the backend's next poll, with
/// nothing of it left in use.
#[test]
fn a_vanished_frontend_is_released() {
    let mut backend = backend();
    let (_, mut raw) = raw_frontend(&mut backend, &BackendFeatures::default(), 4).unwrap();
    raw.fill(0, &frame(1, 1, 0, 60));
    let b = raw.buffer(0);
    raw.send(&[req(b, 0, 0, 1, 60)]);
    raw.vanish();
    let closed = close_all(&mut backend, None);
    assert_eq!(closed.len(), 1);
}

/// One transmit slot a hostile frontend may write: a buffer's grant or a made-up one, any
/// offset, size and id, with the chaining and extra flags set often enough that chains,
/// extras, cut-short packets and slot floods come up.
fn any_slot() -> impl Strategy<Value = TxRequest> {
    let gref = prop_oneof![4 => 0u32..4, 1 => Just(BAD_GREF)];
    let offset = prop_oneof![3 => Just(0u16), 1 => 0u16..4200];
    let size = prop_oneof![
        2 => 14u16..1600,
        1 => 0u16..14,
        1 => prop::sample::select(vec![4096u16, 5000, 9000, 65535]),
        1 => any::<u16>(),
    ];
    let flags = (
        prop::bool::weighted(0.3),
        prop::bool::weighted(0.1),
        any::<u16>(),
    )
        .prop_map(|(more, extra, other)| {
            let mut f = other & (tx_flags::CSUM_BLANK | tx_flags::DATA_VALIDATED);
            if more {
                f |= tx_flags::MORE_DATA;
            }
            if extra {
                f |= tx_flags::EXTRA_INFO;
            }
            f
        });
    (gref, offset, flags, any::<u16>(), size)
        .prop_map(|(gref, offset, flags, id, size)| req(GrantRef(gref), offset, flags, id, size))
}

/// A grant reference no buffer has.
const BAD_GREF: u32 = 0x7fff_0000;

/// A packet a frontend may send without breaking the protocol: one slot inside its page, or
/// a chain of two to four; some too short for an Ethernet header (dropped) or naming a grant
/// that does not exist (an error). Grants are buffer indices 0..4 until [`with_grants`].
fn fair_packet() -> impl Strategy<Value = Vec<TxRequest>> {
    let gref = prop_oneof![9 => 0u32..4, 1 => Just(BAD_GREF)];
    let one = (gref.clone(), 0u16..1600, any::<u16>(), any::<u16>()).prop_flat_map(
        |(gref, size, id, csum)| {
            (0..=4096 - size).prop_map(move |offset| {
                let flags = csum & (tx_flags::CSUM_BLANK | tx_flags::DATA_VALIDATED);
                vec![req(GrantRef(gref), offset, flags, id, size)]
            })
        },
    );
    let chain = (
        prop::collection::vec((gref, 1u16..1000, any::<u16>()), 2..=4),
        14u16..1000,
    )
        .prop_map(|(slots, first)| {
            let total = first + slots[1..].iter().map(|s| s.1).sum::<u16>();
            let last = slots.len() - 1;
            slots
                .iter()
                .enumerate()
                .map(|(k, &(gref, size, id))| {
                    let flags = if k < last { tx_flags::MORE_DATA } else { 0 };
                    req(
                        GrantRef(gref),
                        0,
                        flags,
                        id,
                        if k == 0 { total } else { size },
                    )
                })
                .collect()
        });
    prop_oneof![3 => one, 1 => chain]
}

/// The raw frontend's grant for buffer indices 0..4; anything else as it is.
fn with_grants(raw: &pvnet_netback::testing::RawFrontend, reqs: &mut [TxRequest]) {
    for r in reqs {
        if r.gref < 4 {
            r.gref = raw.buffer(r.gref as usize).0;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Fair packets, with a few arbitrary slots among them or none, in either transmit mode
    /// and at any budget: netback's poll never fails, every response it publishes answers the
    /// request in its slot (its id, or `NULL` for an extra), a vif it does not disable
    /// (always so without arbitrary slots) gets every request answered, a well-behaved vif
    /// beside it keeps working, and closing leaves no packet in backend memory and no grant
    /// held.
    #[test]
    fn any_transmit_requests_are_answered_or_fault_only_their_vif(
        packets in prop::collection::vec(fair_packet(), 1..50),
        raw_slots in prop::collection::vec(any_slot(), 0..4),
        at in any::<prop::sample::Index>(),
        budget in 1usize..80,
        map in any::<bool>(),
    ) {
        let mut cfg = NetbackConfig::default();
        cfg.budget = budget;
        cfg.tx_mode = if map { TxMode::Map } else { TxMode::Copy };
        let mut backend: Backend = local_backend(cfg, Echo).unwrap();
        let features = BackendFeatures::default();
        let (_, mut good) = connect(&mut backend, &features, Default::default()).unwrap();
        let (bad, mut raw) = raw_frontend(&mut backend, &features, 4).unwrap();
        for i in 0..4 {
            raw.fill(i, &frame(1, 1, u32::try_from(i).unwrap(), 4096));
        }
        let hostile = !raw_slots.is_empty();
        let at = at.index(packets.len() + 1);
        let mut reqs: Vec<TxRequest> = packets[..at].concat();
        reqs.extend(raw_slots);
        reqs.extend(packets[at..].concat());
        with_grants(&raw, &mut reqs);
        raw.send(&reqs);
        for _ in 0..reqs.len() + 2 {
            if backend.poll().unwrap() == 0 {
                break;
            }
        }
        let rsps = raw.tx_responses();
        prop_assert!(rsps.len() <= reqs.len());
        for (i, (rsp, req)) in rsps.iter().zip(&reqs).enumerate() {
            let extra = rsp.status == status::NULL && rsp.id == 0;
            prop_assert!(extra || rsp.id == req.id, "response {} has id {}, its request {}", i, rsp.id, req.id);
            prop_assert!(
                [status::OKAY, status::ERROR, status::DROPPED, status::NULL].contains(&rsp.status),
                "response {} has status {}", i, rsp.status
            );
        }
        let fault = backend.vifs().iter().find(|v| v.id == bad).and_then(|v| v.fault);
        prop_assert!(hostile || fault.is_none(), "fair packets disabled the vif: {:?}", fault);
        if !hostile {
            // Fair packets are accepted exactly when every slot names a buffer and there is
            // an Ethernet header's worth of bytes.
            let expected = packets.iter().flat_map(|p| {
                let ok = p.iter().all(|r| r.gref != BAD_GREF) && p[0].size >= 14;
                std::iter::repeat_n(ok, p.len())
            });
            for (i, (rsp, ok)) in rsps.iter().zip(expected).enumerate() {
                prop_assert_eq!(rsp.status == status::OKAY, ok, "response {} is {}", i, rsp.status);
            }
        }
        if fault.is_none() {
            prop_assert_eq!(rsps.len(), reqs.len(), "a vif in service answers every request");
        }
        round_trip(&mut backend, &mut good, 1);
        raw.close();
        close_all(&mut backend, Some(good));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Receive buffers posted with any ids, some naming grants that do not exist, in fewer
    /// or more requests than there are frames, at any budget: each response answers the
    /// request in its slot (its id), a bad grant fails only its frame (`ERROR`), a good one
    /// gets the frame's length and, in its buffer, the frame's bytes (the last frame a
    /// buffer took); frames come in the order sent, as many as there were buffers, the rest
    /// wait; nothing is left after closing.
    #[test]
    fn any_receive_requests_get_their_own_frames(
        sizes in prop::collection::vec(14usize..=4096, 1..20),
        posted in prop::collection::vec((prop_oneof![5 => 0usize..16, 1 => Just(usize::MAX)], any::<u16>()), 0..30),
        budget in 1usize..80,
    ) {
        const RX: usize = 16;
        let mut cfg = NetbackConfig::default();
        cfg.budget = budget;
        let mut backend: Backend = local_backend(cfg, Echo).unwrap();
        let features = BackendFeatures::default();
        let (_, mut raw) = raw_frontend(&mut backend, &features, 36).unwrap();
        // Frame k is sent from buffer RX + k and echoed back.
        let frames: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(k, &n)| frame(1, 1, u32::try_from(k).unwrap(), n))
            .collect();
        let sends: Vec<TxRequest> = frames
            .iter()
            .enumerate()
            .map(|(k, f)| {
                raw.fill(RX + k, f);
                req(raw.buffer(RX + k), 0, 0, u16::try_from(k).unwrap(), u16::try_from(f.len()).unwrap())
            })
            .collect();
        raw.send(&sends);
        for &(buffer, id) in &posted {
            let gref = if buffer < RX { raw.buffer(buffer).0 } else { BAD_GREF };
            raw.rx().push_request(&RxRequest { id, pad: 0, gref }).unwrap();
        }
        let _ = raw.rx().publish_requests();
        raw.notify();
        for _ in 0..frames.len() + posted.len() + 2 {
            if backend.poll().unwrap() == 0 {
                break;
            }
        }
        prop_assert!(raw.tx_responses().iter().all(|r| r.status == status::OKAY));
        let rsps = raw.rx_responses();
        prop_assert_eq!(rsps.len(), frames.len().min(posted.len()));
        let mut last = [None; RX];
        for (k, (rsp, &(buffer, id))) in rsps.iter().zip(&posted).enumerate() {
            prop_assert_eq!(rsp.id, id, "response {}", k);
            prop_assert_eq!(rsp.flags & netif::wire::rx_flags::MORE_DATA, 0);
            if buffer < RX {
                prop_assert_eq!(i32::from(rsp.status), i32::try_from(frames[k].len()).unwrap(), "response {}", k);
                last[buffer] = Some((k, rsp.offset));
            } else {
                prop_assert_eq!(rsp.status, status::ERROR, "response {}", k);
            }
        }
        for (buffer, seen) in last.iter().enumerate() {
            if let Some((k, offset)) = *seen {
                let mut got = vec![0u8; frames[k].len()];
                raw.frames()
                    .copy_out((2 + buffer) * grant_table::FRAME_SIZE + usize::from(offset), &mut got)
                    .unwrap();
                prop_assert!(got == frames[k], "buffer {} does not hold frame {}", buffer, k);
            }
        }
        let info = backend.vifs().into_iter().next().unwrap();
        prop_assert!(info.fault.is_none(), "{:?}", info.fault);
        prop_assert_eq!(info.stats.rx_packets + info.stats.rx_errors, rsps.len() as u64);
        raw.close();
        close_all(&mut backend, None);
    }
}
