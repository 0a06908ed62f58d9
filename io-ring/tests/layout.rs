//! Byte-level checks of the shared page: header offsets, slot placement, ring sizes and
//! response padding, read back from the raw memory rather than through the ring.

use core::sync::atomic::Ordering::Relaxed;

use pvnet_io_ring::{
    BackRing, FrontRing, HEADER_BYTES, SetupError, SharedRegion, ring_size, slot_bytes,
};

/// netif tx request / response sizes (12 / 4 bytes).
type TxReq = [u16; 6];
type TxRsp = [u16; 2];
/// netif rx request / response sizes (8 / 8 bytes).
type RxReq = [u16; 4];
type RxRsp = [u16; 4];
/// netif control ring request / response sizes (16 / 12 bytes).
type CtrlReq = [u32; 4];
type CtrlRsp = [u32; 3];

fn word(r: &SharedRegion, offset: usize) -> u32 {
    r.load_u32(offset, Relaxed).unwrap()
}

#[test]
fn ring_sizes_match_ring_h() {
    let page = |n: usize| SharedRegion::new_zeroed(n * 4096);
    assert_eq!(
        FrontRing::<TxReq, TxRsp>::init(page(1)).unwrap().size(),
        256
    );
    assert_eq!(
        FrontRing::<RxReq, RxRsp>::init(page(1)).unwrap().size(),
        256
    );
    assert_eq!(
        FrontRing::<CtrlReq, CtrlRsp>::init(page(1)).unwrap().size(),
        128
    );
    assert_eq!(
        FrontRing::<TxReq, TxRsp>::init(page(2)).unwrap().size(),
        512
    );
    assert_eq!(
        FrontRing::<TxReq, TxRsp>::init(page(4)).unwrap().size(),
        1024
    );
    assert_eq!(slot_bytes::<TxReq, TxRsp>(), 12);
    assert_eq!(slot_bytes::<CtrlReq, CtrlRsp>(), 16);
    assert_eq!(ring_size(4096, 12), Some(256));
}

#[test]
fn too_small_regions_are_refused() {
    let r = SharedRegion::new_zeroed(HEADER_BYTES + 8);
    assert_eq!(
        FrontRing::<TxReq, TxRsp>::init(r.clone()).unwrap_err(),
        SetupError::TooSmall {
            len: HEADER_BYTES + 8,
            slot_bytes: 12
        }
    );
    assert!(BackRing::<TxReq, TxRsp>::attach(r).is_err());
}

#[test]
fn init_writes_the_header_exactly_like_shared_ring_init() {
    let r = SharedRegion::new_zeroed(4096);
    // Dirty the whole page first: init must clear header padding and slots.
    for off in (0..4096).step_by(4) {
        r.store_u32(off, 0xdead_beef, Relaxed).unwrap();
    }
    let _front = FrontRing::<TxReq, TxRsp>::init(r.clone()).unwrap();
    assert_eq!(word(&r, 0), 0, "req_prod at offset 0");
    assert_eq!(word(&r, 4), 1, "req_event at offset 4");
    assert_eq!(word(&r, 8), 0, "rsp_prod at offset 8");
    assert_eq!(word(&r, 12), 1, "rsp_event at offset 12");
    for off in (16..64 + 256 * 12).step_by(4) {
        assert_eq!(word(&r, off), 0, "byte {off} must be zeroed by init");
    }
}

