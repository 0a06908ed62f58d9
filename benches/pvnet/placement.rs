//! Where the pair's two CPUs were while a run was measured: the placement probe's samples
//! (`probe.rs`) split into near and far, and a run called near, far or mixed by the samples
//! over it. No system calls and no clock of its own, so `tests/bench_stats.rs` includes this
//! file to test it.

use std::time::Instant;

/// Which placement a run or a second was measured in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    Near,
    Far,
    /// The samples over it disagree, or there were none.
    Mixed,
    /// The samples fell in one group: there is no near or far to tell apart.
    One,
}

impl Placement {
    pub fn name(self) -> &'static str {
        match self {
            Placement::Near => "near",
            Placement::Far => "far",
            Placement::Mixed => "mixed",
            Placement::One => "one",
        }
    }
}

/// The probe's samples over a whole run (in time order, each at a `T`: an `Instant`, or
/// seconds of Unix time as the probe role prints them), and where they split into near and
/// far.
#[derive(Debug)]
pub struct Placements<T = Instant> {
    samples: Vec<(T, f64)>,
    /// The round trips alone, sorted.
    sorted: Vec<f64>,
    /// Round trips above this are far; `None` when the samples do not fall in two groups.
    split: Option<f64>,
    /// Whether the probe ran at real-time priority, if known.
    realtime: Option<bool>,
}

impl<T: Copy + PartialOrd> Placements<T> {
    /// The samples in time order, and whether the probe ran at real-time priority (`None`:
    /// not known).
    pub fn new(samples: Vec<(T, f64)>, realtime: Option<bool>) -> Self {
        let mut sorted: Vec<f64> = samples.iter().map(|s| s.1).collect();
        sorted.sort_by(f64::total_cmp);
        Self {
            split: split(&sorted),
            sorted,
            samples,
            realtime,
        }
    }

    /// The samples, in time order: (when, round trip in ns).
    pub fn samples(&self) -> &[(T, f64)] {
        &self.samples
    }

    /// Whether the samples fell in two groups.
    pub fn bimodal(&self) -> bool {
        self.split.is_some()
    }

    /// The placement over `from..to`: the samples inside it and the nearest one on either
    /// side must all agree (none at all is mixed). When the samples fell in one group, every
    /// span is `One`: a machine that never moved and one whose load smeared the round trips
    /// (no factor-2 gap) look alike, and neither is called near.
    pub fn over(&self, from: T, to: T) -> Placement {
        let Some(split) = self.split else {
            return Placement::One;
        };
        let before = self.samples.iter().rev().find(|s| s.0 < from);
        let after = self.samples.iter().find(|s| s.0 > to);
        let inside = self.samples.iter().filter(|s| s.0 >= from && s.0 <= to);
        let mut far = 0;
        let mut near = 0;
        for s in before.into_iter().chain(inside).chain(after) {
            if s.1 > split {
                far += 1;
            } else {
                near += 1;
            }
        }
        match (near, far) {
            (n, 0) if n > 0 => Placement::Near,
            (0, f) if f > 0 => Placement::Far,
            _ => Placement::Mixed,
        }
    }

    /// The share of the samples inside `from..=to` that were near, if there were any and
    /// they split into near and far at all.
    pub fn near_share(&self, from: T, to: T) -> Option<f64> {
        let split = self.split?;
        let (mut inside, mut near) = (0usize, 0usize);
        for s in self.samples.iter().filter(|s| s.0 >= from && s.0 <= to) {
            inside += 1;
            near += usize::from(s.1 <= split);
        }
        (inside > 0).then(|| near as f64 / inside as f64)
    }

