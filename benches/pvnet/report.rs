//! Results: the table with ratios and goals, a CSV and a JSON file, and the throughput chart.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use plotters::prelude::*;

use crate::Opts;
use crate::placement::{Placement, Placements};
use crate::stats::{self, Goal, RatioSpread, Verdict, median, median_of, sorted};

/// One throughput measurement.
#[derive(Clone, Debug)]
pub struct Throughput {
    pub name: String,
    pub size: usize,
    pub frames: u64,
    pub secs: f64,
    /// CPU seconds of both processes.
    pub cpu: f64,
}

impl Throughput {
    pub fn fps(&self) -> f64 {
        self.frames as f64 / self.secs
    }
    pub fn gbps(&self) -> f64 {
        self.fps() * self.size as f64 * 8.0 / 1e9
    }
    pub fn cpu_per_gb(&self) -> f64 {
        self.cpu / (self.frames as f64 * self.size as f64 / 1e9)
    }
}

/// The frame rate of one run, or one reading of a DPDK peer, and when it was measured: what
/// the placement probe (`probe.rs`, `placement.rs`) sorts into near and far.
#[derive(Clone, Debug)]
pub struct Timed {
    pub name: String,
    pub size: usize,
    pub fps: f64,
    pub from: Instant,
    pub to: Instant,
}

/// One round-trip measurement.
#[derive(Clone, Debug)]
pub struct Latency {
    pub name: String,
    pub busy: bool,
    pub size: usize,
    pub p50_ns: u128,
    pub p99_ns: u128,
}

/// One point of the polling curve (`polling.rs`).
#[derive(Clone, Debug)]
pub struct PollPoint {
    /// Both sides' spin budget in microseconds; `None`: always.
    pub spin_us: Option<u64>,
    /// The client's pause between a reply and its next request.
    pub gap_us: u64,
    pub trips: u64,
    pub p50_ns: u128,
    pub p99_ns: u128,
    /// CPU time of both processes per round trip.
    pub cpu_ns_per_trip: f64,
}

impl PollPoint {
    pub fn spin_label(&self) -> String {
        self.spin_us.map_or("always".into(), |s| format!("{s} us"))
    }
}

/// System calls of both processes over a busy stream.
#[derive(Clone, Debug)]
pub struct Syscalls {
    pub what: String,
    pub frames: u64,
    pub calls: u64,
    pub top: String,
}

#[derive(Debug, Default)]
pub struct Results {
    pub throughput: Vec<Throughput>,
    pub latency: Vec<Latency>,
    /// Bytes per second of a single-core memcpy, per size.
    pub memcpy: Vec<(usize, f64)>,
    pub syscalls: Vec<Syscalls>,
    pub polling: Vec<PollPoint>,
    /// Merged results only: each configuration's lowest and highest frames/s over the rounds.
    pub spread: Vec<(String, usize, f64, f64)>,
    /// Rates with their times, for the placement probe: every pvnet copy-mode run and every
    /// reading of a DPDK peer's (the rate since its previous one).
    pub timed: Vec<Timed>,
}

impl Results {
    fn tp(&self, name: &str, size: usize) -> Option<&Throughput> {
        self.throughput
            .iter()
            .find(|t| t.name == name && t.size == size)
    }
    fn lat(&self, name: &str, size: usize, busy: bool) -> Option<&Latency> {
        self.latency
            .iter()
            .find(|l| l.name == name && l.size == size && l.busy == busy)
    }
    fn memcpy_gbps(&self, size: usize) -> Option<f64> {
        self.memcpy
            .iter()
            .find(|(s, _)| *s == size)
            .map(|(_, b)| b * 8.0 / 1e9)
    }
}

