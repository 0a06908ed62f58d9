//! pvnet against what users would otherwise use, in one run on one machine.
//!
//! `cargo bench --bench pvnet` (add `-- --quick` for a short run, `-- --out DIR` for where the
//! CSV, JSON and SVG chart go, default `target/pvnet-bench`; `-- --rounds N` for how many
//! rounds of every configuration, default 3, 2 with `--quick`; `-- --only polling,pvnet` for
//! some parts only: `dpdk`, `baselines`, `pvnet`, `polling`; `-- --help` lists them all).
//! Tables show the median round; every goal ratio is computed per round, then its median and
//! spread printed, with a verdict only when every round falls on the same side of the goal.
//! A placement probe (`probe.rs`, off with `--no-probe`) times a cache line's round trip
//! between the two CPUs all through the rounds, since a virtual machine's two vCPUs are
//! sometimes near each other and sometimes far; the DPDK goals are then also given per
//! placement, from every pvnet copy-mode run (`--repeats` of them per round) and every DPDK
//! reading that fell wholly in one.
//!
//! Every measurement runs two real processes (this binary, re-run in a child role):
//! - pvnet throughput per mode (tx copy, tx map: a netfront streams to a sink netback; rx copy,
//!   rx flip, rx flip with remap: a netback sources frames to a netfront) and frame size:
//!   frames/s, Gbit/s, CPU seconds of both processes per GB. Both sides as a user gets them
//!   by default (`NetfrontConfig::default()` but an MTU of 9000 and TCPv4 GSO: 256-slot rings,
//!   1024 receive buffers posted in turn, `memmove` for every copy), spinning 50 us before
//!   sleeping; and "rx recycled", rx copy with 256 receive buffers, each posted again as
//!   soon as it is read, as Linux netfront does (what netback's heuristics do to such a
//!   guest; it answers to the memif goals as rx copy does); and "rx unheld", the same
//!   frontend with the backend keeping no grant claimed between copies, as it must for a
//!   guest that grants per packet (Linux netfront; no goal);
//! - pvnet round trips (echo) per mode and size, event-driven and busy-polling: p50, p99;
//! - the polling curve: 64 B round trips and CPU per trip against the spin budget of both
//!   sides (0, 10 us, 50 us, always) and the client's pause between trips (`polling.rs`);
//! - DPDK memif and virtio-user -> vhost-user at the same sizes, when `dpdk-testpmd` is
//!   installed (`dpdk.rs` says how each is configured);
//! - baselines: AF_UNIX SOCK_SEQPACKET between two processes at the same sizes (default
//!   buffers, and 4 MiB ones as a user tuning it would set: "AF_UNIX 4 MiB"), a single-core
//!   memcpy of the same bytes (the copy-mode bound), an eventfd ping-pong and a shared-memory
//!   spin ping-pong between two processes; and the bare copy ring (`bare_ring.rs`): frames
//!   copied through shared buffers with nothing else (and with Xen's slot traffic), how far
//!   every copying path is from what the two copies alone cost;
//! - system calls per million frames while both sides are busy (`perf stat`, if usable).

// A binary: `pub` marks what the modules share.
#![allow(unreachable_pub)]

mod bare_ring;
mod baselines;
mod child;
mod dpdk;
mod placement;
mod polling;
mod probe;
mod pvnet_runs;
mod report;
mod shell;
#[path = "../common/stats.rs"]
mod stats;
mod syscalls;

use std::path::PathBuf;
use std::time::Duration;

/// Frame sizes measured.
pub const SIZES: [usize; 6] = [64, 256, 1500, 4096, 9000, 65535];

/// Options of one run.
#[derive(Clone, Debug)]
pub struct Opts {
    /// Fewer frames and round trips (a smoke run).
    pub quick: bool,
    /// Where results go.
    pub out: PathBuf,
    /// Where sockets and intermediate files go (a fresh temporary directory).
    pub scratch: PathBuf,
    /// Sizes to run.
    pub sizes: Vec<usize>,
    /// Skip the strace run.
    pub no_syscalls: bool,
    /// Rounds of every configuration (`--rounds`; 3, or 2 with `--quick`).
    pub rounds: usize,
    /// Parts to run (`--only dpdk,baselines,pvnet,polling`; all by default).
    pub only: Option<Vec<String>>,
    /// Runs of each pvnet copy-mode configuration per round (`--repeats`; 5, or 2 with
    /// `--quick`): each is one sample for the placement probe.
    pub repeats: usize,
    /// Run without the placement probe (`--no-probe`).
    pub no_probe: bool,
}

