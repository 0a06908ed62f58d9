//! Streams through netback: many frames in flight across budgets and ring wraps, several
//! queues and flows, two frontends on a switch, the receive backlog cap and rate limiting.

// Test frames index with usize and carry u32 sequence numbers; every value here is small.
#![allow(clippy::cast_possible_truncation)]

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{T, start};
use netfront::{Netfront, NetfrontConfig, SendError};
use netif::Offload;
use proptest::prelude::*;
use pvnet_netback::{Echo, NetbackConfig, RateLimit, Switch, TxMode};
use xenbus::{BackendFeatures, FrontendChoice, RxMode};

fn mac(n: u8) -> [u8; 6] {
    [0x02, 0, 0, 0, 0, n]
}

/// A UDP/IPv4 frame of `len` bytes on flow `port`, carrying `seq`.
fn udp(src: u8, dst: u8, port: u16, seq: u32, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len.max(46)];
    f[..6].copy_from_slice(&mac(dst));
    f[6..12].copy_from_slice(&mac(src));
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f[14] = 0x45;
    f[23] = 17;
    f[26..30].copy_from_slice(&[10, 0, 0, src]);
    f[30..34].copy_from_slice(&[10, 0, 0, dst]);
    f[34..36].copy_from_slice(&port.to_be_bytes());
    f[36..38].copy_from_slice(&9u16.to_be_bytes());
    f[42..46].copy_from_slice(&seq.to_le_bytes());
    for (i, b) in f.iter_mut().enumerate().skip(46) {
        *b = (i as u32 ^ seq).to_le_bytes()[0];
    }
    f.truncate(len);
    f
}

fn connect(path: &std::path::Path, choice: FrontendChoice) -> Netfront {
    Netfront::connect(path, {
        let mut c = NetfrontConfig::default();
        c.choice = choice;
        c
    })
    .unwrap()
}

/// Sends `frames` with at most `window` in flight and collects what comes back, in arrival
/// order, until everything sent came back (or 10 s pass).
fn echo_all(nic: &mut Netfront, frames: &[Vec<u8>], window: usize) -> Vec<Vec<u8>> {
    let mut back: Vec<Vec<u8>> = Vec::new();
    let mut sent = 0;
    let deadline = Instant::now() + T;
    while back.len() < frames.len() {
        assert!(
            Instant::now() < deadline,
            "only {} of {} came back",
            back.len(),
            frames.len()
        );
        let room = window - (sent - back.len());
        let upto = (sent + room).min(frames.len());
        if sent < upto {
            let n = match nic.send_batch(
                frames[sent..upto].iter().map(Vec::as_slice),
                Offload::default(),
            ) {
                Ok(n) => n,
                Err(SendError::Full) => 0,
                Err(e) => panic!("send: {e}"),
            };
            sent += n;
        }
        let got = nic.receive(64, |rx| back.push(rx.data.to_vec())).unwrap();
        if got == 0 {
            nic.poll().unwrap();
            nic.wait(Some(Duration::from_millis(50))).unwrap();
        }
    }
    back
}

fn features() -> BackendFeatures {
    BackendFeatures::default()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    /// Thousands of frames of random sizes, many in flight: every one comes back, in order,
    /// byte for byte, in each mode; across several polls' budgets and ring wraps.
    #[test]
    fn random_sizes_stream_back_in_order(
        sizes in prop::collection::vec(14usize..=9014, 400..800),
        window in 1usize..200,
        mode in 0usize..3,
    ) {
        let _leaks = process_host::testing::LeakCheck::new();
        let (tx_mode, rx_mode) = [(TxMode::Copy, RxMode::Copy), (TxMode::Map, RxMode::Copy), (TxMode::Copy, RxMode::Flip)][mode];
        let backend = start("random", features(), { let mut c = NetbackConfig::default(); c.tx_mode = tx_mode; c.budget = 16; c }, Echo);
        let mut nic = connect(&backend.path, { let mut c = FrontendChoice::default(); c.rx_mode = rx_mode; c.mtu = 9000; c });
        let frames: Vec<Vec<u8>> = sizes.iter().enumerate().map(|(i, &n)| udp(1, 1, 7, i as u32, n)).collect();
        let back = echo_all(&mut nic, &frames, window);
        prop_assert!(back == frames);
        nic.close().unwrap();
        let stopped = backend.stop();
        prop_assert_eq!(stopped.closed[0].pinned, 0);
        prop_assert_eq!(stopped.backend.memory().packets(), 0);
    }
}

