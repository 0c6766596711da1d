//! Fitted feature transforms: raw Arrow columns → a dense design matrix.
//!
//! Fitting happens at training time (in `sluice-train`); applying happens here, and training
//! builds its own matrix through this same code.

use std::collections::HashMap;

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_cast::{CastOptions, cast_with_options};
use arrow_schema::DataType;
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Transform {
    /// `(x - mean) / scale`; a missing value (null or NaN) becomes 0, i.e. the training mean.
    Standardize { column: String, mean: f64, scale: f64 },
    /// One 0/1 feature per category; a missing or unseen value sets none of them.
    OneHot { column: String, categories: Vec<String> },
    /// The value as a number, `NaN` when missing (tree models handle missing values natively).
    Numeric { column: String },
    /// The category's index in `categories`, `NaN` when missing or unseen (tree models split on
    /// sets of categories natively).
    Categorical { column: String, categories: Vec<String> },
}

impl Transform {
    pub fn column(&self) -> &str {
        match self {
            Transform::Standardize { column, .. }
            | Transform::OneHot { column, .. }
            | Transform::Numeric { column }
            | Transform::Categorical { column, .. } => column,
        }
    }

    /// How many design-matrix columns this transform produces.
    pub fn width(&self) -> usize {
        match self {
            Transform::Standardize { .. } | Transform::Numeric { .. } | Transform::Categorical { .. } => 1,
            Transform::OneHot { categories, .. } => categories.len(),
        }
    }

    /// Whether the transform reads its column as text (rather than as a number).
    pub fn reads_text(&self) -> bool {
        matches!(self, Transform::OneHot { .. } | Transform::Categorical { .. })
    }

    pub fn feature_names(&self) -> Vec<String> {
        match self {
            Transform::Standardize { column, .. }
            | Transform::Numeric { column }
            | Transform::Categorical { column, .. } => vec![column.clone()],
            Transform::OneHot { column, categories } => categories.iter().map(|c| format!("{column}={c}")).collect(),
        }
    }
}

/// A dense row-major matrix of features.
#[derive(Clone, Debug, PartialEq)]
pub struct DesignMatrix {
    pub data: Vec<f64>,
    pub rows: usize,
    pub cols: usize,
}

impl DesignMatrix {
    pub fn row(&self, i: usize) -> &[f64] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }
}

/// Transforms with their lookup tables built once, for repeated scoring (a `Predictor` keeps
/// one, so serving a row does not rebuild the category tables).
pub(crate) struct Prepared {
    transforms: Vec<Transform>,
    lookups: Vec<Option<HashMap<String, usize>>>,
    width: usize,
}

impl Prepared {
    pub(crate) fn new(transforms: &[Transform]) -> Self {
        let lookups = transforms
            .iter()
            .map(|t| match t {
                Transform::OneHot { categories, .. } | Transform::Categorical { categories, .. } => {
                    Some(categories.iter().enumerate().map(|(i, c)| (c.clone(), i)).collect())
                }
                Transform::Standardize { .. } | Transform::Numeric { .. } => None,
            })
            .collect();
        Self { transforms: transforms.to_vec(), lookups, width: transforms.iter().map(Transform::width).sum() }
    }

    pub(crate) fn matrix(&self, batch: &RecordBatch) -> Result<DesignMatrix> {
        let rows = batch.num_rows();
        let cols = self.width;
        let mut data = vec![0.0; rows * cols];
        let mut offset = 0;
        for (t, lookup) in self.transforms.iter().zip(&self.lookups) {
            let column = column(batch, t.column(), &self.transforms)?;
            match (t, lookup) {
                (Transform::Standardize { mean, scale, .. }, _) => {
                    let values = numeric(t.column(), column)?;
                    let values = values.as_primitive::<Float64Type>();
                    for i in 0..rows {
                        // Null and NaN are both missing: they stay 0, the training mean.
                        if values.is_valid(i) && !values.value(i).is_nan() {
                            data[i * cols + offset] = (values.value(i) - mean) / scale;
                        }
                    }
                }
                (Transform::OneHot { .. }, Some(lookup)) => {
                    let values = text(t.column(), column)?;
                    let values = values.as_string::<i32>();
                    for i in 0..rows {
                        if values.is_valid(i)
                            && let Some(&k) = lookup.get(values.value(i))
                        {
                            data[i * cols + offset + k] = 1.0;
                        }
                    }
                }
                (Transform::Numeric { .. }, _) => {
                    let values = numeric(t.column(), column)?;
                    let values = values.as_primitive::<Float64Type>();
                    for i in 0..rows {
                        // Null becomes NaN: tree models treat both as missing.
                        data[i * cols + offset] = if values.is_valid(i) { values.value(i) } else { f64::NAN };
                    }
                }
                (Transform::Categorical { .. }, Some(lookup)) => {
                    let values = text(t.column(), column)?;
                    let values = values.as_string::<i32>();
                    for i in 0..rows {
                        data[i * cols + offset] = match values.is_valid(i).then(|| lookup.get(values.value(i))) {
                            Some(Some(&k)) => k as f64,
                            _ => f64::NAN,
                        };
                    }
                }
                (Transform::OneHot { .. } | Transform::Categorical { .. }, None) => {
                    return Err(ModelError::Internal("category transform without lookup".into()));
                }
            }
            offset += t.width();
        }
        Ok(DesignMatrix { data, rows, cols })
    }
}

