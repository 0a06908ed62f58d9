//! Two real processes. The parent is a backend listening on a socket; the child (this test
//! binary, re-run) is a frontend that connects once per mode (copy, flip, split event channels,
//! two queues, and copy again: a reconnect with fresh rings, grants and ports). Each time it
//! grants its ring pages, initialises the rings, and hands over its frames, grant table, flip
//! pool and eventfds by descriptor; the backend maps the ring grants, attaches, answers one tx
//! and one rx request per queue, and both sides signal each other. The frontend closes; the
//! backend releases everything before acknowledging, so the frontend can then revoke every
//! grant.

use pvnet_process_host::testing::{LeakCheck, TestDir};
use std::process::Command;
use std::time::Duration;

use event_channel::EventChannel;
use grant_table::{
    Access, DomId, FRAME_SIZE, FrameNumber, FramePool, GrantOps, GrantRef, GrantTable, PeerGrants,
};
use io_ring::{BackRing, FrontRing};
use pvnet_process_host::{BackendConfig, Doorbell, Listener, Offer, connect};
use shared_mem::SharedRegion;
use xenbus::{EventFds, FrontendChoice, QueueResources, Resources, RxMode};

/// Wire-sized stand-ins for the netif slots (the netif crate is not a dependency here).
type TxReq = [u16; 6];
type TxRsp = [u16; 2];
type RxReq = [u16; 4];
type RxRsp = [u16; 4];

const BACKEND: DomId = DomId(0);
const T: Duration = Duration::from_secs(10);
const CHILD: &str = "PVNET_XENBUS_CHILD_SOCKET";
const MODES: [&str; 5] = ["copy", "flip", "split", "two-queues", "copy"];

fn choice(mode: &str) -> FrontendChoice {
    match mode {
        "flip" => {
            let mut c = FrontendChoice::default();
            c.rx_mode = RxMode::Flip;
            c
        }
        "split" => {
            let mut c = FrontendChoice::default();
            c.split_event_channels = true;
            c
        }
        "two-queues" => {
            let mut c = FrontendChoice::default();
            c.queues = 2;
            c
        }
        _ => FrontendChoice::default(),
    }
}

#[test]
fn two_processes_negotiate_every_mode_exchange_fds_and_reconnect() {
    let _leaks = LeakCheck::new();
    let dir = TestDir::new("xenbus-process");
    let path = dir.join("backend.sock");
    let config = {
        let mut c = BackendConfig::default();
        c.timeout = T;
        c
    };
    let listener = Listener::bind(&path, config).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "frontend_process_entry",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD, &path)
        .spawn()
        .unwrap();

    for mode in MODES {
        let mut conn = listener
            .accept_and_handshake()
            .unwrap_or_else(|e| panic!("{mode}: {e}"));
        assert_eq!(conn.choice, choice(mode), "{mode}");
        let res = conn.resources.clone();
        let frames = conn.map_memory(res.frames, "frames", 1 << 20).unwrap();
        let table = conn
            .map_memory(res.grant_table, "grant table", 1 << 20)
            .unwrap();
        let mut peer =
            PeerGrants::new(BACKEND, table, frames, SharedRegion::new_zeroed(FRAME_SIZE));
        if let Some(i) = res.flip_pool {
            peer = peer.with_flip_pool(FramePool::new(
                conn.map_memory(i, "pool", 1 << 20).unwrap(),
                |_| false,
            ));
        }
        let mut take = |e: EventFds| conn.take_event_channel(e).unwrap();
        let queues: Vec<(QueueResources, Doorbell, Option<Doorbell>)> = res
            .queues
            .iter()
            .map(|q| (*q, take(q.tx_event), q.rx_event.map(&mut take)))
            .collect();
        {
            for (q, mut tx_ev, rx_ev) in queues {
                let tx_map = peer
                    .map(GrantRef(q.tx_ring_ref), Access::ReadWrite)
                    .unwrap();
                let rx_map = peer
                    .map(GrantRef(q.rx_ring_ref), Access::ReadWrite)
                    .unwrap();
                let mut tx = BackRing::<TxReq, TxRsp>::attach(tx_map.region()).unwrap();
                let mut rx = BackRing::<RxReq, RxRsp>::attach(rx_map.region()).unwrap();
                assert!(
                    tx_ev.wait(Some(T)).unwrap(),
                    "{mode}: the frontend's tx event"
                );
                let reqs: Vec<TxReq> = tx.requests().unwrap().collect();
                assert_eq!(reqs.len(), 1, "{mode}: one tx request");
                tx.push_response(&[reqs[0][4], 0]).unwrap();
                let _ = tx.publish_responses();
                let mut rx_ev = rx_ev;
                if let Some(ev) = rx_ev.as_mut() {
                    assert!(ev.wait(Some(T)).unwrap(), "{mode}: the frontend's rx event");
                }
                let reqs: Vec<RxReq> = rx.requests().unwrap().collect();
                assert_eq!(reqs.len(), 1, "{mode}: one rx request");
                rx.push_response(&[reqs[0][0], 0, 0, 0]).unwrap();
                let _ = rx.publish_responses();
                tx_ev.notify().unwrap();
                if let Some(ev) = &rx_ev {
                    ev.notify().unwrap();
                }
            }
        }
        // Every mapping is gone with the loop's scope: nothing of this frontend is in use.
        assert_eq!(peer.pinned(), 0, "{mode}");
        drop(peer);
        assert!(
            conn.frontend_closing(T).unwrap(),
            "{mode}: the frontend closes"
        );
        conn.acknowledge_closed().unwrap();
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "frontend failed: {status}");
    drop(listener);
}

