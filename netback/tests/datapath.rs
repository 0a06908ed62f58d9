//! Frames through netfront and netback and back (echo), byte for byte, in every mode.

mod common;

use std::time::Duration;

use common::{T, frame, start, start_on};
use netfront::{Netfront, NetfrontConfig, NetfrontError};
use netif::{Gso, GsoKind, Offload};
use pvnet_netback::{
    Echo, Netback, NetbackConfig, NetbackError, ProcessHosts, StrictProcessHost, TxMode,
};
use xenbus::{BackendFeatures, FrontendChoice, RxMode};

fn echo_round_trip(name: &str, tx_mode: TxMode, rx_mode: RxMode, remap: bool, sizes: &[usize]) {
    echo_round_trip_on(name, config(tx_mode), rx_mode, remap, sizes, Netback::new);
}

/// netback's configuration for these tests: `tx_mode`, the rest the default.
fn config(tx_mode: TxMode) -> NetbackConfig {
    let mut c = NetbackConfig::default();
    c.tx_mode = tx_mode;
    c
}

/// Mappings of netfront's frames memfd in this process.
fn frames_mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter(|l| l.contains("memfd:netfront-frames"))
        .count()
}

fn echo_round_trip_on<H: ProcessHosts + Send + 'static>(
    name: &str,
    netback: NetbackConfig,
    rx_mode: RxMode,
    remap: bool,
    sizes: &[usize],
    make: fn(NetbackConfig, Echo) -> Result<Netback<Echo, H>, NetbackError>,
) {
    let strict = std::any::TypeId::of::<H>() == std::any::TypeId::of::<StrictProcessHost>();
    let features = {
        let mut c = BackendFeatures::default();
        c.gso_tcpv4 = true;
        c.gso_tcpv6 = true;
        c
    };
    let backend = start_on(name, features, netback, Echo, make);
    let cfg = {
        let mut c = NetfrontConfig::default();
        c.choice = {
            let mut c = FrontendChoice::default();
            c.rx_mode = rx_mode;
            c.mtu = 9000;
            c.gso_tcpv4 = true;
            c.gso_tcpv6 = true;
            c
        };
        c.flip_remap = remap;
        c
    };
    let mut nic = Netfront::connect(&backend.path, cfg).unwrap();
    if strict {
        // Netfront maps its frames once; the strict backend maps each granted frame on its
        // own (rings, tx buffers, and rx buffers when copying: hundreds).
        backend.wait_attached(1);
        let n = frames_mappings();
        assert!(
            n > 256,
            "{name}: {n} mappings of the frames: not one per granted frame"
        );
    }
    for (seq, &len) in (0u32..).zip(sizes) {
        let gso = (len > 9014).then_some(Gso {
            kind: GsoKind::TcpV4,
            size: 1448,
        });
        let meta = Offload {
            csum_blank: len % 2 == 0,
            data_validated: len % 3 == 0,
            gso,
        };
        let sent = frame(1, 1, seq, len);
        nic.send(&sent, meta).unwrap();
        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + T;
        while got.is_empty() {
            nic.receive(1, |rx| got.push((rx.data.to_vec(), rx.offload)))
                .unwrap();
            if got.is_empty() {
                if std::time::Instant::now() >= deadline {
                    let stats = nic.stats();
                    let stopped = backend.stop();
                    panic!(
                        "{name}: {len} bytes never came back: front {stats:?}, back {:?}",
                        stopped.vifs()
                    );
                }
                nic.wait(Some(Duration::from_millis(100))).unwrap();
            }
        }
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0.len(), len, "{name}: length");
        assert!(got[0].0 == sent, "{name}: {len} bytes differ");
        assert_eq!(got[0].1, meta, "{name}: offload metadata round trip");
    }
    nic.poll().unwrap();
    let stats = nic.stats();
    assert_eq!(stats.rx_packets, sizes.len() as u64);
    assert_eq!(
        stats.tx_errors + stats.tx_dropped + stats.rx_errors + stats.rx_dropped,
        0
    );
    nic.close().unwrap();
    let stopped = backend.stop();
    assert_eq!(stopped.closed.len(), 1, "{name}: the vif closed");
    let closed = &stopped.closed[0];
    assert_eq!(closed.pinned, 0, "{name}: no grant in use after close");
    assert_eq!(closed.stats.tx_packets, sizes.len() as u64);
    assert_eq!(closed.stats.rx_packets, sizes.len() as u64);
    assert_eq!(
        stopped.backend.memory().packets(),
        0,
        "{name}: no packet left"
    );
}

