//! Where the host has put the pair's two CPUs, sampled while the measurements run.
//!
//! On a virtual machine the two CPUs are vCPUs, and the host moves them between its cores.
//! A cache line then crosses between them in a fraction of the time when both sit under one
//! shared cache ("near") as when they do not ("far"): on the 2-vCPU AMD EPYC machines of
//! this project, a round trip of one line took 50-120 ns or 400-550 ns, switching between the
//! two every few tenths of a second to every few seconds. Every copy-mode packet path that
//! crosses cores pays those transfers per frame, so a run measured "far" is slower by a factor
//! no code explains (memif's 1500-byte rate: 8-11 Mpps near, 1.9 far, in one run).
//!
//! The probe: a thread pinned to each CPU of the pair at real-time priority (`SCHED_FIFO`,
//! when allowed: it preempts the measured processes for the sample, then sleeps), bouncing one
//! cache line 256 times every 100 ms and keeping the best of four batches of 64 round trips.
//! A sample costs 20-150 us, under 0.2% of each CPU. `placement.rs` then calls each measured
//! run (or DPDK reading) near, far or mixed from the samples over it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::placement::Placements;

/// Time between samples.
const PERIOD: Duration = Duration::from_millis(100);
/// Round trips per batch, and batches per sample (the best batch is kept, so one preemption
/// inside a batch does not make a near sample look far).
const TRIPS: u32 = 64;
const BATCHES: u32 = 4;
/// How long the sampling thread waits for the other to answer before giving the sample up
/// (the other CPU's thread may not get its CPU soon without real-time priority).
const ANSWER_WITHIN: Duration = Duration::from_millis(5);
/// The line's value that sends the answering thread back to sleep.
const DONE: u64 = u64::MAX;

/// One cache line that only the probe's two threads touch.
#[repr(align(128))]
struct Line(AtomicU64);

struct Shared {
    line: Line,
    /// Set by the sampler before it wakes the answerer: there is a sample to answer.
    go: AtomicBool,
    stop: AtomicBool,
    samples: Mutex<Vec<(Instant, f64)>>,
}

/// A running probe.
pub struct Probe {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    /// Whether both threads got real-time priority.
    realtime: Arc<AtomicBool>,
}

/// Pins the calling thread to `cpu` and asks for `SCHED_FIFO`; returns whether it got it.
fn pin_realtime(cpu: usize) -> bool {
    crate::pin(cpu);
    let param = libc::sched_param { sched_priority: 10 };
    // SAFETY: `sched_setscheduler` reads `param`, a valid `sched_param` on this stack, and
    // changes only the calling thread's (pid 0) policy; it fails with EPERM when not allowed.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &raw const param) };
    rc == 0
}

impl Probe {
    /// Starts sampling between `cpus.0` (the sampler) and `cpus.1` (the answerer).
    pub fn start(cpus: (usize, usize)) -> Self {
        let shared = Arc::new(Shared {
            line: Line(AtomicU64::new(0)),
            go: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            samples: Mutex::new(Vec::new()),
        });
        let realtime = Arc::new(AtomicBool::new(true));
        let (s, rt) = (Arc::clone(&shared), Arc::clone(&realtime));
        let answerer = std::thread::spawn(move || {
            if !pin_realtime(cpus.1) {
                rt.store(false, Ordering::Relaxed);
            }
            answer(&s);
        });
        let (s, rt) = (Arc::clone(&shared), Arc::clone(&realtime));
        let waker = answerer.thread().clone();
        let sampler = std::thread::spawn(move || {
            if !pin_realtime(cpus.0) {
                rt.store(false, Ordering::Relaxed);
            }
            while !s.stop.load(Ordering::Relaxed) {
                std::thread::sleep(PERIOD);
                if let Some(ns) = sample(&s, &waker) {
                    s.samples
                        .lock()
                        .expect("probe samples")
                        .push((Instant::now(), ns));
                }
            }
            // Release the answerer: this thread's own store of `stop` comes before the
            // Release store of `go`, so the answerer's Acquire of `go` sees it.
            s.stop.store(true, Ordering::Relaxed);
            s.go.store(true, Ordering::Release);
            waker.unpark();
        });
        Self {
            shared,
            threads: vec![sampler, answerer],
            realtime,
        }
    }

