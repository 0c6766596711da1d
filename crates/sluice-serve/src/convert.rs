//! Request values → Arrow, typed by the model's recorded inputs; predictions → JSON.

use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use serde_json::Value;
use sluice_model::{ModelArtifact, Predictions, Task};

use crate::ApiError;

/// Build the model's input batch from named columns of JSON values. Every input the model reads
/// must be present, nothing else may be, and all columns must have the same length.
pub(crate) fn batch_from_columns(
    model: &ModelArtifact,
    mut columns: Vec<(String, Vec<Value>)>,
) -> Result<RecordBatch, ApiError> {
    let names: Vec<&str> = model.inputs.iter().map(|i| i.name.as_str()).collect();
    let expected = || names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ");
    if let Some((extra, _)) = columns.iter().find(|(c, _)| !names.contains(&c.as_str())) {
        return Err(ApiError::bad_request(format!("unexpected feature `{extra}`; the model reads {}", expected())));
    }
    let rows = columns.first().map_or(0, |(_, v)| v.len());
    if let Some((name, values)) = columns.iter().find(|(_, v)| v.len() != rows) {
        return Err(ApiError::bad_request(format!(
            "feature `{name}` has {} values but `{}` has {rows}",
            values.len(),
            columns[0].0
        )));
    }
    let mut fields = Vec::with_capacity(model.inputs.len());
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(model.inputs.len());
    for input in &model.inputs {
        let position = columns.iter().position(|(c, _)| *c == input.name).ok_or_else(|| {
            ApiError::bad_request(format!("missing feature `{}`; the model reads {}", input.name, expected()))
        })?;
        let (name, values) = columns.swap_remove(position);
        let text = model.reads_text(&input.name);
        let array: ArrayRef = if text {
            let strings = values
                .iter()
                .enumerate()
                .map(|(row, v)| match v {
                    Value::Null => Ok(None),
                    Value::String(s) => Ok(Some(s.clone())),
                    Value::Number(n) => Ok(Some(n.to_string())),
                    Value::Bool(b) => Ok(Some(b.to_string())),
                    other => Err(type_error(&name, row, "text", other)),
                })
                .collect::<Result<Vec<_>, _>>()?;
            Arc::new(StringArray::from(strings))
        } else {
            let numbers = values
                .iter()
                .enumerate()
                .map(|(row, v)| match v {
                    Value::Null => Ok(None),
                    Value::Number(n) => n.as_f64().map(Some).ok_or_else(|| type_error(&name, row, "a number", v)),
                    Value::Bool(b) => Ok(Some(f64::from(u8::from(*b)))),
                    other => Err(type_error(&name, row, "a number", other)),
                })
                .collect::<Result<Vec<_>, _>>()?;
            Arc::new(Float64Array::from(numbers))
        };
        fields.push(Field::new(&name, if text { DataType::Utf8 } else { DataType::Float64 }, true));
        arrays.push(array);
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
        .map_err(|e| ApiError::bad_request(format!("cannot build the input batch: {e}")))
}

fn type_error(name: &str, row: usize, expected: &str, got: &Value) -> ApiError {
    let mut shown = got.to_string();
    if shown.len() > 40 {
        shown.truncate(40);
        shown.push('…');
    }
    ApiError::bad_request(format!("feature `{name}`, row {row}: expected {expected}, got {shown}"))
}

/// Output tensors of a prediction, as (name, KServe datatype, values).
pub(crate) fn outputs(predictions: &Predictions, threshold: f64) -> Vec<(String, &'static str, Vec<Value>)> {
    let scores: Vec<Value> = predictions.scores.iter().map(|s| Value::from(*s)).collect();
    match predictions.task {
        Task::BinaryClassification => {
            let labels = predictions.scores.iter().map(|s| Value::Bool(*s >= threshold)).collect();
            vec![("probability".into(), "FP64", scores), ("prediction".into(), "BOOL", labels)]
        }
        Task::Regression => vec![("prediction".into(), "FP64", scores)],
        Task::Clustering => vec![
            (
                "cluster".into(),
                "INT64",
                predictions.predicted_classes().into_iter().map(|c| Value::from(c as i64)).collect(),
            ),
            ("distance".into(), "FP64", predictions.cluster_distances().into_iter().map(Value::from).collect()),
        ],
        Task::MulticlassClassification => {
            let k = predictions.classes.len();
            let labels = predictions
                .predicted_classes()
                .into_iter()
                .map(|c| Value::from(predictions.classes[c].as_str()))
                .collect();
            let mut out = vec![("prediction".into(), "BYTES", labels), ("probability".into(), "FP64", scores)];
            for (c, name) in predictions.classes.iter().enumerate() {
                let p = predictions.probabilities.chunks(k).map(|row| Value::from(row[c])).collect();
                out.push((format!("probability_{name}"), "FP64", p));
            }
            out
        }
    }
}
