//! The data path on the in-process host, on one thread: netfront and netback stepped in turn
//! (send, backend poll, receive), every byte checked, every mode, then a close that completes
//! on the same thread with no grant left in use. The same traffic as `datapath.rs` and
//! `stream.rs` run across a socket and threads; here nothing waits, so a lost notification or
//! an unanswered request shows up as no progress, deterministically.

mod common;

use std::time::Duration;

use common::frame;
use netfront::{DEFAULT_RX_BUFFERS, NetfrontConfig, SendError};
use netif::{Gso, GsoKind, Offload};
use proptest::prelude::*;
use pvnet_netback::testing::{LocalBackendHost, LocalNetfront, connect, local_backend};
use pvnet_netback::{Echo, Netback, NetbackConfig, TxMode};
use xenbus::{BackendFeatures, FrontendChoice, RxMode};

/// Rounds without any progress after which a run is stuck.
const STUCK: usize = 64;

fn all_features() -> BackendFeatures {
    let mut f = BackendFeatures::default();
    f.gso_tcpv4 = true;
    f.gso_tcpv6 = true;
    f
}

fn frontend(rx_mode: RxMode, queues: u32, split: bool) -> NetfrontConfig {
    let mut choice = FrontendChoice::default();
    choice.rx_mode = rx_mode;
    choice.mtu = 9000;
    choice.gso_tcpv4 = true;
    choice.gso_tcpv6 = true;
    choice.queues = queues;
    choice.split_event_channels = split;
    let mut cfg = NetfrontConfig::default();
    cfg.choice = choice;
    cfg
}

fn backend(tx_mode: TxMode, budget: usize) -> Netback<Echo, LocalBackendHost> {
    let mut cfg = NetbackConfig::default();
    cfg.tx_mode = tx_mode;
    cfg.budget = budget;
    local_backend(cfg, Echo).unwrap()
}

/// Streams `frames` with at most `window` in flight through an echo backend, stepping both
/// sides on this thread; returns what came back, with its metadata.
fn echo_all<H: pvnet_netback::BackendHost>(
    backend: &mut Netback<Echo, H>,
    nic: &mut LocalNetfront,
    frames: &[(Vec<u8>, Offload)],
    window: usize,
) -> Vec<(Vec<u8>, Offload)> {
    let mut back = Vec::new();
    let mut sent = 0;
    let mut idle = 0;
    while back.len() < frames.len() {
        let before = (sent, back.len());
        let upto = (back.len() + window).min(frames.len());
        let mut batch = Ok(());
        let queued = nic
            .batch(|b| {
                let mut n = 0;
                for (f, meta) in &frames[sent..upto] {
                    if let Err(e) = b.send(f, *meta) {
                        batch = Err(e);
                        break;
                    }
                    n += 1;
                }
                n
            })
            .unwrap();
        match batch {
            Ok(()) | Err(SendError::Full) => {}
            Err(e) => panic!("send: {e}"),
        }
        sent += queued;
        backend.poll().unwrap();
        nic.receive(usize::MAX, |rx| back.push((rx.data.to_vec(), rx.offload)))
            .unwrap();
        nic.poll().unwrap();
        idle = if (sent, back.len()) == before {
            idle + 1
        } else {
            0
        };
        assert!(
            idle < STUCK,
            "no progress: {sent} sent, {} back of {}; front {:?}, back {:?}",
            back.len(),
            frames.len(),
            nic.stats(),
            backend.vifs()
        );
    }
    back
}

