//! One test per Xen advisory class (../shared/PROTOCOL.md section 6), end to end through
//! netback on the in-process host: a hand-made frontend (`RawFrontend`) does what the
//! advisory's attacker did, and netback must answer, drop or disable that vif only, never
//! panic, hang or touch memory outside the grants, and leave nothing behind. Classes checked
//! elsewhere as well are named here too, with where: XSA-39 and XSA-155 at the ring and the
//! parser (`io-ring/tests/hostile.rs`, `tests/xsa155.rs`), XSA-332 over real doorbells
//! (`netback/tests/storm.rs`), XSA-392 (`netback/tests/exhaustion.rs`), XSA-396 in the grant
//! table and netfront (`grant-table/tests/persistent.rs`, `netfront/tests/hostile.rs`),
//! XSA-423/432 and 448 at the parser (`netif/tests/tx.rs`).

mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::{frame, req, round_trip};
use netfront::{NetfrontConfig, PendingNetfront};
use netif::Offload;
use netif::wire::{RxRequest, TxRequest, TxResponse, status, tx_flags};
use pvnet_netback::testing::{
    LocalBackendHost, LocalFrontendHost, LocalNetfront, RawFrontend, connect, connect_with_pool,
    local_backend, raw_frontend,
};
use pvnet_netback::{Echo, Netback, NetbackConfig, Outbox, PacketId, Uplink, VifFault, VifId};
use shared_mem::SharedRegion;
use xenbus::{BackendFeatures, FrontendChoice, RxMode};

const PAGE: usize = 4096;

/// Keeps every frame a guest transmits (and echoes it, so an honest netfront round-trips).
#[derive(Clone, Default)]
struct Capture(Rc<RefCell<Vec<Vec<u8>>>>);

impl Uplink for Capture {
    fn transmit(&mut self, from: VifId, packet: PacketId, out: &mut Outbox<'_>) {
        let mut bytes = vec![0u8; out.memory().len(packet) as usize];
        out.memory().read(packet, 0, &mut bytes);
        self.0.borrow_mut().push(bytes);
        out.deliver(from, packet);
    }
}

impl Capture {
    fn take(&self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.0.borrow_mut())
    }
}

type Backend<U> = Netback<U, LocalBackendHost>;

fn honest<U: Uplink>(backend: &mut Backend<U>) -> LocalNetfront {
    let mut cfg = NetfrontConfig::default();
    cfg.choice = FrontendChoice::default();
    cfg.choice.rx_mode = RxMode::Copy;
    connect(backend, &BackendFeatures::default(), cfg)
        .unwrap()
        .1
}

/// Sends `f` as one packet over the raw frontend's buffers, slot k carrying `parts[k]`
/// bytes of it (slot 0's size field is the packet's length, as netif has it), polls the
/// backend and returns the answers.
fn send_split<U: Uplink>(
    backend: &mut Backend<U>,
    raw: &mut RawFrontend,
    f: &[u8],
    parts: &[usize],
) -> Vec<TxResponse> {
    let mut reqs = Vec::new();
    let mut at = 0;
    for (k, n) in parts.iter().enumerate() {
        raw.fill(k, &f[at..at + n]);
        at += n;
        let size = if k == 0 { f.len() } else { *n };
        let more = if k + 1 < parts.len() {
            tx_flags::MORE_DATA
        } else {
            0
        };
        reqs.push(req(
            raw.buffer(k),
            0,
            more,
            u16::try_from(k).unwrap(),
            u16::try_from(size).unwrap(),
        ));
    }
    assert_eq!(at, f.len(), "the parts make the packet");
    raw.send(&reqs);
    backend.poll().unwrap();
    raw.tx_responses()
}

/// Releases the raw vif and checks nothing of it stays: no grant, no packet.
fn release<U: Uplink>(backend: &mut Backend<U>, mut raw: RawFrontend) {
    raw.close();
    backend.poll().unwrap();
    let closed = backend.take_closed();
    assert!(closed.iter().all(|v| v.pinned == 0), "grants released");
}

/// XSA-39: garbage ring indices. A request producer 2^31 ahead of the consumer disables the
/// vif at once (no work is done for the phantom requests) and only that vif; the backend's
/// memory is as before.
#[test]
fn xsa39_garbage_ring_indices_disable_only_that_vif() {
    let mut backend = local_backend(NetbackConfig::default(), Echo).unwrap();
    let (vif, raw) = raw_frontend(&mut backend, &BackendFeatures::default(), 4).unwrap();
    let mut nic = honest(&mut backend);
    let free = backend.memory().free_pages();
    // req_prod is the first word of the ring page.
    raw.frames()
        .store_u32(0, 1 << 31, std::sync::atomic::Ordering::Release)
        .unwrap();
    raw.notify();
    backend.poll().unwrap();
    let info = backend.vifs().into_iter().find(|v| v.id == vif).unwrap();
    assert!(
        matches!(info.fault, Some(VifFault::Ring(_))),
        "{:?}",
        info.fault
    );
    assert_eq!(
        info.stats.tx_packets + info.stats.tx_errors + info.stats.tx_dropped,
        0
    );
    assert_eq!(backend.memory().free_pages(), free);
    round_trip(&mut backend, &mut nic, 1);
    release(&mut backend, raw);
}

