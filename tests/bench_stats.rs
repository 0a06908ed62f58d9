//! The benches' statistics, on values like those measured on this project's machines: the
//! medians, quartiles and goal verdicts of `benches/common/stats.rs`, and the placement probe's split
//! between near and far and its calls on runs (`benches/pvnet/placement.rs`), and the TCP
//! bench's fit of near and far rates and the A/B summary (`benches/pvnet/shell.rs`). The files are included by
//! path, so `cargo test --workspace` reaches them without running a bench.

// The included files' items are `pub` for the bench that owns them.
#![allow(unreachable_pub)]

#[path = "../benches/pvnet/placement.rs"]
mod placement;
// Its roles read files and exit the process; what they print is tested through `fit_report`.
#[allow(dead_code)]
#[path = "../benches/pvnet/shell.rs"]
mod shell;
#[path = "../benches/common/stats.rs"]
mod stats;

use placement::{Placement, Placements, split};
use stats::{
    Goal, LineFit, RatioSpread, Verdict, beyond_noise, median, median_of, quartile,
    ratio_with_error, sorted, verdict,
};

// The placement probe's split.

#[test]
fn two_groups_split_between_them() {
    // 80 ns near and 450 ns far, each with some spread, as an idle 2-vCPU machine showed.
    let mut v: Vec<f64> = (0..60).map(|i| 70.0 + f64::from(i % 30)).collect();
    v.extend((0..40).map(|i| 380.0 + f64::from(i % 12) * 10.0));
    let s = split(&sorted(v)).expect("two groups");
    assert!(s > 99.0 && s < 380.0, "split {s} between 99 and 380");
}

#[test]
fn one_group_has_no_split() {
    let v: Vec<f64> = (0..100).map(|i| 70.0 + f64::from(i % 40)).collect();
    assert_eq!(split(&sorted(v)), None);
}

#[test]
fn a_few_outliers_are_not_a_group() {
    // Two slow samples in a hundred (a preempted batch, say) are under the 5% each side needs.
    let mut v: Vec<f64> = (0..98).map(|i| 80.0 + f64::from(i % 10)).collect();
    v.extend([700.0, 750.0]);
    assert_eq!(split(&sorted(v)), None);
}

#[test]
fn a_short_far_spell_in_a_long_run_is_a_group() {
    // 14 minutes at ten samples a second, four seconds of it far: 0.5% of the samples.
    let mut v: Vec<f64> = (0..8360).map(|i| 70.0 + f64::from(i % 30)).collect();
    v.extend((0..40).map(|i| 400.0 + f64::from(i % 8) * 10.0));
    let s = split(&sorted(v)).expect("two groups");
    assert!(s > 99.0 && s < 400.0, "split {s} between 99 and 400");
}

#[test]
fn outliers_under_two_seconds_of_samples_are_not_a_group() {
    // Ten slow samples in a long run: fewer than the group a spell of two seconds makes.
    let mut v: Vec<f64> = (0..8000).map(|i| 70.0 + f64::from(i % 30)).collect();
    v.extend((0..10).map(|i| 700.0 + f64::from(i) * 50.0));
    assert_eq!(split(&sorted(v)), None);
}

#[test]
fn stray_samples_between_the_groups_do_not_hide_them() {
    // A 14-minute run's samples, as histogram buckets: near with a tail to 170 ns, three
    // stray samples at 320 ns, far at 350-500 ns; and 3% at 29-32 ns.
    let mut v = Vec::new();
    let mut bucket = |n: usize, lo: f64, hi: f64| {
        v.extend((0..n).map(|i| lo + (hi - lo) * i as f64 / n as f64));
    };
    bucket(275, 29.0, 32.0);
    bucket(5214, 50.0, 100.0);
    bucket(16, 100.0, 150.0);
    bucket(1, 170.0, 170.0);
    bucket(3, 320.0, 330.0);
    bucket(439, 350.0, 400.0);
    bucket(1246, 400.0, 450.0);
    bucket(1258, 450.0, 500.0);
    let s = split(&sorted(v)).expect("two groups");
    assert!(s > 170.0 && s < 320.0, "split {s} between 170 and 320");
}

