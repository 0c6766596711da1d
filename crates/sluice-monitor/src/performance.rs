//! Performance monitoring with delayed ground truth: labels that arrive later (a file or a
//! table keyed like the prediction logs, by default `request_id` + `row`) are joined to the
//! logged predictions, and the model's metrics are computed per window of the logs' time and
//! overall, next to the metrics recorded when the model was evaluated.

use std::collections::{BTreeMap, HashMap};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type};
use serde::Serialize;
use sluice_model::{ModelArtifact, Task};
use sluice_profile::Window;

use crate::error::{MonitorError, Result};

/// The metrics of a task for labels `y` and scores `p` (probabilities of the positive class,
/// values, or row-major class probabilities).
pub fn task_metrics(
    task: Task,
    classes: usize,
    y: &[f64],
    p: &[f64],
    threshold: f64,
) -> Result<BTreeMap<String, f64>, sluice_metrics::MetricsError> {
    Ok(match task {
        Task::BinaryClassification => sluice_metrics::binary(y, p, threshold)?.to_map(),
        Task::Regression => sluice_metrics::regression(y, p)?.to_map(),
        Task::MulticlassClassification => sluice_metrics::multiclass(y, p, classes)?.to_map(),
        Task::Clustering => return Err(sluice_metrics::MetricsError::Unlabeled),
    })
}

#[derive(Clone, Debug, Serialize)]
pub struct WindowMetrics {
    /// Seconds since the epoch (or the first matched row's index for windows of rows).
    pub start: i64,
    pub rows: u64,
    pub metrics: BTreeMap<String, f64>,
    /// Why metrics are missing (e.g. a window with one class has no AUC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Performance {
    /// Logged rows with a label.
    pub matched: u64,
    /// Logged rows without one (yet).
    pub unlabeled: u64,
    pub truth_rows: u64,
    pub overall: BTreeMap<String, f64>,
    pub windows: Vec<WindowMetrics>,
}

/// Joins ground truth to scored rows as they stream past.
pub struct PerformanceJoin {
    task: Task,
    classes: Vec<String>,
    key: Vec<String>,
    threshold: f64,
    window: Option<(Window, String)>,
    truth: HashMap<String, f64>,
    truth_rows: u64,
    seen: u64,
    unlabeled: u64,
    /// Per window: labels and scores (row-major probabilities for multiclass).
    windows: BTreeMap<i64, (Vec<f64>, Vec<f64>)>,
}

/// Each row's key: the key columns' values as text, joined by a unit separator.
fn keys(batch: &RecordBatch, key: &[String], what: &str) -> Result<Vec<Option<String>>> {
    let mut parts = Vec::with_capacity(key.len());
    for k in key {
        let column = batch.column_by_name(k).ok_or_else(|| {
            let names: Vec<String> = batch.schema().fields().iter().map(|f| f.name().clone()).collect();
            MonitorError::Invalid(format!("{what} has no key column `{k}` (columns: {})", names.join(", ")))
        })?;
        parts.push(arrow::compute::cast(column, &DataType::Utf8)?);
    }
    Ok((0..batch.num_rows())
        .map(|i| {
            let mut out = String::new();
            for (j, p) in parts.iter().enumerate() {
                if p.is_null(i) {
                    return None;
                }
                if j > 0 {
                    out.push('\u{1f}');
                }
                out.push_str(p.as_string::<i32>().value(i));
            }
            Some(out)
        })
        .collect())
}

fn f64_column(batch: &RecordBatch, name: &str) -> Result<Vec<f64>> {
    let column = batch
        .column_by_name(name)
        .ok_or_else(|| MonitorError::Invalid(format!("the scored rows have no `{name}` column")))?;
    let f = arrow::compute::cast(column, &DataType::Float64)?;
    Ok(f.as_primitive::<Float64Type>().iter().map(|v| v.unwrap_or(f64::NAN)).collect())
}