/// Closes on this thread and checks that nothing is left: the vif released with no grant
/// pinned, every grant of the frontend revoked, no packet left in backend memory.
fn close(backend: &mut Netback<Echo, LocalBackendHost>, mut nic: LocalNetfront) -> usize {
    nic.start_close().unwrap();
    assert!(
        nic.finish_close(Duration::ZERO).unwrap().is_none(),
        "closed before the backend looked"
    );
    backend.poll().unwrap();
    let report = nic
        .finish_close(Duration::ZERO)
        .unwrap()
        .expect("the backend let go in its poll");
    let closed = backend.take_closed();
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0].pinned, 0, "no grant in use after close");
    assert!(closed[0].acknowledged.is_ok());
    assert!(backend.vifs().is_empty());
    assert_eq!(backend.memory().packets(), 0, "no packet left");
    report.revoked
}

const SIZES: [usize; 12] = [
    14, 15, 60, 64, 1500, 1514, 4095, 4096, 4097, 9014, 20000, 65535,
];

fn with_meta(seq: u32, len: usize) -> (Vec<u8>, Offload) {
    let gso = (len > 9014).then_some(Gso {
        kind: if seq.is_multiple_of(2) {
            GsoKind::TcpV4
        } else {
            GsoKind::TcpV6
        },
        size: 1448,
    });
    let meta = Offload {
        csum_blank: len.is_multiple_of(2),
        data_validated: len.is_multiple_of(3),
        gso,
    };
    (frame(1, 1, seq, len), meta)
}

#[test]
fn every_size_round_trips_in_every_mode_on_one_thread() {
    for (tx_mode, rx_mode) in [
        (TxMode::Copy, RxMode::Copy),
        (TxMode::Map, RxMode::Copy),
        (TxMode::Copy, RxMode::Flip),
        (TxMode::Map, RxMode::Flip),
    ] {
        let mut backend = backend(tx_mode, 64);
        let (_, mut nic) =
            connect(&mut backend, &all_features(), frontend(rx_mode, 1, false)).unwrap();
        let frames: Vec<_> = (0u32..).zip(SIZES).map(|(s, n)| with_meta(s, n)).collect();
        // One at a time (each must come back by itself), then all at once.
        for f in &frames {
            let back = echo_all(&mut backend, &mut nic, std::slice::from_ref(f), 1);
            assert!(
                back[0] == *f,
                "{tx_mode:?}/{rx_mode:?}: {} bytes",
                f.0.len()
            );
        }
        let back = echo_all(&mut backend, &mut nic, &frames, frames.len());
        assert!(back == frames, "{tx_mode:?}/{rx_mode:?}: batch");
        let stats = nic.stats();
        assert_eq!(stats.rx_packets, 2 * SIZES.len() as u64);
        assert_eq!(
            stats.tx_errors + stats.tx_dropped + stats.rx_errors + stats.rx_dropped,
            0
        );
        // Rings (2), transmit buffers (256, with a page and a small half each) and receive
        // buffers (copy: `DEFAULT_RX_BUFFERS`) or transfer offers (flip: 256).
        let rx_grants = match rx_mode {
            RxMode::Copy => DEFAULT_RX_BUFFERS as usize,
            RxMode::Flip => 256,
        };
        assert_eq!(
            close(&mut backend, nic),
            2 + 2 * 256 + rx_grants,
            "{tx_mode:?}/{rx_mode:?}"
        );
    }
}

