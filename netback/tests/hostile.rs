//! Hostile frontends: a hand-made frontend writes what netfront never would into its rings.
//! Netback answers drop- and error-severity packets and goes on, disables the vif on a fatal
//! one (and only that vif: a well-behaved netfront on the same backend keeps streaming), and
//! never panics, loops or touches memory outside the frontend's grants.

mod common;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use common::{T, frame, start};
use event_channel::{EventChannel, EventFdPort};
use grant_table::host::{BACKEND_DOMID, create_memfd, map_shared};
use grant_table::{FRAME_SIZE, FrameNumber, GrantRef, GrantTable};
use io_ring::FrontRing;
use netfront::{Netfront, NetfrontConfig};
use netif::wire::{RxRequest, RxResponse, TxRequest, TxResponse, status, tx_flags};
use netif::{Offload, TxErrorKind};
use pvnet_netback::{Echo, NetbackConfig, VifFault};
use shared_mem::SharedRegion;
use xenbus::{
    BackendFeatures, EventFds, FrontendChoice, FrontendConnection, QueueResources, Resources,
};

/// Frames: tx ring, rx ring, then buffers.
const BUFFERS: u32 = 4;

struct RawFront {
    tx: FrontRing<TxRequest, TxResponse>,
    rx: FrontRing<RxRequest, RxResponse>,
    tx_page: SharedRegion,
    frames: SharedRegion,
    ev: EventFdPort,
    bufs: Vec<GrantRef>,
    _table: GrantTable,
    conn: Option<FrontendConnection>,
}

impl RawFront {
    fn connect(path: &std::path::Path) -> Self {
        let pending = xenbus::connect(path, T).unwrap();
        let n = 2 + BUFFERS;
        let frames_fd = create_memfd(c"hostile-frames", n as usize * FRAME_SIZE).unwrap();
        let frames = map_shared(&frames_fd, n as usize * FRAME_SIZE).unwrap();
        let table_fd = create_memfd(c"hostile-grants", FRAME_SIZE).unwrap();
        let mut table = GrantTable::new(map_shared(&table_fd, FRAME_SIZE).unwrap()).unwrap();
        let g = |t: &mut GrantTable, f: u32| {
            t.grant_access(BACKEND_DOMID, FrameNumber(f), false)
                .unwrap()
        };
        let (tx_ref, rx_ref) = (g(&mut table, 0), g(&mut table, 1));
        let bufs = (2..n).map(|f| g(&mut table, f)).collect();
        let tx_page = frames.subregion(0, FRAME_SIZE).unwrap();
        let tx = FrontRing::init(tx_page.clone()).unwrap();
        let rx = FrontRing::init(frames.subregion(FRAME_SIZE, FRAME_SIZE).unwrap()).unwrap();
        let (ev, theirs) = EventFdPort::pair().unwrap();
        let (waits, notifies) = theirs.clone_fds().unwrap();
        let fds: Vec<OwnedFd> = vec![frames_fd, table_fd, waits, notifies];
        let res = Resources {
            frames: 0,
            grant_table: 1,
            flip_pool: None,
            queues: vec![QueueResources {
                tx_ring_ref: tx_ref.0,
                rx_ring_ref: rx_ref.0,
                tx_event: EventFds {
                    backend_waits: 2,
                    backend_notifies: 3,
                },
                rx_event: None,
            }],
        };
        let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(AsFd::as_fd).collect();
        let conn = pending
            .finish(&FrontendChoice::default(), &res, &borrowed)
            .unwrap();
        Self {
            tx,
            rx,
            tx_page,
            frames,
            ev,
            bufs,
            _table: table,
            conn: Some(conn),
        }
    }

    /// Writes `bytes` at the start of buffer `i`.
    fn fill(&self, i: usize, bytes: &[u8]) {
        self.frames.copy_in((2 + i) * FRAME_SIZE, bytes).unwrap();
    }

    fn send(&mut self, reqs: &[TxRequest]) {
        for r in reqs {
            self.tx.push_request(r).unwrap();
        }
        let _ = self.tx.publish_requests();
        self.ev.notify().unwrap();
    }