impl PerformanceJoin {
    /// `truth`: batches with the key columns and the label (named `label`, or the model's label
    /// when `None`). `window`: the window and the time column of the scored rows.
    pub fn new(
        artifact: &ModelArtifact,
        truth: &[RecordBatch],
        key: &[String],
        label: Option<&str>,
        threshold: f64,
        window: Option<(Window, String)>,
    ) -> Result<Self> {
        if artifact.task == Task::Clustering {
            return Err(MonitorError::Invalid(
                "performance monitoring joins labels to predictions; a clustering model has no label".into(),
            ));
        }
        let mut map = HashMap::new();
        let mut truth_rows = 0;
        for batch in truth {
            let batch = match label {
                Some(l) if l != artifact.label => {
                    let i = batch
                        .schema()
                        .index_of(l)
                        .map_err(|_| MonitorError::Invalid(format!("the ground truth has no label column `{l}`")))?;
                    let mut fields: Vec<_> = batch.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
                    fields[i] = fields[i].clone().with_name(&artifact.label);
                    RecordBatch::try_new(
                        std::sync::Arc::new(arrow::datatypes::Schema::new(fields)),
                        batch.columns().to_vec(),
                    )?
                }
                _ => batch.clone(),
            };
            let y = sluice_train::model_labels(artifact, &batch).map_err(|e| {
                MonitorError::Invalid(format!("the ground truth's label `{}`: {e}", label.unwrap_or(&artifact.label)))
            })?;
            for (k, y) in keys(&batch, key, "the ground truth")?.into_iter().zip(y) {
                if let Some(k) = k {
                    map.insert(k, y);
                }
            }
            truth_rows += batch.num_rows() as u64;
        }
        Ok(Self {
            task: artifact.task,
            classes: artifact.classes.clone(),
            key: key.to_vec(),
            threshold,
            window,
            truth: map,
            truth_rows,
            seen: 0,
            unlabeled: 0,
            windows: BTreeMap::new(),
        })
    }

    /// Scored rows (prediction logs): the key columns, the prediction columns and, with
    /// windows of time, the time column.
    pub fn update(&mut self, batch: &RecordBatch) -> Result<()> {
        let n = batch.num_rows();
        let ks = keys(batch, &self.key, "the prediction logs")?;
        let scores: Vec<Vec<f64>> = match self.task {
            Task::BinaryClassification => vec![f64_column(batch, "probability")?],
            Task::Regression => vec![f64_column(batch, "prediction")?],
            Task::MulticlassClassification => {
                self.classes.iter().map(|c| f64_column(batch, &format!("probability_{c}"))).collect::<Result<_>>()?
            }
            Task::Clustering => unreachable!("refused in PerformanceJoin::new"),
        };
        let starts: Vec<Option<i64>> = match &self.window {
            None => vec![Some(0); n],
            Some((window, time)) => {
                let column = match window {
                    Window::Rows(_) => None,
                    Window::Seconds(_) => Some(batch.column_by_name(time).ok_or_else(|| {
                        MonitorError::Invalid(format!("the prediction logs have no time column `{time}`"))
                    })?),
                };
                sluice_profile::window_starts(*window, self.seen, n, column)
                    .map_err(|m| MonitorError::Invalid(format!("time column `{time}`: {m}")))?
            }
        };
        self.seen += n as u64;
        for (i, k) in ks.into_iter().enumerate() {
            let (Some(k), Some(start)) = (k, starts[i]) else {
                self.unlabeled += 1;
                continue;
            };
            let Some(&y) = self.truth.get(&k) else {
                self.unlabeled += 1;
                continue;
            };
            let (ys, ps) = self.windows.entry(start).or_default();
            ys.push(y);
            ps.extend(scores.iter().map(|s| s[i]));
        }
        Ok(())
    }

    pub fn finish(self) -> Performance {
        let classes = self.classes.len();
        let metrics = |y: &[f64], p: &[f64]| task_metrics(self.task, classes, y, p, self.threshold);
        let (mut all_y, mut all_p) = (Vec::new(), Vec::new());
        let mut windows = Vec::new();
        for (start, (y, p)) in &self.windows {
            all_y.extend_from_slice(y);
            all_p.extend_from_slice(p);
            let (metrics, error) = match metrics(y, p) {
                Ok(m) => (m, None),
                Err(e) => (BTreeMap::new(), Some(e.to_string())),
            };
            windows.push(WindowMetrics { start: *start, rows: y.len() as u64, metrics, error });
        }
        let overall = metrics(&all_y, &all_p).unwrap_or_default();
        Performance {
            matched: all_y.len() as u64,
            unlabeled: self.unlabeled,
            truth_rows: self.truth_rows,
            overall,
            windows: if self.window.is_some() { windows } else { Vec::new() },
        }
    }
}