impl Opts {
    /// Whether the part `name` runs.
    fn runs(&self, name: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|o| o.iter().any(|p| p == name))
    }
}

impl Opts {
    /// Frames for a throughput run of `size`-byte frames: about 400 MB, within limits.
    pub fn frames(&self, size: usize) -> u64 {
        let n = (400_000_000 / size as u64).clamp(20_000, 2_000_000);
        if self.quick { (n / 20).max(2000) } else { n }
    }

    /// Round trips per latency run.
    pub fn trips(&self, busy: bool) -> u32 {
        match (self.quick, busy) {
            (true, _) => 300,
            (false, false) => 3000,
            (false, true) => 20_000,
        }
    }
}

/// Spin used for "busy-poll": longer than any run, so neither side ever sleeps.
pub const BUSY_SPIN: Duration = Duration::from_secs(30);
/// Spin used for throughput runs (both sides): the demo's default.
pub const THROUGHPUT_SPIN: Duration = Duration::from_micros(50);

/// Nanoseconds every thread of process `pid` has run (`/proc/PID/task/*/schedstat`, first
/// field; finer than `/proc/PID/stat`'s 10 ms ticks), 0 if it cannot be read.
pub fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// The CPUs this process may use, lowest first.
pub fn cpu_list() -> Vec<usize> {
    let set = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).expect("affinity");
    (0..nix::sched::CpuSet::count())
        .filter(|&i| set.is_set(i).unwrap_or(false))
        .collect()
}

/// The two CPUs the two processes of a measurement run on: each side on its own core, as a
/// guest and its driver domain would be (the scheduler's choice varies from run to run and
/// makes round trips bimodal). `None` with a single CPU.
pub fn cpu_pair() -> Option<(usize, usize)> {
    // Decided once, from the CPUs allowed at start: the parent pins itself later, and a
    // pair read from its narrowed mask would put both processes on one CPU.
    static PAIR: std::sync::OnceLock<Option<(usize, usize)>> = std::sync::OnceLock::new();
    *PAIR.get_or_init(|| {
        let cpus = cpu_list();
        (cpus.len() >= 2).then(|| (cpus[0], cpus[1]))
    })
}

/// Pins the calling thread (and the children it spawns afterwards) to `cpu`.
pub fn pin(cpu: usize) {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu).expect("cpu index");
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).expect("pin");
}

/// Lets this process (and the children it spawns) run on both CPUs of the pair again.
pub fn unpin() {
    if let Some((a, b)) = cpu_pair() {
        let mut set = nix::sched::CpuSet::new();
        set.set(a).expect("cpu index");
        set.set(b).expect("cpu index");
        nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).expect("unpin");
    }
}

/// The options, each with what it does: the one list `--help` prints and arguments are
/// checked against.
const OPTIONS: [(&str, &str); 9] = [
    ("--quick", "a short run (2 rounds, fewer frames)"),
    ("--rounds N", "rounds of every configuration (default 3)"),
    (
        "--repeats N",
        "runs of each pvnet copy-mode configuration per round (default 5)",
    ),
    (
        "--no-probe",
        "no placement probe (cache-line round trips between the CPUs)",
    ),
    (
        "--sizes A,B,...",
        "frame sizes in bytes (default 64,256,1500,4096,9000,65535)",
    ),
    (
        "--only PARTS",
        "some parts only: dpdk, baselines, pvnet, polling (comma-separated)",
    ),
    ("--no-syscalls", "skip the system-call counts (perf stat)"),
    (
        "--out DIR",
        "where the CSV, JSON and SVG charts go (default target/pvnet-bench)",
    ),
    ("--help", "this text"),
];

fn usage() -> String {
    let mut u = String::from("usage: cargo bench --bench pvnet [-- OPTIONS]");
    for (name, what) in OPTIONS {
        u.push_str(&format!("\n  {name:<18} {what}"));
    }
    u
}

