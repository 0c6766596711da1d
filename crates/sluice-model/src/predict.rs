//! Scoring: transforms + model on a record batch.

use std::sync::Arc;

use arrow_array::{ArrayRef, BooleanArray, Float64Array, RecordBatch, StringArray};

use crate::artifact::{Model, ModelArtifact, Task};
use crate::error::Result;
use crate::linear::sigmoid;
use crate::transform::{DesignMatrix, Prepared};

/// A loaded model, ready to score many batches.
pub struct Predictor {
    artifact: ModelArtifact,
    prepared: Prepared,
    classes: Arc<[String]>,
}

/// Per-row contributions: `values` is `rows x (columns.len() + 1)`, the last column the bias;
/// for a multiclass model, one such block per class (`classes`), class after class.
#[derive(Clone, Debug, PartialEq)]
pub struct Explanation {
    pub columns: Vec<String>,
    /// Multiclass: the classes whose raw scores the blocks explain; empty otherwise.
    pub classes: Vec<String>,
    pub values: DesignMatrix,
}

/// Scores for a batch: probabilities of the positive class, predicted values, (multiclass) the
/// probability of the likeliest class with every class's probability alongside, or (clustering)
/// each row's cluster index with its distance to every centroid in `probabilities`.
#[derive(Clone, Debug, PartialEq)]
pub struct Predictions {
    pub task: Task,
    pub scores: Vec<f64>,
    /// Multiclass: the class names, and `rows x classes` probabilities (row-major). Clustering:
    /// the cluster names, and `rows x clusters` distances to the centroids.
    pub classes: Arc<[String]>,
    pub probabilities: Vec<f64>,
}

impl Predictions {
    pub fn new(task: Task, scores: Vec<f64>) -> Self {
        Self { task, scores, classes: Arc::from(Vec::new()), probabilities: Vec::new() }
    }

    pub fn rows(&self) -> usize {
        self.scores.len()
    }

    /// Multiclass: the index of each row's likeliest class (the first on ties); clustering: each
    /// row's cluster.
    pub fn predicted_classes(&self) -> Vec<usize> {
        if self.task == Task::Clustering {
            return self.scores.iter().map(|c| *c as usize).collect();
        }
        let k = self.classes.len().max(1);
        self.probabilities
            .chunks(k)
            .map(|p| p.iter().enumerate().fold(0, |best, (i, v)| if *v > p[best] { i } else { best }))
            .collect()
    }

    /// Clustering: each row's distance to its cluster's centroid.
    pub fn cluster_distances(&self) -> Vec<f64> {
        let k = self.classes.len().max(1);
        self.predicted_classes().into_iter().enumerate().map(|(i, c)| self.probabilities[i * k + c]).collect()
    }

    /// Rows `offset..offset + n`.
    pub fn slice(&self, offset: usize, n: usize) -> Self {
        let k = self.classes.len();
        Self {
            task: self.task,
            scores: self.scores[offset..offset + n].to_vec(),
            classes: self.classes.clone(),
            probabilities: if k > 0 { self.probabilities[offset * k..(offset + n) * k].to_vec() } else { Vec::new() },
        }
    }

    /// The given rows, in the order given.
    pub fn take(&self, rows: &[usize]) -> Self {
        let k = self.classes.len();
        Self {
            task: self.task,
            scores: rows.iter().map(|&i| self.scores[i]).collect(),
            classes: self.classes.clone(),
            probabilities: rows.iter().flat_map(|&i| self.probabilities[i * k..(i + 1) * k].iter().copied()).collect(),
        }
    }

    /// Output columns: `probability` and `prediction` (boolean) for binary classification,
    /// `prediction` for regression; for multiclass `prediction` (the class), `probability` (its
    /// probability) and `probability_<class>` for every class.
    pub fn columns(&self, threshold: f64) -> Vec<(String, ArrayRef)> {
        let scores = Arc::new(Float64Array::from(self.scores.clone())) as ArrayRef;
        match self.task {
            Task::BinaryClassification => {
                let labels: BooleanArray = self.scores.iter().map(|p| Some(*p >= threshold)).collect();
                vec![("probability".into(), scores), ("prediction".into(), Arc::new(labels) as ArrayRef)]
            }
            Task::Regression => vec![("prediction".into(), scores)],
            Task::Clustering => {
                // The cluster by name (`0`, `1`, ...): an id, profiled by monitoring as a category.
                let cluster: StringArray =
                    self.predicted_classes().into_iter().map(|c| Some(self.classes[c].as_str())).collect();
                let distance = Float64Array::from(self.cluster_distances());
                vec![
                    ("cluster".into(), Arc::new(cluster) as ArrayRef),
                    ("distance".into(), Arc::new(distance) as ArrayRef),
                ]
            }
            Task::MulticlassClassification => {
                let k = self.classes.len();
                let labels: StringArray =
                    self.predicted_classes().into_iter().map(|c| Some(self.classes[c].as_str())).collect();
                let mut out =
                    vec![("prediction".to_string(), Arc::new(labels) as ArrayRef), ("probability".into(), scores)];
                for (c, name) in self.classes.iter().enumerate() {
                    let p: Float64Array = self.probabilities.chunks(k).map(|row| Some(row[c])).collect();
                    out.push((format!("probability_{name}"), Arc::new(p) as ArrayRef));
                }
                out
            }
        }
    }
}

impl Predictor {
    pub fn new(artifact: ModelArtifact) -> Result<Self> {
        artifact.check()?;
        let prepared = Prepared::new(&artifact.transforms);
        let classes = Arc::from(artifact.classes.clone());
        Ok(Self { artifact, prepared, classes })
    }

    pub fn artifact(&self) -> &ModelArtifact {
        &self.artifact
    }

