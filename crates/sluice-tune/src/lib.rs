//! Hyperparameter studies. A [`Space`] says what to search; a [`Sampler`] proposes each trial's
//! parameters from the trials before it (random, grid, TPE, CMA-ES); a pruner stops trials
//! whose intermediate values fall behind (median, ASHA, Hyperband); a [`Study`] runs trials in
//! parallel against any [`StudyStore`](sluice_store::StudyStore) — in memory, or the metadata
//! store, where a study survives its process and is shared by every worker that opens it.
//!
//! ```
//! use sluice_tune::*;
//! let space = Space::new(vec![Param {
//!     name: "x".into(),
//!     distribution: Distribution::Float { low: -5.0, high: 5.0, log: false, step: None },
//!     when: None,
//!     grid: None,
//! }])
//! .unwrap();
//! let store = MemoryStudies::default();
//! let config = StudyConfig::new("demo", Direction::Minimize, space, SamplerSpec::tpe(), 1);
//! let study = Study::open(&store, config, None).unwrap();
//! let objective = |t: &mut TrialContext| -> Result<Evaluation, String> {
//!     let x = t.params["x"].as_f64().unwrap();
//!     Ok(Evaluation::value((x - 2.0).powi(2)))
//! };
//! let summary = study.optimize(&objective, &Budget { trials: Some(40), ..Budget::default() }).unwrap();
//! assert!(summary.best.unwrap().value.unwrap() < 0.5);
//! ```

mod cmaes;
mod importance;
mod math;
mod memory;
mod pruner;
mod sampler;
mod space;
mod study;
mod tpe;

/// What the unit tests build trials from.
#[cfg(test)]
mod testing {
    use sluice_store::{TrialRecord, TrialState};

    /// A trial with no parameters, values or metrics.
    pub fn record(number: u64, state: TrialState) -> TrialRecord {
        TrialRecord {
            number,
            state,
            params: Default::default(),
            value: None,
            intermediate: Vec::new(),
            metrics: Default::default(),
            meta: Default::default(),
            worker: "h:1".into(),
            run_id: None,
            started_at: String::new(),
            finished_at: None,
            error: None,
            attempt: 0,
        }
    }
}

pub use importance::importances;
pub use memory::MemoryStudies;
pub use pruner::PrunerSpec;
pub use sampler::{GridSampler, History, Meta, RandomSampler, Sampler, SamplerSpec};
pub use space::{Condition, Distribution, Param, Params, Space};
pub use study::{
    Budget, Evaluation, Objective, PEAK_MEMORY_METRIC, Study, StudyConfig, Summary, TrialContext, best_of, load_trials,
};

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Minimize,
    Maximize,
}

impl Direction {
    /// The value as a loss: lower is better either way.
    pub fn loss(self, value: f64) -> f64 {
        match self {
            Direction::Minimize => value,
            Direction::Maximize => -value,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Minimize => "minimize",
            Direction::Maximize => "maximize",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TuneError {
    #[error("search space: {0}")]
    Space(String),
    #[error(transparent)]
    Store(#[from] sluice_store::StoreError),
    #[error("study `{study}`: no trial completed ({failed} failed); the first failure: {first}")]
    NoTrialCompleted { study: String, failed: usize, first: String },
}
