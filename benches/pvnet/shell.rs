//! The roles the shell benches call through the harness binary, so that the rules they
//! print by live once, in Rust, with tests (`tests/bench_stats.rs`): `--role classify` places
//! time windows with the probe's samples (`benches/pvnet/ab.sh`, `benches/tcp/run.sh`),
//! `--role fit` fits near and far rates (`benches/tcp/run.sh`), and `--role ab-summary` gives
//! an A/B run's verdicts (`benches/pvnet/ab.sh`). `--role probe` is in `probe.rs`.

use std::fmt::Write as _;

use crate::placement::Placements;
use crate::stats::{LineFit, beyond_noise, median, quartile, ratio_with_error, sorted};

/// A file's text, or exit 2 with what went wrong.
fn read(role: &str, path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| {
        eprintln!("{role}: {path}: {e}");
        std::process::exit(2);
    })
}

/// The fields of `line` that are numbers.
fn numbers(line: &str) -> Vec<f64> {
    line.split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect()
}

/// `--role classify SAMPLES WINDOWS`, for the shell benches: reads the probe role's samples
/// and a file of windows (any fields, the last two a window's start and end in Unix seconds)
/// and prints a first line "# " and what the probe saw, then every window's line followed by
/// the share of the samples inside it that were near ("-" if none, or if the samples did not
/// split into near and far) and its placement (as the harness decides it: every sample inside
/// and the one either side agree; "one" when there was no split).
pub fn run_classify(args: &[String]) {
    let (Some(samples), Some(windows)) = (args.get(3), args.get(4)) else {
        eprintln!("classify: usage: --role classify SAMPLES WINDOWS");
        std::process::exit(2);
    };
    let mut points: Vec<(f64, f64)> = read("classify", samples)
        .lines()
        .filter_map(|l| match numbers(l)[..] {
            [t, ns] => Some((t, ns)),
            _ => None,
        })
        .collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    let p = Placements::new(points, None);
    println!("# {}", p.describe());
    for line in read("classify", windows).lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let times = f[f.len().saturating_sub(2)..]
            .iter()
            .filter_map(|x| x.parse::<f64>().ok())
            .collect::<Vec<_>>();
        let [from, to] = times[..] else {
            continue;
        };
        let share = p
            .near_share(from, to)
            .map_or("-".into(), |s| format!("{s:.2}"));
        println!("{line} {share} {}", p.over(from, to).name());
    }
}

/// `--role fit POINTS`, for `benches/tcp/run.sh`: reads lines "KEY PATH SHARE RATE" (one
/// transfer each: a configuration such as `on,1`, `pvnet` or `veth`, its share of near
/// samples, its Gbit/s) and prints, per configuration, both paths' near and far rates fitted
/// by least squares ([`LineFit`]) and pvnet/veth near and far, each with its standard error.
pub fn run_fit(args: &[String]) {
    let Some(points) = args.get(3) else {
        eprintln!("fit: usage: --role fit POINTS");
        std::process::exit(2);
    };
    print!("{}", fit_report(&read("fit", points)));
}

/// What `--role fit` prints for the text of a points file.
pub fn fit_report(text: &str) -> String {
    // (configuration, path) -> (share, rate), configurations in the order they first appear.
    let mut keys: Vec<&str> = Vec::new();
    let mut points: Vec<(&str, &str, (f64, f64))> = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [key, path, share, rate] = f[..] else {
            continue;
        };
        let (Ok(share), Ok(rate)) = (share.parse::<f64>(), rate.parse::<f64>()) else {
            continue;
        };
        if !keys.contains(&key) {
            keys.push(key);
        }
        points.push((key, path, (share, rate)));
    }
    let mut out = String::new();
    for key in keys {
        let fit = |path: &str| {
            let p: Vec<(f64, f64)> = points
                .iter()
                .filter(|q| q.0 == key && q.1 == path)
                .map(|q| q.2)
                .collect();
            LineFit::new(&p)
        };
        let (Some(pvnet), Some(veth)) = (fit("pvnet"), fit("veth")) else {
            let _ = writeln!(
                out,
                "  offloads {key}: too few transfers, or too little spread in their shares, to \
                 fit near and far rates"
            );
            continue;
        };
        let _ = writeln!(
            out,
            "  fitted over all transfers (Gbit/s, +- a standard error), offloads {key}:"
        );
        for (name, p, v) in [("near", pvnet.at1, veth.at1), ("far ", pvnet.at0, veth.at0)] {
            let ratio = ratio_with_error(p, v)
                .map_or("n/a (a rate at or below 0)".into(), |(q, e)| {
                    format!("{q:.3} +- {e:.3}")
                });
            let _ = writeln!(
                out,
                "    {name}: pvnet {:.2} +- {:.2}, veth {:.2} +- {:.2}, pvnet/veth {ratio}",
                p.0, p.1, v.0, v.1
            );
        }
    }
    out
}

