//! The train step's hyperparameter search (`tune:`): a study in the metadata store whose trials
//! train the step's model with sampled `params`, report the validation metric each boosting
//! round (for pruners) and are scored on the validation data (or by cross-validation). The
//! step's model is the best trial's.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use datafusion::arrow::array::RecordBatch;
use serde_json::{Map, Value, json};
use sluice_model::ModelArtifact;
use sluice_spec::kinds::{
    ForestObjective, GbdtObjective, ModelKind, ParamSpace, TrainParams, TrainStep, TuneDirection, TuneSpec,
};
use sluice_store::StudyStore;
use sluice_tune::{
    Budget, Condition, Direction, Distribution, Evaluation, Objective, Param, PrunerSpec, SamplerSpec, Space, Study,
    StudyConfig, TrialContext,
};

use crate::error::StepError;
use crate::steps::{cross_validate, every_round, fit_with_features};

pub(crate) struct Tuned {
    pub model: ModelArtifact,
    pub metrics: Vec<(String, f64)>,
}

/// The data trials train and score on.
pub(crate) struct TuneData<'a> {
    pub batch: &'a RecordBatch,
    pub valid: Option<&'a RecordBatch>,
    pub features: &'a [String],
}

/// The metric a study optimizes by default, for the step's model (and, for logistic
/// regression, its training label: multinomial models have no ROC AUC).
fn default_metric(train: &TrainStep, batch: &RecordBatch) -> &'static str {
    let binary = match &train.params {
        TrainParams::Gbdt(p) => match p.objective {
            GbdtObjective::Binary => Some(true),
            GbdtObjective::Multiclass => Some(false),
            _ => None,
        },
        TrainParams::Forest(p) => (p.objective == ForestObjective::Binary).then_some(true),
        TrainParams::Ftrl(p) => (p.objective == ForestObjective::Binary).then_some(true),
        TrainParams::Linear(_) if train.model == ModelKind::LogisticRegression => Some(
            sluice_train::logistic_task(batch, &train.label).ok() != Some(sluice_model::Task::MulticlassClassification),
        ),
        TrainParams::Linear(_) => None,
        // Refused by the spec (no label to score trials against).
        TrainParams::Kmeans(_) => None,
    };
    match binary {
        Some(true) => "roc_auc",
        Some(false) => "log_loss",
        None => "rmse",
    }
}

/// Metrics where higher is better.
fn maximized(metric: &str) -> bool {
    matches!(
        metric,
        "roc_auc" | "pr_auc" | "accuracy" | "balanced_accuracy" | "precision" | "recall" | "f1" | "f1_macro" | "r2"
    )
}

/// The spec's space as the tuner's, checked.
pub(crate) fn space(tune: &TuneSpec) -> Result<Space, StepError> {
    let invalid = |name: &str, m: String| StepError::Invalid(format!("`tune.space.{name}`: {m}"));
    let mut params = Vec::new();
    for (name, p) in &tune.space {
        let ParamSpace { uniform, log_uniform, int, choice, log, step, when, grid } = p;
        let distribution = if let Some([low, high]) = uniform.or(*log_uniform) {
            Distribution::Float { low, high, log: *log || log_uniform.is_some(), step: *step }
        } else if let Some([low, high]) = int {
            let s = step.unwrap_or(1.0);
            if s.fract() != 0.0 {
                return Err(invalid(name, format!("`step` of a whole number must be whole, got {s}")));
            }
            Distribution::Int { low: *low, high: *high, log: *log, step: s as i64 }
        } else {
            Distribution::Categorical { choices: choice.clone().unwrap_or_default() }
        };
        let when = match when {
            None => None,
            Some(w) if w.len() == 1 => {
                let (param, values) = w.iter().next().expect("one entry");
                let values = match values {
                    Value::Array(v) => v.clone(),
                    v => vec![v.clone()],
                };
                Some(Condition { param: param.clone(), values })
            }
            Some(_) => return Err(invalid(name, "`when` names one parameter: `when: {booster: dart}`".into())),
        };
        params.push(Param { name: name.clone(), distribution, when, grid: grid.clone() });
    }
    Space::new(params).map_err(|e| StepError::Invalid(format!("`tune.space`: {e}")))
}