/// Prints and writes the medians `r` of `rounds`, with each ratio's spread over the rounds,
/// and the DPDK goals again by placement when the probe ran.
pub fn print_and_write(opts: &Opts, r: &Results, rounds: &[Results], probe: Option<&Placements>) {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "\n{:<20} {:>6} {:>9} {:>15} {:>8} {:>9} {:>8} {:>9} {:>9}",
        "throughput",
        "size",
        "Mpps",
        "Mpps spread",
        "Gbit/s",
        "CPU s/GB",
        "x AF_UNIX",
        "x AF_UNIX",
        "x memcpy"
    );
    let _ = writeln!(
        t,
        "{:<20} {:>6} {:>9} {:>15} {:>8} {:>9} {:>8} {:>9} {:>9}",
        "", "B", "median", "over rounds", "", "", "frames/s", "Gbit/s", "Gbit/s"
    );
    for tp in &r.throughput {
        let unix = r.tp("AF_UNIX seqpacket", tp.size);
        let mc = r.memcpy_gbps(tp.size);
        let spread = r
            .spread
            .iter()
            .find(|(n, s, _, _)| *n == tp.name && *s == tp.size)
            .map_or("-".into(), |(_, _, lo, hi)| {
                format!("{:.3}-{:.3}", lo / 1e6, hi / 1e6)
            });
        let _ = writeln!(
            t,
            "{:<20} {:>6} {:>9.3} {:>15} {:>8.2} {:>9.3} {:>8} {:>9} {:>9}",
            tp.name,
            tp.size,
            tp.fps() / 1e6,
            spread,
            tp.gbps(),
            tp.cpu_per_gb(),
            unix.map_or("-".into(), |u| format!("{:.2}x", tp.fps() / u.fps())),
            unix.map_or("-".into(), |u| format!("{:.2}x", tp.gbps() / u.gbps())),
            mc.map_or("-".into(), |m| format!("{:.2}x", tp.gbps() / m)),
        );
    }
    for (size, bps) in &r.memcpy {
        let _ = writeln!(
            t,
            "{:<20} {:>6} {:>9.3} {:>8.2}",
            "memcpy (1 core)",
            size,
            bps / *size as f64 / 1e6,
            bps * 8.0 / 1e9
        );
    }
    let _ = writeln!(
        t,
        "\n{:<30} {:>6} {:>13} {:>10} {:>10} {:>10}",
        "round trip", "size", "mode", "p50 us", "p99 us", "x bound"
    );
    let bound = |busy: bool| {
        r.latency
            .iter()
            .find(|l| l.size == 0 && l.busy == busy)
            .map(|l| l.p50_ns as f64)
    };
    for l in &r.latency {
        let x = if l.size == 0 {
            "-".into()
        } else {
            bound(l.busy).map_or("-".into(), |b| format!("{:.2}x", l.p50_ns as f64 / b))
        };
        let _ = writeln!(
            t,
            "{:<30} {:>6} {:>13} {:>10.2} {:>10.2} {:>10}",
            l.name,
            l.size,
            if l.busy { "busy-poll" } else { "event-driven" },
            l.p50_ns as f64 / 1e3,
            l.p99_ns as f64 / 1e3,
            x
        );
    }
    if !r.polling.is_empty() {
        let _ = writeln!(
            t,
            "\n{:<30} {:>8} {:>10} {:>10} {:>14}",
            "polling curve, 64 B copy", "gap us", "p50 us", "p99 us", "CPU us / trip"
        );
        for p in &r.polling {
            let _ = writeln!(
                t,
                "{:<30} {:>8} {:>10.2} {:>10.2} {:>14.2}",
                format!("spin {}", p.spin_label()),
                p.gap_us,
                p.p50_ns as f64 / 1e3,
                p.p99_ns as f64 / 1e3,
                p.cpu_ns_per_trip / 1e3
            );
        }
    }
    for s in &r.syscalls {
        let _ = writeln!(
            t,
            "\nsyscalls, {}: {} more calls for {} more frames = {:.1} per million frames ({})",
            s.what,
            s.calls,
            s.frames,
            s.calls as f64 * 1e6 / s.frames as f64,
            s.top
        );
    }
    t.push_str(&goals(rounds, r));
    if let Some(p) = probe {
        t.push_str(&placement_goals(r, p));
        write_timed(opts, r, p);
    }
    print!("{t}");
    let _ = std::fs::write(opts.out.join("summary.txt"), &t);
    write_csv(opts, r);
    write_json(opts, r);
    match chart(opts, r) {
        Ok(p) => println!("chart: {}", p.display()),
        Err(e) => println!("chart: failed: {e}"),
    }
    if !r.polling.is_empty() {
        match polling_chart(opts, &r.polling) {
            Ok(p) => println!("chart: {}", p.display()),
            Err(e) => println!("chart: failed: {e}"),
        }
    }
}

