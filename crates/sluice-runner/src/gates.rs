//! Promotion gates: checks a candidate version must pass before an alias moves to it.
//!
//! A comparison with an alias (`roc_auc >= champion.roc_auc - 0.002`) scores the alias holder on
//! the candidate's own evaluation data, with the same threshold, so the two numbers compare like
//! with like — not with whatever data the holder happened to be evaluated on.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use sluice_core::{ArtifactKind, ContentHash};
use sluice_model::{ModelArtifact, Predictor, Task};
use sluice_spec::gate::{Bound, Gate};
use sluice_store::{EvaluationRef, ModelSelector, StoreError};

use crate::error::StepError;
use crate::workspace::Workspace;

/// One gate's outcome, with both numbers.
#[derive(Clone, Debug, Serialize)]
pub struct GateResult {
    pub gate: String,
    pub passed: bool,
    pub candidate: f64,
    /// The value compared against (after any offset), if there was one.
    pub bound: Option<f64>,
    /// How the bound was obtained, e.g. "champion = adult-income:1, roc_auc 0.9010 - 0.002".
    pub detail: String,
}

impl std::fmt::Display for GateResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verdict = if self.passed { "passed" } else { "FAILED" };
        match self.bound {
            Some(b) => write!(f, "`{}` {verdict}: {:.6} vs {:.6} ({})", self.gate, self.candidate, b, self.detail),
            None => write!(f, "`{}` {verdict}: {:.6} ({})", self.gate, self.candidate, self.detail),
        }
    }
}

/// An alias's holder (its version and metrics on the candidate's evaluation data), or `None` when
/// nothing holds the alias yet.
type Holder = Option<(u32, BTreeMap<String, f64>)>;

/// A model scored on a dataset with its label.
pub(crate) struct Scored {
    pub metrics: BTreeMap<String, f64>,
    pub predictor: Predictor,
    pub predictions: sluice_model::Predictions,
    /// The labels as the model reads them (0/1, values or class indices).
    pub y: Vec<f64>,
}

/// Metrics of `model` on a dataset with its label, and the predictions and labels behind them.
pub(crate) fn score(
    model: ModelArtifact,
    batch: &datafusion::arrow::array::RecordBatch,
    threshold: f64,
) -> Result<Scored, StepError> {
    let y = sluice_train::model_labels(&model, batch)?;
    let predictor = Predictor::new(model)?;
    let predictions = predictor.predict(batch)?;
    let mut metrics = task_metrics(predictor.artifact().task, &y, &predictions, threshold)?;
    if predictor.artifact().task == Task::Clustering {
        let x = predictor.design_matrix(batch)?;
        if let Some(s) = silhouette(&x, &predictions.predicted_classes()) {
            metrics.insert("silhouette".into(), s);
        }
    }
    Ok(Scored { metrics, predictor, predictions, y })
}

/// Rows the silhouette is computed on at most (a seeded sample above that, as scikit-learn's
/// `silhouette_score(sample_size=...)`): it is quadratic in the rows.
const SILHOUETTE_ROWS: usize = 2000;

/// The silhouette of a clustering, `None` when it is undefined (one cluster used, or one row
/// per cluster).
fn silhouette(x: &sluice_model::DesignMatrix, labels: &[usize]) -> Option<f64> {
    let rows: Vec<usize> = if x.rows > SILHOUETTE_ROWS {
        let mut r = sluice_core::rng::SplitMix64::new(0).sample_indices(x.rows, SILHOUETTE_ROWS);
        r.sort_unstable();
        r
    } else {
        (0..x.rows).collect()
    };
    let data: Vec<f64> = rows.iter().flat_map(|i| x.row(*i).iter().copied()).collect();
    let labels: Vec<usize> = rows.iter().map(|i| labels[*i]).collect();
    sluice_metrics::silhouette(&data, x.cols, &labels).ok()
}