#[test]
fn round_trips_smeared_over_one_range_are_one_group() {
    // Load spreading the round trips evenly (in logarithm) over 31-716 ns, as the CI smoke
    // run saw: no two placements in it.
    let v: Vec<f64> = (0..1000)
        .map(|i| 31.0 * (716.0f64 / 31.0).powf(f64::from(i) / 999.0))
        .collect();
    assert_eq!(split(&v), None);
}

#[test]
fn a_gap_under_a_factor_two_is_not_a_split() {
    let mut v = vec![100.0; 50];
    v.extend(vec![190.0; 50]);
    assert_eq!(split(&sorted(v)), None);
}

#[test]
fn too_few_or_bad_samples_give_no_split() {
    assert_eq!(split(&[]), None);
    assert_eq!(split(&[80.0, 450.0, 460.0]), None);
    assert_eq!(split(&sorted(vec![0.0, 0.0, 400.0, 400.0, 400.0])), None);
}

// Runs called near, far or mixed. Samples every second (Unix seconds, as the probe role
// prints them): near (80 ns) at 0-4 and 10-14, far (450 ns) at 5-9.

fn ten_far_between_near() -> Placements<f64> {
    let samples = (0..15)
        .map(|t| {
            let far = (5..10).contains(&t);
            (f64::from(t), if far { 450.0 } else { 80.0 })
        })
        .collect();
    Placements::new(samples, Some(true))
}

#[test]
fn a_run_inside_one_placement_takes_it() {
    let p = ten_far_between_near();
    assert!(p.bimodal());
    assert_eq!(p.over(0.5, 3.5), Placement::Near);
    assert_eq!(p.over(6.5, 7.5), Placement::Far);
    // No sample inside, but both neighbours agree.
    assert_eq!(p.over(11.2, 11.8), Placement::Near);
    assert_eq!(p.over(7.2, 7.8), Placement::Far);
}

#[test]
fn the_samples_are_kept_as_taken() {
    // What `probe.csv` is written from, so a run can be judged again: in time order.
    let p = ten_far_between_near();
    let s = p.samples();
    assert_eq!(s.len(), 15);
    assert_eq!(s[0], (0.0, 80.0));
    assert_eq!(s[5], (5.0, 450.0));
    assert!(s.windows(2).all(|w| w[0].0 < w[1].0));
}

#[test]
fn a_run_next_to_a_change_is_mixed() {
    let p = ten_far_between_near();
    // Every sample inside is far, but the one before is near: the change may have come
    // inside the run.
    assert_eq!(p.over(5.0, 8.5), Placement::Mixed);
    // And the one after.
    assert_eq!(p.over(6.5, 9.5), Placement::Mixed);
    assert_eq!(p.over(3.5, 10.5), Placement::Mixed);
    // Past the last sample there is no neighbour after, so the ones inside and before decide.
    assert_eq!(p.over(13.5, 20.0), Placement::Near);
    assert_eq!(p.over(-3.0, -1.0), Placement::Near);
}

#[test]
fn one_group_is_neither_near_nor_far() {
    // Round trips rising 8% a sample from 31 to about 620 ns, as the CI smoke run saw under
    // load (31-716 ns): no 2x gap.
    let samples = (0..40)
        .map(|t| (f64::from(t), 31.0 * 1.08f64.powi(t)))
        .collect();
    let p = Placements::new(samples, None);
    assert!(!p.bimodal());
    assert_eq!(p.over(3.5, 7.5), Placement::One);
    assert_eq!(p.near_share(3.5, 7.5), None);
    assert_eq!(Placement::Near.name(), "near");
    assert_eq!(Placement::Far.name(), "far");
    assert_eq!(Placement::Mixed.name(), "mixed");
    assert_eq!(Placement::One.name(), "one");
}

#[test]
fn the_near_share_counts_the_samples_inside_only() {
    let p = ten_far_between_near();
    // 3 and 4 near, 5, 6 and 7 far; the neighbours 2 and 8 are not counted.
    assert_eq!(p.near_share(2.5, 7.5), Some(0.4));
    assert_eq!(p.near_share(10.0, 14.0), Some(1.0));
    assert_eq!(p.near_share(5.0, 9.0), Some(0.0));
    assert_eq!(p.near_share(4.2, 4.8), None);
}