/// Apply fitted transforms to a batch.
pub fn design_matrix(transforms: &[Transform], batch: &RecordBatch) -> Result<DesignMatrix> {
    Prepared::new(transforms).matrix(batch)
}

fn column<'b>(batch: &'b RecordBatch, name: &str, all: &[Transform]) -> Result<&'b ArrayRef> {
    batch.column_by_name(name).ok_or_else(|| {
        let mut needed: Vec<&str> = all.iter().map(Transform::column).collect();
        needed.dedup();
        ModelError::MissingColumn {
            column: name.to_string(),
            needed: needed.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", "),
        }
    })
}

/// Any numeric or boolean column as Float64; text is parsed, and a value that is not a number is
/// an error rather than a silent null.
fn numeric(name: &str, array: &ArrayRef) -> Result<ArrayRef> {
    let dt = array.data_type();
    let castable = dt.is_numeric()
        || matches!(dt, DataType::Boolean | DataType::Null | DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
        || matches!(dt, DataType::Dictionary(_, v) if v.is_numeric());
    let err =
        || ModelError::ColumnType { column: name.to_string(), found: dt.to_string(), expected: "a number".into() };
    if !castable {
        return Err(err());
    }
    // Already the type (a served request, a Parquet column of doubles): no copy of its data.
    if *dt == DataType::Float64 {
        return Ok(array.clone());
    }
    let options = CastOptions { safe: false, ..Default::default() };
    cast_with_options(array, &DataType::Float64, &options).map_err(|_| err())
}

fn text(name: &str, array: &ArrayRef) -> Result<ArrayRef> {
    if *array.data_type() == DataType::Utf8 {
        return Ok(array.clone());
    }
    let options = CastOptions { safe: false, ..Default::default() };
    cast_with_options(array, &DataType::Utf8, &options).map_err(|_| ModelError::ColumnType {
        column: name.to_string(),
        found: array.data_type().to_string(),
        expected: "text".into(),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Float64Array, Int32Array, StringArray};

    use super::*;

    #[test]
    fn standardize_and_one_hot() {
        let batch = RecordBatch::try_from_iter([
            ("age", Arc::new(Int32Array::from(vec![Some(30), None, Some(50)])) as ArrayRef),
            ("job", Arc::new(StringArray::from(vec![Some("b"), Some("a"), Some("zz")])) as ArrayRef),
        ])
        .unwrap();
        let t = vec![
            Transform::Standardize { column: "age".into(), mean: 40.0, scale: 10.0 },
            Transform::OneHot { column: "job".into(), categories: vec!["a".into(), "b".into()] },
        ];
        let m = design_matrix(&t, &batch).unwrap();
        assert_eq!((m.rows, m.cols), (3, 3));
        let nan = RecordBatch::try_from_iter([
            ("age", Arc::new(Float64Array::from(vec![f64::NAN, 50.0])) as ArrayRef),
            ("job", Arc::new(StringArray::from(vec!["a", "b"])) as ArrayRef),
        ])
        .unwrap();
        assert_eq!(design_matrix(&t, &nan).unwrap().data[0], 0.0, "NaN is missing, like null");
        assert_eq!(m.data, vec![-1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0]);
    }

    #[test]
    fn missing_and_mistyped_columns_are_named() {
        let batch = RecordBatch::try_from_iter([("age", Arc::new(StringArray::from(vec!["x"])) as ArrayRef)]).unwrap();
        let t = vec![Transform::Standardize { column: "age".into(), mean: 0.0, scale: 1.0 }];
        let e = design_matrix(&t, &batch).unwrap_err().to_string();
        assert!(e.contains("`age`"), "{e}");
        let t = vec![Transform::Standardize { column: "height".into(), mean: 0.0, scale: 1.0 }];
        let e = design_matrix(&t, &batch).unwrap_err().to_string();
        assert!(e.contains("missing column `height`"), "{e}");
        let _ = Float64Array::from(vec![1.0]);
    }
}