/// XSA-155: double fetch. Another thread rewrites the transmit ring's slots without pause
/// while netback parses them: netback reads each slot once into a local copy, so whatever it
/// decides is consistent (every frame it hands on is within the limits), it never panics,
/// and it releases everything afterwards.
#[test]
fn xsa155_slots_rewritten_while_parsing_cannot_break_netback() {
    let capture = Capture::default();
    let mut backend = local_backend(NetbackConfig::default(), capture.clone()).unwrap();
    let (_, mut raw) = raw_frontend(&mut backend, &BackendFeatures::default(), 8).unwrap();
    for i in 0..8 {
        raw.fill(i, &frame(1, 1, u32::try_from(i).unwrap(), 1500));
    }
    let ring = raw.frames().subregion(0, PAGE).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let scribbler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut x = 0x9e37_79b9u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // Slots start after the 64-byte header; the indices are left alone.
                for at in (64..PAGE).step_by(4) {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    let _ = ring.store_u32(at, x, std::sync::atomic::Ordering::Relaxed);
                }
            }
        })
    };
    let start = Instant::now();
    let mut rounds = 0u32;
    while start.elapsed() < Duration::from_millis(500) {
        let reqs: Vec<TxRequest> = (0..8u16)
            .map(|i| req(raw.buffer(usize::from(i)), 0, 0, i, 1500))
            .collect();
        if raw.tx().free_requests() >= 8 {
            raw.send(&reqs);
        }
        backend.poll().unwrap();
        // The responses are garbage too (the scribbler wrote them): consume without reading.
        let _ = raw.tx().responses().map(Iterator::count);
        rounds += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    scribbler.join().unwrap();
    for f in capture.take() {
        assert!(
            (14..=65535).contains(&f.len()),
            "a frame of {} bytes",
            f.len()
        );
    }
    assert!(rounds > 10);
    release(&mut backend, raw);
    assert_eq!(backend.memory().packets(), 0);
}

/// XSA-216: responses that carry backend memory. Every byte of a response slot netback
/// writes is determined: a transmit response is its 4 bytes of fields and zeros for the rest
/// of the 12-byte slot, a receive response its 8 bytes of fields. Nothing of the backend's
/// memory or stack reaches the ring.
#[test]
fn xsa216_every_response_byte_is_written_and_nothing_else() {
    let mut backend = local_backend(NetbackConfig::default(), Echo).unwrap();
    let (vif, mut raw) = raw_frontend(&mut backend, &BackendFeatures::default(), 4).unwrap();
    raw.fill(0, &frame(1, 1, 0, 100));
    raw.send(&[req(raw.buffer(0), 0, 0, 0x1234, 100)]);
    // The request as written, slot 0 of the transmit ring (after the 64-byte header).
    let mut before = [0u8; 12];
    raw.frames().copy_out(64, &mut before).unwrap();
    backend.poll().unwrap();
    let mut after = [0u8; 12];
    raw.frames().copy_out(64, &mut after).unwrap();
    assert_eq!(&after[..2], &0x1234u16.to_le_bytes(), "the id");
    assert_eq!(&after[2..4], &status::OKAY.to_le_bytes(), "the status");
    assert_eq!(
        &after[4..],
        &[0; 8],
        "the rest of the slot zeroed: no stale bytes, nothing of the backend's"
    );
    assert_ne!(&before[4..], &[0; 8], "the request was there before");
    assert_eq!(
        raw.tx_responses(),
        [TxResponse {
            id: 0x1234,
            status: status::OKAY
        }]
    );
    // Receive: one posted buffer, one echoed frame; the response is id, offset 0, no flags,
    // the length: all 8 bytes of the slot determined.
    let gref = raw.buffer(1);
    raw.rx()
        .push_request(&RxRequest {
            id: 0x55,
            pad: 0,
            gref: gref.0,
        })
        .unwrap();
    let _ = raw.rx().publish_requests();
    raw.notify();
    assert!(backend.inject(vif, &frame(2, 1, 1, 100), Offload::default()));
    backend.poll().unwrap();
    let mut slot = [0u8; 8];
    raw.frames().copy_out(PAGE + 64, &mut slot).unwrap();
    let mut want = Vec::new();
    for field in [0x55u16, 0, 0, 100] {
        want.extend_from_slice(&field.to_le_bytes());
    }
    assert_eq!(slot.to_vec(), want);
    release(&mut backend, raw);
}