/// A setting that is a name or a mapping with `kind`, read as `T`.
fn setting<T: serde::de::DeserializeOwned>(field: &str, value: &Value, kinds: &str) -> Result<T, StepError> {
    let value = match value {
        Value::String(s) => json!({ "kind": s }),
        v => v.clone(),
    };
    serde_json::from_value(value).map_err(|e| StepError::Invalid(format!("`tune.{field}`: {e} (one of {kinds})")))
}

fn duration(text: &Option<String>) -> Option<Duration> {
    text.as_deref().and_then(sluice_spec::kinds::parse_duration).map(Duration::from_secs_f64)
}

/// The bytes a trial's training needs, roughly: what the trainer allocates per row and feature.
fn memory_estimate(params: &TrainParams, rows: usize, features: usize) -> u64 {
    let (rows, features) = (rows as u64, features as u64);
    match params {
        // Binned matrix (1 byte per value), gradients, hessians, scores and row indices per
        // row and class, and per-leaf histograms (3 numbers per bin).
        TrainParams::Gbdt(p) => {
            let classes = if p.objective == GbdtObjective::Multiclass { 10 } else { 1 };
            rows * features + rows * 28 * classes + p.num_leaves as u64 * features * p.max_bin as u64 * 24
        }
        TrainParams::Forest(p) => rows * features + rows * 28 + 64 * features * p.max_bin as u64 * 24,
        // A dense f64 design matrix and its Gram matrix.
        TrainParams::Linear(_) | TrainParams::Ftrl(_) => rows * features * 8 + features * features * 8,
        // The design matrix and the per-row assignments.
        TrainParams::Kmeans(_) => rows * features * 8 + rows * 16,
    }
}

/// The best model trained in this process so far: (loss, trial number, model, extra metrics).
type Kept = (f64, u64, ModelArtifact, Vec<(String, f64)>);

struct TrialObjective<'a> {
    train: &'a TrainStep,
    data: &'a TuneData<'a>,
    metric: String,
    direction: Direction,
    /// Training threads per trial (1 when trials run in parallel).
    threads: usize,
    best: Mutex<Option<Kept>>,
    say: &'a (dyn Fn(String) + Sync),
}

impl TrialObjective<'_> {
    fn trial_step(&self, values: &sluice_tune::Params) -> Result<TrainStep, String> {
        let threaded = matches!(self.train.params, TrainParams::Gbdt(_) | TrainParams::Forest(_));
        step_with(self.train, values, threaded.then_some(self.threads)).map_err(|e| e.to_string())
    }

    fn run(&self, t: &mut TrialContext) -> Result<Evaluation, String> {
        let step = self.trial_step(&t.params)?;
        let features = self.data.features.len() + step.transforms.len() * 8;
        t.check_memory(memory_estimate(&step.params, self.data.batch.num_rows(), features))?;
        if let Some(cv) = &step.cv {
            // On a pool that charges the trial's meter (when it has a memory budget).
            let metrics = sluice_train::on_pool(0, || {
                cross_validate(&step, cv, self.data.batch, self.data.valid, self.data.features, None)
            })
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
            let key = format!("cv_{}_mean", self.metric);
            let value = metrics.iter().find(|(k, _)| *k == key).map(|(_, v)| *v).ok_or_else(|| {
                let known: Vec<&str> = metrics.iter().filter_map(|(k, _)| k.strip_suffix("_mean")).collect();
                format!("no metric `{}` to optimize (cross-validation gives {})", self.metric, known.join(", "))
            })?;
            let metrics: BTreeMap<String, f64> = metrics.into_iter().collect();
            return Ok(Evaluation { value, metrics });
        }
        let valid = self.data.valid.ok_or("`tune` needs `validation` or `cv`")?;
        let mut on_round = |r: &sluice_train::gbdt::RoundReport| match r.valid_metric {
            Some(m) => t.report(r.round as u64, m),
            None => t.check(),
        };
        let (model, extra) = sluice_train::on_pool(0, || {
            fit_with_features(&step, self.data.batch, Some(valid), self.data.features, None, &mut on_round)
        })
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        let scored = crate::gates::score(model.clone(), valid, 0.5).map_err(|e| e.to_string())?;
        let metrics = scored.metrics;
        let value = *metrics.get(&self.metric).ok_or_else(|| {
            let known: Vec<&str> = metrics.keys().map(String::as_str).collect();
            format!("no metric `{}` to optimize (the validation data gives {})", self.metric, known.join(", "))
        })?;
        let loss = self.direction.loss(value);
        if !t.stopped() {
            // (`stopped` includes a trial that peaked over its memory budget.)
            let mut best = self.best.lock().unwrap_or_else(|e| e.into_inner());
            if best.as_ref().is_none_or(|(l, n, ..)| loss < *l || (loss == *l && t.number < *n)) {
                *best = Some((loss, t.number, model, extra));
            }
            (self.say)(format!("trial {}: {} = {value:.5}", t.number, self.metric));
        } else if t.pruned() {
            (self.say)(format!("trial {}: pruned", t.number));
        }
        Ok(Evaluation { value, metrics })
    }
}