/// One goal line: the ratio `f` in every round, its median and spread, and a verdict
/// against `goal` only when every round falls on the same side.
fn goal_line(
    g: &mut String,
    rounds: &[Results],
    label: &str,
    f: impl Fn(&Results) -> Option<f64>,
    goal: Option<Goal>,
) {
    let xs = sorted(rounds.iter().filter_map(f).collect());
    if xs.is_empty() {
        return;
    }
    let (lo, hi, mid) = (xs[0], xs[xs.len() - 1], median(&xs));
    let verdict = match goal {
        None => String::new(),
        Some(goal) => {
            let v = if xs.len() < 2 {
                "inconclusive: one round"
            } else {
                match stats::verdict(lo, hi, goal) {
                    Verdict::Met => "met",
                    Verdict::NotMet => "NOT met",
                    Verdict::Inconclusive => "inconclusive: the rounds straddle it",
                }
            };
            format!("; goal {}: {v}", goal.describe())
        }
    };
    let _ = writeln!(
        g,
        "  {label}: {mid:.2}x (rounds {lo:.2}-{hi:.2}, n={}){verdict}",
        xs.len()
    );
}

/// A throughput goal: frame size, the baseline, the label's end, whether frames/s are
/// compared, the least ratio ([`THROUGHPUT_GOALS`]).
type ThroughputGoal = (usize, Option<&'static str>, &'static str, bool, f64);

/// The throughput goals of copy mode, each direction: frame size, the baseline (`None`: the
/// one-core memcpy bound), the label's end, whether frames/s (else Gbit/s) are compared, and
/// the least ratio that meets it.
const THROUGHPUT_GOALS: [ThroughputGoal; 8] = [
    (
        64,
        Some("AF_UNIX seqpacket"),
        "AF_UNIX frames/s",
        true,
        10.0,
    ),
    (
        1500,
        Some("AF_UNIX seqpacket"),
        "AF_UNIX Gbit/s",
        false,
        3.0,
    ),
    (
        65535,
        Some("AF_UNIX seqpacket"),
        "AF_UNIX Gbit/s",
        false,
        1.5,
    ),
    (
        65535,
        Some("AF_UNIX 4 MiB"),
        "AF_UNIX with 4 MiB buffers Gbit/s",
        false,
        1.5,
    ),
    (65535, None, "the memcpy bound", false, 0.5),
    // Against DPDK (issue 13).
    (64, Some("DPDK memif"), "DPDK memif frames/s", true, 1.0),
    (1500, Some("DPDK memif"), "DPDK memif frames/s", true, 1.0),
    (
        64,
        Some("DPDK vhost-user"),
        "DPDK vhost-user frames/s",
        true,
        2.0,
    ),
];

/// The copy-mode rows that answer to [`THROUGHPUT_GOALS`], each with every goal it answers
/// to: both directions to all of them, and "rx recycled" (a frontend that posts each buffer
/// again at once, as Linux netfront does: the receive path such guests get) to the memif
/// ones.
fn goal_rows() -> impl Iterator<Item = (&'static str, ThroughputGoal)> {
    ["pvnet tx copy", "pvnet rx copy", "pvnet rx recycled"]
        .into_iter()
        .flat_map(|mode| {
            THROUGHPUT_GOALS
                .iter()
                .copied()
                .filter(move |g| mode != "pvnet rx recycled" || g.1 == Some("DPDK memif"))
                .map(move |g| (mode, g))
        })
}

/// The rows compared with the bare copy ring (no goal), at 64 and 1500 B.
const BARE_RING_ROWS: [&str; 5] = [
    "pvnet tx copy",
    "pvnet rx copy",
    "pvnet rx recycled",
    "DPDK memif",
    "DPDK vhost-user",
];

