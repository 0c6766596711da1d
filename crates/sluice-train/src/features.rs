//! Fitting feature transforms and reading labels.

use std::collections::HashMap;

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::{Array, RecordBatch};
use arrow_cast::cast;
use arrow_schema::DataType;
use sluice_model::{Task, Transform};

use crate::error::{Result, TrainError};

#[derive(Clone, Debug)]
pub struct FeatureOptions {
    /// Scale numeric columns to unit variance (they are always centred, so missing values mean
    /// "the training mean").
    pub standardize: bool,
    /// Keep at most this many most frequent categories of a text column.
    pub max_categories: usize,
}

impl Default for FeatureOptions {
    fn default() -> Self {
        Self { standardize: true, max_categories: 100 }
    }
}

fn is_text(dt: &DataType) -> bool {
    match dt {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, v) => is_text(v),
        _ => false,
    }
}

/// Numeric and boolean columns are standardized; text columns are one-hot encoded with their
/// categories sorted, as scikit-learn's `StandardScaler` and `OneHotEncoder` do.
pub fn fit_transforms(batch: &RecordBatch, features: &[String], options: &FeatureOptions) -> Result<Vec<Transform>> {
    let mut out = Vec::with_capacity(features.len());
    for name in features {
        let column = batch.column_by_name(name).ok_or_else(|| TrainError::MissingColumn(name.clone()))?;
        let dt = column.data_type();
        if is_text(dt) {
            let categories = top_categories(column, name, options.max_categories)?;
            out.push(Transform::OneHot { column: name.clone(), categories });
        } else if dt.is_numeric() || *dt == DataType::Boolean {
            let values = cast(column, &DataType::Float64)
                .map_err(|_| TrainError::FeatureType { column: name.clone(), found: dt.to_string() })?;
            let values = values.as_primitive::<Float64Type>();
            let (mut n, mut mean, mut m2) = (0.0, 0.0, 0.0);
            // Welford's update: one pass, numerically stable.
            for v in values.iter().flatten().filter(|v| !v.is_nan()) {
                n += 1.0;
                let delta = v - mean;
                mean += delta / n;
                m2 += delta * (v - mean);
            }
            let std = if n > 0.0 { (m2 / n).sqrt() } else { 0.0 };
            let scale = if options.standardize && std > 0.0 { std } else { 1.0 };
            out.push(Transform::Standardize { column: name.clone(), mean, scale });
        } else {
            return Err(TrainError::FeatureType { column: name.clone(), found: dt.to_string() });
        }
    }
    Ok(out)
}

/// Transforms for tree models: numeric and boolean columns pass through raw (missing stays
/// missing), text columns become category indices over their `max_categories` most frequent
/// values (at most 255); rarer and unseen values count as missing.
pub fn fit_tree_transforms(batch: &RecordBatch, features: &[String], max_categories: usize) -> Result<Vec<Transform>> {
    let mut out = Vec::with_capacity(features.len());
    for name in features {
        let column = batch.column_by_name(name).ok_or_else(|| TrainError::MissingColumn(name.clone()))?;
        let dt = column.data_type();
        if is_text(dt) {
            out.push(Transform::Categorical {
                column: name.clone(),
                categories: top_categories(column, name, max_categories.min(255))?,
            });
        } else if dt.is_numeric() || *dt == DataType::Boolean {
            out.push(Transform::Numeric { column: name.clone() });
        } else {
            return Err(TrainError::FeatureType { column: name.clone(), found: dt.to_string() });
        }
    }
    Ok(out)
}

/// The `max` most frequent values of a text column, sorted.
fn top_categories(column: &arrow_array::ArrayRef, name: &str, max: usize) -> Result<Vec<String>> {
    let text = cast(column, &DataType::Utf8)
        .map_err(|_| TrainError::FeatureType { column: name.to_string(), found: column.data_type().to_string() })?;
    let text = text.as_string::<i32>();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for v in text.iter().flatten() {
        *counts.entry(v).or_default() += 1;
    }
    let mut by_count: Vec<(&str, usize)> = counts.into_iter().collect();
    by_count.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    by_count.truncate(max);
    let mut categories: Vec<String> = by_count.into_iter().map(|(c, _)| c.to_string()).collect();
    categories.sort();
    Ok(categories)
}

