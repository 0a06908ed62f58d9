//! A hostile peer writes arbitrary values into every shared word (indices, event indices,
//! slots) between our operations. The honest side must never panic, never do more than a
//! ring's worth of work per call, never consume past what it may answer, and once it detects
//! the fault it must stay broken with the same error (XSA-39).

use core::sync::atomic::Ordering::Relaxed;

use proptest::prelude::*;
use pvnet_io_ring::{BackRing, FrontRing, PeerError, RingError, SharedRegion};

type Req = [u32; 3];
type Rsp = u32;

/// 64-byte header + 4 entries of 12 bytes.
const SMALL: usize = 64 + 4 * 12;

#[derive(Clone, Debug)]
enum Hostile {
    /// Write `value` into the producer index, near the honest value (`delta` from it).
    NudgeProd(i32),
    /// Write any value into any word of the region.
    Scribble(usize, u32),
}

#[derive(Clone, Debug)]
enum Step {
    Peer(Hostile),
    Drain(u8),
    Answer(u8),
    Publish,
    FinalCheck,
}

fn hostile(words: usize) -> impl Strategy<Value = Hostile> {
    prop_oneof![
        3 => (-8i32..=8).prop_map(Hostile::NudgeProd),
        1 => any::<i32>().prop_map(Hostile::NudgeProd),
        2 => ((0..words), any::<u32>()).prop_map(|(w, v)| Hostile::Scribble(w, v)),
    ]
}

fn step(words: usize) -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => hostile(words).prop_map(Step::Peer),
        2 => (0u8..10).prop_map(Step::Drain),
        2 => (0u8..10).prop_map(Step::Answer),
        1 => Just(Step::Publish),
        1 => Just(Step::FinalCheck),
    ]
}

/// Applies a result to the "sticky error" tracker: after the first peer fault every call must
/// fail with that same fault.
fn track<T: core::fmt::Debug>(
    broken: &mut Option<PeerError>,
    result: Result<T, RingError>,
) -> Result<Option<T>, TestCaseError> {
    match (*broken, result) {
        (Some(first), Err(RingError::Peer(e))) => {
            prop_assert_eq!(first, e, "fault must be sticky");
            Ok(None)
        }
        (Some(first), other) => {
            prop_assert!(false, "broken by {first:?} but call returned {other:?}");
            Ok(None)
        }
        (None, Err(RingError::Peer(e))) => {
            *broken = Some(e);
            Ok(None)
        }
        // A local error (Full, NoRequestToAnswer) is the caller's business here.
        (None, Err(_)) => Ok(None),
        (None, Ok(v)) => Ok(Some(v)),
    }
}

fn hostile_frontend(start: u32, steps: Vec<Step>) -> Result<(), TestCaseError> {
    let r = SharedRegion::new_zeroed(SMALL);
    let _front = FrontRing::<Req, Rsp>::init_at(r.clone(), start).unwrap();
    let mut back = BackRing::<Req, Rsp>::attach(r.clone()).unwrap();
    let size = back.size();
    let mut broken = None;
    for s in steps {
        match s {
            Step::Peer(Hostile::NudgeProd(d)) => {
                let prod = r.load_u32(0, Relaxed).unwrap();
                r.store_u32(0, prod.wrapping_add_signed(d), Relaxed)
                    .unwrap();
            }
            Step::Peer(Hostile::Scribble(w, v)) => r.store_u32(w * 4, v, Relaxed).unwrap(),
            Step::Drain(n) => {
                let before = back.unanswered();
                if let Some(it) = track(&mut broken, back.requests())? {
                    prop_assert!(it.len() <= (size - before) as usize, "more work than room");
                    let got = it.take(n as usize).count();
                    prop_assert!(got <= n as usize);
                }
            }
            Step::Answer(n) => {
                for i in 0..n {
                    if track(&mut broken, back.push_response(&u32::from(i)))?.is_none() {
                        break;
                    }
                }
            }
            Step::Publish => {
                let _ = back.publish_responses();
            }
            Step::FinalCheck => {
                let _ = track(&mut broken, back.final_check_requests())?;
            }
        }
        // RING_REQUEST_CONS_OVERFLOW can never happen: never more than a ring unanswered.
        prop_assert!(back.unanswered() <= size);
        prop_assert_eq!(back.broken(), broken);
    }
    Ok(())
}

