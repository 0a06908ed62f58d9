//! XSA-155 (double fetch from the shared ring): while the backend drains and parses tx packets,
//! the frontend keeps publishing and another of its threads scribbles random words over the
//! slots. The backend reads each slot once into a local copy and parses only the copy, so
//! every accepted packet satisfies the parser's invariants, every error is well formed, and
//! parsing the same copy again gives the same answer whatever the peer did meanwhile.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pvnet::netif::wire::{TxRequest, TxResponse, status, tx_flags};
use pvnet::netif::{Severity, parse_tx, tx_responses};
use pvnet::ring::{BackRing, FrontRing, SharedRegion};

const RUN: Duration = Duration::from_millis(500);

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn a_peer_rewriting_slots_during_parsing_cannot_change_what_was_validated() {
    let page = SharedRegion::new_zeroed(4096);
    let mut front = FrontRing::<TxRequest, TxResponse>::init(page.clone()).unwrap();
    let mut back = BackRing::<TxRequest, TxResponse>::attach(page.clone()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));

    // The frontend: well-formed 3-slot packets, as fast as the ring allows.
    let producer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut id = 0u16;
            while !stop.load(Ordering::Relaxed) {
                while front.free_requests() >= 3 {
                    let flags = tx_flags::MORE_DATA;
                    for (i, (size, flags)) in [(1514, flags), (500, flags), (14, 0)]
                        .into_iter()
                        .enumerate()
                    {
                        let gref = 8 + u32::try_from(i).unwrap();
                        front
                            .push_request(&TxRequest {
                                gref,
                                offset: 0,
                                flags,
                                id,
                                size,
                            })
                            .unwrap();
                        id = id.wrapping_add(1);
                    }
                }
                front.publish_requests_no_notify();
                for _ in front.responses().unwrap() {}
                std::hint::spin_loop();
            }
        })
    };
    // The frontend's other thread: random words over the slots (never the ring header).
    let scribbler = {
        let (stop, page) = (stop.clone(), page.clone());
        std::thread::spawn(move || {
            let mut rng = 0x9e37_79b9_7f4a_7c15u64;
            let mut writes = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let r = xorshift(&mut rng);
                let word = 16 + usize::try_from(r % ((4096 - 64) / 4)).unwrap();
                #[allow(clippy::cast_possible_truncation)]
                page.store_u32(word * 4, (r >> 32) as u32, Ordering::Relaxed)
                    .unwrap();
                writes += 1;
            }
            writes
        })
    };

    let (mut packets, mut accepted, mut rejected) = (0u64, 0u64, 0u64);
    let start = Instant::now();
    while start.elapsed() < RUN {
        // One read of the slots: everything below works on `copies`.
        let copies: Vec<TxRequest> = back.requests().unwrap().collect();
        let mut at = 0;
        while at < copies.len() {
            let result = parse_tx(&copies[at..]);
            assert_eq!(
                parse_tx(&copies[at..]),
                result,
                "parsing the same copy twice must agree"
            );
            let (consumed, extras, answer) = match result {
                Ok(p) => {
                    accepted += 1;
                    let sum: u32 = p.fragments().iter().map(|f| u32::from(f.len)).sum();
                    assert_eq!(sum, u32::from(p.len));
                    assert!(
                        p.fragments()
                            .iter()
                            .all(|f| u32::from(f.offset) + u32::from(f.len) <= 4096)
                    );
                    (p.slots, p.extra_slots, status::OKAY)
                }
                Err(e) if e.severity == Severity::Fatal => {
                    // A real backend disables the vif here; this test answers the rest of the
                    // batch as errors and keeps going, to keep the peer running.
                    rejected += 1;
                    (copies.len() - at, 0, status::ERROR)
                }
                Err(e) => {
                    rejected += 1;
                    assert!(e.slots >= 1 && e.slots <= copies.len() - at);
                    (e.slots, e.extra_slots, status::ERROR)
                }
            };
            for rsp in tx_responses(&copies[at..], consumed, extras, answer) {
                back.push_response(&rsp).unwrap();
            }
            at += consumed;
            packets += 1;
        }
        back.publish_responses_no_notify();
    }
    stop.store(true, Ordering::Relaxed);
    producer.join().unwrap();
    let writes = scribbler.join().unwrap();
    eprintln!(
        "{packets} packets parsed ({accepted} accepted, {rejected} rejected) under {writes} hostile slot writes"
    );
    assert!(packets > 1000, "the test must actually race");
    assert!(writes > 1000);
}