    /// Waits for `n` tx responses.
    fn tx_responses(&mut self, n: usize) -> Vec<TxResponse> {
        let mut got = Vec::new();
        let deadline = Instant::now() + T;
        while got.len() < n {
            got.extend(self.tx.responses().unwrap());
            if got.len() < n {
                assert!(
                    Instant::now() < deadline,
                    "{} of {n} tx responses",
                    got.len()
                );
                let _ = self.tx.final_check_responses();
                let _ = self.ev.wait(Some(Duration::from_millis(20)));
            }
        }
        got
    }

    fn close(mut self) {
        if let Some(c) = self.conn.take() {
            c.close().unwrap();
        }
    }
}

fn req(gref: GrantRef, offset: u16, flags: u16, id: u16, size: u16) -> TxRequest {
    TxRequest {
        gref: gref.0,
        offset,
        flags,
        id,
        size,
    }
}

/// Waits until the backend shows `n` vifs ... by polling netfront's view: it is simplest
/// to check through a well-behaved netfront's round trip that the backend still serves.
fn round_trip(nic: &mut Netfront, seq: u32) {
    let f = frame(9, 9, seq, 300);
    nic.send(&f, Offload::default()).unwrap();
    let deadline = Instant::now() + T;
    loop {
        let mut back = None;
        nic.receive(1, |rx| back = Some(rx.data.to_vec())).unwrap();
        if let Some(b) = back {
            assert_eq!(b, f);
            return;
        }
        assert!(Instant::now() < deadline, "the good vif stopped");
        nic.poll().unwrap();
        nic.wait(Some(Duration::from_millis(50))).unwrap();
    }
}

fn good_frontend(path: &std::path::Path) -> Netfront {
    Netfront::connect(path, NetfrontConfig::default()).unwrap()
}

