//! A hostile backend, on the in-process host: a hand-made backend
//! ([`pvnet_netfront::testing::RawBackend`]) answers netfront's requests with what netback
//! never would. Each time the device turns `broken` with the typed fault (or, for a backend
//! that merely reports an error, drops that frame and goes on); nothing panics, and later
//! calls report the same fault. Stepped on one thread: deterministic.

use std::time::Duration;

use grant_table::flags;
use io_ring::PeerError;
use netif::wire::{RxRequest, RxResponse, TxRequest, TxResponse, status};
use netif::{Offload, RxErrorKind};
use pvnet_netfront::testing::{LocalNetfront, RawBackend, raw_backend};
use pvnet_netfront::{BackendFault, NetfrontConfig, NetfrontError, SendError};
use shared_mem::SharedRegion;
use xenbus::RxMode;

fn pair(rx_mode: RxMode) -> (LocalNetfront, RawBackend) {
    let mut cfg = NetfrontConfig::default();
    cfg.choice.rx_mode = rx_mode;
    raw_backend(cfg).unwrap()
}

/// Lets the frontend look (receive, then reclaim): it must report a fault, the same one from
/// then on.
fn broken(nic: &mut LocalNetfront) -> BackendFault {
    let r = nic.receive(64, |_| {}).and_then(|_| nic.poll());
    let Err(NetfrontError::Broken(f)) = r else {
        panic!("the device did not break: {r:?}, {:?}", nic.stats());
    };
    assert_eq!(nic.broken(), Some(f));
    // Sticky: every later call says the same.
    assert!(matches!(nic.poll(), Err(NetfrontError::Broken(g)) if g == f));
    assert!(matches!(nic.wait(Some(Duration::ZERO)), Err(NetfrontError::Broken(g)) if g == f));
    assert_eq!(
        nic.send(&[0u8; 60], Offload::default()),
        Err(SendError::Broken(f))
    );
    f
}

/// Closes on this thread: the raw backend answers once the frontend asked.
fn close(mut nic: LocalNetfront, mut b: RawBackend) -> usize {
    nic.start_close().unwrap();
    assert!(b.answer_close(), "the frontend asked to close");
    nic.finish_close(Duration::ZERO)
        .unwrap()
        .expect("the backend answered")
        .revoked
}

fn frame() -> [u8; 60] {
    let mut f = [0u8; 60];
    f[..6].fill(0xff);
    f
}

#[test]
fn bad_tx_responses_break_the_device() {
    type Attack = fn(&TxRequest) -> TxResponse;
    let cases: [(&str, Attack); 2] = [
        ("unknown id", |r| TxResponse {
            id: r.id ^ 0x80,
            status: status::OKAY,
        }),
        ("odd status", |r| TxResponse {
            id: r.id,
            status: 5,
        }),
    ];
    for (name, attack) in cases {
        let (mut nic, mut b) = pair(RxMode::Copy);
        nic.send(&frame(), Offload::default()).unwrap();
        let req = b.tx_requests()[0];
        b.respond_tx(&[attack(&req)]);
        let got = broken(&mut nic);
        match (name, got) {
            ("unknown id", BackendFault::TxId(id)) => assert_eq!(id, req.id ^ 0x80),
            ("odd status", BackendFault::TxStatus(5)) => {}
            (n, g) => panic!("{n}: {g:?}"),
        }
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
        let (mut nic, mut b) = pair(RxMode::Copy);
        let req = b.rx_requests(1)[0];
        b.respond_rx(&[attack(&req)]);
        let f = broken(&mut nic);
        assert!(
            matches!(
                f,
                BackendFault::Rx(RxErrorKind::WrongId { .. } | RxErrorKind::CrossesPage { .. })
            ),
            "{name}: {f:?}"
        );
    }
}

#[test]
fn a_response_index_past_the_requests_breaks_the_device() {
    let (mut nic, mut b) = pair(RxMode::Copy);
    let _ = b.rx_requests(1);
    // rsp_prod far beyond anything posted (XSA-39), written into the shared header.
    b.rx_page()
        .store_u32(8, 100_000, core::sync::atomic::Ordering::Release)
        .unwrap();
    b.notify();
    assert!(matches!(
        broken(&mut nic),
        BackendFault::Ring(PeerError::ProducerOverflow { .. })
    ));
}

