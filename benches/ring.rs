//! Request -> response streaming between two threads: io-ring against a pair of rtrb ring
//! buffers (one each way), single-item and batched, in one run.
//!
//! `cargo bench --bench ring`. Each message is a netif-tx-sized request (12 bytes) answered by
//! a 4-byte response; up to a ring's worth (256) is in flight. Nobody sleeps: both threads spin
//! (pinned to different cores where there are two), so this measures the ring, not the event
//! channel. Variants:
//!
//! - `io-ring/single`: every request and every response is published on its own with the
//!   notification check (`RING_PUSH_*_AND_CHECK_NOTIFY`: a store, a full barrier, a load).
//! - `io-ring/single-polled`: the same, published with `publish_*_no_notify`
//!   (`RING_PUSH_*`), as a busy-polling pair would: what rtrb's push/pop also does.
//! - `io-ring/batched`: everything pushed is published with one checked index store; the
//!   consumer drains everything per read of the producer index.
//! - `rtrb-pair/single` and `rtrb-pair/batched`: rtrb's `push`/`pop`, and its chunk API.
//!
//! Criterion measures each variant in turn. Because this machine's speed drifts between
//! sequential blocks, the run then measures all variants again in interleaved rounds and
//! prints the median rate of each and the median of the per-round ratios: those are the
//! numbers to compare. `PVNET_BENCH_ROUNDS=N` sets the rounds (default 7; 0 skips them, e.g.
//! with criterion's `--profile-time` under a profiler).

#[path = "common/stats.rs"]
mod stats;

use std::hint::{black_box, spin_loop};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use pvnet::ring::{BackRing, FrontRing, SharedRegion};
use stats::median_of;

type Req = [u32; 3];
type Rsp = u32;

const ENTRIES: usize = 256;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Single,
    SinglePolled,
    Batched,
}

#[derive(Clone, Copy, Debug)]
enum Variant {
    IoRing(Mode),
    Rtrb(Mode),
}

const VARIANTS: [(&str, Variant); 5] = [
    ("io-ring/single", Variant::IoRing(Mode::Single)),
    ("io-ring/single-polled", Variant::IoRing(Mode::SinglePolled)),
    ("io-ring/batched", Variant::IoRing(Mode::Batched)),
    ("rtrb-pair/single", Variant::Rtrb(Mode::Single)),
    ("rtrb-pair/batched", Variant::Rtrb(Mode::Batched)),
];

/// The CPUs this process may run on, read once before anything is pinned.
fn allowed_cpus() -> &'static [usize] {
    static CPUS: OnceLock<Vec<usize>> = OnceLock::new();
    CPUS.get_or_init(|| {
        let pid = nix::unistd::Pid::from_raw(0);
        nix::sched::sched_getaffinity(pid).map_or_else(
            |_| Vec::new(),
            |set| {
                (0..nix::sched::CpuSet::count())
                    .filter(|&c| set.is_set(c).unwrap_or(false))
                    .collect()
            },
        )
    })
}

/// Pins the calling thread to the `nth` allowed CPU, if there is one (fewer migrations, less
/// noise); with a single CPU both threads share it and the numbers say so.
fn pin(nth: usize) {
    if let Some(&cpu) = allowed_cpus().get(nth) {
        let mut set = nix::sched::CpuSet::new();
        if set.set(cpu).is_ok() {
            let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
        }
    }
}

