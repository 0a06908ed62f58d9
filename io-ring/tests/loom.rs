//! Model-checked notification protocol: `RUSTFLAGS="--cfg loom" cargo test -p io-ring --test
//! loom --release`.
//!
//! A frontend and a backend exchange requests and responses through a tiny ring (1 or 2
//! entries, indices starting just below 2^32 so they wrap, the ring runs full and empty).
//! Each side sleeps on a one-permit event (`loom::sync::Notify`: coalescing, like an event
//! channel) whenever its final check finds nothing to do, and is woken only when the peer's
//! publish says a notification is needed. If any interleaving loses a wakeup, both threads end
//! up asleep and loom reports the deadlock; if any interleaving delivers a wrong or reordered
//! entry, the asserts fail.
#![cfg(loom)]

use loom::sync::{Arc, Notify};
use loom::thread;
use pvnet_io_ring::{BackRing, FrontRing, SharedRegion};

/// `unchecked`: the frontend publishes each batch without a notification check, and makes a
/// checked publish only before it sleeps, as `publish_requests_no_notify` documents.
fn round_trip(entries: usize, start: u32, messages: u32, front_batch_ahead: u32, unchecked: bool) {
    let region = SharedRegion::new_zeroed(64 + entries * 4);
    let mut front = FrontRing::<u32, u32>::init_at(region.clone(), start).unwrap();
    let mut back = BackRing::<u32, u32>::attach(region).unwrap();
    assert_eq!(front.size() as usize, entries);
    let wake_back = Arc::new(Notify::new());
    let wake_front = Arc::new(Notify::new());

    let backend = {
        let wake_back = wake_back.clone();
        let wake_front = wake_front.clone();
        thread::spawn(move || {
            let mut answered = 0;
            loop {
                let requests: Vec<u32> = back.requests().unwrap().collect();
                for req in requests {
                    assert_eq!(req, answered, "requests arrive in order, intact");
                    back.push_response(&(req + 1000)).unwrap();
                    answered += 1;
                }
                if back.publish_responses() {
                    wake_front.notify();
                }
                if answered == messages {
                    return;
                }
                if !back.final_check_requests().unwrap() {
                    wake_back.wait();
                }
            }
        })
    };

    let (mut sent, mut received) = (0, 0);
    loop {
        while sent < messages && front.free_requests() > 0 {
            front.push_request(&sent).unwrap();
            sent += 1;
        }
        if unchecked {
            front.publish_requests_no_notify();
        } else if front.publish_requests() {
            wake_back.notify();
        }
        let responses: Vec<u32> = front.responses().unwrap().collect();
        for rsp in responses {
            assert_eq!(rsp, received + 1000, "responses arrive in order, intact");
            received += 1;
        }
        if received == messages {
            break;
        }
        // With requests still unsent and room to send them, go round again instead of sleeping.
        if sent < messages && front.free_requests() > 0 {
            continue;
        }
        // About to sleep: a checked publish makes up for the unchecked ones before it.
        if unchecked && front.publish_requests() {
            wake_back.notify();
        }
        if !front
            .final_check_responses_ahead(front_batch_ahead)
            .unwrap()
        {
            wake_front.wait();
        }
    }
    backend.join().unwrap();
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    // Bounded preemptions keep the search to minutes while still covering every interleaving
    // of the publish / final-check race (it needs one preemption on each side).
    builder.preemption_bound = Some(3);
    builder.check(f);
}

#[test]
fn no_lost_wakeup_two_entry_ring_across_the_wrap() {
    model(|| round_trip(2, u32::MAX - 1, 3, 1, false));
}

#[test]
fn no_lost_wakeup_one_entry_ring_full_and_empty() {
    model(|| round_trip(1, u32::MAX, 3, 1, false));
}

#[test]
fn no_lost_wakeup_with_batched_response_event() {
    // The frontend asks to be woken only after 2 responses (clamped to what is outstanding).
    model(|| round_trip(2, u32::MAX - 2, 4, 2, false));
}

#[test]
fn unchecked_publishes_are_made_up_for_by_the_next_checked_one() {
    model(|| round_trip(2, u32::MAX - 1, 3, 1, true));
}