#[test]
fn the_description_says_what_the_probe_saw() {
    let d = ten_far_between_near().describe();
    assert!(d.contains("15 samples at real-time priority"), "{d}");
    assert!(
        d.contains("near 67% of them (80 ns median), far 33% (450 ns median)"),
        "{d}"
    );
    let one = Placements::new(vec![(0.0, 90.0); 4], Some(false)).describe();
    assert!(
        one.contains("one group") && one.contains("SCHED_FIFO refused"),
        "{one}"
    );
    let empty: Placements<f64> = Placements::new(Vec::new(), None);
    assert_eq!(empty.describe(), "placement: no samples");
}

// Medians and quartiles.

#[test]
fn medians_of_odd_even_and_no_values() {
    assert_eq!(median(&[1.0, 2.0, 7.0]), 2.0);
    assert_eq!(median(&[1.0, 2.0, 4.0, 7.0]), 3.0);
    assert_eq!(median(&[5.0]), 5.0);
    assert!(median(&[]).is_nan());
    assert_eq!(median_of(vec![7.0, 1.0, 4.0, 2.0]), 3.0);
    assert_eq!(sorted(vec![3.0, f64::NAN, 1.0])[..2], [1.0, 3.0]);
}

#[test]
fn quartiles_by_nearest_rank() {
    let v: Vec<f64> = (1..=8).map(f64::from).collect();
    assert_eq!(
        (quartile(&v, 1), quartile(&v, 2), quartile(&v, 3)),
        (2.0, 4.0, 6.0)
    );
    let v = [1.0, 2.0, 3.0, 4.0, 5.0];
    assert_eq!((quartile(&v, 1), quartile(&v, 3)), (2.0, 4.0));
    assert_eq!((quartile(&[9.0], 1), quartile(&[9.0], 3)), (9.0, 9.0));
    assert!(quartile(&[], 1).is_nan());
}

// Goal verdicts.

#[test]
fn a_verdict_needs_both_ends_on_one_side() {
    let at_least = Goal::AtLeast(1.0);
    assert_eq!(verdict(1.0, 1.4, at_least), Verdict::Met);
    assert_eq!(verdict(0.5, 0.99, at_least), Verdict::NotMet);
    assert_eq!(verdict(0.9, 1.1, at_least), Verdict::Inconclusive);
    let at_most = Goal::AtMost(1.5);
    assert_eq!(verdict(1.1, 1.5, at_most), Verdict::Met);
    assert_eq!(verdict(1.6, 2.0, at_most), Verdict::NotMet);
    assert_eq!(verdict(1.4, 1.6, at_most), Verdict::Inconclusive);
    assert_eq!(verdict(f64::NAN, 2.0, at_least), Verdict::Inconclusive);
    assert!(!at_least.met_by(f64::NAN));
    assert_eq!(at_least.describe(), ">= 1x");
    assert_eq!(Goal::AtMost(1.5).describe(), "<= 1.5x");
}

#[test]
fn rates_measured_apart_compare_by_quartiles() {
    // pvnet near at 64 B against memif near, as 2026-12-07's run had them (Mpps).
    let pvnet = sorted(vec![10.0, 10.4, 10.2, 11.0, 15.6, 10.1]);
    let memif = sorted(vec![18.0, 17.6, 18.4, 18.1, 17.9]);
    let s = RatioSpread::new(&pvnet, &memif);
    assert!((s.mid - 10.3 / 18.0).abs() < 1e-12, "{s:?}");
    assert!((s.lo - 10.1 / 18.1).abs() < 1e-12, "{s:?}");
    assert!((s.hi - 11.0 / 17.9).abs() < 1e-12, "{s:?}");
    assert_eq!(s.verdict(Goal::AtLeast(1.0)), Verdict::NotMet);
    // Overlapping rates: the spread straddles 1.
    let a = sorted(vec![9.0, 10.0, 11.0, 12.0]);
    let b = sorted(vec![9.5, 10.0, 10.5, 11.0]);
    let s = RatioSpread::new(&a, &b);
    assert!(s.lo < 1.0 && s.hi > 1.0, "{s:?}");
    assert_eq!(s.verdict(Goal::AtLeast(1.0)), Verdict::Inconclusive);
    // Clearly ahead.
    let s = RatioSpread::new(&sorted(vec![20.0, 21.0, 22.0]), &b);
    assert_eq!(s.verdict(Goal::AtLeast(1.5)), Verdict::Met);
    // Nothing measured on one side: no verdict.
    let s = RatioSpread::new(&[], &b);
    assert_eq!(s.verdict(Goal::AtLeast(1.0)), Verdict::Inconclusive);
}

