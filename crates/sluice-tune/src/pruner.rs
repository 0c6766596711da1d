//! Pruners decide, each time a trial reports an intermediate value, whether to stop it. They
//! read only the trials' intermediate values, so any worker decides the same way from the same
//! history.

use serde::{Deserialize, Serialize};
use sluice_core::rng::mix;
use sluice_store::{TrialRecord, TrialState};

use crate::Direction;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", deny_unknown_fields)]
pub enum PrunerSpec {
    #[default]
    None,
    /// Stop a trial whose best value so far is worse than the median of the complete trials'
    /// values at the same step (Google Vizier's median stopping rule; Optuna's `MedianPruner`).
    Median {
        /// Complete trials needed before anything is pruned.
        #[serde(default = "default_median_startup")]
        startup_trials: usize,
        /// Steps a trial runs before it can be pruned.
        #[serde(default)]
        warmup_steps: u64,
    },
    /// Asynchronous successive halving (Li et al. 2020): rungs at `min_resource * factor^k`
    /// steps; at each rung a trial continues only if it is in the best `1/factor` of all
    /// trials that reached the rung (the best one always continues).
    Asha {
        /// Steps before the first rung; by default 1/100 of the first complete trial's steps.
        #[serde(default)]
        min_resource: Option<u64>,
        #[serde(default = "default_asha_factor")]
        reduction_factor: u64,
    },
    /// Hyperband (Li et al. 2018) as asynchronous brackets: successive halving with different
    /// first rungs, trials spread over brackets in proportion to the bracket's budget and
    /// compared only within their bracket.
    Hyperband {
        #[serde(default = "one")]
        min_resource: u64,
        /// The most steps a trial runs (the boosting rounds); by default the first complete
        /// trial's steps.
        #[serde(default)]
        max_resource: Option<u64>,
        #[serde(default = "default_hyperband_factor")]
        reduction_factor: u64,
    },
}

fn default_median_startup() -> usize {
    5
}
fn default_asha_factor() -> u64 {
    4
}
fn default_hyperband_factor() -> u64 {
    3
}
fn one() -> u64 {
    1
}

/// The value a trial reported at `step` (or the first step after it).
fn value_at(t: &TrialRecord, step: u64) -> Option<f64> {
    let i = t.intermediate.partition_point(|(s, _)| *s < step);
    t.intermediate.get(i).map(|(_, v)| *v)
}

/// Steps of the lowest-numbered complete trial (how long a full trial runs).
fn full_steps(others: &[&TrialRecord]) -> Option<u64> {
    others
        .iter()
        .filter(|t| t.state == TrialState::Complete)
        .min_by_key(|t| t.number)
        .and_then(|t| t.intermediate.last().map(|(s, _)| *s))
}

impl PrunerSpec {
    /// Whether `trial` (running; its intermediate values include the one just reported) should
    /// stop, given every other trial of the study.
    pub fn should_prune(&self, trial: &TrialRecord, others: &[&TrialRecord], direction: Direction, seed: u64) -> bool {
        let Some(&(step, value)) = trial.intermediate.last() else { return false };
        if !value.is_finite() {
            return true;
        }
        match self {
            PrunerSpec::None => false,
            PrunerSpec::Median { startup_trials, warmup_steps } => {
                let complete: Vec<&&TrialRecord> = others.iter().filter(|t| t.state == TrialState::Complete).collect();
                if complete.len() < *startup_trials || step < *warmup_steps {
                    return false;
                }
                let mut at: Vec<f64> = complete
                    .iter()
                    .filter_map(|t| t.intermediate.iter().find(|(s, _)| *s == step).map(|(_, v)| direction.loss(*v)))
                    .collect();
                if at.is_empty() {
                    return false;
                }
                at.sort_by(f64::total_cmp);
                let m = at.len();
                let median = if m % 2 == 1 { at[m / 2] } else { 0.5 * (at[m / 2 - 1] + at[m / 2]) };
                let best = trial.intermediate.iter().map(|(_, v)| direction.loss(*v)).fold(f64::INFINITY, f64::min);
                best > median
            }
            PrunerSpec::Asha { min_resource, reduction_factor } => {
                let Some(r) = min_resource.or_else(|| full_steps(others).map(|s| (s / 100).max(1))) else {
                    return false;
                };
                successive_halving(trial, others.iter().copied(), r, *reduction_factor, 0, direction)
            }
            PrunerSpec::Hyperband { min_resource, max_resource, reduction_factor } => {
                let Some(max) = max_resource.or_else(|| full_steps(others)) else { return false };
                let eta = (*reduction_factor).max(2);
                let brackets = hyperband_brackets(*min_resource, max, eta);
                let bracket_of = |n: u64| hyperband_bracket(n, seed, &brackets);
                let mine = bracket_of(trial.number);
                let same = others.iter().copied().filter(|t| bracket_of(t.number) == mine);
                successive_halving(trial, same, *min_resource, eta, mine as u32, direction)
            }
        }
    }
}

