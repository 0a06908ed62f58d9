//! The ring against a `VecDeque` model: random interleavings of produce, publish, consume,
//! respond and final checks, with indices starting near 2^32 so they always wrap.
//!
//! Besides contents and counts, the model checks the wakeup contract in a single thread: a side
//! whose final check said "sleep" must be notified by the next checked publish that gives it
//! work, counting the batches published without a check since the previous checked publish.

use std::collections::VecDeque;

use proptest::prelude::*;
use pvnet_io_ring::{BackRing, FrontRing, RingError, SharedRegion};

/// netif tx-like: 12-byte request, 4-byte response.
type Req = [u32; 3];
type Rsp = u32;

fn request(seq: u32) -> Req {
    [seq, !seq, seq.rotate_left(7)]
}

fn response(req: &Req) -> Rsp {
    req[0] ^ 0xa5a5_a5a5
}

#[derive(Clone, Debug)]
enum Op {
    PushRequests(u16),
    PublishRequests,
    PublishRequestsNoNotify,
    ConsumeRequests(u16),
    PushResponses(u16),
    PublishResponses,
    PublishResponsesNoNotify,
    ConsumeResponses(u16),
    BackFinalCheck,
    FrontFinalCheck,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u16..300).prop_map(Op::PushRequests),
        2 => Just(Op::PublishRequests),
        1 => Just(Op::PublishRequestsNoNotify),
        3 => (0u16..300).prop_map(Op::ConsumeRequests),
        3 => (0u16..300).prop_map(Op::PushResponses),
        2 => Just(Op::PublishResponses),
        1 => Just(Op::PublishResponsesNoNotify),
        3 => (0u16..300).prop_map(Op::ConsumeResponses),
        1 => Just(Op::BackFinalCheck),
        1 => Just(Op::FrontFinalCheck),
    ]
}

/// What each side should see, kept as queues.
#[derive(Default)]
struct Model {
    next_seq: u32,
    /// Pushed by the front, not yet published.
    req_private: VecDeque<Req>,
    /// Published, not yet consumed by the back.
    req_published: VecDeque<Req>,
    /// Consumed by the back, not yet answered.
    req_consumed: VecDeque<Req>,
    /// Answered privately, not yet published.
    rsp_private: VecDeque<Rsp>,
    /// Published, not yet consumed by the front.
    rsp_published: VecDeque<Rsp>,
    /// Requests / responses published without a notification check since the last checked
    /// publish: the next checked publish must make up for them.
    req_unchecked: usize,
    rsp_unchecked: usize,
    /// The back's last final check said "sleep", and nothing woke it since.
    back_asleep: bool,
    front_asleep: bool,
}

impl Model {
    fn outstanding(&self) -> usize {
        self.req_private.len()
            + self.req_published.len()
            + self.req_consumed.len()
            + self.rsp_private.len()
            + self.rsp_published.len()
    }
}

