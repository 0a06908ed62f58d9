//! The seed's open question, "use polling instead of interrupt?", answered with a curve.
//!
//! Round trips of one 64-byte frame (copy mode) through an echo backend, both sides given the
//! same spin budget (how long a side that runs out of work looks at its rings before it arms
//! its event channel and sleeps): 0, 10 us, 50 us, always. The frontend waits `gap` between a
//! reply and its next request (a client thinking; it sleeps with a 1 us timer slack), so a
//! budget shorter than the gap lets the backend fall asleep before the next frame. Per point:
//! p50 and p99 of the round trip, and the CPU time of both processes per trip, read from
//! `/proc/PID/task/*/schedstat` (nanoseconds) by the parent just before and after the timed
//! trips.

use std::io::{BufRead, BufReader, Write};
use std::process::Child;

use crate::Opts;
use crate::report::{PollPoint, Results};

/// Spin budgets measured, in microseconds; `None` spins for the whole run.
pub const SPINS: [Option<u64>; 4] = [Some(0), Some(10), Some(50), None];
/// Gaps between a reply and the next request, in microseconds.
pub const GAPS: [u64; 4] = [0, 20, 100, 1000];

fn next_line(r: &mut impl BufRead, want: &str) -> String {
    let mut line = String::new();
    loop {
        line.clear();
        let n = r.read_line(&mut line).expect("read child output");
        assert!(n > 0, "child ended before {want}");
        if let Some(rest) = line.trim_end().strip_prefix(want) {
            return rest.to_string();
        }
    }
}

/// One point of the curve.
fn point(opts: &Opts, spin: Option<u64>, gap_us: u64) -> PollPoint {
    let spin_us = spin.unwrap_or(crate::BUSY_SPIN.as_secs() * 1_000_000);
    let (back, common) = crate::pvnet_runs::echo_backend(opts, "poll", 64, spin_us);
    let run_ms = if opts.quick { 100 } else { 600 };
    let mut f_args = common;
    f_args.extend([
        "--rx-mode".into(),
        "copy".into(),
        "--gap-us".into(),
        gap_us.to_string(),
        "--run-ms".into(),
        run_ms.to_string(),
    ]);
    let mut front = crate::pvnet_runs::spawn("front-ping", &f_args);
    let mut out = BufReader::new(front.stdout.take().expect("stdout"));
    next_line(&mut out, "START");
    let before = crate::cpu_ns(back.id()) + crate::cpu_ns(front.id());
    let end = next_line(&mut out, "END ");
    let after = crate::cpu_ns(back.id()) + crate::cpu_ns(front.id());
    release(&mut front);
    let lat = next_line(&mut out, "LAT ");
    finish(front);
    let _ = crate::pvnet_runs::output(back);
    let trips: u64 = end.parse().expect("trips");
    let v: Vec<u128> = lat
        .split(' ')
        .map(|x| x.parse().expect("latency"))
        .collect();
    PollPoint {
        spin_us: spin,
        gap_us,
        trips,
        p50_ns: v[0],
        p99_ns: v[1],
        cpu_ns_per_trip: after.saturating_sub(before) as f64 / trips.max(1) as f64,
    }
}

/// Lets a frontend waiting after `END` go on.
fn release(c: &mut Child) {
    let mut stdin = c.stdin.take().expect("stdin");
    stdin.write_all(b"go\n").expect("release frontend");
}

fn finish(mut c: Child) {
    let status = c.wait().expect("wait");
    assert!(status.success(), "frontend failed: {status}");
}

/// Every point of the curve, once.
pub fn run_all(opts: &Opts, results: &mut Results) {
    for spin in SPINS {
        for gap in GAPS {
            let p = point(opts, spin, gap);
            println!(
                "polling: spin {:>6} gap {:>5} us: p50 {:8.2} us p99 {:8.2} us, {:8.2} us CPU per trip ({} trips)",
                p.spin_label(),
                gap,
                p.p50_ns as f64 / 1e3,
                p.p99_ns as f64 / 1e3,
                p.cpu_ns_per_trip / 1e3,
                p.trips
            );
            results.polling.push(p);
        }
    }
}