/// The goals: every ratio computed per round, then its median and spread.
fn goals(rounds: &[Results], r: &Results) -> String {
    let mut g = String::from(
        "\ngoals (per-round ratios: median, spread, verdict only when every round agrees)\n",
    );
    let ratio = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a / b);
    let fps = |r: &Results, name: &str, size| r.tp(name, size).map(Throughput::fps);
    let gbps = |r: &Results, name: &str, size| r.tp(name, size).map(Throughput::gbps);
    for (mode, (size, against, label, by_frames, at_least)) in goal_rows() {
        let of = |r: &Results, name: &str| {
            if by_frames {
                fps(r, name, size)
            } else {
                gbps(r, name, size)
            }
        };
        goal_line(
            &mut g,
            rounds,
            &format!("{size} B {mode} / {label}"),
            |r| {
                let base = match against {
                    Some(name) => of(r, name),
                    None => r.memcpy_gbps(size),
                };
                ratio(of(r, mode), base)
            },
            Some(Goal::AtLeast(at_least)),
        );
    }
    let bound = |r: &Results, busy: bool| {
        r.latency
            .iter()
            .find(|l| l.size == 0 && l.busy == busy)
            .map(|l| l.p50_ns as f64)
    };
    let smallest = r
        .latency
        .iter()
        .filter(|l| l.size > 0)
        .map(|l| l.size)
        .min();
    if let Some(size) = smallest {
        for (busy, limit, what) in [
            (false, 1.5, "eventfd ping-pong"),
            (true, 3.0, "spin ping-pong"),
        ] {
            goal_line(
                &mut g,
                rounds,
                &format!(
                    "{size} B round trip {} / the {what}",
                    if busy { "busy-poll" } else { "event-driven" }
                ),
                |r| {
                    ratio(
                        r.lat("pvnet copy", size, busy).map(|l| l.p50_ns as f64),
                        bound(r, busy),
                    )
                },
                Some(Goal::AtMost(limit)),
            );
        }
    }
    // No goal: how near each copying path comes to the bare copy ring, which copies frames
    // through shared buffers and does nothing else, and pvnet's to the same ring carrying
    // Xen's slot traffic (what its software costs beyond the ABI).
    for size in [64, 1500] {
        for traffic in crate::bare_ring::Traffic::ALL {
            let bare = traffic.name();
            for name in BARE_RING_ROWS
                .into_iter()
                .filter(|n| traffic == crate::bare_ring::Traffic::Counts || n.starts_with("pvnet"))
            {
                goal_line(
                    &mut g,
                    rounds,
                    &format!("{size} B {name} / the {bare} frames/s"),
                    |r| ratio(fps(r, name, size), fps(r, bare, size)),
                    None,
                );
            }
        }
    }
    for flip in ["pvnet rx flip", "pvnet rx flip+remap"] {
        let sizes: Vec<usize> = r
            .throughput
            .iter()
            .filter(|t| t.name == flip)
            .map(|t| t.size)
            .collect();
        let cross = sizes.iter().copied().find(|&s| {
            ratio(gbps(r, flip, s), gbps(r, "pvnet rx copy", s)).is_some_and(|x| x >= 1.0)
        });
        let _ = writeln!(
            g,
            "  copy vs {} (medians): {}",
            flip.trim_start_matches("pvnet rx "),
            cross.map_or("copy is faster at every size measured".into(), |s| format!(
                "flip at least as fast from {s} B on"
            ))
        );
    }
    g
}

