//! Medians, quartiles and goal verdicts, shared by the benches: each includes this file by
//! path (`#[path] mod stats;`), and `tests/bench_stats.rs` tests it. No values are removed as
//! outliers: a noisy machine shows as a wide spread, not as a cleaner median.

// Each bench uses part of this file.
#![allow(dead_code)]

/// `v` sorted in the total order of `f64` (a NaN goes last).
pub(crate) fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

/// The median of sorted values: the middle one, or the mean of the middle two. NaN if there
/// are none.
pub(crate) fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => sorted[n / 2],
        _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// The median of unsorted values.
pub(crate) fn median_of(v: Vec<f64>) -> f64 {
    median(&sorted(v))
}

/// The `q`th quartile (1, 2 or 3) of sorted values by nearest rank: the smallest value with at
/// least `q` quarters of them at or below it. NaN if there are none.
pub(crate) fn quartile(sorted: &[f64], q: usize) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = (sorted.len() * q).div_ceil(4).saturating_sub(1);
    sorted[i.min(sorted.len() - 1)]
}

/// A goal on a ratio.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Goal {
    /// At least this much (throughput against a baseline).
    AtLeast(f64),
    /// At most this much (a round trip against a bound).
    AtMost(f64),
}

impl Goal {
    /// Whether the ratio `x` meets the goal (a NaN never does).
    pub(crate) fn met_by(self, x: f64) -> bool {
        match self {
            Goal::AtLeast(limit) => x >= limit,
            Goal::AtMost(limit) => x <= limit,
        }
    }

    /// As the harness prints it: ">= 1.5x".
    pub(crate) fn describe(self) -> String {
        match self {
            Goal::AtLeast(limit) => format!(">= {limit}x"),
            Goal::AtMost(limit) => format!("<= {limit}x"),
        }
    }
}

/// What a spread of ratios says about a goal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Both ends of the spread meet it.
    Met,
    /// Neither end does.
    NotMet,
    /// The spread straddles it (or an end is not a number).
    Inconclusive,
}

/// The verdict on a spread of ratios from `lo` to `hi`: met or not met only when both ends
/// agree, so a verdict never rests on the luckier rounds.
pub(crate) fn verdict(lo: f64, hi: f64, goal: Goal) -> Verdict {
    if lo.is_nan() || hi.is_nan() {
        return Verdict::Inconclusive;
    }
    match (goal.met_by(lo), goal.met_by(hi)) {
        (true, true) => Verdict::Met,
        (false, false) => Verdict::NotMet,
        _ => Verdict::Inconclusive,
    }
}

/// One set of rates against another, measured apart (so not paired by round): the ratio of
/// the medians, and a spread from the first set's lower quartile over the second's upper one
/// to its upper quartile over the second's lower one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct RatioSpread {
    pub(crate) lo: f64,
    pub(crate) mid: f64,
    pub(crate) hi: f64,
}

impl RatioSpread {
    /// `a` against `b`, both sorted; NaN throughout if either is empty.
    pub(crate) fn new(a: &[f64], b: &[f64]) -> Self {
        Self {
            lo: quartile(a, 1) / quartile(b, 3),
            mid: median(a) / median(b),
            hi: quartile(a, 3) / quartile(b, 1),
        }
    }

    /// The verdict of the whole spread.
    pub(crate) fn verdict(&self, goal: Goal) -> Verdict {
        verdict(self.lo, self.hi, goal)
    }
}

/// A least-squares line through points `(x, y)` with `x` in `0..=1`, read at its two ends,
/// each with its standard error (from the residuals, n - 2 degrees of freedom). The TCP bench
/// fits each path's transfers this way: `x` is a transfer's share of near samples and `y` its
/// rate, so the line's value at 1 is the path's near rate and at 0 its far rate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct LineFit {
    /// The value at `x = 0` and its standard error.
    pub(crate) at0: (f64, f64),
    /// The value at `x = 1` and its standard error.
    pub(crate) at1: (f64, f64),
}

impl LineFit {
    /// The fit, or `None` with fewer than three points or when `x` hardly varies (a line
    /// through one `x` has no slope).
    pub(crate) fn new(points: &[(f64, f64)]) -> Option<Self> {
        if points.len() < 3 {
            return None;
        }
        let n = points.len() as f64;
        let (sx, sy) = points
            .iter()
            .fold((0.0, 0.0), |(a, b), &(x, y)| (a + x, b + y));
        let (mx, my) = (sx / n, sy / n);
        // Sums of squares about the means (not `n * sum(x^2) - sum(x)^2`, which cancels).
        let sxx: f64 = points.iter().map(|&(x, _)| (x - mx).powi(2)).sum();
        let sxy: f64 = points.iter().map(|&(x, y)| (x - mx) * (y - my)).sum();
        if sxx.is_nan() || sxx <= 1e-9 * n {
            return None;
        }
        let slope = sxy / sxx;
        let at0 = my - slope * mx;
        let rss: f64 = points
            .iter()
            .map(|&(x, y)| (y - at0 - slope * x).powi(2))
            .sum();
        let sigma = (rss / (n - 2.0)).sqrt();
        let err = |x: f64| sigma * (1.0 / n + (x - mx).powi(2) / sxx).sqrt();
        Some(Self {
            at0: (at0, err(0.0)),
            at1: (at0 + slope, err(1.0)),
        })
    }
}

/// `a / b` and its first-order standard error, taking the two as independent; `None` unless
/// both are positive (a fitted rate can come out at or below zero).
pub(crate) fn ratio_with_error((a, ea): (f64, f64), (b, eb): (f64, f64)) -> Option<(f64, f64)> {
    (a > 0.0 && b > 0.0).then(|| {
        let q = a / b;
        (q, q * ((ea / a).powi(2) + (eb / b).powi(2)).sqrt())
    })
}

/// The A/B rule (`benches/pvnet/ab.sh`): per-round ratios new/old (`ab`) against the A/A
/// ratios of the old build with itself (`aa`), both sorted, above 1 meaning "new is better".
/// The noise is how far the A/A quartiles stray from 1, either way; a difference is claimed
/// only when both new/old quartiles lie further from 1 than that, on one side.
pub(crate) fn beyond_noise(ab: &[f64], aa: &[f64]) -> bool {
    let noise = (1.0 - quartile(aa, 1)).max(quartile(aa, 3) - 1.0).max(0.0);
    quartile(ab, 1) > 1.0 + noise || quartile(ab, 3) < 1.0 - noise
}