/// Optuna's successive-halving rule: at each rung the trial reached with this report, it must be
/// among the best `max(1, n / eta)` of the `n` trials (itself included) with a value there.
fn successive_halving<'a>(
    trial: &TrialRecord,
    others: impl Iterator<Item = &'a TrialRecord> + Clone,
    min_resource: u64,
    eta: u64,
    min_early_stopping_rate: u32,
    direction: Direction,
) -> bool {
    let eta = eta.max(2);
    let (step, _) = *trial.intermediate.last().expect("checked by the caller");
    let previous = trial.intermediate.len().checked_sub(2).map(|i| trial.intermediate[i].0);
    for rung in 0u32.. {
        let Some(rung_step) = eta.checked_pow(min_early_stopping_rate + rung).and_then(|f| f.checked_mul(min_resource))
        else {
            return false;
        };
        if step < rung_step {
            return false;
        }
        // Judged at the first report at or after the rung; later reports passed it already.
        if previous.is_some_and(|p| p >= rung_step) {
            continue;
        }
        let Some(mine) = value_at(trial, rung_step).map(|v| direction.loss(v)) else { return false };
        let mut competing: Vec<f64> = others
            .clone()
            .filter(|t| t.number != trial.number)
            .filter(|t| t.intermediate.last().is_some_and(|(s, _)| *s >= rung_step))
            .filter_map(|t| value_at(t, rung_step).map(|v| direction.loss(v)))
            .collect();
        competing.push(mine);
        competing.sort_by(f64::total_cmp);
        let keep = (competing.len() as u64 / eta).max(1) as usize;
        if mine > competing[keep - 1] {
            return true;
        }
    }
    false
}

/// Each bracket's share of trials: Hyperband's budget `ceil(n * eta^s / (s + 1))` for the
/// bracket whose first rung is `eta^(n-1-s)` times the minimum.
fn hyperband_brackets(min: u64, max: u64, eta: u64) -> Vec<u64> {
    let ratio = (max.max(min) as f64 / min.max(1) as f64).max(1.0);
    let n = (ratio.ln() / (eta as f64).ln() + 1e-9).floor() as u32 + 1;
    (0..n)
        .map(|bracket| {
            let s = n - 1 - bracket;
            ((n as f64) * (eta as f64).powi(s as i32) / (s as f64 + 1.0)).ceil() as u64
        })
        .collect()
}

fn hyperband_bracket(number: u64, seed: u64, budgets: &[u64]) -> usize {
    let total: u64 = budgets.iter().sum();
    let mut pick = mix(seed ^ mix(number)) % total.max(1);
    for (i, b) in budgets.iter().enumerate() {
        if pick < *b {
            return i;
        }
        pick -= b;
    }
    budgets.len() - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trial(number: u64, state: TrialState, values: &[f64]) -> TrialRecord {
        TrialRecord {
            value: values.last().copied(),
            intermediate: values.iter().enumerate().map(|(i, v)| (i as u64 + 1, *v)).collect(),
            ..crate::testing::record(number, state)
        }
    }

    #[test]
    fn median_prunes_a_trial_worse_than_the_median() {
        let done: Vec<TrialRecord> =
            (0..5).map(|i| trial(i, TrialState::Complete, &[1.0 + i as f64, 0.5 + i as f64])).collect();
        let others: Vec<&TrialRecord> = done.iter().collect();
        let pruner = PrunerSpec::Median { startup_trials: 5, warmup_steps: 0 };
        // Median at step 1 is 3.0 (minimizing).
        assert!(pruner.should_prune(&trial(9, TrialState::Running, &[3.5]), &others, Direction::Minimize, 0));
        assert!(!pruner.should_prune(&trial(9, TrialState::Running, &[2.5]), &others, Direction::Minimize, 0));
        // Maximizing flips it.
        assert!(!pruner.should_prune(&trial(9, TrialState::Running, &[3.5]), &others, Direction::Maximize, 0));
        // Too few complete trials: nothing is pruned.
        assert!(!pruner.should_prune(&trial(9, TrialState::Running, &[99.0]), &others[..4], Direction::Minimize, 0));
    }

    #[test]
    fn asha_keeps_the_best_quarter_at_each_rung() {
        // Rung 0 at step 1, rung 1 at step 4. Eight trials reached step 1 with losses 0..8.
        let done: Vec<TrialRecord> = (0..8).map(|i| trial(i, TrialState::Pruned, &[i as f64])).collect();
        let others: Vec<&TrialRecord> = done.iter().collect();
        let pruner = PrunerSpec::Asha { min_resource: Some(1), reduction_factor: 4 };
        // With itself, 9 values: it continues only among the best 2.
        assert!(!pruner.should_prune(&trial(20, TrialState::Running, &[0.5]), &others, Direction::Minimize, 0));
        assert!(pruner.should_prune(&trial(20, TrialState::Running, &[1.5]), &others, Direction::Minimize, 0));
        // At step 2 and 3 there is no rung: no decision.
        assert!(!pruner.should_prune(&trial(20, TrialState::Running, &[0.5, 50.0]), &others, Direction::Minimize, 0));
    }

    #[test]
    fn hyperband_spreads_trials_over_brackets() {
        let budgets = hyperband_brackets(1, 81, 3);
        assert_eq!(budgets, vec![81, 34, 15, 8, 5]);
        let mut counts = [0usize; 5];
        for n in 0..10_000 {
            counts[hyperband_bracket(n, 7, &budgets)] += 1;
        }
        assert!(counts[0] > counts[1] && counts[1] > counts[2] && counts[2] > counts[4], "{counts:?}");
    }
}