fn hostile_backend(start: u32, steps: Vec<Step>) -> Result<(), TestCaseError> {
    let r = SharedRegion::new_zeroed(SMALL);
    let mut front = FrontRing::<Req, Rsp>::init_at(r.clone(), start).unwrap();
    let size = front.size();
    let mut broken = None;
    for s in steps {
        match s {
            Step::Peer(Hostile::NudgeProd(d)) => {
                let prod = r.load_u32(8, Relaxed).unwrap();
                r.store_u32(8, prod.wrapping_add_signed(d), Relaxed)
                    .unwrap();
            }
            Step::Peer(Hostile::Scribble(w, v)) => r.store_u32(w * 4, v, Relaxed).unwrap(),
            Step::Drain(n) => {
                let outstanding = front.outstanding();
                if let Some(it) = track(&mut broken, front.responses())? {
                    prop_assert!(
                        it.len() <= outstanding as usize,
                        "more responses than requests"
                    );
                    prop_assert!(it.take(n as usize).count() <= n as usize);
                }
            }
            Step::Answer(n) => {
                // The front's "produce" step: push requests.
                for i in 0..n {
                    match front.push_request(&[u32::from(i); 3]) {
                        Ok(()) => {}
                        Err(RingError::Full) => {
                            prop_assert_eq!(front.outstanding(), size);
                            break;
                        }
                        Err(e) => {
                            track(&mut broken, Err::<(), _>(e))?;
                            break;
                        }
                    }
                }
            }
            Step::Publish => {
                let _ = front.publish_requests();
            }
            Step::FinalCheck => {
                let _ = track(&mut broken, front.final_check_responses())?;
            }
        }
        prop_assert!(front.outstanding() <= size);
        prop_assert_eq!(front.broken(), broken);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn hostile_frontend_never_panics_or_overruns(
        start in prop_oneof![any::<u32>(), (0u32..16).prop_map(|k| 0u32.wrapping_sub(k))],
        steps in proptest::collection::vec(step(SMALL / 4), 1..120),
    ) {
        hostile_frontend(start, steps)?;
    }

    #[test]
    fn hostile_backend_never_panics_or_overruns(
        start in prop_oneof![any::<u32>(), (0u32..16).prop_map(|k| 0u32.wrapping_sub(k))],
        steps in proptest::collection::vec(step(SMALL / 4), 1..120),
    ) {
        hostile_backend(start, steps)?;
    }
}

// XSA-39 regression cases, spelled out.

fn honest_pair(start: u32) -> (SharedRegion, FrontRing<Req, Rsp>, BackRing<Req, Rsp>) {
    let r = SharedRegion::new_zeroed(4096);
    let front = FrontRing::init_at(r.clone(), start).unwrap();
    let back = BackRing::attach(r.clone()).unwrap();
    (r, front, back)
}

/// An honest pair whose indices wrap two requests in, with requests `[i; 3]` for `i` in
/// `0..n` published.
fn published(n: u8) -> (SharedRegion, FrontRing<Req, Rsp>, BackRing<Req, Rsp>) {
    let (r, mut front, back) = honest_pair(u32::MAX - 1);
    for i in 0..n {
        front.push_request(&[i.into(); 3]).unwrap();
    }
    let _ = front.publish_requests();
    (r, front, back)
}

#[test]
fn xsa39_huge_req_prod_breaks_the_ring_without_work() {
    let (r, mut front, mut back) = honest_pair(u32::MAX - 2);
    front.push_request(&[1, 2, 3]).unwrap();
    let _ = front.publish_requests();
    assert_eq!(back.requests().unwrap().count(), 1);
    r.store_u32(0, 0x7fff_ffff, Relaxed).unwrap();
    let err = back.requests().unwrap_err();
    assert!(
        matches!(
            err,
            RingError::Peer(PeerError::ProducerOverflow { limit: 256, .. })
        ),
        "{err}"
    );
    assert!(err.is_peer_fault());
    // Nothing changed on our side, and the fault is sticky even if the peer "fixes" req_prod.
    assert_eq!(back.unanswered(), 1);
    r.store_u32(0, u32::MAX - 1, Relaxed).unwrap();
    assert_eq!(back.requests().unwrap_err(), err);
    assert_eq!(back.push_response(&0).unwrap_err(), err);
    assert_eq!(back.final_check_requests().unwrap_err(), err);
}

#[test]
fn xsa39_req_prod_moving_backwards_is_detected() {
    let (r, _front, mut back) = published(4);
    assert_eq!(
        back.requests().unwrap().take(1).collect::<Vec<_>>(),
        [[0; 3]]
    );
    // req_prod steps back below what we already saw (across the 2^32 wrap).
    r.store_u32(0, 0, Relaxed).unwrap();
    let backwards = RingError::Peer(PeerError::ProducerWentBackwards { seen: 2, prod: 0 });
    // A fresh read reports it at once.
    assert_eq!(back.unconsumed_requests(), Err(backwards));
    assert_eq!(back.requests().unwrap_err(), backwards);
}

#[test]
fn requests_drains_a_validated_snapshot_then_detects_the_bad_index() {
    let (r, _front, mut back) = published(4);
    assert_eq!(back.requests().unwrap().take(1).count(), 1);
    r.store_u32(0, 0, Relaxed).unwrap();
    // The 3 requests the validated read published are still served, and nothing beyond them;
    // the next read of req_prod breaks the ring.
    assert_eq!(
        back.requests().unwrap().collect::<Vec<_>>(),
        [[1; 3], [2; 3], [3; 3]]
    );
    assert!(matches!(
        back.requests().unwrap_err(),
        RingError::Peer(PeerError::ProducerWentBackwards { seen: 2, prod: 0 })
    ));
    assert_eq!(back.unanswered(), 4);
}

#[test]
fn xsa39_a_full_ring_of_unanswered_requests_stops_consumption() {
    let (r, _front, mut back) = honest_pair(5);
    // A frontend that publishes a whole ring (legal) then claims one more (overflow).
    r.store_u32(0, 5 + 256, Relaxed).unwrap();
    assert_eq!(back.requests().unwrap().count(), 256);
    // Nothing answered: even a legal-looking req_prod cannot give more work.
    assert_eq!(back.unconsumed_requests().unwrap(), 0);
    r.store_u32(0, 5 + 257, Relaxed).unwrap();
    assert!(back.requests().is_err());
}

#[test]
fn responses_beyond_published_requests_break_the_frontend() {
    let (r, mut front, _back) = honest_pair(0);
    front.push_request(&[0; 3]).unwrap();
    front.push_request(&[1; 3]).unwrap();
    // Pushed but not published: a backend cannot have answered them.
    r.store_u32(8, 1, Relaxed).unwrap();
    let err = front.responses().unwrap_err();
    assert_eq!(
        err,
        RingError::Peer(PeerError::ProducerOverflow {
            prod: 1,
            base: 0,
            ahead: 1,
            limit: 0
        })
    );
    assert_eq!(front.push_request(&[2; 3]).unwrap_err(), err);
}

/// `peek_request` shows only requests the last look counted, consumes nothing, reads no
/// index, and shows nothing once the ring is broken; a peer rewriting a peeked slot changes
/// the copy, not what the backend may consume.
#[test]
fn peeking_sees_only_counted_requests_and_consumes_nothing() {
    let (r, mut front, mut back) = published(3);
    assert_eq!(back.peek_request(0), None, "not looked at yet");
    assert_eq!(back.unconsumed_requests(), Ok(3));
    assert_eq!(back.peek_request(0), Some([0; 3]));
    assert_eq!(back.peek_request(2), Some([2; 3]));
    assert_eq!(back.peek_request(3), None, "past what was counted");
    assert_eq!(back.peek_request(u32::MAX), None);
    // Published after the look: not seen until the next one.
    front.push_request(&[3; 3]).unwrap();
    let _ = front.publish_requests();
    assert_eq!(back.peek_request(3), None);
    // Consuming one moves the window; peeking consumed nothing.
    assert_eq!(back.requests().unwrap().next(), Some([0; 3]));
    assert_eq!(back.peek_request(0), Some([1; 3]));
    assert_eq!(back.unanswered(), 1);
    // The peer rewrites the slot of request 1 (ring index 2^32 - 1: the last of 256 slots of
    // 12 bytes after the 64-byte header): the next peek copies what is there now.
    r.store_u32(64 + 255 * 12, 77, Relaxed).unwrap();
    assert_eq!(back.peek_request(0).map(|q| q[0]), Some(77));
    // A broken ring shows nothing.
    r.store_u32(0, 0x7fff_ffff, Relaxed).unwrap();
    assert!(back.unconsumed_requests().is_err());
    assert_eq!(back.peek_request(0), None);
}