/// The metrics of the model's task for labels `y`.
pub(crate) fn task_metrics(
    task: Task,
    y: &[f64],
    p: &sluice_model::Predictions,
    threshold: f64,
) -> Result<BTreeMap<String, f64>, sluice_metrics::MetricsError> {
    if task == Task::Clustering {
        // No label: how tightly rows sit around their centroids (scikit-learn's `inertia_`).
        let squared: Vec<f64> = p.cluster_distances().iter().map(|d| d * d).collect();
        if squared.is_empty() {
            return Err(sluice_metrics::MetricsError::Empty);
        }
        let inertia: f64 = squared.iter().sum();
        return Ok(BTreeMap::from([
            ("inertia".to_string(), inertia),
            ("mean_squared_distance".to_string(), inertia / squared.len() as f64),
            ("rows".to_string(), squared.len() as f64),
        ]));
    }
    let scores = if task == Task::MulticlassClassification { &p.probabilities } else { &p.scores };
    sluice_monitor::performance::task_metrics(task, p.classes.len(), y, scores, threshold)
}

async fn holder_metrics(
    ws: &Workspace,
    holder: &ContentHash,
    evaluation: &EvaluationRef,
) -> Result<BTreeMap<String, f64>, StepError> {
    let bytes = ws.artifacts.get_bytes(holder, ArtifactKind::Model).await?;
    let model = ModelArtifact::from_json(&bytes)?;
    let path = ws.artifacts.local_path(&evaluation.data, ArtifactKind::Dataset).await?;
    let threshold = evaluation.threshold;
    tokio::task::spawn_blocking(move || {
        let batch = sluice_engine::read_dataset_batch(&path)?;
        score(model, &batch, threshold).map(|s| s.metrics)
    })
    .await
    .map_err(|e| StepError::Internal(format!("scoring thread failed: {e}")))?
}

/// Check `gates` for a candidate of model `name` with `metrics` from `evaluation`.
pub async fn check_gates(
    ws: &Workspace,
    name: &str,
    candidate: &ContentHash,
    gates: &[String],
    metrics: &[(String, f64)],
    evaluation: Option<&EvaluationRef>,
) -> Result<Vec<GateResult>, StepError> {
    let mine: HashMap<&str, f64> = metrics.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let known = || metrics.iter().map(|(k, _)| format!("`{k}`")).collect::<Vec<_>>().join(", ");
    let mut holders: HashMap<String, Holder> = HashMap::new();
    let mut results = Vec::new();
    for text in gates {
        let gate = Gate::parse(text).map_err(|e| StepError::Invalid(format!("gate `{text}`: {e}")))?;
        let value = *mine.get(gate.metric.as_str()).ok_or_else(|| {
            StepError::Invalid(format!("gate `{gate}`: no metric `{}` (metrics: {})", gate.metric, known()))
        })?;
        let (bound, detail) = match &gate.bound {
            Bound::Constant(c) => (Some(*c), "absolute threshold".to_string()),
            Bound::Alias { alias, metric, offset } => {
                if !holders.contains_key(alias) {
                    let holder = match ws.meta.resolve_model(name, &ModelSelector::Alias(alias.clone())) {
                        Ok(v) if v.artifact == *candidate => {
                            Some((v.version, mine.iter().map(|(k, v)| (k.to_string(), *v)).collect()))
                        }
                        Ok(v) => {
                            let evaluation = evaluation.ok_or_else(|| {
                                StepError::Invalid(format!("gate `{gate}` compares with `{alias}` but the candidate has no evaluation data recorded"))
                            })?;
                            Some((v.version, holder_metrics(ws, &v.artifact, evaluation).await?))
                        }
                        Err(StoreError::NotFound { .. }) => None,
                        Err(e) => return Err(e.into()),
                    };
                    holders.insert(alias.clone(), holder);
                }
                match &holders[alias] {
                    None => (None, format!("no `{name}@{alias}` yet: nothing to compare with")),
                    Some((version, theirs)) => {
                        let base = *theirs.get(metric).ok_or_else(|| {
                            StepError::Invalid(format!("gate `{gate}`: `{alias}` has no metric `{metric}`"))
                        })?;
                        let sign = if *offset < 0.0 { "-" } else { "+" };
                        (
                            Some(base + offset),
                            format!(
                                "{alias} = {name}:{version}, {metric} {base:.6} {sign} {} on the same data",
                                offset.abs()
                            ),
                        )
                    }
                }
            }
        };
        let passed = bound.is_none_or(|b| gate.op.holds(value, b));
        results.push(GateResult { gate: gate.text.clone(), passed, candidate: value, bound, detail });
    }
    Ok(results)
}