/// The echo (backend) thread and its stop flag; stopped and joined on drop.
struct Echo {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Echo {
    fn spawn(body: impl FnOnce(&AtomicBool) + Send + 'static) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            pin(1);
            body(&flag);
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

fn answer(req: &Req) -> Rsp {
    req[0] ^ req[1]
}

#[allow(clippy::cast_possible_truncation)]
fn request(seq: u64) -> Req {
    [seq as u32, !(seq as u32), 0]
}

fn io_ring_backend(mut back: BackRing<Req, Rsp>, mode: Mode, stop: &AtomicBool) {
    let limit = if mode == Mode::Batched { ENTRIES } else { 1 };
    let mut answers = [0u32; ENTRIES];
    while !stop.load(Ordering::Relaxed) {
        let mut served = 0;
        for (slot, req) in answers.iter_mut().zip(back.requests().unwrap().take(limit)) {
            *slot = answer(&req);
            served += 1;
        }
        for a in &answers[..served] {
            back.push_response(a).unwrap();
        }
        if mode == Mode::SinglePolled {
            back.publish_responses_no_notify();
        } else {
            let _ = back.publish_responses();
        }
        if served == 0 {
            spin_loop();
        }
    }
}

fn io_ring_stream(front: &mut FrontRing<Req, Rsp>, n: u64, mode: Mode) {
    let limit = if mode == Mode::Batched { ENTRIES } else { 1 };
    let (mut sent, mut received) = (0u64, 0u64);
    while received < n {
        let mut pushed = 0;
        while sent < n && pushed < limit && front.free_requests() > 0 {
            front.push_request(&request(sent)).unwrap();
            sent += 1;
            pushed += 1;
        }
        if mode == Mode::SinglePolled {
            front.publish_requests_no_notify();
        } else {
            let _ = front.publish_requests();
        }
        let mut got = 0;
        for rsp in front.responses().unwrap().take(limit) {
            black_box(rsp);
            got += 1;
        }
        received += got;
        if pushed == 0 && got == 0 {
            spin_loop();
        }
    }
}

fn rtrb_backend(
    mut requests: rtrb::Consumer<Req>,
    mut responses: rtrb::Producer<Rsp>,
    mode: Mode,
    stop: &AtomicBool,
) {
    // The frontend keeps at most ENTRIES messages in flight, so the response ring always has
    // room for the answer to a request just taken.
    while !stop.load(Ordering::Relaxed) {
        if mode != Mode::Batched {
            // push / pop use rtrb's cached copy of the peer's index: its fastest single path.
            match requests.pop() {
                Ok(req) => responses.push(answer(&req)).expect("room for every answer"),
                Err(_) => spin_loop(),
            }
            continue;
        }
        let n = requests.slots();
        if n == 0 {
            spin_loop();
            continue;
        }
        let input = requests.read_chunk(n).unwrap();
        let mut output = responses
            .write_chunk_uninit(n)
            .expect("room for every answer");
        let (a, b) = input.as_slices();
        let (c, d) = output.as_mut_slices();
        for (dst, req) in c.iter_mut().chain(d.iter_mut()).zip(a.iter().chain(b)) {
            dst.write(answer(req));
        }
        // SAFETY: the loop above wrote all `n` slots: both chunks hold exactly `n` entries.
        unsafe { output.commit_all() };
        input.commit_all();
    }
}

fn rtrb_stream(
    requests: &mut rtrb::Producer<Req>,
    responses: &mut rtrb::Consumer<Rsp>,
    n: u64,
    mode: Mode,
) {
    let (mut sent, mut received) = (0u64, 0u64);
    while received < n {
        // At most ENTRIES in flight, as with io-ring (whose slots hold a request, then its
        // response).
        let window = ENTRIES as u64 - (sent - received);
        let room = (n - sent).min(window);
        let mut progress = false;
        if mode == Mode::Batched {
            let room = usize::try_from(room)
                .unwrap_or(usize::MAX)
                .min(requests.slots());
            if room > 0 {
                let chunk = requests.write_chunk_uninit(room).unwrap();
                sent += chunk.fill_from_iter((sent..).map(request)) as u64;
                progress = true;
            }
            let ready = responses.slots();
            if ready > 0 {
                responses
                    .read_chunk(ready)
                    .unwrap()
                    .into_iter()
                    .for_each(|r| {
                        black_box(r);
                    });
                received += ready as u64;
                progress = true;
            }
        } else {
            if room > 0 && requests.push(request(sent)).is_ok() {
                sent += 1;
                progress = true;
            }
            if let Ok(rsp) = responses.pop() {
                black_box(rsp);
                received += 1;
                progress = true;
            }
        }
        if !progress {
            spin_loop();
        }
    }
}

/// A running pair: the echo thread plus a way to stream `n` messages through it.
struct Pair {
    stream: Box<dyn FnMut(u64)>,
    _echo: Echo,
}

fn start(variant: Variant) -> Pair {
    match variant {
        Variant::IoRing(mode) => {
            let region = SharedRegion::new_zeroed(4096);
            let mut front = FrontRing::<Req, Rsp>::init(region.clone()).unwrap();
            assert_eq!(front.size() as usize, ENTRIES);
            let back = BackRing::<Req, Rsp>::attach(region).unwrap();
            let echo = Echo::spawn(move |stop| io_ring_backend(back, mode, stop));
            Pair {
                stream: Box::new(move |n| io_ring_stream(&mut front, n, mode)),
                _echo: echo,
            }
        }
        Variant::Rtrb(mode) => {
            let (mut req_tx, req_rx) = rtrb::RingBuffer::<Req>::new(ENTRIES);
            let (rsp_tx, mut rsp_rx) = rtrb::RingBuffer::<Rsp>::new(ENTRIES);
            let echo = Echo::spawn(move |stop| rtrb_backend(req_rx, rsp_tx, mode, stop));
            Pair {
                stream: Box::new(move |n| rtrb_stream(&mut req_tx, &mut rsp_rx, n, mode)),
                _echo: echo,
            }
        }
    }
}

/// Messages per second over at least `min` of streaming, after a short warm-up.
fn measure(variant: Variant, min: Duration) -> f64 {
    let mut pair = start(variant);
    (pair.stream)(100_000);
    let (mut messages, started) = (0u64, Instant::now());
    while started.elapsed() < min {
        (pair.stream)(200_000);
        messages += 200_000;
    }
    #[allow(clippy::cast_precision_loss)]
    let rate = messages as f64 / started.elapsed().as_secs_f64();
    rate
}

fn interleaved_summary(rounds: usize) {
    let mut rates = vec![Vec::new(); VARIANTS.len()];
    for _ in 0..rounds {
        for (i, (_, variant)) in VARIANTS.iter().enumerate() {
            rates[i].push(measure(*variant, Duration::from_millis(300)));
        }
    }
    let idx = |name: &str| VARIANTS.iter().position(|(n, _)| *n == name).unwrap();
    let ratio = |a: &str, b: &str| {
        let (a, b) = (&rates[idx(a)], &rates[idx(b)]);
        median_of(a.iter().zip(b).map(|(x, y)| x / y).collect())
    };
    println!("\nring: {rounds} interleaved rounds, 300 ms per variant per round");
    println!(
        "{:<24} {:>12} {:>12} {:>12}",
        "variant", "median", "min", "max"
    );
    for (i, (name, _)) in VARIANTS.iter().enumerate() {
        let r = &rates[i];
        let (lo, hi) = r
            .iter()
            .fold((f64::MAX, 0f64), |(lo, hi), x| (lo.min(*x), hi.max(*x)));
        println!(
            "{name:<24} {:>8.2} M/s {:>8.2} M/s {:>8.2} M/s",
            median_of(r.clone()) / 1e6,
            lo / 1e6,
            hi / 1e6
        );
    }
    println!("median per-round ratios:");
    for (a, b, goal) in [
        ("io-ring/single", "rtrb-pair/single", " (goal >= 1.0)"),
        (
            "io-ring/single-polled",
            "rtrb-pair/single",
            " (goal >= 1.0)",
        ),
        ("io-ring/batched", "io-ring/single", " (goal >= 3.0)"),
        ("io-ring/batched", "rtrb-pair/batched", ""),
    ] {
        println!("  {a} / {b} = {:.2}x{goal}", ratio(a, b));
    }
}

fn main() {
    if allowed_cpus().len() < 2 {
        eprintln!(
            "warning: fewer than 2 CPUs: both threads share one, spinning numbers are meaningless"
        );
    }
    pin(0);
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let mut group = c.benchmark_group("ring");
    group.throughput(Throughput::Elements(1));
    for (name, variant) in VARIANTS {
        let mut pair = start(variant);
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let t = Instant::now();
                (pair.stream)(iters);
                t.elapsed()
            });
        });
    }
    group.finish();
    c.final_summary();
    let rounds = std::env::var("PVNET_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(7);
    if rounds > 0 {
        interleaved_summary(rounds);
    }
}