const SIZES: [usize; 12] = [
    14, 15, 60, 64, 1500, 1514, 4095, 4096, 4097, 9014, 20000, 65535,
];

#[test]
fn copy_tx_copy_rx_every_size() {
    let _leaks = process_host::testing::LeakCheck::new();
    echo_round_trip("copy", TxMode::Copy, RxMode::Copy, false, &SIZES);
}

/// Never outside a grant, over real mappings: every size in every mode through a backend
/// that maps only the frames the frontend granted, each between `PROT_NONE` guard pages
/// (`StrictProcessHost`). A backend access one byte past a granted frame, or into a frame
/// never granted, would have killed this test with SIGSEGV.
#[test]
fn every_mode_every_size_inside_guarded_frames() {
    let _leaks = process_host::testing::LeakCheck::new();
    for (name, tx, rx, remap) in [
        ("strict-copy", TxMode::Copy, RxMode::Copy, false),
        ("strict-map", TxMode::Map, RxMode::Copy, false),
        ("strict-flip", TxMode::Copy, RxMode::Flip, false),
        ("strict-map-flip-remap", TxMode::Map, RxMode::Flip, true),
    ] {
        echo_round_trip_on(name, config(tx), rx, remap, &SIZES, Netback::new_strict);
    }
}

/// Without persistent claims (as for a frontend that grants per packet): every copy claims
/// and releases, the prefetch hints go through the grant entries, and every byte still
/// arrives, in copy mode and through guarded frames (a hint aimed outside a granted frame
/// would find nothing mapped, and must not fault).
#[test]
fn copy_every_size_without_persistent_claims() {
    let _leaks = process_host::testing::LeakCheck::new();
    let unheld = |tx_mode| {
        let mut c = config(tx_mode);
        c.persistent_grants = false;
        c
    };
    echo_round_trip_on(
        "unheld-copy",
        unheld(TxMode::Copy),
        RxMode::Copy,
        false,
        &SIZES,
        Netback::new,
    );
    echo_round_trip_on(
        "unheld-strict-copy",
        unheld(TxMode::Copy),
        RxMode::Copy,
        false,
        &SIZES,
        Netback::new_strict,
    );
}

#[test]
fn map_tx_every_size() {
    let _leaks = process_host::testing::LeakCheck::new();
    echo_round_trip("map", TxMode::Map, RxMode::Copy, false, &SIZES);
}

#[test]
fn flip_rx_every_size() {
    let _leaks = process_host::testing::LeakCheck::new();
    echo_round_trip("flip", TxMode::Copy, RxMode::Flip, false, &SIZES);
}

#[test]
fn flip_rx_with_remap_every_size() {
    let _leaks = process_host::testing::LeakCheck::new();
    echo_round_trip("flip-remap", TxMode::Copy, RxMode::Flip, true, &SIZES);
}

