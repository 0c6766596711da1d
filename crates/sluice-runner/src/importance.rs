//! Model-agnostic explanations on evaluation data: permutation importance (how much the main
//! metric worsens when one input column's values are shuffled) and partial dependence (the mean
//! prediction as one numeric column is set to each of its quantiles).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array, RecordBatch};
use datafusion::arrow::compute::{cast, take};
use datafusion::arrow::datatypes::{DataType, Float64Type};
use serde_json::{Value, json};
use sluice_core::rng::SplitMix64;
use sluice_model::{Predictor, Task};

use crate::error::StepError;

/// The metric permutation importance tracks, and whether higher is better.
fn main_metric(task: Task) -> (&'static str, bool) {
    match task {
        Task::BinaryClassification => ("roc_auc", true),
        Task::Regression => ("rmse", false),
        Task::MulticlassClassification => ("log_loss", false),
        // How far rows sit from their centroids once a column is shuffled.
        Task::Clustering => ("inertia", false),
    }
}

/// A seeded permutation of `0..n`.
fn permutation(n: usize, seed: u64) -> Vec<u32> {
    SplitMix64::new(seed).sample_indices(n, n).into_iter().map(|i| i as u32).collect()
}

fn with_column(batch: &RecordBatch, name: &str, column: ArrayRef) -> Result<RecordBatch, StepError> {
    let schema = batch.schema();
    let mut columns = batch.columns().to_vec();
    let mut fields: Vec<_> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    let i = schema.index_of(name).map_err(|e| StepError::Internal(e.to_string()))?;
    fields[i] = fields[i].clone().with_data_type(column.data_type().clone()).with_nullable(true);
    columns[i] = column;
    RecordBatch::try_new(Arc::new(datafusion::arrow::datatypes::Schema::new(fields)), columns)
        .map_err(|e| StepError::Internal(format!("rebuilding the evaluation batch: {e}")))
}

/// Permutation importance of every input column (`repeats` shuffles, seeded) and partial
/// dependence of numeric ones (`grid` quantile points).
pub(crate) fn explain(
    predictor: &Predictor,
    batch: &RecordBatch,
    y: &[f64],
    threshold: f64,
    repeats: usize,
    grid: usize,
) -> Result<Value, StepError> {
    let task = predictor.artifact().task;
    let (metric, higher_better) = main_metric(task);
    let score = |b: &RecordBatch| -> Result<f64, StepError> {
        let p = predictor.predict(b)?;
        let m = crate::gates::task_metrics(task, y, &p, threshold)?;
        Ok(m.get(metric).copied().unwrap_or(f64::NAN))
    };
    let base = score(batch)?;
    let mut importance = Vec::new();
    let mut dependence = serde_json::Map::new();
    for (c, input) in predictor.artifact().inputs.iter().enumerate() {
        let column = batch
            .column_by_name(&input.name)
            .ok_or_else(|| StepError::Invalid(format!("evaluation data has no column `{}`", input.name)))?;
        let mut drops = Vec::with_capacity(repeats);
        for r in 0..repeats {
            let order = permutation(batch.num_rows(), 0x5EED ^ ((c as u64) << 16) ^ r as u64);
            let shuffled = take(column, &datafusion::arrow::array::UInt32Array::from(order), None)
                .map_err(|e| StepError::Internal(e.to_string()))?;
            let s = score(&with_column(batch, &input.name, shuffled)?)?;
            drops.push(if higher_better { base - s } else { s - base });
        }
        let mean = drops.iter().sum::<f64>() / drops.len() as f64;
        let std = (drops.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / drops.len() as f64).sqrt();
        importance.push(json!({"column": input.name, "mean": mean, "std": std}));

        // Cluster ids have no mean: clustering gets importance only.
        if predictor.artifact().reads_text(&input.name) || grid == 0 || task == Task::Clustering {
            continue;
        }
        let values = cast(column, &DataType::Float64).map_err(|e| StepError::Internal(e.to_string()))?;
        let mut present: Vec<f64> =
            values.as_primitive::<Float64Type>().iter().flatten().filter(|v| !v.is_nan()).collect();
        if present.is_empty() {
            continue;
        }
        present.sort_by(f64::total_cmp);
        let mut points: Vec<f64> = (0..grid).map(|g| present[(g * (present.len() - 1)) / (grid - 1).max(1)]).collect();
        points.dedup();
        let mut curve = Vec::new();
        for x in points {
            let constant: ArrayRef = Arc::new(Float64Array::from(vec![x; batch.num_rows()]));
            let p = predictor.predict(&with_column(batch, &input.name, constant)?)?;
            let mean = p.scores.iter().sum::<f64>() / p.scores.len() as f64;
            curve.push(json!({"value": x, "mean_prediction": mean}));
        }
        dependence.insert(input.name.clone(), Value::Array(curve));
    }
    importance.sort_by(|a, b| b["mean"].as_f64().unwrap_or(0.0).total_cmp(&a["mean"].as_f64().unwrap_or(0.0)));
    Ok(json!({
        "metric": metric,
        "baseline": base,
        "repeats": repeats,
        "permutation_importance": importance,
        "partial_dependence": dependence,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutations_are_seeded_and_complete() {
        let a = permutation(1000, 7);
        assert_eq!(a, permutation(1000, 7));
        assert_ne!(a, permutation(1000, 8));
        let mut s = a.clone();
        s.sort();
        assert_eq!(s, (0..1000).collect::<Vec<u32>>());
    }
}
