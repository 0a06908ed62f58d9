//! The placement probe's split between near and far (`benches/pvnet/split.rs`), on round
//! trips like those measured on this project's machines.

#[path = "../benches/pvnet/split.rs"]
mod split;

use split::split;

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

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
