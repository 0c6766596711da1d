//! Samplers propose a trial's parameters from the trials before it. Each draw uses a generator
//! seeded by the study's seed and the trial's number, so a trial's parameters depend only on
//! the seed and on what the sampler was shown — not on timing or on which worker asks.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sluice_core::rng::{SplitMix64, mix};
use sluice_store::{TrialRecord, TrialState};

use crate::Direction;
use crate::space::{Params, Space};

/// What a sampler may learn from.
pub struct History<'a> {
    pub direction: Direction,
    /// Finished trials (complete, pruned or failed), by number.
    pub finished: Vec<&'a TrialRecord>,
    /// Parameters of trials still running (or treated as running, see `Study`): a sampler
    /// should not propose the same region again (TPE counts them as bad: "constant liar").
    pub pending: Vec<&'a Params>,
}

impl History<'_> {
    /// Complete trials with their loss (lower is better), by number.
    pub fn complete(&self) -> impl Iterator<Item = (&TrialRecord, f64)> {
        self.finished
            .iter()
            .filter(|t| t.state == TrialState::Complete)
            .filter_map(|t| t.value.filter(|v| v.is_finite()).map(|v| (*t, self.direction.loss(v))))
    }
}

/// Sampler bookkeeping stored with the trial.
pub type Meta = BTreeMap<String, f64>;

pub trait Sampler: Send + Sync {
    fn sample(&self, space: &Space, history: &History, number: u64) -> (Params, Meta);
    /// The most trials that make sense (a grid's size).
    fn max_trials(&self, _space: &Space) -> Option<u64> {
        None
    }
}

/// The generator for trial `number` of a study seeded with `seed`.
pub fn trial_rng(seed: u64, number: u64, salt: u64) -> SplitMix64 {
    SplitMix64::new(mix(seed ^ mix(number.wrapping_add(salt.wrapping_mul(0x632B_E59B_D9B4_E019)))))
}

/// Which sampler, with its settings, as the spec and the study's definition give it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", deny_unknown_fields)]
pub enum SamplerSpec {
    Random,
    /// Every combination of the parameters' grid values, in a seeded random order.
    Grid,
    /// Tree-structured Parzen estimators (Bergstra et al. 2011; Optuna's defaults).
    Tpe {
        /// Random trials before the model is used.
        #[serde(default = "default_startup")]
        startup_trials: usize,
        /// Candidates drawn from the good-trials density; the best ratio wins.
        #[serde(default = "default_candidates")]
        candidates: usize,
        /// Model the parameters jointly (per group of parameters that appear together) rather
        /// than one by one.
        #[serde(default)]
        multivariate: bool,
    },
    /// CMA-ES over the numeric parameters; choices and conditional parameters are drawn at random.
    Cmaes {
        /// Population size (default 4 + 3 ln(dimensions)).
        #[serde(default)]
        population: Option<usize>,
    },
}

fn default_startup() -> usize {
    10
}
fn default_candidates() -> usize {
    24
}

impl SamplerSpec {
    pub fn tpe() -> Self {
        SamplerSpec::Tpe { startup_trials: default_startup(), candidates: default_candidates(), multivariate: false }
    }

    pub fn build(&self, seed: u64) -> Box<dyn Sampler> {
        match self {
            SamplerSpec::Random => Box::new(RandomSampler { seed }),
            SamplerSpec::Grid => Box::new(GridSampler { seed }),
            SamplerSpec::Tpe { startup_trials, candidates, multivariate } => {
                Box::new(crate::tpe::Tpe::new(seed, *startup_trials, *candidates, *multivariate))
            }
            SamplerSpec::Cmaes { population } => Box::new(crate::cmaes::Cmaes::new(seed, *population)),
        }
    }
}

pub struct RandomSampler {
    pub seed: u64,
}

impl Sampler for RandomSampler {
    fn sample(&self, space: &Space, _: &History, number: u64) -> (Params, Meta) {
        (space.sample_random(&mut trial_rng(self.seed, number, 0)), Meta::new())
    }
}

/// Trial `n` takes the `n`-th combination of a seeded permutation of the grid; combinations
/// that differ only in inactive (conditional) parameters count once.
pub struct GridSampler {
    pub seed: u64,
}

impl GridSampler {
    fn combinations(space: &Space) -> Vec<Params> {
        let mut out: Vec<Params> = vec![Params::new()];
        for (i, p) in space.params.iter().enumerate() {
            let values = p.grid_values();
            let mut next = Vec::with_capacity(out.len() * values.len());
            for partial in out {
                if space.active(i, &partial) {
                    for v in &values {
                        let mut c = partial.clone();
                        c.insert(p.name.clone(), v.clone());
                        next.push(c);
                    }
                } else {
                    next.push(partial);
                }
            }
            out = next;
        }
        out
    }
}

impl Sampler for GridSampler {
    fn sample(&self, space: &Space, _: &History, number: u64) -> (Params, Meta) {
        let all = Self::combinations(space);
        let mut order: Vec<usize> = (0..all.len()).collect();
        let mut rng = SplitMix64::new(mix(self.seed));
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i + 1));
        }
        let pick = order[(number as usize) % all.len()];
        (all[pick].clone(), Meta::from([("grid_index".to_string(), pick as f64)]))
    }

    fn max_trials(&self, space: &Space) -> Option<u64> {
        Some(Self::combinations(space).len() as u64)
    }
}