/// The goals against DPDK again, per placement: pvnet's runs and the peer's seconds that the
/// probe saw wholly near or wholly far, compared with each other only. The ratio is of the
/// medians; its spread runs from pvnet's lower quartile over the peer's upper one to pvnet's
/// upper quartile over the peer's lower one, and the verdict needs all three on one side.
fn placement_goals(r: &Results, p: &Placements) -> String {
    let mut g = format!("\n{}\n", p.describe());
    if !p.bimodal() {
        g.push_str("  one placement only: the goals above stand as they are\n");
        return g;
    }
    let rates = |name: &str, size: usize, class: Placement| {
        sorted(
            r.timed
                .iter()
                .filter(|t| t.name == name && t.size == size && p.over(t.from, t.to) == class)
                .map(|t| t.fps)
                .collect(),
        )
    };
    let _ = writeln!(
        g,
        "{:<20} {:>6} {:>22} {:>22}",
        "Mpps by placement", "size", "near: median (n)", "far: median (n)"
    );
    let mut seen: Vec<(&str, usize)> = Vec::new();
    for t in &r.timed {
        if seen.contains(&(t.name.as_str(), t.size)) {
            continue;
        }
        seen.push((t.name.as_str(), t.size));
        let cell = |class| {
            let v = rates(&t.name, t.size, class);
            if v.is_empty() {
                "-".to_string()
            } else {
                format!("{:.3} ({})", median(&v) / 1e6, v.len())
            }
        };
        let _ = writeln!(
            g,
            "{:<20} {:>6} {:>22} {:>22}",
            t.name,
            t.size,
            cell(Placement::Near),
            cell(Placement::Far)
        );
    }
    g.push_str(
        "goals by placement (pvnet runs and peer readings measured wholly near or wholly far; \
         ratio of medians, spread from the quartiles)\n",
    );
    let mixed = |name: &str| {
        r.timed
            .iter()
            .filter(|t| t.name.starts_with(name) && p.over(t.from, t.to) == Placement::Mixed)
            .count()
    };
    for (mode, (size, against, label, by_frames, at_least)) in goal_rows() {
        let Some(peer) = against.filter(|a| by_frames && a.starts_with("DPDK")) else {
            continue;
        };
        for class in [Placement::Near, Placement::Far] {
            let (a, b) = (rates(mode, size, class), rates(peer, size, class));
            let head = format!("  {}: {size} B {mode} / {label}", class.name());
            let measured = |n: &str| r.timed.iter().any(|t| t.name == n && t.size == size);
            if !measured(mode) || !measured(peer) {
                continue;
            }
            if a.len() < 3 || b.len() < 3 {
                let _ = writeln!(
                    g,
                    "{head}: too few samples (pvnet {}, peer {})",
                    a.len(),
                    b.len()
                );
                continue;
            }
            let spread = RatioSpread::new(&a, &b);
            let RatioSpread { lo, mid, hi } = spread;
            let goal = Goal::AtLeast(at_least);
            let v = match spread.verdict(goal) {
                Verdict::Met => "met",
                Verdict::NotMet => "NOT met",
                Verdict::Inconclusive => "inconclusive: the spread straddles it",
            };
            let _ = writeln!(
                g,
                "{head}: {mid:.2}x ({lo:.2}-{hi:.2}); pvnet {:.2} Mpps (n={}), peer {:.2} \
                 (n={}); goal {}: {v}",
                median(&a) / 1e6,
                a.len(),
                median(&b) / 1e6,
                b.len(),
                goal.describe()
            );
        }
    }
    let _ = writeln!(
        g,
        "  left out as mixed: {} pvnet runs, {} peer readings",
        mixed("pvnet"),
        mixed("DPDK")
    );
    g
}

/// `--role rejudge DIR`: the goals against DPDK per placement again, from a run's
/// `placed.csv` and `probe.csv`, with this build's rule for the probe's samples (a run
/// judged when the rule was older, or with another one).
pub fn run_rejudge(args: &[String]) {
    let Some(dir) = args.get(3).map(std::path::PathBuf::from) else {
        eprintln!("rejudge: usage: --role rejudge DIR (with placed.csv and probe.csv)");
        std::process::exit(2);
    };
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| {
            eprintln!("rejudge: {}: {e}", dir.join(name).display());
            std::process::exit(2);
        })
    };
    let (placed, probe) = (read("placed.csv"), read("probe.csv"));
    // Both files count seconds from one moment, the probe's from before it too: put that
    // moment far enough after a base instant for every time to be one.
    let base = Instant::now();
    let at = |s: f64| base + Duration::from_secs_f64((s + 3600.0).max(0.0));
    let mut r = Results::default();
    for line in placed.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        if let [name, size, fps, _, from, to] = f[..]
            && let (Ok(size), Ok(fps), Ok(from), Ok(to)) =
                (size.parse(), fps.parse(), from.parse(), to.parse())
        {
            r.timed.push(Timed {
                name: name.to_string(),
                size,
                fps,
                from: at(from),
                to: at(to),
            });
        }
    }
    let samples = probe
        .lines()
        .skip(1)
        .filter_map(|l| {
            let (t, ns) = l.split_once(',')?;
            Some((at(t.parse().ok()?), ns.parse().ok()?))
        })
        .collect();
    print!("{}", placement_goals(&r, &Placements::new(samples, None)));
}