/// Never outside a grant: the same traffic, every size in every mode over two split-channel
/// queues, through a backend whose view of the frontend holds only the frames the
/// frontend's grant table names, each a region of its own (`StrictFrames`). Had netback
/// touched a byte past a granted frame, or a frame not granted, the copy or mapping would
/// have failed its bounds check and the frame would be missing.
#[test]
fn every_access_stays_inside_a_granted_frame() {
    use pvnet_netback::testing::{connect_strict, strict_backend};
    for (tx_mode, rx_mode) in [
        (TxMode::Copy, RxMode::Copy),
        (TxMode::Map, RxMode::Copy),
        (TxMode::Copy, RxMode::Flip),
        (TxMode::Map, RxMode::Flip),
    ] {
        let mut cfg = NetbackConfig::default();
        cfg.tx_mode = tx_mode;
        let mut backend = strict_backend(cfg, Echo).unwrap();
        let (_, mut nic) =
            connect_strict(&mut backend, &all_features(), frontend(rx_mode, 2, true)).unwrap();
        let frames: Vec<_> = (0u32..)
            .zip(SIZES.iter().chain(SIZES.iter()))
            .map(|(s, n)| with_meta(s, *n))
            .collect();
        let back = echo_all(&mut backend, &mut nic, &frames, 8);
        let mut back_sorted = back.clone();
        let mut sent_sorted = frames.clone();
        back_sorted.sort_by(|a, b| a.0.cmp(&b.0));
        sent_sorted.sort_by(|a, b| a.0.cmp(&b.0));
        assert!(back_sorted == sent_sorted, "{tx_mode:?}/{rx_mode:?}");
        let stats = nic.stats();
        assert_eq!(
            stats.tx_errors + stats.tx_dropped + stats.rx_errors + stats.rx_dropped,
            0,
            "{tx_mode:?}/{rx_mode:?}"
        );
        nic.start_close().unwrap();
        backend.poll().unwrap();
        assert!(nic.finish_close(Duration::ZERO).unwrap().is_some());
        assert!(backend.take_closed().iter().all(|v| v.pinned == 0));
    }
}

#[test]
fn four_queues_with_split_channels_keep_every_flow_in_order() {
    for rx_mode in [RxMode::Copy, RxMode::Flip] {
        let mut backend = backend(TxMode::Copy, 16);
        let (_, mut nic) =
            connect(&mut backend, &all_features(), frontend(rx_mode, 4, true)).unwrap();
        // 16 flows (source MACs), interleaved.
        let frames: Vec<_> = (0u32..2000)
            .map(|i| {
                (
                    frame(
                        u8::try_from(i % 16).unwrap(),
                        1,
                        i,
                        60 + (i as usize * 37) % 3000,
                    ),
                    Offload::default(),
                )
            })
            .collect();
        let back = echo_all(&mut backend, &mut nic, &frames, 300);
        assert_eq!(back.len(), frames.len());
        for flow in 0..16u8 {
            let sent: Vec<_> = frames.iter().filter(|f| f.0[11] == flow).collect();
            let got: Vec<_> = back.iter().filter(|f| f.0[11] == flow).collect();
            assert!(sent == got, "{rx_mode:?}: flow {flow} reordered or changed");
        }
        close(&mut backend, nic);
    }
}

#[test]
fn a_backend_initiated_close_completes_on_one_thread() {
    let mut backend = backend(TxMode::Copy, 64);
    let (vif, mut nic) = connect(
        &mut backend,
        &all_features(),
        frontend(RxMode::Copy, 1, false),
    )
    .unwrap();
    let f = with_meta(0, 1500);
    assert!(echo_all(&mut backend, &mut nic, std::slice::from_ref(&f), 1)[0] == f);
    let closed = backend.detach(vif).unwrap();
    assert_eq!(closed.pinned, 0);
    // The frontend notices at its next look and answers; every grant comes back.
    assert!(
        nic.wait(Some(Duration::from_millis(10))).is_err(),
        "backend closed"
    );
    let report = nic
        .finish_close(Duration::ZERO)
        .unwrap()
        .expect("released before it asked");
    // Rings, transmit pages and small halves, receive buffers.
    assert_eq!(report.revoked, 2 + 2 * 256 + DEFAULT_RX_BUFFERS as usize);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    /// Random sizes, windows, budgets and modes: everything comes back in order, nothing is
    /// left after the close. (`stream.rs` runs the same across a socket and threads.)
    #[test]
    fn random_streams_come_back_in_order(
        sizes in proptest::collection::vec(14usize..=9014, 1..400),
        window in 1usize..300,
        budget in 1usize..80,
        mode in 0usize..3,
        queues in 1u32..=2,
    ) {
        let (tx_mode, rx_mode) = [(TxMode::Copy, RxMode::Copy), (TxMode::Map, RxMode::Copy), (TxMode::Copy, RxMode::Flip)][mode];
        let mut backend = backend(tx_mode, budget);
        let (_, mut nic) = connect(&mut backend, &all_features(), frontend(rx_mode, queues, false)).unwrap();
        let frames: Vec<_> = sizes.iter().enumerate().map(|(i, &n)| (frame(1, 1, u32::try_from(i).unwrap(), n), Offload::default())).collect();
        let back = echo_all(&mut backend, &mut nic, &frames, window);
        if queues == 1 {
            prop_assert!(back == frames);
        } else {
            prop_assert_eq!(back.len(), frames.len());
        }
        close(&mut backend, nic);
    }
}