    /// The batch after the model's feature engineering (the batch itself when there is none).
    fn engineered<'b>(&self, batch: &'b RecordBatch) -> Result<std::borrow::Cow<'b, RecordBatch>> {
        if self.artifact.features.is_empty() {
            return Ok(std::borrow::Cow::Borrowed(batch));
        }
        Ok(std::borrow::Cow::Owned(self.artifact.features.apply(batch)?))
    }

    /// The model's design matrix for `batch`: its feature engineering, then its transforms.
    pub fn design_matrix(&self, batch: &RecordBatch) -> Result<DesignMatrix> {
        let batch = self.engineered(batch)?;
        self.prepared.matrix(&batch)
    }

    pub fn predict(&self, batch: &RecordBatch) -> Result<Predictions> {
        let batch = self.engineered(batch)?;
        let x = self.prepared.matrix(&batch)?;
        let scores = match &self.artifact.model {
            Model::Linear(m) => {
                let mut margins = m.margins(&x);
                match self.artifact.task {
                    Task::BinaryClassification => margins.into_iter().map(sigmoid).collect(),
                    Task::MulticlassClassification => {
                        margins.chunks_mut(m.outputs()).for_each(crate::gbdt::softmax);
                        margins
                    }
                    Task::Regression | Task::Clustering => margins,
                }
            }
            Model::Gbdt(m) => m.predict(&x),
            Model::Kmeans(m) => {
                let (clusters, distances) = m.assign(&x);
                let scores = clusters.into_iter().map(|c| c as f64).collect();
                return Ok(Predictions {
                    task: self.artifact.task,
                    scores,
                    classes: self.classes.clone(),
                    probabilities: distances,
                });
            }
        };
        if self.artifact.task == Task::MulticlassClassification {
            let k = self.artifact.classes.len();
            let mut p = Predictions {
                task: self.artifact.task,
                scores: Vec::new(),
                classes: self.classes.clone(),
                probabilities: scores,
            };
            p.scores = p.probabilities.chunks(k).map(|row| row.iter().copied().fold(f64::MIN, f64::max)).collect();
            return Ok(p);
        }
        Ok(Predictions::new(self.artifact.task, scores))
    }

    /// Each input column's contribution to every row's raw score (log-odds for binary
    /// classification; each class's raw score, before the softmax, for multiclass), plus the
    /// bias: `bias + Σ contributions == raw score`. Exact TreeSHAP for GBDT; `weight x
    /// transformed value` summed per input column for linear models.
    pub fn explain(&self, batch: &RecordBatch) -> Result<Explanation> {
        let batch = self.engineered(batch)?;
        let x = self.prepared.matrix(&batch)?;
        let per_feature = match &self.artifact.model {
            Model::Linear(m) => m.contributions(&x),
            Model::Gbdt(m) => m.contributions(&x),
            Model::Kmeans(_) => {
                return Err(crate::error::ModelError::Unsupported(
                    "explanations of clustering models (there is no score to attribute)".into(),
                ));
            }
        };
        // Fold design-matrix columns back into the input columns they came from, per output.
        let transforms = &self.artifact.transforms;
        let block = transforms.len() + 1;
        let outputs = per_feature.cols / (x.cols + 1);
        let cols = outputs * block;
        let mut values = vec![0.0; x.rows * cols];
        for r in 0..x.rows {
            for (o, src) in per_feature.row(r).chunks(x.cols + 1).enumerate() {
                let out = &mut values[r * cols + o * block..r * cols + (o + 1) * block];
                let mut at = 0;
                for (t, transform) in transforms.iter().enumerate() {
                    out[t] = src[at..at + transform.width()].iter().sum();
                    at += transform.width();
                }
                out[block - 1] = src[at];
            }
        }
        let classes = if outputs > 1 { self.artifact.classes.clone() } else { Vec::new() };
        Ok(Explanation {
            columns: transforms.iter().map(|t| t.column().to_string()).collect(),
            classes,
            values: DesignMatrix { data: values, rows: x.rows, cols },
        })
    }

    /// The input batch with the prediction columns, then `contribution_<column>` for every input
    /// column and `contribution_bias` (multiclass: `contribution_<class>_<column>` and
    /// `contribution_<class>_bias` for every class).
    pub fn explain_batch(&self, batch: &RecordBatch, threshold: f64) -> Result<RecordBatch> {
        let scored = self.score_batch(batch, threshold)?;
        let e = self.explain(batch)?;
        let mut fields: Vec<(String, ArrayRef)> =
            scored.schema().fields().iter().zip(scored.columns()).map(|(f, c)| (f.name().clone(), c.clone())).collect();
        let names: Vec<&str> = e.columns.iter().map(String::as_str).chain(["bias"]).collect();
        let prefixes: Vec<String> = if e.classes.is_empty() {
            vec![String::new()]
        } else {
            e.classes.iter().map(|c| format!("{c}_")).collect()
        };
        let mut j = 0;
        for prefix in &prefixes {
            for name in &names {
                let col: Float64Array = (0..e.values.rows).map(|r| Some(e.values.row(r)[j])).collect();
                let name = format!("contribution_{prefix}{name}");
                fields.retain(|(n, _)| *n != name);
                fields.push((name, Arc::new(col) as ArrayRef));
                j += 1;
            }
        }
        RecordBatch::try_from_iter(fields)
            .map_err(|e| crate::error::ModelError::Internal(format!("building explanation batch: {e}")))
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
            fields.retain(|(n, _)| *n != name);
            fields.push((name, col));
        }
        RecordBatch::try_from_iter(fields)
            .map_err(|e| crate::error::ModelError::Internal(format!("building output batch: {e}")))
    }
}
