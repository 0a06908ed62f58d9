//! Event storms over real doorbells (XSA-332's class): a frontend that rings its doorbell
//! without pause. Late EOI bounds each wakeup's work; the backend also stops listening to a
//! vif whose events keep bringing no work, for a while, longer each time. Measured: the
//! backend thread's CPU time during a two-second storm, while an honest netfront on another
//! vif keeps round-tripping through it. A frontend that shuts down what it holds of the
//! backend's doorbell causes no storm at all: it holds only a sending end, and the backend's
//! receiving socket, which the backend made, stays quiet.

mod common;

use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{T, frame, start};
use event_channel::EventChannel;
use grant_table::{DomId, FrameNumber, GrantTable};
use io_ring::FrontRing;
use netfront::{Netfront, NetfrontConfig};
use netif::wire::{RxRequest, RxResponse, TxRequest, TxResponse};
use process_host::{Doorbell, FrontendConnection, Offer};
use pvnet_netback::{Echo, NetbackConfig};
use xenbus::{BackendFeatures, FrontendChoice, QueueResources, Resources, RxMode};

const STORM: Duration = Duration::from_secs(2);

/// A hand-made frontend with valid, empty rings and its doorbell towards the backend.
struct RawFront {
    _conn: FrontendConnection,
    _table: GrantTable,
    doorbell: Doorbell,
}

fn raw_frontend(path: &std::path::Path) -> RawFront {
    let pending = process_host::connect(path, T).unwrap();
    let mut offer = Offer::new();
    let (frames, frames_fd) = offer.memory(c"raw-frames", 2 * 4096).unwrap();
    let (table, table_fd) = offer.memory(c"raw-grants", 4096).unwrap();
    let mut table = GrantTable::new(table).unwrap();
    let tx = table.grant_access(DomId(0), FrameNumber(0), false).unwrap();
    let rx = table.grant_access(DomId(0), FrameNumber(1), false).unwrap();
    FrontRing::<TxRequest, TxResponse>::init(frames.subregion(0, 4096).unwrap()).unwrap();
    FrontRing::<RxRequest, RxResponse>::init(frames.subregion(4096, 4096).unwrap()).unwrap();
    let (mut doorbell, events) = offer.event_channel().unwrap();
    let res = Resources {
        frames: frames_fd,
        grant_table: table_fd,
        flip_pool: None,
        queues: vec![QueueResources {
            tx_ring_ref: tx.0,
            rx_ring_ref: rx.0,
            tx_event: events,
            rx_event: None,
        }],
    };
    let mut choice = FrontendChoice::default();
    choice.rx_mode = RxMode::Copy;
    let mut conn = offer.send(pending, &choice, &res).unwrap();
    conn.connect_doorbells([&mut doorbell]).unwrap();
    RawFront {
        _conn: conn,
        _table: table,
        doorbell,
    }
}

/// Runs `storm` for [`STORM`] against a backend serving the raw frontend and an honest
/// netfront that round-trips frames meanwhile; returns the backend thread's CPU time and
/// the frames the honest one got back.
fn storm_against_backend_counted(
    name: &str,
    storm: impl FnOnce(RawFront, &AtomicBool) + Send + 'static,
) -> (Duration, u32, u64) {
    // Every descriptor and mapping of both frontends and the backend is gone again (the
    // acceptor thread's listener included: the directory and socket were removed by stop).
    let leaks = process_host::testing::LeakCheck::new();
    let r = storm_against_backend(name, storm);
    drop(leaks);
    r
}

fn storm_against_backend(
    name: &str,
    storm: impl FnOnce(RawFront, &AtomicBool) + Send + 'static,
) -> (Duration, u32, u64) {
    let running = start(
        name,
        BackendFeatures::default(),
        NetbackConfig::default(),
        Echo,
    );
    let raw = raw_frontend(&running.path);
    let mut honest = Netfront::connect(&running.path, NetfrontConfig::default()).unwrap();
    running.wait_attached(2);
    let stop = Arc::new(AtomicBool::new(false));
    let attacker = {
        let stop = stop.clone();
        std::thread::spawn(move || storm(raw, &stop))
    };
    let start = Instant::now();
    let mut echoed = 0u32;
    while start.elapsed() < STORM {
        let f = frame(1, 1, echoed, 60);
        honest.send(&f, netif::Offload::default()).unwrap();
        let mut got = None;
        let deadline = Instant::now() + T;
        while got.is_none() {
            honest
                .receive(1, |rx| got = Some(rx.data.to_vec()))
                .unwrap();
            if got.is_none() {
                assert!(Instant::now() < deadline, "the honest frontend was starved");
                honest.wait(Some(Duration::from_millis(100))).unwrap();
            }
        }
        assert_eq!(got.unwrap(), f);
        echoed += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::Release);
    attacker.join().unwrap();
    honest.close().unwrap();
    let stopped = running.stop();
    let quieted = stopped
        .closed
        .iter()
        .chain(std::iter::empty())
        .map(|c| c.stats.quieted)
        .sum::<u64>()
        + stopped.vifs().iter().map(|v| v.stats.quieted).sum::<u64>();
    (stopped.cpu, echoed, quieted)
}

fn check(name: &str, cpu: Duration, echoed: u32, quieted: u64) {
    eprintln!(
        "{name}: backend CPU {:.3} s over a {:.1} s storm, {echoed} honest round trips, quieted {quieted} times",
        cpu.as_secs_f64(),
        STORM.as_secs_f64()
    );
    assert!(
        echoed > 50,
        "{name}: the honest frontend was served {echoed} times"
    );
    assert!(quieted > 0, "{name}: the storming vif was never quieted");
    // Without the defence the backend's thread spends the whole storm awake (about 2 s).
    assert!(
        cpu < STORM / 4,
        "{name}: the backend burnt {cpu:?} of CPU in a {STORM:?} storm"
    );
}

#[test]
fn xsa332_a_frontend_ringing_without_pause_costs_the_backend_bounded_cpu() {
    let (cpu, echoed, quieted) = storm_against_backend_counted("ring", |raw, stop| {
        while !stop.load(Ordering::Acquire) {
            raw.doorbell.notify().unwrap();
        }
    });
    check("ringing", cpu, echoed, quieted);
}

#[test]
fn xsa332_a_frontend_shutting_down_its_doorbell_wakes_the_backend_not_once() {
    // When the frontend made both ends of the backend's doorbell, it could keep the
    // backend's receiving socket and shut it down: readable for good, a free storm. Now
    // it holds only the sending end the backend gave it. Shutting that down (and closing
    // it, and its own receiving end) leaves the backend's socket quiet.
    let (cpu, echoed, quieted) = storm_against_backend_counted("shutdown", |raw, stop| {
        let (rx, tx) = raw.doorbell.into_fds();
        let tx = tx.expect("connected to the backend's doorbell");
        for fd in [&rx, &tx] {
            nix::sys::socket::shutdown(fd.as_raw_fd(), nix::sys::socket::Shutdown::Both).unwrap();
        }
        drop((rx, tx));
        while !stop.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    eprintln!(
        "shut down: backend CPU {:.3} s over a {:.1} s storm, {echoed} honest round trips, quieted {quieted} times",
        cpu.as_secs_f64(),
        STORM.as_secs_f64()
    );
    assert!(echoed > 50, "the honest frontend was served {echoed} times");
    assert_eq!(quieted, 0, "the backend was woken without work");
    assert!(cpu < STORM / 4, "the backend burnt {cpu:?} of CPU");
}
