//! Request values → Arrow, typed by the model's recorded inputs; predictions → JSON.

use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray};
use arrow_schema::DataType;
use serde_json::Value;
use sluice_model::{ModelArtifact, Predictions, Task};

use crate::ApiError;
use crate::columns::Inputs;

/// Build the model's input batch from named columns of JSON values. Every input the model reads
/// must be present, nothing else may be, and all columns must have the same length.
pub(crate) fn batch_from_columns(
    inputs: &Inputs,
    mut columns: Vec<(String, Vec<Value>)>,
) -> Result<RecordBatch, ApiError> {
    let fields = inputs.schema.fields();
    let names: Vec<&str> = fields.iter().map(|f| f.name().as_str()).collect();
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
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(fields.len());
    for field in fields {
        let position = columns.iter().position(|(c, _)| c == field.name()).ok_or_else(|| {
            ApiError::bad_request(format!("missing feature `{}`; the model reads {}", field.name(), expected()))
        })?;
        let (name, values) = columns.swap_remove(position);
        let array: ArrayRef = if *field.data_type() == DataType::Utf8 {
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
        arrays.push(array);
    }
    RecordBatch::try_new(inputs.schema.clone(), arrays)
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

/// One output tensor's values, typed as the KServe datatype they are sent as.
#[derive(Debug)]
pub(crate) enum Data {
    Fp64(Vec<f64>),
    Bool(Vec<bool>),
    Int64(Vec<i64>),
    Bytes(Vec<String>),
}

impl Data {
    pub(crate) fn datatype(&self) -> &'static str {
        match self {
            Data::Fp64(_) => "FP64",
            Data::Bool(_) => "BOOL",
            Data::Int64(_) => "INT64",
            Data::Bytes(_) => "BYTES",
        }
    }

    /// The binary tensor extension's layout: little-endian, row major, no padding; BOOL one byte,
    /// BYTES a 4-byte little-endian length before each element.
    pub(crate) fn write_binary(&self, out: &mut Vec<u8>) {
        match self {
            Data::Fp64(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Data::Int64(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Data::Bool(v) => out.extend(v.iter().map(|b| u8::from(*b))),
            Data::Bytes(v) => v.iter().for_each(|s| {
                out.extend_from_slice(&(s.len() as u32).to_le_bytes());
                out.extend_from_slice(s.as_bytes());
            }),
        }
    }

    /// Element `i`, serialized as JSON (non-finite numbers as `null`, as serde_json writes them).
    pub(crate) fn element<S: serde::Serializer>(&self, i: usize, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Data::Fp64(v) => serializer.serialize_f64(v[i]),
            Data::Bool(v) => serializer.serialize_bool(v[i]),
            Data::Int64(v) => serializer.serialize_i64(v[i]),
            Data::Bytes(v) => serializer.serialize_str(&v[i]),
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Data::Fp64(v) => v.len(),
            Data::Bool(v) => v.len(),
            Data::Int64(v) => v.len(),
            Data::Bytes(v) => v.len(),
        }
    }
}

impl serde::Serialize for Data {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Data::Fp64(v) => v.serialize(serializer),
            Data::Bool(v) => v.serialize(serializer),
            Data::Int64(v) => v.serialize(serializer),
            Data::Bytes(v) => v.serialize(serializer),
        }
    }
}

/// A named output tensor of a prediction.
#[derive(Debug)]
pub(crate) struct Tensor {
    pub name: String,
    pub data: Data,
}

/// A model's output tensors, with no rows: their names and datatypes, in [`outputs`]' order.
pub(crate) fn output_tensors(model: &ModelArtifact) -> Vec<Tensor> {
    let none = Predictions {
        task: model.task,
        scores: Vec::new(),
        classes: Arc::from(model.classes.clone()),
        probabilities: Vec::new(),
    };
    outputs(&none, 0.5)
}

/// Output tensors of a prediction: `probability` and `prediction` for binary classification,
/// `prediction` for regression, `cluster` and `distance` for clustering, and for multiclass
/// `prediction` (the class), `probability` (its probability) and `probability_<class>` each.
pub(crate) fn outputs(predictions: &Predictions, threshold: f64) -> Vec<Tensor> {
    let tensor = |name: &str, data| Tensor { name: name.to_string(), data };
    let scores = || Data::Fp64(predictions.scores.clone());
    match predictions.task {
        Task::BinaryClassification => {
            let labels = predictions.scores.iter().map(|s| *s >= threshold).collect();
            vec![tensor("probability", scores()), tensor("prediction", Data::Bool(labels))]
        }
        Task::Regression => vec![tensor("prediction", scores())],
        Task::Clustering => vec![
            tensor("cluster", Data::Int64(predictions.predicted_classes().into_iter().map(|c| c as i64).collect())),
            tensor("distance", Data::Fp64(predictions.cluster_distances())),
        ],
        Task::MulticlassClassification => {
            let k = predictions.classes.len();
            let labels = predictions.predicted_classes().into_iter().map(|c| predictions.classes[c].clone()).collect();
            let mut out = vec![tensor("prediction", Data::Bytes(labels)), tensor("probability", scores())];
            for (c, name) in predictions.classes.iter().enumerate() {
                let p = predictions.probabilities.chunks(k).map(|row| row[c]).collect();
                out.push(Tensor { name: format!("probability_{name}"), data: Data::Fp64(p) });
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sluice_model::{LinearModel, Model, ModelArtifact, Predictions, Task};

    use super::*;

    /// Requested outputs are checked against `output_tensors` before scoring, and model metadata
    /// lists them: they must be what scoring produces, for every task.
    #[test]
    fn output_tensors_are_the_outputs() {
        for (task, classes) in [
            (Task::BinaryClassification, vec![]),
            (Task::Regression, vec![]),
            (Task::Clustering, vec!["0".to_string(), "1".to_string()]),
            (Task::MulticlassClassification, vec!["a".to_string(), "b".to_string(), "c".to_string()]),
        ] {
            let k = classes.len();
            let predictions = Predictions {
                task,
                scores: vec![0.0, 1.0],
                classes: Arc::from(classes.clone()),
                probabilities: vec![0.5; 2 * k],
            };
            let model = ModelArtifact {
                format_version: sluice_model::FORMAT_VERSION,
                task,
                label: "y".into(),
                classes,
                inputs: Vec::new(),
                features: Default::default(),
                transforms: Vec::new(),
                feature_names: Vec::new(),
                model: Model::Linear(LinearModel {
                    weights: Vec::new(),
                    intercept: 0.0,
                    intercepts: Vec::new(),
                    online: None,
                }),
                training: Default::default(),
                lineage: Default::default(),
            };
            let described: Vec<(String, &str)> =
                output_tensors(&model).into_iter().map(|t| (t.name, t.data.datatype())).collect();
            let produced: Vec<(String, &str)> =
                outputs(&predictions, 0.5).into_iter().map(|t| (t.name, t.data.datatype())).collect();
            assert_eq!(described, produced, "{task:?}");
        }
    }
}