// The TCP bench's fit of near and far rates.

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

#[test]
fn a_line_through_exact_points_has_no_error() {
    // 8 Gbit/s far, 20 near: a transfer near for a share s carries 8 + 12 s.
    let pts: Vec<(f64, f64)> = [0.1, 0.35, 0.5, 0.8]
        .iter()
        .map(|&s| (s, 8.0 + 12.0 * s))
        .collect();
    let f = LineFit::new(&pts).expect("a fit");
    assert!(close(f.at0.0, 8.0) && close(f.at1.0, 20.0), "{f:?}");
    assert!(f.at0.1 < 1e-6 && f.at1.1 < 1e-6, "{f:?}");
}

#[test]
fn a_noisy_fit_matches_an_independent_computation() {
    // Expected values from the textbook formulas, computed apart (Python, 2026-12-07).
    let f = LineFit::new(&[(0.2, 7.7), (0.5, 8.3), (0.9, 9.8), (0.4, 8.4), (0.7, 8.9)]).unwrap();
    assert!(
        close(f.at0.0, 7.092_466) && close(f.at0.1, 0.229_162),
        "{f:?}"
    );
    assert!(
        close(f.at1.0, 9.921_233) && close(f.at1.1, 0.201_275),
        "{f:?}"
    );
    // The error grows away from the points: the far end is further from their mean share.
    assert!(f.at0.1 > f.at1.1);
    let (q, e) = ratio_with_error((10.0, 0.5), (20.0, 1.0)).unwrap();
    assert!(close(q, 0.5) && close(e, 0.5 * (2.0f64 * 0.05 * 0.05).sqrt()));
    assert_eq!(ratio_with_error((-1.0, 0.5), (20.0, 1.0)), None);
    assert_eq!(ratio_with_error((1.0, 0.5), (0.0, 1.0)), None);
}

#[test]
fn too_few_points_or_one_share_give_no_fit() {
    assert_eq!(LineFit::new(&[(0.2, 7.0), (0.8, 9.0)]), None);
    assert_eq!(LineFit::new(&[(0.5, 7.0), (0.5, 9.0), (0.5, 8.0)]), None);
    assert_eq!(
        LineFit::new(&[(f64::NAN, 7.0), (0.5, 9.0), (0.6, 8.0)]),
        None
    );
}

#[test]
fn the_fit_report_gives_both_paths_and_their_ratio() {
    let text = "on,1 pvnet 0.2 7.7\non,1 pvnet 0.5 8.3\non,1 pvnet 0.9 9.8\n\
                on,1 pvnet 0.4 8.4\non,1 pvnet 0.7 8.9\n\
                on,1 veth 0.1 10.4\non,1 veth 0.6 15.3\non,1 veth 0.8 18.0\n\
                on,1 veth 0.3 12.9\non,1 veth 0.95 19.4\n\
                a malformed line\noff,1 pvnet 0.5 1.0\noff,1 veth 0.5 3.0\n";
    let r = shell::fit_report(text);
    let lines: Vec<&str> = r.lines().collect();
    assert_eq!(
        lines,
        [
            "  fitted over all transfers (Gbit/s, +- a standard error), offloads on,1:",
            "    near: pvnet 9.92 +- 0.20, veth 19.90 +- 0.26, pvnet/veth 0.499 +- 0.012",
            "    far : pvnet 7.09 +- 0.23, veth 9.45 +- 0.30, pvnet/veth 0.750 +- 0.034",
            "  offloads off,1: too few transfers, or too little spread in their shares, to fit \
             near and far rates",
        ],
        "{r}"
    );
}

