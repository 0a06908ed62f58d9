//! Frames built in place (`TxBatch::reserve` / `TxBuffer`): the requests pushed and the
//! bytes the backend reads are those of a copied send; buffers not committed come back;
//! a failed commit keeps the bytes readable. On the in-process host against the raw backend,
//! one thread: deterministic.

use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;

use netif::wire::tx_flags;
use netif::{Gso, GsoKind, Offload};
use pvnet_netfront::testing::{LocalNetfront, RawBackend, raw_backend_offering};
use pvnet_netfront::{NetfrontConfig, SendError};
use xenbus::BackendFeatures;

/// A backend that takes scatter-gather and TCPv4 GSO, a frontend of MTU 9000; `gso: false`
/// for a backend without GSO.
fn pair_with(gso: bool) -> (LocalNetfront, RawBackend) {
    let mut cfg = NetfrontConfig::default();
    cfg.choice.sg = true;
    cfg.choice.mtu = 9000;
    let mut offer = BackendFeatures::default();
    offer.gso_tcpv4 = gso;
    offer.gso_tcpv6 = false;
    raw_backend_offering(cfg, &offer).unwrap()
}

fn pair() -> (LocalNetfront, RawBackend) {
    pair_with(true)
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| u8::try_from(i * 13 % 251).expect("< 251"))
        .collect()
}

#[test]
fn a_frame_written_in_place_goes_out_as_one_chain() {
    let (mut nic, mut b) = pair();
    let bytes = pattern(5000);
    nic.batch(|t| {
        let mut buf = t.reserve(0, 9000).unwrap();
        assert_eq!(buf.capacity(), 3 * 4096);
        buf.write(4000, &bytes[4000..]).unwrap();
        buf.write(0, &bytes[..4000]).unwrap();
        let mut back = [0u8; 200];
        assert_eq!(buf.read(3990, &mut back), 200);
        assert_eq!(&back[..], &bytes[3990..4190]);
        buf.commit(5000, Offload::default()).unwrap();
    })
    .unwrap();
    let reqs = b.tx_requests();
    assert_eq!(
        reqs.len(),
        2,
        "5000 bytes take two slots; the third page went back"
    );
    assert_eq!(reqs[0].size, 5000);
    assert_eq!(reqs[0].flags & tx_flags::MORE_DATA, tx_flags::MORE_DATA);
    assert_eq!((reqs[1].size, reqs[1].flags), (904, 0));
    assert_eq!(b.tx_frame(&reqs), bytes);
    assert_eq!(nic.tx_in_flight(), 2);
    assert_eq!(nic.stats().tx_packets, 1);
}

#[test]
fn a_frame_read_from_a_descriptor_lands_in_the_buffers() {
    let (mut nic, mut b) = pair();
    let (mut tx, rx) = UnixStream::pair().unwrap();
    let bytes = pattern(6000);
    let mut msg = b"HEAD".to_vec();
    msg.extend_from_slice(&bytes);
    tx.write_all(&msg).unwrap();
    let gso = Offload {
        csum_blank: true,
        data_validated: true,
        gso: Some(Gso {
            kind: GsoKind::TcpV4,
            size: 1448,
        }),
    };
    nic.batch(|t| {
        let mut buf = t.reserve(7, 65535).unwrap();
        assert_eq!(buf.queue(), 0, "one queue: every index maps to it");
        let mut head = [0u8; 4];
        let n = buf.read_from(rx.as_fd(), &mut head).unwrap();
        assert_eq!((n, &head), (6004, b"HEAD"));
        buf.commit(n - 4, gso).unwrap();
    })
    .unwrap();
    let reqs = b.tx_requests();
    assert_eq!(
        reqs.len(),
        3,
        "two data slots and the GSO extra after the first"
    );
    assert_eq!(reqs[0].flags & tx_flags::EXTRA_INFO, tx_flags::EXTRA_INFO);
    let data = [reqs[0], reqs[2]];
    assert_eq!(b.tx_frame(&data), bytes);
}

#[test]
fn buffers_not_committed_come_back() {
    let (mut nic, _b) = pair();
    for _ in 0..100 {
        nic.batch(|t| {
            let buf = t.reserve(0, 65535).unwrap();
            assert_eq!(buf.capacity(), 16 * 4096);
        })
        .unwrap();
    }
    assert_eq!(nic.tx_in_flight(), 0);
    assert!(nic.can_send(65535, true));
}

#[test]
fn a_failed_commit_keeps_the_bytes_and_nothing_is_sent() {
    let (mut nic, mut b) = pair();
    let mut cfg_off = Offload::default();
    nic.batch(|t| {
        let mut buf = t.reserve(0, 100).unwrap();
        buf.write(0, &pattern(100)).unwrap();
        assert_eq!(buf.commit(10, cfg_off), Err(SendError::TooShort(10)));
        assert_eq!(
            buf.commit(5000, cfg_off),
            Err(SendError::TooLong {
                len: 5000,
                max: 4096
            })
        );
        assert_eq!(
            buf.write(4000, &[0; 200]),
            Err(SendError::TooLong {
                len: 4200,
                max: 4096
            })
        );
        // A GSO kind not offered (TCPv4 only).
        cfg_off.gso = Some(Gso {
            kind: GsoKind::TcpV6,
            size: 1400,
        });
        assert_eq!(
            buf.commit(100, cfg_off),
            Err(SendError::OffloadNotNegotiated)
        );
        let mut back = [0u8; 100];
        assert_eq!(buf.read(0, &mut back), 100);
        assert_eq!(back.to_vec(), pattern(100));
        drop(buf);
        assert!(matches!(
            t.reserve(0, 20 * 4096),
            Err(SendError::TooLong { .. })
        ));
    })
    .unwrap();
    assert!(b.tx_requests().is_empty());
    assert_eq!(nic.tx_in_flight(), 0);
}

#[test]
fn reserving_stops_at_full_and_resumes_after_completions() {
    // Towards a backend without GSO no slot is kept for an extra: all 256 are used.
    let (mut nic, mut b) = pair_with(false);
    let mut sent = 0;
    nic.batch(|t| {
        loop {
            match t.reserve(0, 60) {
                Ok(mut buf) => {
                    buf.write(0, &[0xff; 60]).unwrap();
                    buf.commit(60, Offload::default()).unwrap();
                    sent += 1;
                }
                Err(SendError::Full) => break,
                Err(e) => panic!("{e}"),
            }
        }
    })
    .unwrap();
    assert_eq!(sent, 256, "one buffer and one slot each");
    let rsps: Vec<_> = b
        .tx_requests()
        .iter()
        .map(|r| netif::wire::TxResponse {
            id: r.id,
            status: netif::wire::status::OKAY,
        })
        .collect();
    b.respond_tx(&rsps);
    nic.batch(|t| assert!(t.reserve(0, 65535).is_ok())).unwrap();
}
