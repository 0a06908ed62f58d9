//! The cache-line probe: one thread steps a netfront and a netback of the in-process host in
//! fixed phases, for `benches/lines/run.sh` to trace under valgrind's lackey and
//! `benches/lines/count.py` to count the cache lines that would cross between two cores.
//!
//! `cargo bench --bench lines -- tx|rx SIZE FRAMES [BATCH]`. Before each phase the probe
//! stores to a marker word (front, back; begin and end of the counted frames), whose
//! addresses it prints first, so the counter knows which side made every access. Run alone it
//! only checks that the frames went through.

use std::hint::black_box;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use pvnet::back::testing::{connect, local_backend};
use pvnet::back::{NetbackConfig, Sink};
use pvnet::bus::{BackendFeatures, FrontendChoice};
use pvnet::front::{NetfrontConfig, SendError};
use pvnet::netif::Offload;

/// Marker words, one cache line apart: front phase, back phase, counting starts, ends.
#[repr(C, align(64))]
struct Marks([AtomicU64; 32]);
static MARKS: Marks = Marks([const { AtomicU64::new(0) }; 32]);
const FRONT: usize = 0;
const BACK: usize = 8;
const BEGIN: usize = 16;
const END: usize = 24;

fn mark(which: usize) {
    // Relaxed: the store only has to appear in the trace, at this point of the program.
    MARKS.0[which].fetch_add(1, Ordering::Relaxed);
}

/// The frontend's MAC, and the frames' destination.
const MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let dir = args.first().map_or("tx", String::as_str);
    let size: usize = args.get(1).map_or(64, |v| v.parse().expect("SIZE"));
    let frames: u64 = args.get(2).map_or(20_000, |v| v.parse().expect("FRAMES"));
    let batch: u64 = args.get(3).map_or(64, |v| v.parse().expect("BATCH"));
    let stack_probe = 0u8;
    // One write, on a line of its own: under lackey it lands inside the trace, which
    // valgrind writes to the same descriptor in chunks that need not end at a line.
    let names = format!(
        "\nMARKS {:#x} {:#x} {:#x} {:#x} STACK {:#x}\n",
        std::ptr::from_ref(&MARKS.0[FRONT]) as usize,
        std::ptr::from_ref(&MARKS.0[BACK]) as usize,
        std::ptr::from_ref(&MARKS.0[BEGIN]) as usize,
        std::ptr::from_ref(&MARKS.0[END]) as usize,
        std::ptr::from_ref(black_box(&stack_probe)) as usize,
    );
    std::io::stderr()
        .write_all(names.as_bytes())
        .expect("stderr");
    let mut nb = local_backend(NetbackConfig::default(), Sink::default()).expect("backend");
    let mut cfg = NetfrontConfig::default();
    cfg.choice = FrontendChoice::default();
    cfg.choice.mtu = 9000;
    cfg.choice.mac = MAC;
    let (vif, mut nic) = connect(&mut nb, &BackendFeatures::default(), cfg).expect("connect");
    let mut frame = vec![0u8; size];
    frame[..6].copy_from_slice(&MAC);
    frame[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 9]);
    frame[12..14].copy_from_slice(&[0x88, 0xb5]);
    let held = (dir == "rx").then(|| nb.packet(&frame, Offload::default()).expect("memory"));
    // A ring's worth of warm-up, uncounted: first touches are not steady-state traffic.
    let warm = 512;
    let mut done = 0u64;
    let mut got = 0u64;
    while done < frames + warm {
        if done == warm {
            mark(BEGIN);
        }
        let want = batch.min(frames + warm - done);
        let n = if let Some(p) = held {
            mark(BACK);
            let mut n = 0;
            while n < want && nb.deliver(vif, p) {
                n += 1;
            }
            nb.poll().expect("backend poll");
            mark(FRONT);
            nic.receive(256, |rx| {
                black_box(rx.data);
                got += 1;
            })
            .expect("receive");
            n
        } else {
            mark(FRONT);
            nic.poll().expect("front poll");
            let n = nic
                .batch(|b| {
                    let mut n = 0;
                    while n < want {
                        match b.send(&frame, Offload::default()) {
                            Ok(()) => n += 1,
                            Err(SendError::Full) => break,
                            Err(e) => panic!("send: {e}"),
                        }
                    }
                    n
                })
                .expect("publish");
            mark(BACK);
            nb.poll().expect("backend poll");
            n
        };
        assert!(n > 0, "no progress at {done} frames");
        done += n;
    }
    mark(END);
    if held.is_some() {
        assert_eq!(got, done, "frames lost on receive");
    }
    eprintln!("FRAMES {frames} {dir} {size} batch {batch}");
}