/// Every timed rate with its placement: `placed.csv` (seconds from the first one); the
/// probe's samples: `probe.csv` (seconds on the same clock).
fn write_timed(opts: &Opts, r: &Results, p: &Placements) {
    let Some(t0) = r.timed.iter().map(|t| t.from).min() else {
        return;
    };
    let mut c = String::from("name,size,fps,placement,from_s,to_s\n");
    for t in &r.timed {
        let _ = writeln!(
            c,
            "{},{},{:.0},{},{:.3},{:.3}",
            t.name,
            t.size,
            t.fps,
            p.over(t.from, t.to).name(),
            (t.from - t0).as_secs_f64(),
            (t.to - t0).as_secs_f64()
        );
    }
    let _ = std::fs::write(opts.out.join("placed.csv"), c);
    // The probe's own samples on the same clock, so a run can be judged again later.
    let mut q = String::from("at_s,round_trip_ns\n");
    for &(t, ns) in p.samples() {
        let at = if t >= t0 {
            (t - t0).as_secs_f64()
        } else {
            -(t0 - t).as_secs_f64()
        };
        let _ = writeln!(q, "{at:.3},{ns:.1}");
    }
    let _ = std::fs::write(opts.out.join("probe.csv"), q);
}

/// One result set from several rounds: per configuration the round with the median frame
/// rate (its CPU and seconds with it), round-trip and memcpy medians, and each
/// configuration's frame-rate spread (`spread`).
pub fn merge(rounds: &[Results]) -> Results {
    let mut m = Results::default();
    let Some(first) = rounds.first() else {
        return m;
    };
    m.timed = rounds
        .iter()
        .flat_map(|r| r.timed.iter().cloned())
        .collect();
    for t in &first.throughput {
        let mut all: Vec<&Throughput> = rounds
            .iter()
            .filter_map(|r| r.tp(&t.name, t.size))
            .collect();
        all.sort_by(|a, b| a.fps().total_cmp(&b.fps()));
        m.throughput.push(all[all.len() / 2].clone());
        m.spread.push((
            t.name.clone(),
            t.size,
            all[0].fps(),
            all[all.len() - 1].fps(),
        ));
    }
    for l in &first.latency {
        let mut p50: Vec<f64> = Vec::new();
        let mut p99: Vec<f64> = Vec::new();
        for r in rounds {
            if let Some(x) = r.lat(&l.name, l.size, l.busy) {
                p50.push(x.p50_ns as f64);
                p99.push(x.p99_ns as f64);
            }
        }
        p50.sort_by(f64::total_cmp);
        p99.sort_by(f64::total_cmp);
        // Round-trip medians in whole nanoseconds: far inside a u128.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        m.latency.push(Latency {
            p50_ns: median(&p50) as u128,
            p99_ns: median(&p99) as u128,
            ..l.clone()
        });
    }
    for p in &first.polling {
        let same: Vec<&PollPoint> = rounds
            .iter()
            .flat_map(|r| &r.polling)
            .filter(|q| q.spin_us == p.spin_us && q.gap_us == p.gap_us)
            .collect();
        let med = |f: &dyn Fn(&PollPoint) -> f64| median_of(same.iter().map(|q| f(q)).collect());
        // Medians of whole nanoseconds: far inside a u128.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        m.polling.push(PollPoint {
            p50_ns: med(&|q| q.p50_ns as f64) as u128,
            p99_ns: med(&|q| q.p99_ns as f64) as u128,
            cpu_ns_per_trip: med(&|q| q.cpu_ns_per_trip),
            ..p.clone()
        });
    }
    for &(size, _) in &first.memcpy {
        let b = rounds
            .iter()
            .flat_map(|r| r.memcpy.iter().filter(|(s, _)| *s == size).map(|(_, b)| *b))
            .collect();
        m.memcpy.push((size, median_of(b)));
    }
    m
}

