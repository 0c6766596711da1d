//! MLflow-compatible scoring: `GET /ping`, `GET /version`, `POST /invocations` with
//! `dataframe_split`, `dataframe_records`, `instances`, `inputs` (JSON) or CSV with a header.
//! Answers `{"predictions": [...]}`: values for regression, `{"probability", "prediction"}`
//! records for binary classification.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use bytes::Bytes;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::columns::Inputs;
use crate::convert::{Data, Tensor, batch_from_columns, outputs};
use crate::{ApiError, LoadedModel};
use arrow_array::RecordBatch;

pub async fn ping() -> &'static str {
    "\n"
}

pub async fn version() -> &'static str {
    sluice_core::ENGINE_VERSION
}

const LAYOUTS: &str = "`dataframe_split`, `dataframe_records`, `instances` or `inputs`";

fn records_to_columns(records: &[Value], what: &str) -> Result<Vec<(String, Vec<Value>)>, ApiError> {
    let mut columns: Vec<(String, Vec<Value>)> = Vec::new();
    for (row, record) in records.iter().enumerate() {
        let Value::Object(fields) = record else {
            return Err(ApiError::bad_request(format!("{what}[{row}] must be an object of feature values")));
        };
        for (name, _) in fields {
            if !columns.iter().any(|(c, _)| c == name) {
                columns.push((name.clone(), vec![Value::Null; row]));
            }
        }
        for (name, values) in &mut columns {
            values.push(fields.get(name.as_str()).cloned().unwrap_or(Value::Null));
        }
    }
    Ok(columns)
}

fn rows_to_columns(names: &[String], rows: &[Value], what: &str) -> Result<Vec<(String, Vec<Value>)>, ApiError> {
    let mut columns: Vec<(String, Vec<Value>)> =
        names.iter().map(|n| (n.clone(), Vec::with_capacity(rows.len()))).collect();
    for (i, row) in rows.iter().enumerate() {
        let Value::Array(values) = row else {
            return Err(ApiError::bad_request(format!("{what}[{i}] must be a list of {} values", names.len())));
        };
        if values.len() != names.len() {
            return Err(ApiError::bad_request(format!(
                "{what}[{i}] has {} values for {} columns",
                values.len(),
                names.len()
            )));
        }
        for ((_, column), v) in columns.iter_mut().zip(values) {
            column.push(v.clone());
        }
    }
    Ok(columns)
}

/// The batch of a JSON body: typed straight from the JSON when it is one of the common layouts
/// and all is well ([`crate::columns`]), else through the general path, which names any problem.
pub(crate) fn json_batch(model: &LoadedModel, body: &[u8]) -> Result<RecordBatch, ApiError> {
    if let Some(batch) = crate::columns::mlflow_batch(&model.inputs, body) {
        return Ok(batch);
    }
    general_batch(&model.inputs, body)
}

/// A JSON body through a tree of values: any layout, and errors that name the field.
pub(crate) fn general_batch(inputs: &Inputs, body: &[u8]) -> Result<RecordBatch, ApiError> {
    batch_from_columns(inputs, columns_from_json(inputs, body)?)
}

fn columns_from_json(inputs: &Inputs, body: &[u8]) -> Result<Vec<(String, Vec<Value>)>, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))?;
    let Value::Object(mut top) = value else {
        return Err(ApiError::bad_request(format!("expected a JSON object with one of {LAYOUTS}")));
    };
    let keys: Vec<String> = top.keys().cloned().collect();
    let [key] = keys.as_slice() else {
        return Err(ApiError::bad_request(format!("expected exactly one of {LAYOUTS}, got keys {keys:?}")));
    };
    let payload = top.remove(key).unwrap_or(Value::Null);
    let feature_names = || inputs.schema.fields().iter().map(|f| f.name().clone()).collect::<Vec<_>>();
    match (key.as_str(), payload) {
        ("dataframe_split", Value::Object(mut split)) => {
            let columns: Vec<String> = match split.remove("columns") {
                Some(Value::Array(c)) => c
                    .into_iter()
                    .map(|v| {
                        v.as_str()
                            .map(str::to_string)
                            .ok_or_else(|| ApiError::bad_request("`dataframe_split.columns` must be strings"))
                    })
                    .collect::<Result<_, _>>()?,
                _ => return Err(ApiError::bad_request("`dataframe_split` needs `columns` (a list of names)")),
            };
            match split.remove("data") {
                Some(Value::Array(rows)) => rows_to_columns(&columns, &rows, "dataframe_split.data"),
                _ => Err(ApiError::bad_request("`dataframe_split` needs `data` (a list of rows)")),
            }
        }
        ("dataframe_records", Value::Array(records)) => records_to_columns(&records, "dataframe_records"),
        ("instances" | "inputs", Value::Array(items)) => match items.first() {
            Some(Value::Array(_)) => rows_to_columns(&feature_names(), &items, key),
            _ => records_to_columns(&items, key),
        },
        ("inputs" | "instances", Value::Object(columns)) => columns_of_object(columns, key),
        (other, _) if ["dataframe_split", "dataframe_records", "instances", "inputs"].contains(&other) => {
            Err(ApiError::bad_request(format!("`{other}` has the wrong shape")))
        }
        (other, _) => Err(ApiError::bad_request(format!("unknown input layout `{other}`; expected one of {LAYOUTS}"))),
    }
}

