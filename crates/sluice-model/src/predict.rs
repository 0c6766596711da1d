//! Scoring: transforms + model on a record batch.

use std::sync::Arc;

use arrow_array::{ArrayRef, BooleanArray, Float64Array, RecordBatch};

use crate::artifact::{Model, ModelArtifact, Task};
use crate::error::Result;
use crate::linear::sigmoid;
use crate::transform::Prepared;

/// A loaded model, ready to score many batches.
pub struct Predictor {
    artifact: ModelArtifact,
    prepared: Prepared,
}

/// Scores for a batch: probabilities of the positive class, or predicted values.
#[derive(Clone, Debug, PartialEq)]
pub struct Predictions {
    pub task: Task,
    pub scores: Vec<f64>,
}

impl Predictions {
    /// Output columns: `probability` and `prediction` (boolean) for binary classification,
    /// `prediction` for regression.
    pub fn columns(&self, threshold: f64) -> Vec<(&'static str, ArrayRef)> {
        let scores = Arc::new(Float64Array::from(self.scores.clone())) as ArrayRef;
        match self.task {
            Task::BinaryClassification => {
                let labels: BooleanArray = self.scores.iter().map(|p| Some(*p >= threshold)).collect();
                vec![("probability", scores), ("prediction", Arc::new(labels) as ArrayRef)]
            }
            Task::Regression => vec![("prediction", scores)],
        }
    }
}

impl Predictor {
    pub fn new(artifact: ModelArtifact) -> Result<Self> {
        artifact.check()?;
        let prepared = Prepared::new(&artifact.transforms);
        Ok(Self { artifact, prepared })
    }

    pub fn artifact(&self) -> &ModelArtifact {
        &self.artifact
    }

    pub fn predict(&self, batch: &RecordBatch) -> Result<Predictions> {
        let x = self.prepared.matrix(batch)?;
        let scores = match &self.artifact.model {
            Model::Linear(m) => {
                let margins = m.margins(&x);
                match self.artifact.task {
                    Task::BinaryClassification => margins.into_iter().map(sigmoid).collect(),
                    Task::Regression => margins,
                }
            }
            Model::Gbdt(m) => m.predict(&x),
        };
        Ok(Predictions { task: self.artifact.task, scores })
    }

    /// The input batch with the prediction columns appended.
    pub fn score_batch(&self, batch: &RecordBatch, threshold: f64) -> Result<RecordBatch> {
        let predictions = self.predict(batch)?;
        Self::append(batch, &predictions, threshold)
    }

    /// `batch` with `predictions`' columns appended (replacing same-named input columns).
    pub fn append(batch: &RecordBatch, predictions: &Predictions, threshold: f64) -> Result<RecordBatch> {
        let mut fields: Vec<(String, ArrayRef)> =
            batch.schema().fields().iter().zip(batch.columns()).map(|(f, c)| (f.name().clone(), c.clone())).collect();
        for (name, col) in predictions.columns(threshold) {
            fields.retain(|(n, _)| n != name);
            fields.push((name.to_string(), col));
        }
        RecordBatch::try_from_iter(fields)
            .map_err(|e| crate::error::ModelError::Internal(format!("building output batch: {e}")))
    }
}