/// Four queues, sixteen flows: the flows spread over the queues, and each flow's frames come
/// back in the order sent (queues may interleave).
#[test]
fn multi_queue_keeps_each_flow_in_order() {
    let _leaks = process_host::testing::LeakCheck::new();
    let backend = start("mq", features(), NetbackConfig::default(), Echo);
    let mut nic = connect(&backend.path, {
        let mut c = FrontendChoice::default();
        c.queues = 4;
        c
    });
    let frames: Vec<Vec<u8>> = (0..4000u32)
        .map(|i| udp(1, 1, 1000 + (i % 16) as u16, i, 60 + (i as usize % 1400)))
        .collect();
    let mut back: Vec<Vec<u8>> = Vec::new();
    let mut queues_seen = std::collections::BTreeSet::new();
    let mut sent = 0;
    let deadline = Instant::now() + T;
    while back.len() < frames.len() {
        assert!(Instant::now() < deadline);
        if sent < frames.len() && sent - back.len() < 200 {
            let upto = (sent + 32).min(frames.len());
            sent += nic
                .send_batch(
                    frames[sent..upto].iter().map(Vec::as_slice),
                    Offload::default(),
                )
                .unwrap_or(0);
        }
        let got = nic
            .receive(64, |rx| {
                queues_seen.insert(rx.queue);
                back.push(rx.data.to_vec());
            })
            .unwrap();
        if got == 0 {
            nic.poll().unwrap();
            nic.wait(Some(Duration::from_millis(50))).unwrap();
        }
    }
    assert!(
        queues_seen.len() > 1,
        "flows spread over queues: {queues_seen:?}"
    );
    let mut next: HashMap<u16, u32> = HashMap::new();
    for f in &back {
        let port = u16::from_be_bytes([f[34], f[35]]);
        let seq = u32::from_le_bytes(f[42..46].try_into().unwrap());
        assert!(f == &frames[seq as usize], "frame {seq} intact");
        let want = next.entry(port).or_insert(u32::from(port - 1000));
        assert_eq!(seq, *want, "flow {port} in order");
        *want += 16;
    }
    nic.close().unwrap();
    backend.stop();
}

/// Two frontends on a learning switch: each receives exactly the frames addressed to it,
/// byte for byte, never its own; in flip mode each has its own pool.
#[test]
fn two_frontends_exchange_frames_through_the_switch() {
    let _leaks = process_host::testing::LeakCheck::new();
    for rx_mode in [RxMode::Copy, RxMode::Flip] {
        let backend = start(
            "switch",
            features(),
            NetbackConfig::default(),
            Switch::default(),
        );
        let choice = |n| {
            let mut c = FrontendChoice::default();
            c.rx_mode = rx_mode;
            c.mac = mac(n);
            c
        };
        let mut a = connect(&backend.path, choice(1));
        let mut b = connect(&backend.path, choice(2));
        backend.wait_attached(2);
        // Unknown destinations flood: a broadcast from each teaches the switch where it is.
        let bcast = |src: u8| {
            let mut f = udp(src, 0, 1, 0, 60);
            f[..6].copy_from_slice(&[0xff; 6]);
            f
        };
        for (nic, src) in [(&mut a, 1), (&mut b, 2)] {
            nic.send(&bcast(src), Offload::default()).unwrap();
        }
        let recv_all = |nic: &mut Netfront, n: usize| {
            let mut got = Vec::new();
            let deadline = Instant::now() + T;
            while got.len() < n {
                assert!(Instant::now() < deadline, "{} of {n}", got.len());
                if nic.receive(64, |rx| got.push(rx.data.to_vec())).unwrap() == 0 {
                    nic.poll().unwrap();
                    nic.wait(Some(Duration::from_millis(50))).unwrap();
                }
            }
            got
        };
        assert_eq!(recv_all(&mut b, 1), [bcast(1)]);
        assert_eq!(recv_all(&mut a, 1), [bcast(2)]);
        let a_to_b: Vec<Vec<u8>> = (0..200)
            .map(|i| udp(1, 2, 5, i, 60 + i as usize * 7))
            .collect();
        let b_to_a: Vec<Vec<u8>> = (0..200)
            .map(|i| udp(2, 1, 6, i, 1514 - i as usize))
            .collect();
        for chunk in 0..10 {
            let r = chunk * 20..(chunk + 1) * 20;
            a.send_batch(
                a_to_b[r.clone()].iter().map(Vec::as_slice),
                Offload::default(),
            )
            .unwrap();
            b.send_batch(b_to_a[r].iter().map(Vec::as_slice), Offload::default())
                .unwrap();
            a.poll().unwrap();
            b.poll().unwrap();
        }
        assert!(recv_all(&mut b, 200) == a_to_b, "{rx_mode:?}: a -> b");
        assert!(recv_all(&mut a, 200) == b_to_a, "{rx_mode:?}: b -> a");
        // Nothing else arrives: no frame came back to its sender.
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(a.receive(64, |_| {}).unwrap(), 0);
        assert_eq!(b.receive(64, |_| {}).unwrap(), 0);
        a.close().unwrap();
        b.close().unwrap();
        let stopped = backend.stop();
        assert_eq!(stopped.closed.len(), 2);
        assert!(
            stopped
                .closed
                .iter()
                .all(|v| v.pinned == 0 && v.fault.is_none())
        );
        assert_eq!(stopped.backend.uplink().forwarded, 400);
    }
}