fn write_csv(opts: &Opts, r: &Results) {
    let mut c = String::from(
        "kind,name,size,frames,seconds,cpu_seconds,fps,gbps,cpu_s_per_gb,p50_ns,p99_ns\n",
    );
    for t in &r.throughput {
        let _ = writeln!(
            c,
            "throughput,{},{},{},{},{},{},{},{},,",
            t.name,
            t.size,
            t.frames,
            t.secs,
            t.cpu,
            t.fps(),
            t.gbps(),
            t.cpu_per_gb()
        );
    }
    for (size, bps) in &r.memcpy {
        let _ = writeln!(
            c,
            "throughput,memcpy (1 core),{size},,,,{},{},,,",
            bps / *size as f64,
            bps * 8.0 / 1e9
        );
    }
    for l in &r.latency {
        let _ = writeln!(
            c,
            "latency,{} {},{},,,,,,,{},{}",
            l.name,
            if l.busy { "busy-poll" } else { "event-driven" },
            l.size,
            l.p50_ns,
            l.p99_ns
        );
    }
    for p in &r.polling {
        let _ = writeln!(
            c,
            "polling,spin {} gap {} us,64,{},,{},,,,{},{}",
            p.spin_label(),
            p.gap_us,
            p.trips,
            p.cpu_ns_per_trip * p.trips as f64 / 1e9,
            p.p50_ns,
            p.p99_ns
        );
    }
    let _ = std::fs::write(opts.out.join("results.csv"), c);
}

fn write_json(opts: &Opts, r: &Results) {
    let q = |s: &str| format!("\"{}\"", s.replace('"', "'"));
    let tp: Vec<String> = r
        .throughput
        .iter()
        .map(|t| {
            format!(
                "{{\"name\":{},\"size\":{},\"frames\":{},\"seconds\":{},\"cpu_seconds\":{},\"fps\":{},\"gbps\":{},\"cpu_s_per_gb\":{}}}",
                q(&t.name), t.size, t.frames, t.secs, t.cpu, t.fps(), t.gbps(), t.cpu_per_gb()
            )
        })
        .collect();
    let mc: Vec<String> = r
        .memcpy
        .iter()
        .map(|(s, b)| format!("{{\"size\":{s},\"bytes_per_second\":{b}}}"))
        .collect();
    let lat: Vec<String> = r
        .latency
        .iter()
        .map(|l| {
            format!(
                "{{\"name\":{},\"busy_poll\":{},\"size\":{},\"p50_ns\":{},\"p99_ns\":{}}}",
                q(&l.name),
                l.busy,
                l.size,
                l.p50_ns,
                l.p99_ns
            )
        })
        .collect();
    let sc: Vec<String> = r
        .syscalls
        .iter()
        .map(|s| {
            format!(
                "{{\"what\":{},\"frames\":{},\"calls\":{}}}",
                q(&s.what),
                s.frames,
                s.calls
            )
        })
        .collect();
    let poll: Vec<String> = r
        .polling
        .iter()
        .map(|p| {
            format!(
                "{{\"spin_us\":{},\"gap_us\":{},\"trips\":{},\"p50_ns\":{},\"p99_ns\":{},\"cpu_ns_per_trip\":{}}}",
                p.spin_us.map_or("null".into(), |s| s.to_string()),
                p.gap_us,
                p.trips,
                p.p50_ns,
                p.p99_ns,
                p.cpu_ns_per_trip
            )
        })
        .collect();
    let json = format!(
        "{{\"throughput\":[{}],\"memcpy\":[{}],\"latency\":[{}],\"syscalls\":[{}],\"polling\":[{}]}}\n",
        tp.join(","),
        mc.join(","),
        lat.join(","),
        sc.join(","),
        poll.join(",")
    );
    let _ = std::fs::write(opts.out.join("results.json"), json);
}