    /// One paragraph on what the probe saw.
    pub fn describe(&self) -> String {
        let n = self.samples.len();
        let prio = match self.realtime {
            Some(true) => " at real-time priority",
            Some(false) => {
                " at normal priority (SCHED_FIFO refused: numbers may include waits for a CPU)"
            }
            None => "",
        };
        if n == 0 {
            return "placement: no samples".into();
        }
        let ns = &self.sorted;
        match self.split {
            None => format!(
                "placement: one group, cache-line round trip {:.0} ns median ({:.0}-{:.0}) over \
                 {n} samples{prio}",
                ns[n / 2],
                ns[0],
                ns[n - 1]
            ),
            Some(split) => {
                let k = ns.partition_point(|&x| x <= split);
                let (near, far) = ns.split_at(k);
                format!(
                    "placement: cache-line round trip between the pair's CPUs, {n} \
                     samples{prio}: near {:.0}% of them ({:.0} ns median), far {:.0}% ({:.0} ns \
                     median); split at {split:.0} ns",
                    100.0 * near.len() as f64 / n as f64,
                    near[near.len() / 2],
                    100.0 * far.len() as f64 / n as f64,
                    far[far.len() / 2],
                )
            }
        }
    }
}

/// Samples that make a group of their own in a long run, whatever its share: two seconds of
/// the probe (`probe.rs`, ten samples a second). A share alone missed short far spells: in a
/// 14-minute run, memif's two-second readings at 1500 B fell into far placement in four
/// rounds of six, yet under 5% of the samples were far, so the run was called one group and
/// those readings counted as near (BENCHMARKS.md, "Copy as you parse").
pub const GROUP_SAMPLES: usize = 20;

/// How far apart two groups' middles must lie to be two placements: the far group's lower
/// quartile at least this many times the near group's upper quartile. This machine's two
/// modes are 6x apart (75 and 450 ns, quartiles about 85 and 420: 5x); round trips smeared
/// by load over one range (the CI smoke run saw 31-716 ns) split at their middle come out
/// at about 2x.
pub const SEPARATION: f64 = 3.0;

/// Where sorted round trips split into two groups. The cut is Otsu's: the one that leaves
/// the two sides' logarithms the least spread within each, among cuts with enough samples on
/// each side ([`GROUP_SAMPLES`] or 5% of them, whichever is fewer, and at least two); it
/// counts as a split when the sides lie [`SEPARATION`] apart, quartile to quartile. The
/// split is the geometric middle of the two samples either side of the cut. `None` for one
/// group, too few samples, or a round trip that is not positive.
///
/// A gap between neighbouring samples (the first rule, a factor 2) failed once stray
/// samples bridged it: a 14-minute run with a third of its samples far had 17 samples at
/// 100-200 ns and 3 at 300-350, and was called one group.
pub fn split(sorted: &[f64]) -> Option<f64> {
    let n = sorted.len();
    let least = (n / 20).clamp(2, GROUP_SAMPLES);
    if n < 2 * least || sorted[0] <= 0.0 {
        return None;
    }
    let logs: Vec<f64> = sorted.iter().map(|x| x.ln()).collect();
    // Prefix sums of the logarithms and their squares: each cut's spread in O(1).
    let (mut sum, mut sq) = (vec![0.0; n + 1], vec![0.0; n + 1]);
    for (i, &l) in logs.iter().enumerate() {
        sum[i + 1] = sum[i] + l;
        sq[i + 1] = sq[i] + l * l;
    }
    // Within-group sum of squared deviations of `[a, b)`.
    let within = |a: usize, b: usize| {
        let (s, q, k) = (sum[b] - sum[a], sq[b] - sq[a], (b - a) as f64);
        q - s * s / k
    };
    let cut = (least..=n - least)
        .min_by(|&i, &j| (within(0, i) + within(i, n)).total_cmp(&(within(0, j) + within(j, n))))?;
    let (near, far) = sorted.split_at(cut);
    let near_upper = near[near.len() * 3 / 4];
    let far_lower = far[far.len() / 4];
    (far_lower >= SEPARATION * near_upper).then(|| (sorted[cut] * sorted[cut - 1]).sqrt())
}