/// A frontend that stops receiving: frames for it wait up to the byte cap and the rest are
/// dropped and counted; nothing is lost without a count, and it recovers when it receives.
#[test]
fn a_frontend_that_stops_receiving_is_capped() {
    let _leaks = process_host::testing::LeakCheck::new();
    let cap = 64 * 4096;
    let backend = start(
        "cap",
        features(),
        {
            let mut c = NetbackConfig::default();
            c.rx_backlog_bytes = cap;
            c
        },
        Echo,
    );
    let mut nic = connect(&backend.path, FrontendChoice::default());
    // 1000 one-page frames: 256 fill the posted buffers, 64 wait, the rest are dropped.
    let frames: Vec<Vec<u8>> = (0..1000).map(|i| udp(1, 1, 3, i, 1000)).collect();
    let mut sent = 0;
    let deadline = Instant::now() + T;
    while sent < frames.len() {
        assert!(Instant::now() < deadline);
        match nic.send_batch(frames[sent..].iter().map(Vec::as_slice), Offload::default()) {
            Ok(n) => sent += n,
            Err(SendError::Full) => {
                nic.poll().unwrap();
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("{e}"),
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    let mut got = Vec::new();
    while nic.receive(64, |rx| got.push(rx.data.to_vec())).unwrap() > 0
        || nic.poll().unwrap() > 0
        || nic.wait(Some(Duration::from_millis(200))).unwrap()
    {}
    assert!(got.len() < 1000, "some were dropped");
    assert!(
        got.len() >= 256 + 64,
        "the posted buffers and the cap's worth arrived: {}",
        got.len()
    );
    // In order, each intact.
    let mut last = None;
    for f in &got {
        let seq = u32::from_le_bytes(f[42..46].try_into().unwrap());
        assert!(f == &frames[seq as usize]);
        assert!(last.is_none_or(|l| seq > l));
        last = Some(seq);
    }
    nic.close().unwrap();
    let stopped = backend.stop();
    let s = stopped.closed[0].stats;
    assert_eq!(s.tx_packets, 1000);
    assert_eq!(
        s.rx_packets + s.rx_dropped,
        1000,
        "every frame delivered or counted: {s:?}"
    );
    assert_eq!(s.rx_packets as usize, got.len());
}

/// A rate-limited vif: the first 128 KiB burst passes at once, the rest at the configured
/// rate, and the throttling is counted.
#[test]
fn rate_limit_paces_transmit_after_the_burst() {
    let _leaks = process_host::testing::LeakCheck::new();
    let limit = RateLimit {
        bytes: 20_000,
        period: Duration::from_millis(10),
    };
    let backend = start(
        "rate",
        features(),
        {
            let mut c = NetbackConfig::default();
            c.rate_limit = Some(limit);
            c
        },
        Echo,
    );
    let mut nic = connect(&backend.path, FrontendChoice::default());
    // 400 KB: 128 KiB of burst, then about 269 KB at 2 MB/s: at least ~130 ms.
    let frames: Vec<Vec<u8>> = (0..400).map(|i| udp(1, 1, 4, i, 1000)).collect();
    let t = Instant::now();
    let back = echo_all(&mut nic, &frames, 200);
    let elapsed = t.elapsed();
    assert!(back == frames);
    let floor = Duration::from_millis((400_000 - 131_072) * 10 / 20_000);
    assert!(
        elapsed >= floor * 9 / 10,
        "paced: {elapsed:?} for a floor of {floor:?}"
    );
    nic.close().unwrap();
    let stopped = backend.stop();
    assert!(stopped.closed[0].stats.tx_throttled > 0);
}

/// What a receiving frontend did not negotiate is not sent to it: a GSO frame switched to a
/// frontend without GSO arrives whole, without the GSO extra.
#[test]
fn gso_metadata_goes_only_to_frontends_that_negotiated_it() {
    let _leaks = process_host::testing::LeakCheck::new();
    let backend = start(
        "gso",
        features(),
        NetbackConfig::default(),
        Switch::default(),
    );
    let mut a = connect(&backend.path, {
        let mut c = FrontendChoice::default();
        c.mac = mac(1);
        c.mtu = 9000;
        c.gso_tcpv4 = true;
        c
    });
    let mut b = connect(&backend.path, {
        let mut c = FrontendChoice::default();
        c.mac = mac(2);
        c.mtu = 9000;
        c
    });
    backend.wait_attached(2);
    let tso = Offload {
        gso: Some(netif::Gso {
            kind: netif::GsoKind::TcpV4,
            size: 1448,
        }),
        csum_blank: true,
        ..Offload::default()
    };
    // Flooded (b's MAC is not learnt yet): only b receives it.
    let f = udp(1, 2, 8, 0, 30_000);
    a.send(&f, tso).unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + T;
    while got.is_empty() {
        assert!(Instant::now() < deadline);
        b.receive(8, |rx| got.push((rx.data.to_vec(), rx.offload)))
            .unwrap();
        if got.is_empty() {
            b.wait(Some(Duration::from_millis(50))).unwrap();
        }
    }
    assert!(got[0].0 == f);
    assert_eq!(got[0].1, Offload { gso: None, ..tso });
    a.close().unwrap();
    b.close().unwrap();
    backend.stop();
}

/// The callback uplink: an embedder sees every frame's bytes and metadata, and can answer by
/// injecting frames of its own.
#[test]
fn a_callback_uplink_sees_frames_and_injects_replies() {
    let _leaks = process_host::testing::LeakCheck::new();
    let uplink = pvnet_netback::Callback::new(
        |from: pvnet_netback::VifId,
         _packet: pvnet_netback::PacketId,
         bytes: &[u8],
         meta: Offload,
         out: &mut pvnet_netback::Outbox<'_>| {
            // Reply with the frame reversed after the header.
            let mut reply = bytes.to_vec();
            reply[14..].reverse();
            assert!(out.inject(from, &reply, meta));
        },
    );
    let backend = start("callback", features(), NetbackConfig::default(), uplink);
    let mut nic = connect(&backend.path, FrontendChoice::default());
    let sent: Vec<Vec<u8>> = (0..100)
        .map(|i| udp(1, 1, 9, i, 100 + i as usize))
        .collect();
    let back = echo_all(&mut nic, &sent, 32);
    for (s, b) in sent.iter().zip(&back) {
        let mut want = s.clone();
        want[14..].reverse();
        assert!(b == &want);
    }
    nic.close().unwrap();
    let stopped = backend.stop();
    assert_eq!(stopped.closed[0].stats.rx_packets, 100);
    assert_eq!(stopped.backend.memory().packets(), 0);
}

/// Split event channels (one per ring) on two queues, in both receive modes.
#[test]
fn split_event_channels_carry_both_directions() {
    let _leaks = process_host::testing::LeakCheck::new();
    for rx_mode in [RxMode::Copy, RxMode::Flip] {
        let backend = start("split", features(), NetbackConfig::default(), Echo);
        let mut nic = connect(&backend.path, {
            let mut c = FrontendChoice::default();
            c.rx_mode = rx_mode;
            c.queues = 2;
            c.split_event_channels = true;
            c
        });
        let frames: Vec<Vec<u8>> = (0..2000u32)
            .map(|i| {
                udp(
                    1,
                    1,
                    2000 + (i % 4) as u16,
                    i,
                    60 + (i as usize * 13) % 1400,
                )
            })
            .collect();
        let mut back = echo_all(&mut nic, &frames, 100);
        // Queues may interleave flows; each frame arrives intact.
        back.sort_by_key(|f| u32::from_le_bytes(f[42..46].try_into().unwrap()));
        assert!(back == frames, "{rx_mode:?}");
        nic.close().unwrap();
        let stopped = backend.stop();
        assert_eq!(stopped.closed[0].pinned, 0);
    }
}

/// A backend (and frontend) that busy-poll for far longer than the close timeout still see
/// control messages: the spin looks at the control sockets now and then.
#[test]
fn busy_polling_sides_still_close_promptly() {
    let _leaks = process_host::testing::LeakCheck::new();
    let spin = Duration::from_secs(60);
    let backend = start(
        "busy",
        features(),
        {
            let mut c = NetbackConfig::default();
            c.spin = spin;
            c
        },
        Echo,
    );
    let mut nic = Netfront::connect(&backend.path, {
        let mut c = NetfrontConfig::default();
        c.spin = spin;
        c
    })
    .unwrap();
    let frames: Vec<Vec<u8>> = (0..100).map(|i| udp(1, 1, 1, i, 200)).collect();
    assert!(echo_all(&mut nic, &frames, 10) == frames);
    let t = Instant::now();
    nic.close().unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "closed in {:?}",
        t.elapsed()
    );
    let stopped = backend.stop();
    assert_eq!(stopped.closed.len(), 1);
}
