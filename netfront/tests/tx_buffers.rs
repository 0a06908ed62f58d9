//! The transmit buffers of copied sends: a frame of up to half a page goes in a small buffer
//! (half of a page shared by two buffer ids), any other in its id's own page. With the ring
//! full of frames of every kind in flight at once, and again after every buffer came back,
//! each request carries the bytes of its own frame. On the in-process host against the raw
//! backend, one thread: deterministic.

use netif::Offload;
use netif::wire::{TxResponse, status};
use pvnet_netfront::NetfrontConfig;
use pvnet_netfront::testing::raw_backend_offering;
use xenbus::BackendFeatures;

/// Frame sizes around the small buffer's 2048 bytes, up to a page (one slot each).
const SIZES: [usize; 7] = [60, 1500, 2047, 2048, 2049, 3000, 4096];

/// A frame of `len` bytes that no other frame of the test has: `seed` in every byte's mix.
fn frame(seed: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| u8::try_from((i * 31 + seed * 7 + i / 251) % 256).expect("< 256"))
        .collect()
}

#[test]
fn frames_in_small_and_whole_buffers_keep_their_bytes() {
    let mut cfg = NetfrontConfig::default();
    cfg.choice.sg = true;
    cfg.choice.mtu = 9000;
    let (mut nic, mut b) = raw_backend_offering(cfg, &BackendFeatures::default()).unwrap();
    for round in 0..2 {
        let mut sent = Vec::new();
        while nic.tx_in_flight() < 256 {
            let k = sent.len();
            let bytes = frame(round * 1000 + k, SIZES[k % SIZES.len()]);
            nic.send(&bytes, Offload::default()).unwrap();
            sent.push(bytes);
        }
        let reqs = b.tx_requests();
        assert_eq!(reqs.len(), 256, "one slot a frame, round {round}");
        for (req, bytes) in reqs.iter().zip(&sent) {
            assert_eq!(usize::from(req.size), bytes.len());
            if bytes.len() <= 2048 {
                assert!(
                    [0, 2048].contains(&req.offset),
                    "a small buffer is half a page: offset {}",
                    req.offset
                );
            } else {
                assert_eq!(req.offset, 0, "a larger frame has a page of its own");
            }
            assert!(
                b.tx_frame(&[*req]) == *bytes,
                "round {round}: the {} bytes of id {} at offset {}",
                bytes.len(),
                req.id,
                req.offset
            );
        }
        let answers: Vec<TxResponse> = reqs
            .iter()
            .map(|r| TxResponse {
                id: r.id,
                status: status::OKAY,
            })
            .collect();
        b.respond_tx(&answers);
        nic.poll().unwrap();
        assert_eq!(nic.tx_in_flight(), 0, "every buffer back, round {round}");
    }
    assert_eq!(nic.stats().tx_packets, 512);
    assert!(nic.broken().is_none());
}