/// `--role ab-summary CSV PLACED`, for `benches/pvnet/ab.sh`: reads its CSV
/// (`round,version,mode,size,value`, version `old`, `new` or `old2`) and its runs' placements
/// (`round,version,mode,size placement` lines; an empty file when the probe did not run) and
/// prints the summary (see [`ab_summary`]).
pub fn run_ab_summary(args: &[String]) {
    let (Some(csv), Some(placed)) = (args.get(3), args.get(4)) else {
        eprintln!("ab-summary: usage: --role ab-summary CSV PLACED");
        std::process::exit(2);
    };
    print!(
        "{}",
        ab_summary(&read("ab-summary", csv), &read("ab-summary", placed))
    );
}

/// An A/B run's summary: per configuration (mode and size, in the order they first appear),
/// over the rounds with all three runs measured, new / old (old: the mean of the round's two
/// old runs, so drift within a round cancels) and the A/A ratio old2 / old, each as a median
/// and quartiles, and whether the difference is beyond the A/A noise ([`beyond_noise`];
/// not told under three rounds).
/// Then the same over the rounds whose three runs were all near, and all far, when
/// placements are given. For round trips (`ping` modes, where the value is a latency) the
/// ratios are inverted, so above 1 always means "new is better".
pub fn ab_summary(csv: &str, placed: &str) -> String {
    // (round, mode, size, version) -> value.
    let mut values: Vec<([&str; 4], f64)> = Vec::new();
    let mut configs: Vec<(&str, &str)> = Vec::new();
    let mut rounds: Vec<&str> = Vec::new();
    for line in csv.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let [round, version, mode, size, value] = f[..] else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        if !configs.contains(&(mode, size)) {
            configs.push((mode, size));
        }
        if !rounds.contains(&round) {
            rounds.push(round);
        }
        values.push(([round, mode, size, version], value));
    }
    let placement = |round: &str, version: &str, mode: &str, size: &str| {
        let key = format!("{round},{version},{mode},{size}");
        placed.lines().find_map(|l| {
            let (k, p) = l.split_once(' ')?;
            (k == key).then(|| p.trim())
        })
    };
    let mut out = String::new();
    for want in [None, Some("near"), Some("far")] {
        match want {
            None => out.push_str(
                "\nsummary: new/old (old = the mean of the two old runs) and the A/A noise floor \
                 (old2/old), median (quartiles); > 1: new is better\n",
            ),
            Some(_) if placed.trim().is_empty() => continue,
            Some(w) => {
                let _ = writeln!(out, "\nrounds whose three runs were all {w}:");
            }
        }
        for &(mode, size) in &configs {
            let lower = mode.starts_with("ping");
            let mut ab = Vec::new();
            let mut aa = Vec::new();
            for &round in &rounds {
                let get = |v: &str| {
                    values
                        .iter()
                        .find(|(k, _)| *k == [round, mode, size, v])
                        .map(|&(_, x)| x)
                        .filter(|&x| x > 0.0)
                };
                let (Some(o1), Some(n), Some(o2)) = (get("old"), get("new"), get("old2")) else {
                    continue;
                };
                if let Some(w) = want
                    && ["old", "new", "old2"]
                        .iter()
                        .any(|v| placement(round, v, mode, size) != Some(w))
                {
                    continue;
                }
                let o = f64::midpoint(o1, o2);
                ab.push(if lower { o / n } else { n / o });
                aa.push(if lower { o1 / o2 } else { o2 / o1 });
            }
            if ab.is_empty() {
                let _ = writeln!(out, "  {mode:<6} {size:>6} B: no complete round");
                continue;
            }
            let (ab, aa) = (sorted(ab), sorted(aa));
            // Quartiles of one or two rounds say nothing of the noise.
            let verdict = if ab.len() < 3 {
                "too few rounds to tell"
            } else if beyond_noise(&ab, &aa) {
                "beyond noise"
            } else {
                "within noise"
            };
            let _ = writeln!(
                out,
                "  {mode:<6} {size:>6} B: new/old {:.3} ({:.3}-{:.3}), A/A {:.3} ({:.3}-{:.3}), {} \
                 rounds: {verdict}",
                median(&ab),
                quartile(&ab, 1),
                quartile(&ab, 3),
                median(&aa),
                quartile(&aa, 1),
                quartile(&aa, 3),
                ab.len()
            );
        }
    }
    out
}