impl Objective for TrialObjective<'_> {
    fn evaluate(&self, t: &mut TrialContext) -> Result<Evaluation, String> {
        self.run(t)
    }
}

/// Check every `tune` block of a pipeline (space, sampler, pruner) before any step runs, so a
/// typo fails the run at once rather than after the data steps.
pub(crate) fn check_pipeline(pipeline: &sluice_spec::Pipeline) -> Result<(), crate::RunnerError> {
    for step in &pipeline.steps {
        if let sluice_spec::StepConfig::Train(TrainStep { tune: Some(tune), .. }) = &step.config {
            let checked = space(tune)
                .and_then(|_| setting::<SamplerSpec>("sampler", &tune.sampler, SAMPLERS))
                .and_then(|_| setting::<PrunerSpec>("pruner", &tune.pruner, PRUNERS));
            if let Err(e) = checked {
                return Err(crate::RunnerError::InvalidStep { step: step.name.clone(), message: e.to_string() });
            }
        }
    }
    Ok(())
}

const SAMPLERS: &str = "random, grid, tpe, cmaes";
const PRUNERS: &str = "none, median, asha, hyperband";

/// Run (or continue) the step's study and return the best trial's model.
pub(crate) fn tune(
    store: &dyn StudyStore,
    study_name: &str,
    run_id: &str,
    train: &TrainStep,
    data: &TuneData,
    say: &(dyn Fn(String) + Sync),
) -> Result<Tuned, StepError> {
    let tune = train.tune.as_ref().ok_or_else(|| StepError::Internal("tune() without `tune`".into()))?;
    let metric = match tune.metric.as_deref() {
        Some("auc") => "roc_auc".to_string(),
        Some(m) => m.to_string(),
        None => default_metric(train, data.batch).to_string(),
    };
    let direction = match tune.direction {
        Some(TuneDirection::Maximize) => Direction::Maximize,
        Some(TuneDirection::Minimize) => Direction::Minimize,
        None if maximized(&metric) => Direction::Maximize,
        None => Direction::Minimize,
    };
    let sampler: SamplerSpec = setting("sampler", &tune.sampler, SAMPLERS)?;
    let mut pruner: PrunerSpec = setting("pruner", &tune.pruner, PRUNERS)?;
    if let (PrunerSpec::Hyperband { max_resource: max @ None, .. }, TrainParams::Gbdt(p)) = (&mut pruner, &train.params)
        && !tune.space.contains_key("num_rounds")
    {
        *max = Some(p.num_rounds as u64);
    }
    let parallel =
        tune.parallel.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)).max(1);
    let config = StudyConfig {
        name: study_name.to_string(),
        direction,
        space: space(tune)?,
        sampler,
        pruner,
        seed: tune.seed,
        extra: json!({
            "metric": metric,
            "model": train.model,
            "label": train.label,
            "params": train.params,
            "transforms": train.transforms,
            "cv": train.cv,
        }),
    };
    let study = Study::open(store, config, Some(run_id.to_string())).map_err(tune_error)?;
    let budget = Budget {
        trials: tune.trials,
        timeout: duration(&tune.timeout),
        patience: tune.patience,
        parallel,
        trial_timeout: duration(&tune.trial_timeout),
        trial_memory: tune.trial_memory.as_deref().and_then(sluice_spec::kinds::parse_bytes),
    };
    let grid = matches!(study.config().sampler, SamplerSpec::Grid);
    if budget.trials.is_none() && budget.timeout.is_none() && budget.patience.is_none() && !grid {
        return Err(StepError::Invalid(
            "`tune` needs a budget: `trials`, `timeout` or `patience` (or the `grid` sampler)".into(),
        ));
    }
    run_study(&study, train, data, &metric, direction, parallel, &budget, say)
}