/// The frontend process of `two_processes_negotiate_every_mode_exchange_fds_and_reconnect`.
#[test]
#[ignore = "run by two_processes_negotiate_every_mode_exchange_fds_and_reconnect as its child"]
fn frontend_process_entry() {
    let Ok(path) = std::env::var(CHILD) else {
        eprintln!("frontend_process_entry: only runs as the child of the two-process test");
        return;
    };
    for mode in MODES {
        frontend_session(std::path::Path::new(&path), mode);
    }
}

fn frontend_session(path: &std::path::Path, mode: &str) {
    let choice = choice(mode);
    let queues = usize::try_from(choice.queues).unwrap();
    let pending = connect(path, T).unwrap();
    // Frames: per queue a tx ring page, an rx ring page and an rx buffer.
    let mut offer = Offer::new();
    let (frames, frames_fd) = offer.memory(c"fe-frames", 3 * queues * FRAME_SIZE).unwrap();
    let (table, table_fd) = offer.memory(c"fe-grants", FRAME_SIZE).unwrap();
    let mut table = GrantTable::new(table).unwrap();
    let flip_pool = (choice.rx_mode == RxMode::Flip)
        .then(|| offer.memory(c"fe-pool", 8 * FRAME_SIZE).unwrap().1);
    let mut rings = Vec::new();
    let mut resources = Vec::new();
    let mut grants = Vec::new();
    for q in 0..queues {
        let frame = |i: usize| FrameNumber(u32::try_from(3 * q + i).unwrap());
        let tx_ref = table.grant_access(BACKEND, frame(0), false).unwrap();
        let rx_ref = table.grant_access(BACKEND, frame(1), false).unwrap();
        let buf_ref = table.grant_access(BACKEND, frame(2), false).unwrap();
        grants.extend([tx_ref, rx_ref, buf_ref]);
        let tx = FrontRing::<TxReq, TxRsp>::init(
            frames
                .subregion(frame(0).0 as usize * FRAME_SIZE, FRAME_SIZE)
                .unwrap(),
        )
        .unwrap();
        let rx = FrontRing::<RxReq, RxRsp>::init(
            frames
                .subregion(frame(1).0 as usize * FRAME_SIZE, FRAME_SIZE)
                .unwrap(),
        )
        .unwrap();
        let (tx_ev, tx_fds) = offer.event_channel().unwrap();
        let rx_pair = choice
            .split_event_channels
            .then(|| offer.event_channel().unwrap());
        resources.push(QueueResources {
            tx_ring_ref: tx_ref.0,
            rx_ring_ref: rx_ref.0,
            tx_event: tx_fds,
            rx_event: rx_pair.as_ref().map(|(_, e)| *e),
        });
        rings.push((tx, rx, tx_ev, rx_pair.map(|(ev, _)| ev), buf_ref));
    }
    let res = Resources {
        frames: frames_fd,
        grant_table: table_fd,
        flip_pool,
        queues: resources,
    };
    let mut conn = offer.send(pending, &choice, &res).unwrap();
    conn.connect_doorbells(
        rings
            .iter_mut()
            .flat_map(|(_, _, tx_ev, rx_ev, _)| std::iter::once(tx_ev).chain(rx_ev.as_mut())),
    )
    .unwrap();

    for (q, (tx, rx, tx_ev, rx_ev, buf_ref)) in rings.iter_mut().enumerate() {
        let id = u16::try_from(100 + q).unwrap();
        let [gref_lo, gref_hi] = [(buf_ref.0 & 0xffff) as u16, (buf_ref.0 >> 16) as u16];
        tx.push_request(&[gref_lo, gref_hi, 0, 0, id, 60]).unwrap();
        let _ = tx.publish_requests();
        rx.push_request(&[id + 100, 0, gref_lo, gref_hi]).unwrap();
        let _ = rx.publish_requests();
        tx_ev.notify().unwrap();
        if let Some(ev) = rx_ev {
            ev.notify().unwrap();
        }
        assert!(tx_ev.wait(Some(T)).unwrap(), "{mode}: the backend's event");
        assert_eq!(
            tx.responses().unwrap().collect::<Vec<_>>(),
            [[id, 0]],
            "{mode}: tx response"
        );
        if let Some(ev) = rx_ev {
            assert!(ev.wait(Some(T)).unwrap());
        }
        assert_eq!(
            rx.responses().unwrap().collect::<Vec<_>>(),
            [[id + 100, 0, 0, 0]],
            "{mode}: rx response"
        );
    }
    // Close: returns once the backend has released everything; then every grant is revocable.
    conn.close().unwrap();
    for g in grants {
        table
            .end_access(g)
            .unwrap_or_else(|e| panic!("{mode}: grant {g:?} still in use after close: {e}"));
    }
}