fn columns_of_object(columns: Map<String, Value>, what: &str) -> Result<Vec<(String, Vec<Value>)>, ApiError> {
    columns
        .into_iter()
        .map(|(name, values)| match values {
            Value::Array(v) => Ok((name, v)),
            scalar => Ok((name, vec![scalar])),
        })
        .collect::<Result<Vec<_>, ApiError>>()
        .map_err(|e: ApiError| ApiError::bad_request(format!("{what}: {}", e.message)))
}

/// Parse CSV with a header: features are read as the types the model was trained on.
fn batch_from_csv(inputs: &Inputs, body: &Bytes) -> Result<arrow_array::RecordBatch, ApiError> {
    let bad = |e: arrow_schema::ArrowError| ApiError::bad_request(format!("invalid CSV: {e}"));
    let (inferred, _) = arrow_csv::reader::Format::default()
        .with_header(true)
        .infer_schema(std::io::Cursor::new(body), Some(1000))
        .map_err(bad)?;
    let names: Vec<&str> = inputs.schema.fields().iter().map(|f| f.name().as_str()).collect();
    // The file's columns in its order, each typed as the model's input of that name.
    let fields: Vec<arrow_schema::FieldRef> = inferred
        .fields()
        .iter()
        .map(|f| {
            inputs.schema.field_with_name(f.name()).map(|m| Arc::new(m.clone())).map_err(|_| {
                ApiError::bad_request(format!(
                    "unexpected feature `{}`; the model reads {}",
                    f.name(),
                    names.join(", ")
                ))
            })
        })
        .collect::<Result<_, ApiError>>()?;
    let reader = arrow_csv::ReaderBuilder::new(Arc::new(arrow_schema::Schema::new(fields)))
        .with_header(true)
        .with_batch_size(1 << 20)
        .build(std::io::Cursor::new(body))
        .map_err(bad)?;
    let mut batches = reader.collect::<Result<Vec<_>, _>>().map_err(bad)?;
    let batch = match batches.len() {
        0 => return Err(ApiError::bad_request("CSV body has a header but no rows")),
        1 => batches.remove(0),
        n => return Err(ApiError::bad_request(format!("CSV body too large ({n} batches of {} rows)", 1 << 20))),
    };
    // The model's input order, like every other request, so concurrent requests can be batched.
    let order = names
        .iter()
        .map(|name| {
            batch.schema().index_of(name).map_err(|_| {
                ApiError::bad_request(format!("missing feature `{name}`; the model reads {}", names.join(", ")))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let projected = batch.project(&order).map_err(bad)?;
    RecordBatch::try_new(inputs.schema.clone(), projected.columns().to_vec()).map_err(bad)
}

pub async fn invocations(
    State(state): State<Arc<crate::AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<axum::response::Response, ApiError> {
    let body = crate::error::body(body)?;
    // MLflow's scoring server serves one model; with several loaded, the first is the default.
    let name = state.models.models.keys().next().cloned().ok_or_else(|| ApiError::not_found("no model is loaded"))?;
    let routed = state.models.route(&name)?;
    let model = &*routed.answer;
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/json");
    let batch = if content_type.starts_with("application/json") {
        json_batch(model, &body)?
    } else if content_type.starts_with("text/csv") {
        batch_from_csv(&model.inputs, &body)?
    } else {
        return Err(ApiError::unsupported_media_type(format!(
            "content type `{content_type}` is not supported; use application/json or text/csv"
        )));
    };
    let rows = batch.num_rows();
    state.check_rows(rows)?;
    let given = headers.get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_string);
    let observed = state.observe(given, &batch);
    if let Some(shadow) = routed.shadow {
        crate::shadow(&state, shadow, batch.clone(), observed.as_ref().and_then(crate::Observation::logged_as));
    }
    let predictions = model.batcher.predict(batch).await?;
    if let Some(observed) = observed {
        state.log(model, routed.arm, observed, &predictions);
    }
    state.metrics.arm(&model.name, routed.arm, model.version);
    let tensors = outputs(&predictions, 0.5);
    Ok(crate::with_route_headers(Json(Answer { predictions: Rows(&tensors) }), routed.arm, model.version))
}

/// `{"predictions": ...}`: one tensor's values, or a record per row when there are several.
#[derive(Serialize)]
struct Answer<'a> {
    predictions: Rows<'a>,
}

struct Rows<'a>(&'a [Tensor]);

impl Serialize for Rows<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        if let [only] = self.0 {
            return only.data.serialize(serializer);
        }
        let rows = self.0.first().map_or(0, |t| t.data.len());
        let mut seq = serializer.serialize_seq(Some(rows))?;
        for i in 0..rows {
            seq.serialize_element(&Record(self.0, i))?;
        }
        seq.end()
    }
}

/// Row `i` of every tensor, as `{name: value, ...}` in the tensors' order.
struct Record<'a>(&'a [Tensor], usize);

impl Serialize for Record<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for tensor in self.0 {
            map.serialize_entry(&tensor.name, &Element(&tensor.data, self.1))?;
        }
        map.end()
    }
}

struct Element<'a>(&'a Data, usize);

impl Serialize for Element<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.element(self.1, serializer)
    }
}