fn tune_error(e: sluice_tune::TuneError) -> StepError {
    match e {
        sluice_tune::TuneError::Store(s) => StepError::Store(s),
        other => StepError::Invalid(other.to_string()),
    }
}

#[allow(clippy::too_many_arguments)]
fn run_study(
    study: &Study,
    train: &TrainStep,
    data: &TuneData,
    metric: &str,
    direction: Direction,
    parallel: usize,
    budget: &Budget,
    say: &(dyn Fn(String) + Sync),
) -> Result<Tuned, StepError> {
    let objective = TrialObjective {
        train,
        data,
        metric: metric.to_string(),
        direction,
        threads: if parallel > 1 { 1 } else { 0 },
        best: Mutex::new(None),
        say,
    };
    let summary = study.optimize(&objective, budget).map_err(tune_error)?;
    let best = summary
        .best
        .ok_or_else(|| StepError::Invalid(format!("study `{}`: no trial completed", study.config().name)))?;
    let value = best.value.unwrap_or(f64::NAN);
    say(format!(
        "study `{}`: best trial {} ({metric} = {value:.5}); {} complete, {} pruned, {} failed; {} run now in {:.1?}",
        study.config().name,
        best.number,
        summary.complete,
        summary.pruned,
        summary.failed,
        summary.ran,
        summary.elapsed
    ));
    // The best trial's model, or (when another run or worker trained it) the same model again:
    // training is deterministic for given params and data.
    let kept = objective.best.into_inner().unwrap_or_else(|e| e.into_inner());
    let (model, extra) = match kept {
        Some((_, number, model, extra)) if number == best.number => (model, extra),
        _ => {
            let step = step_with(train, &best.params, None)?;
            fit_with_features(&step, data.batch, data.valid, data.features, None, &mut every_round)?
        }
    };
    let mut metrics = extra;
    metrics.extend([
        (format!("tune_best_{metric}"), value),
        ("tune_best_trial".into(), best.number as f64),
        ("tune_complete".into(), summary.complete as f64),
        ("tune_pruned".into(), summary.pruned as f64),
        ("tune_failed".into(), summary.failed as f64),
        ("tune_ran".into(), summary.ran as f64),
    ]);
    Ok(Tuned { model, metrics })
}

/// The step with a trial's values in `params` (and `threads`, unless the trial sets it).
fn step_with(train: &TrainStep, values: &sluice_tune::Params, threads: Option<usize>) -> Result<TrainStep, StepError> {
    let mut values: Map<String, Value> = values.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    if let Some(t) = threads {
        values.entry("threads").or_insert(Value::from(t));
    }
    let params = train.params_with(&values).map_err(StepError::Invalid)?;
    Ok(TrainStep { params, tune: None, ..train.clone() })
}
