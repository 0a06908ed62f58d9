//! A hostile backend: a hand-made backend answers netfront's requests with what netback never
//! would. Each time the device turns `broken` with the typed fault (or, for a backend that
//! merely reports an error, drops that frame and goes on); nothing panics, and later calls
//! report the same fault.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use event_channel::{EventChannel, EventFdPort};
use grant_table::host::{BACKEND_DOMID, FramePool, HeldMapping, PeerGrants, PoolSide, map_shared};
use grant_table::{Access, FRAME_SIZE, GrantRef, flags};
use io_ring::{BackRing, PeerError};
use netif::wire::{RxRequest, RxResponse, TxRequest, TxResponse, status};
use netif::{Offload, RxErrorKind};
use pvnet_netfront::{BackendFault, Netfront, NetfrontConfig, NetfrontError, SendError};
use shared_mem::SharedRegion;
use xenbus::{BackendConfig, FrontendChoice, Listener, RxMode};

const T: Duration = Duration::from_secs(10);

/// The backend's side of one connection, for a script to abuse.
struct RawBack {
    tx: BackRing<TxRequest, TxResponse>,
    rx: BackRing<RxRequest, RxResponse>,
    rx_page: SharedRegion,
    table: SharedRegion,
    ev: EventFdPort,
    grants: PeerGrants,
    rings: Vec<HeldMapping>,
}

impl RawBack {
    /// Waits until `n` tx requests are there and takes them.
    fn tx_requests(&mut self, n: usize) -> Vec<TxRequest> {
        let mut got = Vec::new();
        let deadline = Instant::now() + T;
        while got.len() < n {
            assert!(Instant::now() < deadline);
            got.extend(self.tx.requests().unwrap());
            if got.len() < n {
                let _ = self.tx.final_check_requests();
                let _ = self.ev.wait(Some(Duration::from_millis(20)));
            }
        }
        got
    }

