//! Parameter importances: for each parameter, the share of the variance of the complete
//! trials' values that its value explains, grouping numeric values into quantile bins (about 5 trials each, 2 to 10 bins) and
//! choices by choice: ε² = (SS_between - (k - 1) MS_within) / (SS_total + MS_within), the
//! correlation ratio η² corrected for the share that k groups explain by chance (0 for a
//! parameter that does not matter), clipped at 0 and normalized to sum to 1. Simpler than fANOVA, and like it a first-order measure: it
//! does not see interactions.

use std::collections::BTreeMap;

use sluice_store::{TrialRecord, TrialState};

use crate::space::Space;

pub fn importances(space: &Space, trials: &[TrialRecord]) -> Vec<(String, f64)> {
    let complete: Vec<&TrialRecord> =
        trials.iter().filter(|t| t.state == TrialState::Complete && t.value.is_some_and(f64::is_finite)).collect();
    let mut raw: Vec<(String, f64)> = space
        .params
        .iter()
        .map(|p| {
            let mut points: Vec<(f64, f64)> = complete
                .iter()
                .filter_map(|t| t.params.get(&p.name).and_then(|v| p.internal(v)).map(|x| (x, t.value.unwrap_or(0.0))))
                .collect();
            if points.len() < 3 {
                return (p.name.clone(), 0.0);
            }
            let mut groups: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
            if p.is_categorical() {
                for (x, y) in &points {
                    groups.entry(*x as usize).or_default().push(*y);
                }
            } else {
                points.sort_by(|a, b| a.0.total_cmp(&b.0));
                // About 5 trials per bin, 2 to 10 bins.
                let n = points.len();
                let bins = (n / 5).clamp(2, 10);
                for (i, (_, y)) in points.iter().enumerate() {
                    groups.entry(i * bins / n).or_default().push(*y);
                }
            }
            let all: Vec<f64> = groups.values().flatten().copied().collect();
            let mean = all.iter().sum::<f64>() / all.len() as f64;
            let total: f64 = all.iter().map(|y| (y - mean).powi(2)).sum();
            let between: f64 = groups
                .values()
                .map(|g| {
                    let m = g.iter().sum::<f64>() / g.len() as f64;
                    g.len() as f64 * (m - mean).powi(2)
                })
                .sum();
            let (n, k) = (all.len() as f64, groups.len() as f64);
            if total <= 0.0 || n <= k {
                return (p.name.clone(), 0.0);
            }
            let within = (total - between) / (n - k);
            (p.name.clone(), ((between - (k - 1.0) * within) / (total + within)).max(0.0))
        })
        .collect();
    let sum: f64 = raw.iter().map(|r| r.1).sum();
    if sum > 0.0 {
        raw.iter_mut().for_each(|r| r.1 /= sum);
    }
    raw.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    raw
}