/// Limits and negotiation on the sending side: 1514 bytes without scatter-gather, the MTU's
/// frame without GSO, GSO only of a negotiated kind; every grant revoked at close.
/// What a frontend may send follows the backend's offer (its receive features), not the
/// frontend's own keys (what it can receive), as in Xen.
#[test]
fn frame_limits_follow_the_backends_offer() {
    let _leaks = process_host::testing::LeakCheck::new();
    // A backend that takes one slot per packet and no GSO, and a frontend that, like Linux
    // netfront, says it can receive everything: it connects, and sends within the offer.
    let narrow = start(
        "limits-narrow",
        {
            let mut f = BackendFeatures::default();
            f.sg = false;
            f.gso_tcpv4 = false;
            f.gso_tcpv6 = false;
            f.ipv6_csum_offload = false;
            f
        },
        NetbackConfig::default(),
        Echo,
    );
    let linux_like = {
        let mut c = FrontendChoice::default();
        c.sg = true;
        c.gso_tcpv4 = true;
        c.gso_tcpv6 = true;
        c.ipv6_csum_offload = true;
        c
    };
    let mut nic = Netfront::connect(&narrow.path, {
        let mut c = NetfrontConfig::default();
        c.choice = linux_like.clone();
        c
    })
    .unwrap();
    let f = nic.tx_features();
    assert!(!f.sg && !f.gso_tcpv4 && !f.gso_tcpv6 && !f.ipv6_csum_offload);
    let meta = Offload::default();
    assert_eq!(
        nic.send(&frame(1, 1, 0, 1515), meta),
        Err(netfront::SendError::TooLong {
            len: 1515,
            max: 1514
        })
    );
    assert_eq!(
        nic.send(&frame(1, 1, 0, 13), meta),
        Err(netfront::SendError::TooShort(13))
    );
    for kind in [GsoKind::TcpV4, GsoKind::TcpV6] {
        let gso = Offload {
            gso: Some(Gso { kind, size: 1400 }),
            ..Offload::default()
        };
        assert_eq!(
            nic.send(&frame(1, 1, 0, 1000), gso),
            Err(netfront::SendError::OffloadNotNegotiated),
            "{kind:?} GSO not offered"
        );
    }
    nic.send(&frame(1, 1, 0, 1514), meta).unwrap();
    let report = nic.close().unwrap();
    // Two ring pages, 256 transmit buffers (a page and a small half each: two grants) and
    // the receive buffers.
    assert_eq!(
        report.revoked,
        2 + 2 * 256 + netfront::DEFAULT_RX_BUFFERS as usize
    );
    // Frames above 1514 bytes would need several slots towards this backend: refused.
    let jumbo = Netfront::connect(&narrow.path, {
        let mut c = NetfrontConfig::default();
        c.choice = linux_like;
        c.choice.mtu = 9000;
        c
    });
    assert!(matches!(jumbo, Err(NetfrontError::Xenbus(_))), "{jumbo:?}");
    assert_eq!(narrow.stop().closed.len(), 1);

    // A backend that takes everything, and a frontend that receives one slot at a time
    // without GSO: it may still send 65535-byte GSO packets; at MTU 1500, 1514-byte frames.
    let wide = start(
        "limits-wide",
        BackendFeatures::default(),
        NetbackConfig::default(),
        Echo,
    );
    let mut nic = Netfront::connect(&wide.path, {
        let mut c = NetfrontConfig::default();
        c.choice.sg = false;
        c.choice.gso_tcpv4 = false;
        c.choice.gso_tcpv6 = false;
        c
    })
    .unwrap();
    assert!(matches!(
        nic.send(&frame(1, 1, 0, 1515), meta),
        Err(netfront::SendError::TooLong { .. })
    ));
    for kind in [GsoKind::TcpV4, GsoKind::TcpV6] {
        let tso = Offload {
            gso: Some(Gso { kind, size: 1448 }),
            ..Offload::default()
        };
        nic.send(&frame(1, 1, 0, 65535), tso).unwrap();
    }
    nic.close().unwrap();
    let stopped = wide.stop();
    assert_eq!(stopped.closed.len(), 1);
}

/// The backend closes a vif on its own initiative: it releases everything, asks the frontend
/// to close; the frontend sees `Closed`, answers, and revokes every grant.
#[test]
fn backend_initiated_close() {
    let _leaks = process_host::testing::LeakCheck::new();
    use netfront::{BackendFault, NetfrontError};
    let dir = process_host::testing::TestDir::new("netback-detach");
    let path = dir.join("backend.sock");
    let listener = process_host::Listener::bind(&path, {
        let mut c = process_host::BackendConfig::default();
        c.timeout = T;
        c
    })
    .unwrap();
    let mut backend = pvnet_netback::Netback::new(NetbackConfig::default(), Echo).unwrap();
    let incoming = pvnet_netback::spawn_acceptor(listener, backend.waker()).unwrap();
    let front_path = path.clone();
    let frontend = std::thread::spawn(move || {
        let mut nic = Netfront::connect(&front_path, NetfrontConfig::default()).unwrap();
        loop {
            match nic.wait(Some(T)) {
                Ok(_) => {
                    nic.receive(64, |_| {}).unwrap();
                }
                Err(NetfrontError::Broken(BackendFault::Closed)) => break,
                Err(e) => panic!("{e}"),
            }
        }
        nic.close().unwrap()
    });
    let id = loop {
        backend.wait(Some(T)).unwrap();
        if let Ok(conn) = incoming.try_recv() {
            break backend.attach(conn.unwrap()).unwrap();
        }
    };
    let closed = backend.detach(id).unwrap();
    assert!(closed.acknowledged.is_ok(), "{:?}", closed.acknowledged);
    assert_eq!(closed.pinned, 0);
    assert!(backend.vifs().is_empty());
    let report = frontend.join().unwrap();
    // As in `frame_limits_follow_the_backends_offer`: rings, tx pages and halves, rx pages.
    assert_eq!(
        report.revoked,
        2 + 2 * 256 + netfront::DEFAULT_RX_BUFFERS as usize
    );
}