    /// Takes `n` posted rx requests (netfront posts them all at connect).
    fn rx_requests(&mut self, n: usize) -> Vec<RxRequest> {
        let deadline = Instant::now() + T;
        loop {
            if self.rx.unconsumed_requests().unwrap() as usize >= n {
                return self.rx.requests().unwrap().take(n).collect();
            }
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn respond_rx(&mut self, rsps: &[RxResponse]) {
        for r in rsps {
            self.rx.push_response(r).unwrap();
        }
        let _ = self.rx.publish_responses();
        self.ev.notify().unwrap();
    }
}

fn map_whole(fd: OwnedFd) -> SharedRegion {
    let len = usize::try_from(nix::sys::stat::fstat(fd.as_fd()).unwrap().st_size).unwrap();
    map_shared(&fd, len).unwrap()
}

/// Runs `script` as the backend of one netfront connection (on its own thread); returns the
/// socket path. The script ends when it returns; the connection is kept until then.
fn raw_backend(
    name: &str,
    script: impl FnOnce(&mut RawBack) + Send + 'static,
) -> (std::path::PathBuf, std::thread::JoinHandle<()>) {
    let dir = std::env::temp_dir().join(format!("netfront-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("backend.sock");
    let _ = std::fs::remove_file(&path);
    let listener = Listener::bind(&path, {
        let mut c = BackendConfig::default();
        c.timeout = T;
        c
    })
    .unwrap();
    let handle = std::thread::spawn(move || {
        let mut conn = listener.accept_and_handshake().unwrap();
        let res = conn.resources.clone();
        let frames = map_whole(conn.take_fd(res.frames).unwrap());
        let table = map_whole(conn.take_fd(res.grant_table).unwrap());
        let mut grants = PeerGrants::new(
            BACKEND_DOMID,
            table.clone(),
            frames,
            SharedRegion::new_zeroed(FRAME_SIZE),
        );
        if let Some(i) = res.flip_pool {
            grants = grants.with_flip_pool(FramePool::split(
                map_whole(conn.take_fd(i).unwrap()),
                PoolSide::Backend,
            ));
        }
        let q = res.queues[0];
        let tx_map = grants
            .map_held(GrantRef(q.tx_ring_ref), Access::ReadWrite)
            .unwrap();
        let rx_map = grants
            .map_held(GrantRef(q.rx_ring_ref), Access::ReadWrite)
            .unwrap();
        let ev = EventFdPort::from_fds(
            conn.take_fd(q.tx_event.backend_waits).unwrap(),
            conn.take_fd(q.tx_event.backend_notifies).unwrap(),
        )
        .unwrap();
        let mut raw = RawBack {
            tx: BackRing::attach(tx_map.region().clone()).unwrap(),
            rx: BackRing::attach(rx_map.region().clone()).unwrap(),
            rx_page: rx_map.region().clone(),
            table,
            ev,
            grants,
            rings: vec![tx_map, rx_map],
        };
        script(&mut raw);
        // Keep the connection until the frontend goes, then release what we mapped.
        let _ = conn.frontend_closing(T);
        for m in raw.rings.drain(..) {
            raw.grants.unmap_held(m);
        }
        drop(raw);
        let _ = conn.acknowledge_closed();
    });
    (path, handle)
}

fn connect(path: &std::path::Path, rx_mode: RxMode) -> Netfront {
    Netfront::connect(path, {
        let mut c = NetfrontConfig::default();
        c.choice = {
            let mut c = FrontendChoice::default();
            c.rx_mode = rx_mode;
            c
        };
        c
    })
    .unwrap()
}

/// Drives the frontend until it reports a fault (or `T` passes).
fn until_broken(nic: &mut Netfront) -> BackendFault {
    let deadline = Instant::now() + T;
    loop {
        let r = nic
            .receive(64, |_| {})
            .and_then(|_| nic.poll())
            .and_then(|_| nic.wait(Some(Duration::from_millis(20))));
        if let Err(NetfrontError::Broken(f)) = r {
            assert_eq!(nic.broken(), Some(f));
            // Sticky: every later call says the same.
            assert!(matches!(nic.poll(), Err(NetfrontError::Broken(g)) if g == f));
            assert_eq!(
                nic.send(&[0u8; 60], Offload::default()),
                Err(SendError::Broken(f))
            );
            return f;
        }
        r.unwrap();
        assert!(
            Instant::now() < deadline,
            "the device never broke: {:?}",
            nic.stats()
        );
    }
}

fn frame() -> [u8; 60] {
    let mut f = [0u8; 60];
    f[..6].fill(0xff);
    f
}

#[test]
fn bad_tx_responses_break_the_device() {
    type Attack = fn(&TxRequest) -> TxResponse;
    let cases: [(&str, Attack, BackendFault); 2] = [
        (
            "unknown id",
            |r| TxResponse {
                id: r.id ^ 0x80,
                status: status::OKAY,
            },
            BackendFault::TxId(0),
        ),
        (
            "odd status",
            |r| TxResponse {
                id: r.id,
                status: 5,
            },
            BackendFault::TxStatus(5),
        ),
    ];
    for (name, attack, want) in cases {
        let (path, backend) = raw_backend("tx", move |b| {
            let req = b.tx_requests(1)[0];
            b.tx.push_response(&attack(&req)).unwrap();
            let _ = b.tx.publish_responses();
            b.ev.notify().unwrap();
        });
        let mut nic = connect(&path, RxMode::Copy);
        nic.send(&frame(), Offload::default()).unwrap();
        let got = until_broken(&mut nic);
        match (got, want) {
            (BackendFault::TxId(_), BackendFault::TxId(_)) => {}
            (g, w) => assert_eq!(g, w, "{name}"),
        }
        drop(nic);
        backend.join().unwrap();
    }
}

#[test]
fn bad_rx_responses_break_the_device() {
    type Attack = fn(&RxRequest) -> RxResponse;
    let cases: [(&str, Attack); 2] = [
        ("wrong id", |r| RxResponse {
            id: r.id.wrapping_add(1),
            offset: 0,
            flags: 0,
            status: 60,
        }),
        ("data past its page", |r| RxResponse {
            id: r.id,
            offset: 4090,
            flags: 0,
            status: 60,
        }),
    ];
    for (name, attack) in cases {
        let (path, backend) = raw_backend("rx", move |b| {
            let req = b.rx_requests(1)[0];
            b.respond_rx(&[attack(&req)]);
        });
        let mut nic = connect(&path, RxMode::Copy);
        let f = until_broken(&mut nic);
        assert!(
            matches!(
                f,
                BackendFault::Rx(RxErrorKind::WrongId { .. } | RxErrorKind::CrossesPage { .. })
            ),
            "{name}: {f:?}"
        );
        drop(nic);
        backend.join().unwrap();
    }
}

#[test]
fn a_response_index_past_the_requests_breaks_the_device() {
    let (path, backend) = raw_backend("overflow", |b| {
        let _ = b.rx_requests(1);
        // rsp_prod far beyond anything posted (XSA-39), written into the shared header.
        b.rx_page
            .store_u32(8, 100_000, core::sync::atomic::Ordering::Release)
            .unwrap();
        b.ev.notify().unwrap();
    });
    let mut nic = connect(&path, RxMode::Copy);
    assert!(matches!(
        until_broken(&mut nic),
        BackendFault::Ring(PeerError::ProducerOverflow { .. })
    ));
    drop(nic);
    backend.join().unwrap();
}

/// A backend reporting an error for one frame: that frame is counted and dropped, the next
/// arrives.
#[test]
fn an_error_status_drops_one_frame() {
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let (path, backend) = raw_backend("rx-error", move |b| {
        let reqs = b.rx_requests(2);
        b.respond_rx(&[
            RxResponse {
                id: reqs[0].id,
                offset: 0,
                flags: 0,
                status: status::ERROR,
            },
            RxResponse {
                id: reqs[1].id,
                offset: 0,
                flags: 0,
                status: 0,
            },
        ]);
        done_rx.recv().unwrap();
    });
    let mut nic = connect(&path, RxMode::Copy);
    let mut frames = Vec::new();
    let deadline = Instant::now() + T;
    while nic.stats().rx_errors + nic.stats().rx_packets < 2 {
        assert!(Instant::now() < deadline);
        nic.receive(64, |rx| frames.push(rx.data.len())).unwrap();
        nic.wait(Some(Duration::from_millis(20))).unwrap();
    }
    assert_eq!(frames, [0], "the second (empty) frame arrived");
    assert_eq!(nic.stats().rx_errors, 1);
    assert!(nic.broken().is_none());
    done_tx.send(()).unwrap();
    nic.close().unwrap();
    backend.join().unwrap();
}

/// Completes a transfer into `gref` by hand, as a backend does: the frame number it gives,
/// then the flags.
fn complete_by_hand(table: &SharedRegion, gref: u32, frame: u32) {
    let at = gref as usize * 8;
    table
        .store_u32(at + 4, frame, core::sync::atomic::Ordering::Relaxed)
        .unwrap();
    let word = table
        .load_u32(at, core::sync::atomic::Ordering::Acquire)
        .unwrap();
    let done = u32::from(flags::TRANSFER_COMMITTED | flags::TRANSFER_COMPLETED);
    table
        .store_u32(at, word | done, core::sync::atomic::Ordering::Release)
        .unwrap();
}

/// A frame on offer in another grant whose transfer did complete is the backend's, and may
/// come back at once, before the frontend has read that grant's response (with several queues
/// it may be read later): accepted, and the accounting stays exact.
#[test]
fn a_frame_flipped_back_before_its_grant_is_read_is_accepted() {
    let (path, backend) = raw_backend("flip-back", |b| {
        let reqs = b.rx_requests(2);
        let offered_in = |gref: u32| {
            b.table
                .load_u32(gref as usize * 8 + 4, core::sync::atomic::Ordering::Relaxed)
                .unwrap()
        };
        // The second grant first, with a frame of the backend's half (the pool has 512).
        let second_offer = offered_in(reqs[1].gref);
        complete_by_hand(&b.table, reqs[1].gref, 300);
        // Then the first grant, with the frame just taken from the second.
        complete_by_hand(&b.table, reqs[0].gref, second_offer);
        b.respond_rx(&[
            RxResponse {
                id: reqs[0].id,
                offset: 0,
                flags: 0,
                status: 60,
            },
            RxResponse {
                id: reqs[1].id,
                offset: 0,
                flags: 0,
                status: 60,
            },
        ]);
    });
    let mut nic = connect(&path, RxMode::Flip);
    let mut got = 0;
    let deadline = Instant::now() + T;
    while got < 2 {
        assert!(Instant::now() < deadline);
        got += nic.receive(64, |rx| assert_eq!(rx.data.len(), 60)).unwrap();
        nic.wait(Some(Duration::from_millis(20))).unwrap();
    }
    assert!(nic.broken().is_none());
    let report = nic.close().unwrap();
    // Rings, transmit buffers, and the 254 offers still out (the two flipped frames are
    // ours again, waiting to be offered with the next refill batch).
    assert_eq!(report.revoked, 2 + 256 + 254, "every grant revoked");
    backend.join().unwrap();
}

/// Flip mode: the backend "completes" a transfer with a frame outside the pool, or one the
/// frontend already owns.
#[test]
fn a_bad_flipped_frame_breaks_the_device() {
    // Outside the pool; the frame offered in another grant; the one offered in this grant.
    for bogus in ["outside", "other offer", "own offer"] {
        let (tx, rx) = mpsc::channel();
        let (path, backend) = raw_backend("flip", move |b| {
            let reqs = b.rx_requests(2);
            let req = reqs[0];
            let offered_in = |gref: u32| {
                b.table
                    .load_u32(gref as usize * 8 + 4, core::sync::atomic::Ordering::Relaxed)
                    .unwrap()
            };
            let frame = match bogus {
                "outside" => u32::MAX,
                "other offer" => offered_in(reqs[1].gref),
                _ => offered_in(req.gref),
            };
            tx.send(frame).unwrap();
            complete_by_hand(&b.table, req.gref, frame);
            b.respond_rx(&[RxResponse {
                id: req.id,
                offset: 0,
                flags: 0,
                status: 60,
            }]);
        });
        let mut nic = connect(&path, RxMode::Flip);
        let f = until_broken(&mut nic);
        let frame = rx.recv().unwrap();
        assert_eq!(f, BackendFault::FlippedFrame(frame), "{bogus}");
        drop(nic);
        backend.join().unwrap();
    }
}
