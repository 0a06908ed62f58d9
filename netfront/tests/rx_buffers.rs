//! Receive buffers beyond the ring's slots (`NetfrontConfig::rx_buffers`): every buffer is
//! used, each buffer of a one-slot frame is posted again only after all the others (the order
//! they came back in), those of a frame of several slots before them, and every frame arrives
//! with its own bytes. The configured count is checked. On the in-process
//! host against the raw backend, one thread: deterministic.

use grant_table::{Access, GrantMapping, GrantOps, GrantRef};
use netif::wire::{RxRequest, RxResponse, rx_flags};
use pvnet_netfront::testing::{LocalNetfront, RawBackend, raw_backend};
use pvnet_netfront::{
    DEFAULT_RX_BUFFERS, MAX_RX_BUFFERS, NetfrontConfig, NetfrontError, PendingNetfront,
};
use xenbus::RxMode;

/// Requests the backend answers at a time: the frontend's refill batch.
const BATCH: usize = 32;

/// A frame of `len` bytes that no other frame of the test has.
fn frame(seed: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| u8::try_from((i * 13 + seed * 101 + i / 127) % 256).expect("< 256"))
        .collect()
}

/// Receives three times `rx_buffers` frames of 60-1514 bytes, `BATCH` at a time, and checks
/// the bytes of each and the order of the buffers they came in.
fn cycle(rx_buffers: u32) {
    let mut cfg = NetfrontConfig::default();
    cfg.rx_buffers = rx_buffers;
    let n = rx_buffers as usize;
    let (mut nic, mut b) = raw_backend(cfg).unwrap();
    let mut grefs = Vec::new();
    for batch in 0..3 * n / BATCH {
        let reqs = b.rx_requests(BATCH);
        let mut sent = Vec::new();
        let mut rsps = Vec::new();
        for (k, req) in reqs.iter().enumerate() {
            let seq = batch * BATCH + k;
            let bytes = frame(seq, 60 + seq * 37 % 1455);
            let m = b
                .grants()
                .map(GrantRef(req.gref), Access::ReadWrite)
                .unwrap();
            m.write(0, &bytes).unwrap();
            drop(m);
            rsps.push(RxResponse {
                id: req.id,
                offset: 0,
                flags: 0,
                status: i16::try_from(bytes.len()).unwrap(),
            });
            sent.push(bytes);
            grefs.push(req.gref);
        }
        b.respond_rx(&rsps);
        let mut got = Vec::new();
        let n_got = nic.receive(64, |rx| got.push(rx.data.to_vec())).unwrap();
        assert_eq!(n_got, BATCH, "batch {batch}");
        assert!(got == sent, "batch {batch}: each frame's own bytes");
    }
    assert!(nic.broken().is_none());
    let mut distinct = grefs.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), n, "every buffer used");
    for (i, g) in grefs.iter().enumerate().skip(n) {
        assert_eq!(
            *g,
            grefs[i - n],
            "request {i}: a buffer comes again after all the others"
        );
    }
    assert_eq!(nic.stats().rx_packets, 3 * n as u64);
}

#[test]
fn as_many_buffers_as_slots_are_used_in_turn() {
    cycle(256);
}

#[test]
fn more_buffers_than_slots_are_used_in_turn() {
    cycle(DEFAULT_RX_BUFFERS);
    cycle(768);
}

/// Takes `n` posted requests and answers them with frames of one slot, `BATCH` at a time,
/// letting the frontend take each batch (and post buffers again). Returns their grants.
fn answer_small(nic: &mut LocalNetfront, b: &mut RawBackend, n: usize) -> Vec<u32> {
    let mut grefs = Vec::new();
    for _ in 0..n / BATCH {
        let reqs = b.rx_requests(BATCH);
        let rsps: Vec<RxResponse> = reqs
            .iter()
            .map(|req| RxResponse {
                id: req.id,
                offset: 0,
                flags: 0,
                status: 60,
            })
            .collect();
        b.respond_rx(&rsps);
        assert_eq!(nic.receive(64, |_| {}).unwrap(), BATCH);
        grefs.extend(reqs.iter().map(|r| r.gref));
    }
    grefs
}