/// Gbit/s against frame size, every mode and baseline, log-log.
fn chart(opts: &Opts, r: &Results) -> Result<std::path::PathBuf, Box<dyn std::error::Error>> {
    let path = opts.out.join("throughput.svg");
    let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for t in &r.throughput {
        match series.iter_mut().find(|(n, _)| *n == t.name) {
            Some((_, pts)) => pts.push((t.size as f64, t.gbps())),
            None => series.push((t.name.clone(), vec![(t.size as f64, t.gbps())])),
        }
    }
    series.push((
        "memcpy (1 core)".into(),
        r.memcpy
            .iter()
            .map(|(s, b)| (*s as f64, b * 8.0 / 1e9))
            .collect(),
    ));
    let ymax = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|x| x.1))
        .fold(1.0, f64::max)
        * 2.0;
    let ymin = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|x| x.1))
        .fold(ymax, f64::min)
        .max(1e-3)
        / 2.0;
    let xmax = r
        .memcpy
        .iter()
        .map(|(s, _)| *s as f64)
        .fold(128.0, f64::max)
        * 1.5;
    let root = SVGBackend::new(&path, (960, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "pvnet throughput vs frame size (two processes, one run)",
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d((40f64..xmax).log_scale(), (ymin..ymax).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("frame size (bytes)")
        .y_desc("Gbit/s")
        .draw()?;
    for (i, (name, pts)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let style = if name.starts_with("pvnet") {
            color.stroke_width(2)
        } else {
            color.stroke_width(3)
        };
        chart
            .draw_series(LineSeries::new(pts.clone(), style))?
            .label(name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3))
            });
        chart.draw_series(pts.iter().map(|p| Circle::new(*p, 3, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    drop(chart);
    drop(root);
    Ok(path)
}

/// The polling curve: round-trip p50 and CPU per trip against the spin budget, one line per
/// gap, side by side.
fn polling_chart(
    opts: &Opts,
    points: &[PollPoint],
) -> Result<std::path::PathBuf, Box<dyn std::error::Error>> {
    let path = opts.out.join("polling.svg");
    let spins: Vec<Option<u64>> = crate::polling::SPINS.to_vec();
    let x_of = |p: &PollPoint| spins.iter().position(|s| *s == p.spin_us).unwrap_or(0) as f64;
    let label = |x: &f64| {
        (0..spins.len())
            .find(|&k| (k as f64 - x).abs() < 1e-6)
            .map_or(String::new(), |k| {
                spins[k].map_or("always".into(), |v| format!("{v} us"))
            })
    };
    let root = SVGBackend::new(&path, (1100, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(550);
    let p50_us: fn(&PollPoint) -> f64 = |p| p.p50_ns as f64 / 1e3;
    let cpu_us: fn(&PollPoint) -> f64 = |p| p.cpu_ns_per_trip / 1e3;
    let panels = [
        (&left, "64 B round trip, p50", p50_us),
        (&right, "CPU of both processes per trip", cpu_us),
    ];
    for (area, title, f) in panels {
        let ys: Vec<f64> = points.iter().map(f).collect();
        // Room above the highest point for the legend.
        let ymax = ys.iter().copied().fold(1.0, f64::max) * 12.0;
        let ymin = ys.iter().copied().fold(ymax, f64::min).max(0.01) / 2.0;
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(60)
            .build_cartesian_2d(
                -0.2f64..(spins.len() as f64 - 0.8),
                (ymin..ymax).log_scale(),
            )?;
        chart
            .configure_mesh()
            .x_labels(spins.len())
            .x_label_formatter(&label)
            .x_desc("spin budget, both sides")
            .y_desc("us (log)")
            .draw()?;
        for (i, gap) in crate::polling::GAPS.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let pts: Vec<(f64, f64)> = points
                .iter()
                .filter(|p| p.gap_us == *gap)
                .map(|p| (x_of(p), f(p)))
                .collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?
                .label(format!("{gap} us between trips"))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3))
                });
            chart.draw_series(pts.iter().map(|p| Circle::new(*p, 3, color.filled())))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    drop(left);
    drop(right);
    drop(root);
    Ok(path)
}
