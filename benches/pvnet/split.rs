//! Where a placement probe's round trips split into near and far (`placement.rs`); its own
//! file so that `tests/bench_split.rs` can test it without the rest of the harness.

/// Where sorted round trips split into two groups: the widest gap between neighbours (as a
/// ratio) with at least 5% of the samples (and two) on each side, if it is at least a factor
/// 2; the split is the gap's geometric middle. `None` for one group, too few samples, or a
/// round trip that is not positive.
pub(crate) fn split(sorted: &[f64]) -> Option<f64> {
    let n = sorted.len();
    let least = (n / 20).max(2);
    if n < 2 * least || sorted[0] <= 0.0 {
        return None;
    }
    (least..=n - least)
        .map(|i| (sorted[i] / sorted[i - 1], i))
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .filter(|&(gap, _)| gap >= 2.0)
        .map(|(_, i)| (sorted[i] * sorted[i - 1]).sqrt())
}