#[test]
fn slots_start_at_64_and_indices_land_at_their_offsets() {
    let r = SharedRegion::new_zeroed(4096);
    let mut front = FrontRing::<[u32; 3], u32>::init_at(r.clone(), 254).unwrap();
    let mut back = BackRing::<[u32; 3], u32>::attach(r.clone()).unwrap();
    for i in 0..3u32 {
        front
            .push_request(&[0x1111_0000 + i, 0x2222_0000 + i, 0x3333_0000 + i])
            .unwrap();
    }
    let _ = front.publish_requests();
    assert_eq!(word(&r, 0), 257, "req_prod");
    // Index 254 -> slot 254 at 64 + 254 * 12; index 256 wraps to slot 0 at offset 64.
    assert_eq!(word(&r, 64 + 254 * 12), 0x1111_0000);
    assert_eq!(word(&r, 64 + 255 * 12 + 8), 0x3333_0001);
    assert_eq!(word(&r, 64), 0x1111_0002);

    // The backend asks to be woken at the next request: req_event = req_cons + 1.
    assert_eq!(back.requests().unwrap().count(), 3);
    assert!(!back.final_check_requests().unwrap());
    assert_eq!(word(&r, 4), 258, "req_event");

    // A 4-byte response fills its 12-byte slot; the other 8 bytes are zeroed (XSA-216).
    for i in 0..3u32 {
        back.push_response(&(0xabcd_0000 + i)).unwrap();
    }
    let _ = back.publish_responses();
    assert_eq!(word(&r, 8), 257, "rsp_prod");
    assert_eq!(word(&r, 64), 0xabcd_0002);
    assert_eq!(word(&r, 64 + 4), 0, "response padding zeroed");
    assert_eq!(word(&r, 64 + 8), 0, "response padding zeroed");
    assert_eq!(
        front.responses().unwrap().collect::<Vec<_>>(),
        [0xabcd_0000, 0xabcd_0001, 0xabcd_0002]
    );
    assert!(!front.final_check_responses().unwrap());
    assert_eq!(word(&r, 12), 258, "rsp_event");
}

#[test]
fn attach_keeps_requests_already_posted() {
    let r = SharedRegion::new_zeroed(4096);
    let mut front = FrontRing::<u32, u32>::init(r.clone()).unwrap();
    for i in 0..5 {
        front.push_request(&i).unwrap();
    }
    assert!(front.publish_requests());
    let mut back = BackRing::<u32, u32>::attach(r).unwrap();
    assert_eq!(
        back.requests().unwrap().collect::<Vec<_>>(),
        [0, 1, 2, 3, 4]
    );
}

#[test]
fn attach_refuses_an_overfull_ring() {
    let r = SharedRegion::new_zeroed(4096);
    let _front = FrontRing::<TxReq, TxRsp>::init(r.clone()).unwrap();
    r.store_u32(0, 257, Relaxed).unwrap(); // req_prod - rsp_prod = 257 > 256
    let err = BackRing::<TxReq, TxRsp>::attach(r.clone()).unwrap_err();
    assert!(matches!(err, SetupError::Peer(_)), "{err}");
    r.store_u32(0, 256, Relaxed).unwrap(); // exactly full is legal
    assert!(BackRing::<TxReq, TxRsp>::attach(r).is_ok());
}

#[test]
fn event_index_batching_delays_the_notification() {
    let r = SharedRegion::new_zeroed(4096);
    let mut front = FrontRing::<u32, u32>::init(r.clone()).unwrap();
    let mut back = BackRing::<u32, u32>::attach(r).unwrap();
    for i in 0..8 {
        front.push_request(&i).unwrap();
    }
    assert!(front.publish_requests());
    assert_eq!(back.requests().unwrap().count(), 8);
    // The front asks to be woken only after 4 of its 8 outstanding responses.
    assert!(!front.final_check_responses_ahead(4).unwrap());
    // Responses published one at a time: only the 4th crosses rsp_event.
    let notifies: Vec<bool> = (0..8)
        .map(|i| {
            back.push_response(&i).unwrap();
            back.publish_responses()
        })
        .collect();
    assert_eq!(
        notifies,
        [false, false, false, true, false, false, false, false]
    );
    assert_eq!(
        back.push_response(&9),
        Err(pvnet_io_ring::RingError::NoRequestToAnswer)
    );
    // Asking for more than is outstanding is clamped: with nothing outstanding, the next
    // response (if any ever came) would wake us.
    assert_eq!(front.responses().unwrap().count(), 8);
    assert!(!front.final_check_responses_ahead(100).unwrap());
    assert_eq!(
        back.region().load_u32(12, Relaxed).unwrap(),
        9,
        "rsp_event = rsp_cons + 1"
    );
}