#[test]
fn drop_and_error_packets_are_answered_and_the_vif_goes_on() {
    let backend = start(
        "hostile-soft",
        BackendFeatures::default(),
        NetbackConfig::default(),
        Echo,
    );
    let mut raw = RawFront::connect(&backend.path);
    let b = raw.bufs.clone();
    raw.fill(0, &frame(1, 1, 0, 200));
    // 1. First slot shorter than an Ethernet header: ERROR.
    raw.send(&[req(b[0], 0, 0, 1, 10)]);
    assert_eq!(
        raw.tx_responses(1),
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
    assert_eq!(
        raw.tx_responses(2),
        [
            TxResponse {
                id: 2,
                status: status::DROPPED
            },
            TxResponse {
                id: 3,
                status: status::DROPPED
            }
        ]
    );
    // 3. A grant that is not ours to use: the copy fails, ERROR.
    raw.send(&[req(GrantRef(400), 0, 0, 4, 60)]);
    assert_eq!(
        raw.tx_responses(1),
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
    assert!(raw.tx_responses(3).iter().all(|r| r.status == status::OKAY));
    raw.close();
    let stopped = backend.stop();
    let v = &stopped.closed[0];
    assert!(v.fault.is_none(), "{:?}", v.fault);
    assert_eq!(
        (v.stats.tx_errors, v.stats.tx_dropped, v.stats.tx_packets),
        (2, 1, 1)
    );
    assert_eq!(v.pinned, 0);
}

#[test]
fn fatal_packets_disable_only_their_vif() {
    type Attack = fn(&mut RawFront);
    let cases: [(&str, Attack); 3] = [
        ("page-crossing slot", |raw| {
            let b = raw.bufs[0];
            raw.send(&[req(b, 4000, 0, 1, 200)]);
        }),
        ("21 following slots", |raw| {
            let b = raw.bufs[0];
            let mut reqs = vec![req(b, 0, tx_flags::MORE_DATA, 0, 2000)];
            reqs.extend(
                (1..=21).map(|i| req(b, 0, if i < 21 { tx_flags::MORE_DATA } else { 0 }, i, 10)),
            );
            raw.send(&reqs);
        }),
        ("req_prod far ahead (XSA-39)", |raw| {
            // Written straight into the shared header, as a hostile guest can.
            raw.tx_page
                .store_u32(0, 1000, core::sync::atomic::Ordering::Release)
                .unwrap();
            raw.ev.notify().unwrap();
        }),
    ];
    for (name, attack) in cases {
        let backend = start(
            "hostile-fatal",
            BackendFeatures::default(),
            NetbackConfig::default(),
            Echo,
        );
        let mut good = good_frontend(&backend.path);
        round_trip(&mut good, 0);
        let mut raw = RawFront::connect(&backend.path);
        // One good packet first: the vif is attached and serving when the attack comes.
        raw.fill(0, &frame(1, 1, 0, 60));
        let b = raw.bufs[0];
        raw.send(&[req(b, 0, 0, 100, 60)]);
        assert_eq!(raw.tx_responses(1)[0].status, status::OKAY);
        attack(&mut raw);
        // The good vif keeps working meanwhile and after.
        for seq in 1..50 {
            round_trip(&mut good, seq);
        }
        good.close().unwrap();
        raw.close();
        let stopped = backend.stop();
        let bad = stopped
            .closed
            .iter()
            .find(|v| v.fault.is_some())
            .unwrap_or_else(|| panic!("{name}: not disabled"));
        match (name, bad.fault.unwrap()) {
            ("page-crossing slot", VifFault::Tx(TxErrorKind::CrossesPage { .. }))
            | ("21 following slots", VifFault::Tx(TxErrorKind::MaliciousSlotCount(_)))
            | ("req_prod far ahead (XSA-39)", VifFault::Ring(_)) => {}
            (n, f) => panic!("{n}: unexpected fault {f:?}"),
        }
        assert_eq!(
            stopped.closed.iter().filter(|v| v.fault.is_none()).count(),
            1,
            "{name}"
        );
        assert!(
            stopped.closed.iter().all(|v| v.pinned == 0),
            "{name}: grants released"
        );
        assert_eq!(stopped.backend.memory().packets(), 0, "{name}");
    }
}

/// A receive buffer whose grant is bad: that frame fails (counted), the vif goes on.
#[test]
fn a_bad_receive_grant_fails_one_frame() {
    let backend = start(
        "hostile-rx",
        BackendFeatures::default(),
        NetbackConfig::default(),
        Echo,
    );
    let mut raw = RawFront::connect(&backend.path);
    let b = raw.bufs.clone();
    raw.rx
        .push_request(&RxRequest {
            id: 7,
            pad: 0,
            gref: 999,
        })
        .unwrap();
    raw.rx
        .push_request(&RxRequest {
            id: 8,
            pad: 0,
            gref: b[3].0,
        })
        .unwrap();
    let _ = raw.rx.publish_requests();
    let f = frame(1, 1, 0, 100);
    raw.fill(0, &f);
    raw.send(&[req(b[0], 0, 0, 1, 100)]);
    raw.send(&[req(b[0], 0, 0, 2, 100)]);
    let mut rsps: Vec<RxResponse> = Vec::new();
    let deadline = Instant::now() + T;
    while rsps.len() < 2 {
        assert!(Instant::now() < deadline);
        rsps.extend(raw.rx.responses().unwrap());
        let _ = raw.rx.final_check_responses();
        let _ = raw.ev.wait(Some(Duration::from_millis(20)));
    }
    assert_eq!((rsps[0].id, rsps[0].status), (7, status::ERROR));
    assert_eq!((rsps[1].id, rsps[1].status), (8, 100));
    let mut got = vec![0u8; 100];
    raw.frames.copy_out(5 * FRAME_SIZE, &mut got).unwrap();
    assert_eq!(got, f);
    raw.close();
    let stopped = backend.stop();
    let v = &stopped.closed[0];
    assert!(v.fault.is_none());
    assert_eq!((v.stats.rx_errors, v.stats.rx_packets), (1, 1));
}

/// A frontend that notifies without end (XSA-332): the backend does bounded work per wakeup
/// and keeps serving another vif.
#[test]
fn an_event_storm_does_not_starve_others() {
    let backend = start(
        "hostile-storm",
        BackendFeatures::default(),
        NetbackConfig::default(),
        Echo,
    );
    let mut good = good_frontend(&backend.path);
    let raw = RawFront::connect(&backend.path);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let storm = {
        let stop = stop.clone();
        let ev = raw.ev;
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                ev.notify().unwrap();
                n += 1;
            }
            n
        })
    };
    for seq in 0..500 {
        round_trip(&mut good, seq);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(storm.join().unwrap() > 1000, "the storm ran");
    good.close().unwrap();
    drop(raw.conn);
    let stopped = backend.stop();
    assert!(
        stopped
            .closed
            .iter()
            .all(|v| v.fault.is_none() && v.pinned == 0)
    );
}