fn run(size_pages: usize, small: bool, start: u32, ops: Vec<Op>) -> Result<(), TestCaseError> {
    // `small`: a 4-entry ring (64 + 4 * 12 bytes) so that full and empty come up constantly.
    let len = if small {
        64 + 4 * 12
    } else {
        size_pages * 4096
    };
    let region = SharedRegion::new_zeroed(len);
    let mut front = FrontRing::<Req, Rsp>::init_at(region.clone(), start).unwrap();
    let mut back = BackRing::<Req, Rsp>::attach(region).unwrap();
    let size = front.size() as usize;
    let mut m = Model::default();

    for op in ops {
        match op {
            Op::PushRequests(n) => {
                for _ in 0..n {
                    let req = request(m.next_seq);
                    match front.push_request(&req) {
                        Ok(()) => {
                            m.next_seq += 1;
                            m.req_private.push_back(req);
                        }
                        Err(RingError::Full) => {
                            prop_assert_eq!(m.outstanding(), size, "Full only when full");
                            break;
                        }
                        Err(e) => prop_assert!(false, "unexpected {e}"),
                    }
                }
            }
            Op::PublishRequestsNoNotify => {
                m.req_unchecked += m.req_private.len();
                front.publish_requests_no_notify();
                m.req_published.extend(m.req_private.drain(..));
            }
            Op::PublishRequests => {
                let new_work = !m.req_private.is_empty() || m.req_unchecked > 0;
                m.req_unchecked = 0;
                let notify = front.publish_requests();
                m.req_published.extend(m.req_private.drain(..));
                // The sleeping side must hear of every entry it has not consumed yet, whether
                // published now or by unchecked publishes since the last checked one.
                if m.back_asleep && !m.req_published.is_empty() {
                    prop_assert!(notify, "lost wakeup: sleeping backend not notified");
                    m.back_asleep = false;
                }
                if !new_work {
                    prop_assert!(!notify, "notify without new requests since the last check");
                }
            }
            Op::ConsumeRequests(n) => {
                m.back_asleep = false; // it runs, so it is awake
                let got: Vec<Req> = back.requests().unwrap().take(n as usize).collect();
                prop_assert_eq!(got.len(), (n as usize).min(m.req_published.len()));
                for req in got {
                    prop_assert_eq!(Some(req), m.req_published.pop_front());
                    m.req_consumed.push_back(req);
                }
            }
            Op::PushResponses(n) => {
                m.back_asleep = false;
                for _ in 0..n {
                    let Some(req) = m.req_consumed.front().copied() else {
                        prop_assert_eq!(back.push_response(&0), Err(RingError::NoRequestToAnswer));
                        break;
                    };
                    back.push_response(&response(&req)).unwrap();
                    m.req_consumed.pop_front();
                    m.rsp_private.push_back(response(&req));
                }
            }
            Op::PublishResponsesNoNotify => {
                m.rsp_unchecked += m.rsp_private.len();
                back.publish_responses_no_notify();
                m.rsp_published.extend(m.rsp_private.drain(..));
            }
            Op::PublishResponses => {
                let new_work = !m.rsp_private.is_empty() || m.rsp_unchecked > 0;
                m.rsp_unchecked = 0;
                let notify = back.publish_responses();
                m.rsp_published.extend(m.rsp_private.drain(..));
                if m.front_asleep && !m.rsp_published.is_empty() {
                    prop_assert!(notify, "lost wakeup: sleeping frontend not notified");
                    m.front_asleep = false;
                }
                if !new_work {
                    prop_assert!(!notify, "notify without new responses since the last check");
                }
            }
            Op::ConsumeResponses(n) => {
                m.front_asleep = false;
                let got: Vec<Rsp> = front.responses().unwrap().take(n as usize).collect();
                prop_assert_eq!(got.len(), (n as usize).min(m.rsp_published.len()));
                for rsp in got {
                    prop_assert_eq!(Some(rsp), m.rsp_published.pop_front());
                }
            }
            Op::BackFinalCheck => {
                let work = back.final_check_requests().unwrap();
                prop_assert_eq!(work, !m.req_published.is_empty());
                m.back_asleep = !work;
            }
            Op::FrontFinalCheck => {
                let work = front.final_check_responses().unwrap();
                prop_assert_eq!(work, !m.rsp_published.is_empty());
                m.front_asleep = !work;
            }
        }
        // Invariants visible through the API after every step.
        prop_assert_eq!(front.outstanding() as usize, m.outstanding());
        prop_assert_eq!(front.free_requests() as usize, size - m.outstanding());
        prop_assert_eq!(back.unanswered() as usize, m.req_consumed.len());
        prop_assert_eq!(
            back.unconsumed_requests().unwrap() as usize,
            m.req_published.len()
        );
        prop_assert_eq!(
            front.unconsumed_responses().unwrap() as usize,
            m.rsp_published.len()
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn ring_matches_model_near_wrap(
        small in any::<bool>(),
        pages in 1usize..=2,
        below_wrap in 0u32..2048,
        ops in proptest::collection::vec(op(), 1..200),
    ) {
        run(pages, small, 0u32.wrapping_sub(below_wrap), ops)?;
    }

    #[test]
    fn ring_matches_model_from_any_start(
        start in any::<u32>(),
        ops in proptest::collection::vec(op(), 1..100),
    ) {
        run(1, true, start, ops)?;
    }
}

/// `final_check_requests_for(n)`: with fewer than `n` requests waiting it arms and says sleep;
/// the frontend's publish that brings the count to `n` (and no earlier one) asks to notify,
/// across the 2^32 wrap.
#[test]
fn final_check_for_several_requests_wakes_at_the_count() {
    for start in [0, u32::MAX - 2] {
        let region = SharedRegion::new_zeroed(4096);
        let mut front = FrontRing::<Req, Rsp>::init_at(region.clone(), start).unwrap();
        let mut back = BackRing::<Req, Rsp>::attach(region).unwrap();
        front.push_request(&request(0)).unwrap();
        assert!(
            front.publish_requests(),
            "the initial event asks for the first"
        );
        // Consume nothing: one waits, the backend needs three.
        assert!(!back.final_check_requests_for(3).unwrap());
        front.push_request(&request(1)).unwrap();
        assert!(!front.publish_requests(), "two of three: no wakeup yet");
        front.push_request(&request(2)).unwrap();
        assert!(
            front.publish_requests(),
            "the third request wakes the backend"
        );
        assert!(back.final_check_requests_for(3).unwrap());
        assert_eq!(back.requests().unwrap().count(), 3);
    }
}