    /// Takes the samples so far (for a probe that reports as it goes).
    pub fn drain(&self) -> Vec<(Instant, f64)> {
        std::mem::take(&mut *self.shared.samples.lock().expect("probe samples"))
    }

    /// Stops the probe and returns what it saw.
    pub fn finish(self) -> Placements {
        self.shared.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        let samples = std::mem::take(&mut *self.shared.samples.lock().expect("probe samples"));
        Placements::new(samples, Some(self.realtime.load(Ordering::Relaxed)))
    }
}

/// The probe as a process of its own (`--role probe`), for the shell benches
/// (`benches/tcp/run.sh`, `benches/pvnet/ab.sh`): prints a line a sample, "wall-clock seconds
/// (Unix time) and round trip in ns", a second's worth at a time, until killed.
pub fn run_role() {
    use std::io::Write as _;
    let Some(pair) = crate::cpu_pair() else {
        eprintln!("probe: needs two CPUs");
        std::process::exit(2);
    };
    let probe = Probe::start(pair);
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let (now, wall) = (Instant::now(), std::time::SystemTime::now());
        let Ok(since) = wall.duration_since(std::time::UNIX_EPOCH) else {
            continue;
        };
        let mut out = std::io::stdout().lock();
        for (at, ns) in probe.drain() {
            let t = since.saturating_sub(now - at).as_secs_f64();
            if writeln!(out, "{t:.3} {ns:.0}").is_err() {
                return;
            }
        }
        if out.flush().is_err() {
            return;
        }
    }
}

/// The answering thread: sleeps until the sampler sets `go`, then returns every odd value of
/// the line as the next even one until the line says `DONE`.
fn answer(s: &Shared) {
    loop {
        // Acquire: pairs with the sampler's Release store of `go`, which follows its reset
        // of the line, so this thread starts from that value, not a stale `DONE`.
        while !s.go.swap(false, Ordering::Acquire) {
            std::thread::park();
        }
        if s.stop.load(Ordering::Relaxed) {
            return;
        }
        loop {
            // Relaxed: the line carries no other data; only its transfers are timed.
            let v = s.line.0.load(Ordering::Relaxed);
            if v == DONE {
                break;
            }
            if v % 2 == 1 {
                s.line.0.store(v + 1, Ordering::Relaxed);
            }
            std::hint::spin_loop();
        }
    }
}

/// One sample: the best batch's mean round trip in ns, or `None` if the other thread did not
/// answer in time.
fn sample(s: &Shared, waker: &std::thread::Thread) -> Option<f64> {
    let line = &s.line.0;
    line.store(0, Ordering::Relaxed);
    // Release: the reset above is seen by the answerer before it looks at the line.
    s.go.store(true, Ordering::Release);
    waker.unpark();
    // The first trip waits for the answerer to be running; it is not timed.
    let mut v = 1;
    line.store(v, Ordering::Relaxed);
    let deadline = Instant::now() + ANSWER_WITHIN;
    let mut spins = 0u32;
    while line.load(Ordering::Relaxed) != v + 1 {
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(1024) && Instant::now() > deadline {
            line.store(DONE, Ordering::Relaxed);
            return None;
        }
        std::hint::spin_loop();
    }
    v += 1;
    let mut best = f64::INFINITY;
    for _ in 0..BATCHES {
        let t = Instant::now();
        for _ in 0..TRIPS {
            v += 1;
            line.store(v, Ordering::Relaxed);
            v += 1;
            while line.load(Ordering::Relaxed) != v {
                std::hint::spin_loop();
            }
        }
        best = best.min(t.elapsed().as_nanos() as f64 / f64::from(TRIPS));
    }
    line.store(DONE, Ordering::Relaxed);
    Some(best)
}