// The A/B rule (`benches/pvnet/ab.sh`).

#[test]
fn an_ab_difference_must_clear_the_aa_noise() {
    let aa = sorted(vec![0.95, 0.98, 1.0, 1.02, 1.04]);
    // Noise: the A/A quartiles stray 0.02 from 1.
    assert!(beyond_noise(
        &sorted(vec![1.03, 1.05, 1.06, 1.08, 1.1]),
        &aa
    ));
    assert!(beyond_noise(
        &sorted(vec![0.9, 0.92, 0.95, 0.97, 0.99]),
        &aa
    ));
    // A median well above 1 is not enough when the lower quartile is inside the noise.
    assert!(!beyond_noise(&sorted(vec![0.97, 0.99, 1.1, 1.2, 1.3]), &aa));
    // Identical builds: an A/A ratio far from 1 on one side (drift within a round) widens the
    // noise on both.
    let drifting = sorted(vec![1.1, 1.12, 1.15, 1.2, 1.22]);
    assert!(!beyond_noise(
        &sorted(vec![0.88, 0.9, 0.92, 0.95, 0.97]),
        &drifting
    ));
    let drifting_down = sorted(vec![0.8, 0.85, 0.9, 1.0, 1.01]);
    assert!(!beyond_noise(
        &sorted(vec![1.05, 1.06, 1.08, 1.1, 1.12]),
        &drifting_down
    ));
}

#[test]
fn the_ab_summary_reads_the_runs_and_their_placements() {
    // Two configurations, four rounds; the rx round trips are latencies (ping: lower is
    // better). Round 4 of tx lacks its new run and does not count.
    let mut csv = String::from("round,version,mode,size,fps\n");
    for (r, old, new, old2) in [
        (1, 100.0, 110.0, 101.0),
        (2, 98.0, 109.0, 99.0),
        (3, 102.0, 113.0, 100.0),
        (4, 100.0, 0.0, 100.0),
    ] {
        let new = if new > 0.0 {
            format!("{new}")
        } else {
            String::new()
        };
        csv += &format!("{r},old,tx,64,{old}\n{r},new,tx,64,{new}\n{r},old2,tx,64,{old2}\n");
        csv += &format!("{r},old,ping,64,2000\n{r},new,ping,64,2100\n{r},old2,ping,64,2010\n");
    }
    let placed: String = (1..=4)
        .flat_map(|r| ["old", "new", "old2"].map(|v| (r, v)))
        .map(|(r, v)| {
            let p = if r == 3 && v == "new" {
                "mixed"
            } else {
                "near"
            };
            format!("{r},{v},tx,64 {p}\n{r},{v},ping,64 near\n")
        })
        .collect();
    let r = shell::ab_summary(&csv, &placed);
    let lines: Vec<&str> = r.lines().filter(|l| l.starts_with("  ")).collect();
    assert_eq!(lines.len(), 6, "{r}");
    // tx: new/old 110/100.5, 109/98.5, 113/101 over three rounds, all beyond the A/A noise.
    assert!(
        lines[0].starts_with("  tx         64 B: new/old 1.107 ("),
        "{r}"
    );
    assert!(lines[0].ends_with("3 rounds: beyond noise"), "{r}");
    // ping: 2100 against about 2005: new is slower, so below 1.
    assert!(
        lines[1].starts_with("  ping       64 B: new/old 0.955 ("),
        "{r}"
    );
    assert!(lines[1].ends_with("4 rounds: beyond noise"), "{r}");
    // Near only: round 3's new run was mixed.
    assert!(r.contains("rounds whose three runs were all near:"), "{r}");
    assert!(
        lines[2].ends_with("2 rounds: too few rounds to tell"),
        "{r}"
    );
    assert!(lines[3].ends_with("4 rounds: beyond noise"), "{r}");
    assert_eq!(lines[4], "  tx         64 B: no complete round", "{r}");
    // Without placements, the summary stops after "all".
    let plain = shell::ab_summary(&csv, "");
    assert!(
        !plain.contains("near") && plain.lines().count() == 4,
        "{plain}"
    );
}