/// A backend reporting an error for one frame: that frame is counted and dropped, the next
/// arrives.
#[test]
fn an_error_status_drops_one_frame() {
    let (mut nic, mut b) = pair(RxMode::Copy);
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
    let mut frames = Vec::new();
    nic.receive(64, |rx| frames.push(rx.data.len())).unwrap();
    assert_eq!(frames, [0], "the second (empty) frame arrived");
    assert_eq!(nic.stats().rx_errors, 1);
    assert!(nic.broken().is_none());
    // Rings, transmit pages and their small halves, receive buffers.
    assert_eq!(
        close(nic, b),
        2 + 2 * 256 + pvnet_netfront::DEFAULT_RX_BUFFERS as usize,
        "every grant revoked"
    );
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

/// The frame an accept-transfer grant offers.
fn offered_in(b: &RawBackend, gref: u32) -> u32 {
    b.table()
        .load_u32(gref as usize * 8 + 4, core::sync::atomic::Ordering::Relaxed)
        .unwrap()
}

/// A frame on offer in another grant whose transfer did complete is the backend's, and may
/// come back at once, before the frontend has read that grant's response (with several queues
/// it may be read later): accepted, and the accounting stays exact.
#[test]
fn a_frame_flipped_back_before_its_grant_is_read_is_accepted() {
    let (mut nic, mut b) = pair(RxMode::Flip);
    let reqs = b.rx_requests(2);
    // The second grant first, with a frame of the backend's half (the pool has 512).
    let second_offer = offered_in(&b, reqs[1].gref);
    complete_by_hand(b.table(), reqs[1].gref, 300);
    // Then the first grant, with the frame just taken from the second.
    complete_by_hand(b.table(), reqs[0].gref, second_offer);
    let ok = |id| RxResponse {
        id,
        offset: 0,
        flags: 0,
        status: 60,
    };
    b.respond_rx(&[ok(reqs[0].id), ok(reqs[1].id)]);
    let got = nic.receive(64, |rx| assert_eq!(rx.data.len(), 60)).unwrap();
    assert_eq!(got, 2);
    assert!(nic.broken().is_none());
    // Rings, transmit pages and their small halves, and the 254 offers still out (the two
    // flipped frames are ours again, waiting to be offered with the next refill batch).
    assert_eq!(close(nic, b), 2 + 2 * 256 + 254, "every grant revoked");
}

/// Flip mode: the backend "completes" a transfer with a frame outside the pool, or one the
/// frontend already owns.
#[test]
fn a_bad_flipped_frame_breaks_the_device() {
    // Outside the pool; the frame offered in another grant; the one offered in this grant.
    for bogus in ["outside", "other offer", "own offer"] {
        let (mut nic, mut b) = pair(RxMode::Flip);
        let reqs = b.rx_requests(2);
        let req = reqs[0];
        let frame = match bogus {
            "outside" => u32::MAX,
            "other offer" => offered_in(&b, reqs[1].gref),
            _ => offered_in(&b, req.gref),
        };
        complete_by_hand(b.table(), req.gref, frame);
        b.respond_rx(&[RxResponse {
            id: req.id,
            offset: 0,
            flags: 0,
            status: 60,
        }]);
        assert_eq!(
            broken(&mut nic),
            BackendFault::FlippedFrame(frame),
            "{bogus}"
        );
    }
}

/// A backend killed with its rings mapped leaves their in-use marks behind; no one holds
/// them any more. Before, `close` reported `GrantsInUse(2)` for grants no one held; now
/// the frontend sees the backend vanished (its end of the control channel is gone without a
/// `Closed`) and reclaims them, as Xen clears a dead domain's mappings.
#[test]
fn a_vanished_backends_marks_are_reclaimed() {
    for rx_mode in [RxMode::Copy, RxMode::Flip] {
        let (mut nic, b) = pair(rx_mode);
        b.vanish();
        nic.start_close().unwrap();
        let report = nic
            .finish_close(Duration::ZERO)
            .unwrap()
            .expect("a vanished backend is a close");
        assert_eq!(report.reclaimed, 2, "{rx_mode:?}: the two ring grants");
        assert!(report.revoked > 2);
    }
}

/// A backend that answers `Closed` but keeps its mappings is alive and lying: nothing is
/// reclaimed from it, its grants are reported in use (their frames are never reused).
#[test]
fn xsa396_a_backend_that_keeps_its_mappings_pins_them() {
    let (mut nic, mut b) = pair(RxMode::Copy);
    nic.start_close().unwrap();
    b.answer_close_keeping_mappings();
    assert!(matches!(
        nic.finish_close(Duration::ZERO),
        Err(NetfrontError::GrantsInUse(2))
    ));
    drop(b);
}