/// Class labels of a multiclass label column: its distinct values, sorted (numerically when
/// all are numbers), and each row's class index. Missing labels are an error.
pub fn class_labels(batch: &RecordBatch, label: &str) -> Result<(Vec<String>, Vec<f64>)> {
    let text = label_text(batch, label)?;
    let mut classes: Vec<String> =
        text.iter().flatten().map(str::to_string).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    if classes.iter().all(|c| c.parse::<f64>().is_ok()) {
        classes.sort_by(|a, b| a.parse::<f64>().unwrap_or(0.0).total_cmp(&b.parse::<f64>().unwrap_or(0.0)));
    }
    if classes.len() < 2 {
        return Err(TrainError::Invalid(format!(
            "label `{label}` has {} distinct value(s); multiclass needs at least 2",
            classes.len()
        )));
    }
    let y = class_indices(batch, label, &classes)?;
    Ok((classes, y))
}

/// Each row's index in `classes`; a label outside them is an error that names it.
pub fn class_indices(batch: &RecordBatch, label: &str, classes: &[String]) -> Result<Vec<f64>> {
    let text = label_text(batch, label)?;
    let index: HashMap<&str, usize> = classes.iter().enumerate().map(|(i, c)| (c.as_str(), i)).collect();
    text.iter()
        .map(|v| {
            let v = v.unwrap_or_default();
            index.get(v).map(|i| *i as f64).ok_or_else(|| {
                TrainError::Invalid(format!("label `{label}` has value `{v}`, which is not one of the model's classes"))
            })
        })
        .collect()
}

fn label_text(batch: &RecordBatch, label: &str) -> Result<arrow_array::StringArray> {
    let column = batch.column_by_name(label).ok_or_else(|| TrainError::MissingColumn(label.to_string()))?;
    if column.null_count() > 0 {
        return Err(TrainError::NullLabels { column: label.to_string(), nulls: column.null_count() });
    }
    let text = cast(column, &DataType::Utf8).map_err(|e| TrainError::LabelType {
        column: label.to_string(),
        found: column.data_type().to_string(),
        expected: e.to_string(),
    })?;
    Ok(text.as_string::<i32>().clone())
}

/// The label column of `batch` as the model reads it: 0/1, numbers, or class indices.
pub fn model_labels(model: &sluice_model::ModelArtifact, batch: &RecordBatch) -> Result<Vec<f64>> {
    match model.task {
        Task::MulticlassClassification => class_indices(batch, &model.label, &model.classes),
        // Clustering has no label.
        Task::Clustering => Ok(Vec::new()),
        task => label_values(batch, &model.label, task),
    }
}

/// The label column as f64: 0/1 for classification (boolean or numeric 0/1), any number for
/// regression. Missing labels are an error, not silently dropped rows.
pub fn label_values(batch: &RecordBatch, label: &str, task: Task) -> Result<Vec<f64>> {
    let column = batch.column_by_name(label).ok_or_else(|| TrainError::MissingColumn(label.to_string()))?;
    if column.null_count() > 0 {
        return Err(TrainError::NullLabels { column: label.to_string(), nulls: column.null_count() });
    }
    let dt = column.data_type();
    if !(dt.is_numeric() || *dt == DataType::Boolean) {
        return Err(TrainError::LabelType {
            column: label.to_string(),
            found: dt.to_string(),
            expected: match task {
                Task::BinaryClassification => "boolean or 0/1 (e.g. `income = '>50K' AS label` in SQL)".into(),
                Task::Regression => "a number".into(),
                Task::MulticlassClassification | Task::Clustering => "class labels".into(),
            },
        });
    }
    let values = cast(column, &DataType::Float64).map_err(|e| TrainError::LabelType {
        column: label.to_string(),
        found: dt.to_string(),
        expected: e.to_string(),
    })?;
    let values: Vec<f64> = values.as_primitive::<Float64Type>().values().to_vec();
    if task == Task::BinaryClassification
        && let Some(bad) = values.iter().find(|v| **v != 0.0 && **v != 1.0)
    {
        return Err(TrainError::NotBinary { column: label.to_string(), value: bad.to_string() });
    }
    Ok(values)
}