/// XSA-270: an unvalidated control-ring hash mapping. It does not apply: pvnet never offers
/// the netif control ring (`feature-ctrl-ring`), so a frontend has no way to hand netback a
/// hash mapping; netback steers flows itself (`flow_hash % queues`, always a queue that
/// exists). What remains of the class, a queue count out of range, is refused in
/// negotiation.
#[test]
fn xsa270_no_control_ring_and_queue_counts_are_bounded() {
    let offered = BackendFeatures::default();
    let keys = offered.to_keys();
    assert_eq!(keys["feature-ctrl-ring"], "0", "a control ring is offered");
    // A frontend that hands one over anyway: its keys are accepted, the ring is not part of
    // the choice, so nothing ever maps or reads it.
    let mut hostile = FrontendChoice::default().to_keys();
    hostile.insert("ctrl-ring-ref".into(), "8".into());
    hostile.insert("event-channel-ctrl".into(), "2,3".into());
    let choice = FrontendChoice::from_keys(&hostile, &offered).unwrap();
    assert_eq!(choice, FrontendChoice::default());
    for queues in [0, offered.max_queues + 1, u32::MAX] {
        let mut c = FrontendChoice::default();
        c.queues = queues;
        assert!(
            FrontendChoice::from_keys(&c.to_keys(), &offered).is_err(),
            "{queues} queues accepted"
        );
    }
}

/// XSA-332/391: an event storm. A frontend that notifies without end buys no work: its
/// rings are looked at once per poll whatever the events (late EOI), its events are judged
/// useless and it is quieted, and an honest vif keeps its service. (Over real doorbells,
/// with the backend's CPU time measured: `netback/tests/storm.rs`.)
#[test]
fn xsa332_an_event_storm_buys_no_work() {
    let mut backend = local_backend(NetbackConfig::default(), Echo).unwrap();
    let (vif, raw) = raw_frontend(&mut backend, &BackendFeatures::default(), 4).unwrap();
    let mut nic = honest(&mut backend);
    for round in 0..200 {
        for _ in 0..100 {
            raw.notify();
        }
        assert_eq!(backend.poll().unwrap(), 0, "events alone are no work");
        backend.prepare_to_sleep().unwrap();
        if round % 50 == 0 {
            round_trip(&mut backend, &mut nic, round);
        }
    }
    let info = backend.vifs().into_iter().find(|v| v.id == vif).unwrap();
    assert_eq!(info.stats.tx_packets + info.stats.rx_packets, 0);
    release(&mut backend, raw);
}

/// XSA-392: unbounded buffering for a guest that stops consuming, including the case of a
/// frame that needs more receive buffers than the guest posts (one posted, three needed):
/// netback neither loops on it (no work is reported) nor keeps it: the frames wait under the
/// per-vif cap and are dropped at the stall deadline.
#[test]
fn xsa392_a_frame_needing_more_buffers_than_posted_is_dropped_at_the_stall_deadline() {
    let mut cfg = NetbackConfig::default();
    cfg.rx_stall_timeout = Duration::from_millis(50);
    cfg.rx_backlog_bytes = 16 * PAGE;
    let mut backend = local_backend(cfg, Echo).unwrap();
    // Scatter-gather, so a 9000-byte frame is three slots.
    let mut offered = BackendFeatures::default();
    offered.sg = true;
    let (vif, mut raw) = raw_frontend(&mut backend, &offered, 4).unwrap();
    let gref = raw.buffer(0);
    raw.rx()
        .push_request(&RxRequest {
            id: 1,
            pad: 0,
            gref: gref.0,
        })
        .unwrap();
    let _ = raw.rx().publish_requests();
    let free = backend.memory().free_pages();
    let mut queued = 0;
    while backend.inject(vif, &frame(2, 1, queued, 9000), Offload::default()) {
        queued += 1;
    }
    assert!(
        queued <= 6,
        "{queued} frames of 3 pages under a 16-page cap"
    );
    for _ in 0..10 {
        assert_eq!(
            backend.poll().unwrap(),
            0,
            "no work on a frame that cannot be placed"
        );
    }
    assert_eq!(backend.rx_backlog(vif), Some(queued as usize));
    let due = backend
        .prepare_to_sleep()
        .unwrap()
        .deadline
        .expect("a stall deadline");
    while Instant::now() < due {
        std::thread::sleep(Duration::from_millis(5));
    }
    backend.poll().unwrap();
    assert_eq!(backend.rx_backlog(vif), Some(0));
    assert_eq!(backend.memory().free_pages(), free);
    release(&mut backend, raw);
}