/// Parts a host built wrongly, or a frontend's memory that cannot work, are refused with a
/// reason, not attached to stall or fault: flip mode without a flip pool, grants over memory
/// other than the backend's, a flip pool too small for a largest frame (the backend would
/// wait for ever for frames it can never own), and a grant table larger than
/// `max_grant_frames` (the backend keeps a pin count per entry: a 1 GiB table cost it 2 GiB).
#[test]
fn misbuilt_parts_are_refused() {
    use event_channel::{LocalPort, QueuePorts};
    use grant_table::PeerGrants;
    use netfront::{FrontMemory, PendingNetfront};
    use pvnet_netback::testing::LocalFrontendHost;
    use pvnet_netback::{QueueParts, VifParts};
    use shared_mem::SharedRegion;

    for (case, reason) in [
        ("no pool", "flip mode without a flip pool"),
        ("wrong memory", "packet memory"),
        ("small pool", "a flip pool of 2 frames (at least 32)"),
        ("huge table", "a grant table of 65 pages (at most 64)"),
    ] {
        let mut backend = backend(TxMode::Copy, 64);
        let cfg = frontend(RxMode::Flip, 1, false);
        let layout = PendingNetfront::<LocalFrontendHost>::layout(&cfg).unwrap();
        let frames = SharedRegion::new_zeroed(layout.frames_bytes);
        let table = SharedRegion::new_zeroed(layout.table_bytes);
        let pool = SharedRegion::new_zeroed(layout.pool_bytes);
        let (front_port, back_port) = LocalPort::pair();
        let pending = PendingNetfront::<LocalFrontendHost>::new(
            cfg,
            FrontMemory::new(frames.clone(), table.clone(), Some(pool.clone())),
            vec![QueuePorts::new(front_port, None)],
        )
        .unwrap();
        let (back_ctl, _front_ctl, choice) =
            xenbus::local::connect(&all_features(), pending.choice()).unwrap();
        let local = if case == "wrong memory" {
            SharedRegion::new_zeroed(16 * 4096)
        } else {
            backend.memory().region().clone()
        };
        let table = if case == "huge table" {
            SharedRegion::new_zeroed(65 * 4096)
        } else {
            table
        };
        let mut grants = PeerGrants::new(
            netfront::NetfrontConfig::default().backend_domid,
            table,
            frames,
            local,
        );
        let pool = match case {
            "no pool" => None,
            "small pool" => Some(pool.subregion(0, 2 * 4096).unwrap()),
            _ => Some(pool),
        };
        if let Some(pool) = pool {
            grants = grants.with_flip_pool(grant_table::FramePool::split(
                pool,
                grant_table::PoolSide::Backend,
            ));
        }
        let rings = pending.rings()[0];
        let queues = vec![QueueParts {
            tx_ring: rings.tx,
            rx_ring: rings.rx,
            events: QueuePorts::new(back_port, None),
        }];
        let err = backend
            .attach_parts(VifParts::new(choice, grants, queues, back_ctl))
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains(reason), "{case}: {text}");
        assert!(backend.vifs().is_empty());
    }
}