/// The response for slot `k` of `slots` of a frame whose slots carry `len` bytes each.
fn piece(req: &RxRequest, k: usize, slots: usize, len: usize) -> RxResponse {
    RxResponse {
        id: req.id,
        offset: 0,
        flags: if k + 1 < slots {
            rx_flags::MORE_DATA
        } else {
            0
        },
        status: i16::try_from(len).unwrap(),
    }
}

/// A frame of several buffers (a GSO packet, a jumbo frame) touches every line of them: with
/// more buffers than slots, cycling them all would take the frontend's working set past its
/// cache (rx 65535 B 0.94x of 256 buffers, BENCHMARKS.md). Its buffers are posted again
/// first, while one-slot frames keep cycling through them all.
#[test]
fn buffers_of_large_frames_are_posted_again_first() {
    const SLOTS: usize = 16;
    const PIECE: usize = 4000;
    let (mut nic, mut b) = raw_backend(NetfrontConfig::default()).unwrap();
    // Two frames of 16 slots in the first 32 posted buffers.
    let reqs = b.rx_requests(2 * SLOTS);
    let mut sent = Vec::new();
    let mut rsps = Vec::new();
    for (f, frame_reqs) in reqs.chunks(SLOTS).enumerate() {
        let bytes = frame(f, SLOTS * PIECE);
        for (k, req) in frame_reqs.iter().enumerate() {
            let m = b
                .grants()
                .map(GrantRef(req.gref), Access::ReadWrite)
                .unwrap();
            m.write(0, &bytes[k * PIECE..(k + 1) * PIECE]).unwrap();
            rsps.push(piece(req, k, SLOTS, PIECE));
        }
        sent.push(bytes);
    }
    b.respond_rx(&rsps);
    let mut got = Vec::new();
    assert_eq!(nic.receive(64, |rx| got.push(rx.data.to_vec())).unwrap(), 2);
    assert!(got == sent, "each frame's own bytes");
    // The 224 buffers still posted from the start, as small frames; then the 32 posted after
    // the large frames come up: the large frames' own.
    let mut seen: Vec<u32> = reqs.iter().map(|r| r.gref).collect();
    seen.extend(answer_small(&mut nic, &mut b, 256 - 2 * SLOTS));
    let again = answer_small(&mut nic, &mut b, BATCH);
    let (first, second) = seen[..2 * SLOTS].split_at(SLOTS);
    assert_eq!(
        again,
        [second, first].concat(),
        "the large frames' buffers come first, the last frame's first, each in order"
    );
    // One-slot frames still go through every buffer.
    seen.extend(answer_small(&mut nic, &mut b, DEFAULT_RX_BUFFERS as usize));
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), DEFAULT_RX_BUFFERS as usize, "every buffer used");
    assert!(nic.broken().is_none());
}

#[test]
fn buffer_counts_out_of_range_are_refused() {
    for bad in [0, 255, MAX_RX_BUFFERS + 1, u32::MAX] {
        let mut cfg = NetfrontConfig::default();
        cfg.rx_buffers = bad;
        assert!(
            matches!(
                raw_backend(cfg),
                Err(NetfrontError::Config(ref m)) if m.contains("receive buffers")
            ),
            "{bad} receive buffers"
        );
    }
    // Flip mode offers one frame per ring slot, whatever the count says.
    let mut cfg = NetfrontConfig::default();
    cfg.choice.rx_mode = RxMode::Flip;
    cfg.rx_buffers = 0;
    let flip = PendingNetfront::<pvnet_netfront::testing::LocalFrontendHost>::layout(&cfg);
    assert!(flip.is_ok());
}

#[test]
fn the_layout_grows_by_a_page_per_buffer() {
    let layout = |rx_buffers| {
        let mut cfg = NetfrontConfig::default();
        cfg.rx_buffers = rx_buffers;
        PendingNetfront::<pvnet_netfront::testing::LocalFrontendHost>::layout(&cfg).unwrap()
    };
    let (small, large) = (layout(256), layout(MAX_RX_BUFFERS));
    assert_eq!(
        large.frames_bytes - small.frames_bytes,
        (MAX_RX_BUFFERS as usize - 256) * 4096
    );
    // One grant per buffer: 512 entries to a table page.
    assert!(large.table_bytes >= small.table_bytes + (MAX_RX_BUFFERS as usize - 256) * 8);
}