/// Whether `arg` names an option (`--bench` is cargo's own, passed to every bench binary).
fn known(arg: &str) -> bool {
    arg == "--bench"
        || OPTIONS
            .iter()
            .any(|(o, _)| o.split(' ').next() == Some(arg))
}

fn arg_value(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(role) = arg_value(&args, "--role") {
        if let Some(cpu) = arg_value(&args, "--cpu") {
            pin(cpu.parse().expect("--cpu"));
        }
        if role == "probe" {
            probe::run_role();
        } else if role == "classify" {
            shell::run_classify(&args);
        } else if role == "fit" {
            shell::run_fit(&args);
        } else if role == "ab-summary" {
            shell::run_ab_summary(&args);
        } else if role == "rejudge" {
            report::run_rejudge(&args);
        } else {
            child::run(&role, &args);
        }
        return;
    }
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{}", usage());
        return;
    }
    if let Some(bad) = args
        .iter()
        .skip(1)
        .find(|a| a.starts_with("--") && !known(a))
    {
        eprintln!("pvnet bench: unknown option {bad}\n{}", usage());
        std::process::exit(2);
    }
    let opts = Opts {
        quick: args.iter().any(|a| a == "--quick"),
        out: arg_value(&args, "--out")
            .map_or_else(|| PathBuf::from("target/pvnet-bench"), PathBuf::from),
        sizes: arg_value(&args, "--sizes").map_or_else(
            || SIZES.to_vec(),
            |s| {
                s.split(',')
                    .map(|v| v.parse().expect("--sizes: numbers"))
                    .collect()
            },
        ),
        no_syscalls: args.iter().any(|a| a == "--no-syscalls"),
        rounds: arg_value(&args, "--rounds").map_or(
            if args.iter().any(|a| a == "--quick") {
                2
            } else {
                3
            },
            |v| v.parse().expect("--rounds: a number"),
        ),
        only: arg_value(&args, "--only").map(|s| s.split(',').map(String::from).collect()),
        repeats: arg_value(&args, "--repeats").map_or(
            if args.iter().any(|a| a == "--quick") {
                2
            } else {
                5
            },
            |v| v.parse().expect("--repeats: a number"),
        ),
        no_probe: args.iter().any(|a| a == "--no-probe"),
        scratch: std::env::temp_dir().join(format!("pvnet-bench-{}", std::process::id())),
    };
    std::fs::create_dir_all(&opts.out).expect("output directory");
    std::fs::create_dir_all(&opts.scratch).expect("scratch directory");
    let cpus = cpu_list().len();
    let _ = cpu_pair(); // fixed now, before any pinning
    println!(
        "pvnet bench: {} CPUs allowed (each measurement's two processes pinned to {:?}), sizes {:?}{}",
        cpus,
        cpu_pair(),
        opts.sizes,
        if opts.quick { ", quick" } else { "" }
    );
    // The placement probe samples the CPU pair all through the throughput rounds.
    let probe = cpu_pair()
        .filter(|_| !opts.no_probe)
        .map(probe::Probe::start);
    // Every configuration once per round, rounds one after the other, so a slow spell of
    // the machine hits all configurations alike and shows as spread, not as a ratio.
    let mut rounds = Vec::new();
    for k in 0..opts.rounds {
        println!("round {} of {}", k + 1, opts.rounds);
        let mut round = report::Results::default();
        // First: testpmd chooses its own cores (the other baselines pin this process).
        unpin();
        if opts.runs("dpdk") {
            dpdk::run_all(&opts, &mut round);
        }
        if opts.runs("baselines") {
            baselines::run_all(&opts, &mut round);
        }
        if opts.runs("pvnet") {
            pvnet_runs::run_all(&opts, &mut round);
        }
        if opts.runs("polling") {
            polling::run_all(&opts, &mut round);
        }
        rounds.push(round);
    }
    let placements = probe.map(probe::Probe::finish);
    let mut results = report::merge(&rounds);
    if opts.no_syscalls {
        println!("syscalls: skipped (--no-syscalls)");
    } else {
        syscalls::run(&opts, &mut results);
    }
    report::print_and_write(&opts, &results, &rounds, placements.as_ref());
    let _ = std::fs::remove_dir_all(&opts.scratch);
}