/// XSA-403: stale data in shared pages. A flipped frame becomes the guest's whole page: past
/// the packet it must hold zeros, never what the page held before (here a canary written
/// over the whole flip pool, as earlier packets or another guest's data would be).
#[test]
fn xsa403_a_flipped_page_holds_the_packet_and_zeros() {
    let mut backend = local_backend(NetbackConfig::default(), Echo).unwrap();
    let mut cfg = NetfrontConfig::default();
    cfg.choice = FrontendChoice::default();
    cfg.choice.rx_mode = RxMode::Flip;
    let layout = PendingNetfront::<LocalFrontendHost>::layout(&cfg).unwrap();
    let pool = SharedRegion::new_zeroed(layout.pool_bytes);
    pool.fill(0, layout.pool_bytes, 0xcc).unwrap();
    let (vif, mut nic) =
        connect_with_pool(&mut backend, &BackendFeatures::default(), cfg, pool.clone()).unwrap();
    let sent: Vec<Vec<u8>> = (0..8)
        .map(|i| frame(2, 1, i, 60 + 100 * i as usize))
        .collect();
    for f in &sent {
        assert!(backend.inject(vif, f, Offload::default()));
    }
    backend.poll().unwrap();
    let mut got = Vec::new();
    nic.receive(64, |rx| got.push(rx.data.to_vec())).unwrap();
    assert_eq!(got, sent);
    // Every pool page that holds one of the frames holds zeros after it.
    let mut found = 0;
    for p in 0..layout.pool_bytes / PAGE {
        let mut page = vec![0u8; PAGE];
        pool.copy_out(p * PAGE, &mut page).unwrap();
        if let Some(f) = sent.iter().find(|f| page.starts_with(f)) {
            found += 1;
            assert!(
                page[f.len()..].iter().all(|b| *b == 0),
                "page {p}: stale bytes after a {}-byte frame",
                f.len()
            );
        }
    }
    assert_eq!(found, sent.len());
    nic.start_close().unwrap();
    backend.poll().unwrap();
    assert!(nic.finish_close(Duration::ZERO).unwrap().is_some());
}

/// XSA-423/432: a packet's headers split across slots, and packets of the most slots netback
/// takes (19: the first and 18 following) at every size up to 128 bytes (the area Linux
/// netback copies whole to keep headers together). The first slot holds the Ethernet header
/// (as Linux requires), everything after it is spread over the following slots, a byte or
/// two (or none) each; each packet is delivered byte for byte.
#[test]
fn xsa423_432_headers_split_across_every_slot_arrive_whole() {
    let capture = Capture::default();
    let mut backend = local_backend(NetbackConfig::default(), capture.clone()).unwrap();
    let (_, mut raw) = raw_frontend(&mut backend, &BackendFeatures::default(), 19).unwrap();
    let following = 18;
    for len in 14..=128usize {
        let f = frame(1, 9, u32::try_from(len).unwrap(), len);
        // Slot 0: the 14-byte Ethernet header; slot k >= 1: bytes 14 + [(k-1) * rest / 18,
        // k * rest / 18).
        let rest = len - 14;
        let mut parts = vec![14];
        parts.extend((1..=following).map(|k| k * rest / following - (k - 1) * rest / following));
        let rsps = send_split(&mut backend, &mut raw, &f, &parts);
        assert_eq!(
            rsps.len(),
            following + 1,
            "{len} bytes: every slot answered"
        );
        assert!(
            rsps.iter().all(|r| r.status == status::OKAY),
            "{len} bytes: {rsps:?}"
        );
        assert_eq!(capture.take(), [f], "{len} bytes in 19 slots");
    }
    release(&mut backend, raw);
}

/// XSA-448: zero-length fragments. A zero-sized slot in every position after the first (the
/// first slot's size is the packet's length) is accepted and the packet delivered whole; no
/// position crashes or confuses netback.
#[test]
fn xsa448_zero_length_fragments_in_every_position() {
    let capture = Capture::default();
    let mut backend = local_backend(NetbackConfig::default(), capture.clone()).unwrap();
    let mut offered = BackendFeatures::default();
    offered.sg = true;
    let (_, mut raw) = raw_frontend(&mut backend, &offered, 6).unwrap();
    let f = frame(1, 9, 7, 300);
    for zero_at in 1..5usize {
        // Five slots: 100 + 100 + 100 bytes in three of them, 0 in one, the rest 0 too
        // where needed; the zero-length one moves along.
        let mut sizes = [100usize, 100, 100, 0, 0];
        sizes.swap(zero_at, 3);
        let rsps = send_split(&mut backend, &mut raw, &f, &sizes);
        assert_eq!(rsps.len(), 5);
        assert!(
            rsps.iter().all(|r| r.status == status::OKAY),
            "zero at {zero_at}: {rsps:?}"
        );
        assert_eq!(
            capture.take(),
            std::slice::from_ref(&f),
            "zero at {zero_at}"
        );
    }
    release(&mut backend, raw);
}
