//! KServe Open Inference Protocol V2 (REST): health, metadata and inference.
//!
//! Inputs come either one tensor per feature (shape `[n]` or `[n, 1]`, named after the feature)
//! or as one 2-D tensor `[n, k]` whose columns are the model's inputs in order. Requests using
//! the binary tensor extension (`Inference-Header-Content-Length`, `binary_data_size`) are
//! decoded, and outputs asked for as binary (`binary_data_output` on the request, `binary_data` on
//! an output — what `tritonclient` asks for by default) follow the JSON header as raw bytes.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::convert::{Data, batch_from_columns, output_tensors, outputs};
use crate::{ApiError, LoadedModel};

type AppState = State<Arc<crate::AppState>>;
type Body = Result<Bytes, axum::extract::rejection::BytesRejection>;

pub async fn server_metadata() -> Json<Value> {
    Json(json!({ "name": "sluice", "version": sluice_core::ENGINE_VERSION, "extensions": ["binary_tensor_data"] }))
}

pub async fn live() -> StatusCode {
    StatusCode::OK
}

/// Ready once the models are loaded, which happens before the server listens.
pub async fn ready(State(state): AppState) -> StatusCode {
    if state.models.models.is_empty() { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK }
}

fn metadata(model: &LoadedModel) -> Value {
    let artifact = model.predictor.artifact();
    let inputs: Vec<Value> = artifact
        .inputs
        .iter()
        .map(|i| {
            let datatype = if artifact.reads_text(&i.name) { "BYTES" } else { "FP64" };
            json!({ "name": i.name, "datatype": datatype, "shape": [-1] })
        })
        .collect();
    let outputs: Vec<Value> = output_tensors(artifact)
        .into_iter()
        .map(|t| json!({ "name": t.name, "datatype": t.data.datatype(), "shape": [-1] }))
        .collect();
    json!({
        "name": model.name,
        "versions": [model.version.to_string()],
        "platform": "sluice",
        "inputs": inputs,
        "outputs": outputs,
    })
}

pub async fn model_metadata(State(state): AppState, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let model = state.models.get(&name)?;
    Ok(Json(metadata(&model)))
}

pub async fn model_version_metadata(
    State(state): AppState,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let model = state.models.version(&name, &version)?;
    Ok(Json(metadata(&model)))
}

pub async fn model_ready(State(state): AppState, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    state.models.get(&name).map(|_| StatusCode::OK)
}

pub async fn model_version_ready(
    State(state): AppState,
    Path((name, version)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state.models.version(&name, &version).map(|_| StatusCode::OK)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InferRequest {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: Option<Value>,
    inputs: Vec<InferInput>,
    #[serde(default)]
    outputs: Vec<RequestedOutput>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InferInput {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    data: Option<Value>,
    #[serde(default)]
    parameters: Option<Value>,
}

#[derive(Deserialize)]
struct RequestedOutput {
    name: String,
    #[serde(default)]
    parameters: Option<Value>,
}

/// A boolean parameter of the binary tensor extension, if given; anything but a boolean is a 400.
fn flag(parameters: Option<&Value>, key: &str, owner: &str) -> Result<Option<bool>, ApiError> {
    match parameters.and_then(|p| p.get(key)) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => {
            Err(ApiError::bad_request(format!("{owner}: parameter `{key}` must be true or false, got {other}")))
        }
    }
}

/// The outputs a request asks for, as (index among the model's outputs, sent as raw bytes):
/// all when it names none; the binary tensor extension's `binary_data_output` on the request is
/// the default for each, an output's own `binary_data` wins. Named outputs keep the model's
/// order, each once.
fn select_outputs(request: &InferRequest, names: &[String]) -> Result<Vec<(usize, bool)>, ApiError> {
    let all_binary = flag(request.parameters.as_ref(), "binary_data_output", "request")?.unwrap_or(false);
    if request.outputs.is_empty() {
        return Ok((0..names.len()).map(|at| (at, all_binary)).collect());
    }
    let mut selected = Vec::with_capacity(request.outputs.len());
    for wanted in &request.outputs {
        let Some(at) = names.iter().position(|n| *n == wanted.name) else {
            return Err(ApiError::bad_request(format!(
                "unknown output `{}` (outputs: {})",
                wanted.name,
                names.join(", ")
            )));
        };
        let owner = format!("output `{}`", wanted.name);
        selected.push((at, flag(wanted.parameters.as_ref(), "binary_data", &owner)?.unwrap_or(all_binary)));
    }
    selected.sort_by_key(|(at, _)| *at);
    selected.dedup_by_key(|(at, _)| *at);
    Ok(selected)
}

/// The response: JSON, or with binary outputs (binary tensor extension) the JSON header followed
/// by the outputs' bytes, its length in `Inference-Header-Content-Length`.
#[derive(serde::Serialize)]
struct InferResponse<'a> {
    model_name: &'a str,
    model_version: String,
    outputs: Vec<ResponseOutput<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
}

#[derive(serde::Serialize)]
struct ResponseOutput<'a> {
    name: &'a str,
    datatype: &'static str,
    shape: [usize; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<BinarySize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a Data>,
}

#[derive(serde::Serialize)]
struct BinarySize {
    binary_data_size: usize,
}

const DATATYPES: &[&str] = &[
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64", "BYTES",
];

fn flatten(value: Value, out: &mut Vec<Value>) {
    match value {
        Value::Array(items) => items.into_iter().for_each(|v| flatten(v, out)),
        other => out.push(other),
    }
}

/// Decode one input's raw bytes (binary tensor extension, little-endian) into JSON values.
fn decode_binary(input: &InferInput, raw: &[u8]) -> Result<Vec<Value>, ApiError> {
    let bad = |what: &str| ApiError::bad_request(format!("input `{}`: {what}", input.name));
    let fixed = |width: usize, f: &dyn Fn(&[u8]) -> Value| -> Result<Vec<Value>, ApiError> {
        if !raw.len().is_multiple_of(width) {
            return Err(bad(&format!("{} bytes is not a multiple of {width}", raw.len())));
        }
        Ok(raw.chunks_exact(width).map(f).collect())
    };
    let arr = |b: &[u8]| -> [u8; 8] {
        let mut a = [0u8; 8];
        a[..b.len()].copy_from_slice(b);
        a
    };
    match input.datatype.as_str() {
        "BOOL" => fixed(1, &|b| Value::Bool(b[0] != 0)),
        "UINT8" => fixed(1, &|b| Value::from(b[0])),
        "INT8" => fixed(1, &|b| Value::from(b[0] as i8)),
        "UINT16" => fixed(2, &|b| Value::from(u16::from_le_bytes([b[0], b[1]]))),
        "INT16" => fixed(2, &|b| Value::from(i16::from_le_bytes([b[0], b[1]]))),
        "UINT32" => fixed(4, &|b| Value::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
        "INT32" => fixed(4, &|b| Value::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
        "FP32" => fixed(4, &|b| Value::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64)),
        "UINT64" => fixed(8, &|b| Value::from(u64::from_le_bytes(arr(b)))),
        "INT64" => fixed(8, &|b| Value::from(i64::from_le_bytes(arr(b)))),
        "FP64" => fixed(8, &|b| Value::from(f64::from_le_bytes(arr(b)))),
        "BYTES" => {
            let mut values = Vec::new();
            let mut rest = raw;
            while !rest.is_empty() {
                if rest.len() < 4 {
                    return Err(bad("truncated BYTES element length"));
                }
                let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                let Some(element) = rest.get(4..4 + len) else { return Err(bad("truncated BYTES element")) };
                values.push(Value::String(String::from_utf8_lossy(element).into_owned()));
                rest = &rest[4 + len..];
            }
            Ok(values)
        }
        other => Err(bad(&format!("unsupported datatype `{other}`"))),
    }
}

/// Parse a JSON (or binary-extension) request body into its header and each input's values.
fn parse(headers: &HeaderMap, body: &Bytes) -> Result<(InferRequest, Vec<Vec<Value>>), ApiError> {
    let header_len = headers
        .get("inference-header-content-length")
        .map(|v| {
            v.to_str().ok().and_then(|s| s.trim().parse::<usize>().ok()).filter(|n| *n <= body.len()).ok_or_else(|| {
                ApiError::bad_request("`Inference-Header-Content-Length` is not a length within the body")
            })
        })
        .transpose()?;
    let (json_part, mut binary) = match header_len {
        Some(n) => (&body[..n], &body[n..]),
        None => (&body[..], &[][..]),
    };
    let mut request: InferRequest = serde_json::from_slice(json_part)
        .map_err(|e| ApiError::bad_request(format!("invalid inference request: {e}")))?;
    let mut columns = Vec::with_capacity(request.inputs.len());
    for input in &mut request.inputs {
        if !DATATYPES.contains(&input.datatype.as_str()) {
            return Err(ApiError::bad_request(format!(
                "input `{}`: unknown datatype `{}`",
                input.name, input.datatype
            )));
        }
        let size = input.parameters.as_ref().and_then(|p| p.get("binary_data_size")).and_then(Value::as_u64);
        let values = match (size, input.data.take()) {
            (Some(size), _) => {
                let size = size as usize;
                if size > binary.len() {
                    return Err(ApiError::bad_request(format!(
                        "input `{}`: binary_data_size {size} exceeds the body",
                        input.name
                    )));
                }
                let (mine, rest) = binary.split_at(size);
                binary = rest;
                decode_binary(input, mine)?
            }
            (None, Some(data)) => {
                let mut flat = Vec::new();
                flatten(data, &mut flat);
                flat
            }
            (None, None) => return Err(ApiError::bad_request(format!("input `{}` has no `data`", input.name))),
        };
        let expected: i64 = input.shape.iter().product();
        if input.shape.iter().any(|d| *d < 0) || expected as usize != values.len() {
            return Err(ApiError::bad_request(format!(
                "input `{}`: shape {:?} needs {expected} values, got {}",
                input.name,
                input.shape,
                values.len()
            )));
        }
        columns.push(values);
    }
    Ok((request, columns))
}

async fn run_infer(
    state: &crate::AppState,
    model: &LoadedModel,
    shadow: Option<Arc<LoadedModel>>,
    arm: &'static str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<axum::response::Response, ApiError> {
    let (request, mut values) = parse(headers, body)?;
    let artifact = model.predictor.artifact();
    let names: Vec<&str> = artifact.inputs.iter().map(|i| i.name.as_str()).collect();
    // One 2-D tensor [n, k] holding every feature, in the model's input order.
    let columns: Vec<(String, Vec<Value>)> = match request.inputs.as_slice() {
        [only] if only.shape.len() == 2 && !names.contains(&only.name.as_str()) => {
            let k = only.shape[1] as usize;
            if k != names.len() {
                return Err(ApiError::bad_request(format!(
                    "input `{}` has {k} columns but the model reads {} features ({})",
                    only.name,
                    names.len(),
                    names.join(", ")
                )));
            }
            let flat = values.remove(0);
            names
                .iter()
                .enumerate()
                .map(|(j, n)| (n.to_string(), flat.iter().skip(j).step_by(k).cloned().collect()))
                .collect()
        }
        inputs => {
            if let Some(bad) = inputs.iter().find(|i| i.shape.len() > 2 || (i.shape.len() == 2 && i.shape[1] != 1)) {
                return Err(ApiError::bad_request(format!(
                    "input `{}` has shape {:?}; send one input per feature with shape [n] or [n, 1], or one [n, {}] input",
                    bad.name,
                    bad.shape,
                    names.len()
                )));
            }
            inputs.iter().map(|i| i.name.clone()).zip(values).collect()
        }
    };
    // Which outputs, and which as raw bytes: settled before anything is scored or logged.
    let names: Vec<String> = output_tensors(artifact).into_iter().map(|t| t.name).collect();
    let selected = select_outputs(&request, &names)?;
    let batch = batch_from_columns(&model.inputs, columns)?;
    let rows = batch.num_rows();
    state.check_rows(rows)?;
    let observed = state.observe(request.id.clone(), &batch);
    if let Some(shadow) = shadow {
        crate::shadow(state, shadow, batch.clone(), observed.as_ref().and_then(crate::Observation::logged_as));
    }
    let predictions = model.batcher.predict(batch).await?;
    if let Some(observed) = observed {
        state.log(model, arm, observed, &predictions);
    }
    state.metrics.arm(&model.name, arm, model.version);
    let mut all: Vec<Option<crate::convert::Tensor>> = outputs(&predictions, 0.5).into_iter().map(Some).collect();
    let (tensors, binary): (Vec<_>, Vec<bool>) =
        selected.into_iter().filter_map(|(at, binary)| Some((all.get_mut(at)?.take()?, binary))).unzip();
    let mut bytes = Vec::new();
    let outputs = tensors
        .iter()
        .zip(&binary)
        .map(|(t, &binary)| {
            let parameters = binary.then(|| {
                let before = bytes.len();
                t.data.write_binary(&mut bytes);
                BinarySize { binary_data_size: bytes.len() - before }
            });
            ResponseOutput {
                name: &t.name,
                datatype: t.data.datatype(),
                shape: [rows],
                parameters,
                data: (!binary).then_some(&t.data),
            }
        })
        .collect();
    let response =
        InferResponse { model_name: &model.name, model_version: model.version.to_string(), outputs, id: request.id };
    let mut body =
        serde_json::to_vec(&response).map_err(|e| ApiError::internal(format!("cannot write the response: {e}")))?;
    let answer = if binary.contains(&true) {
        let header_length = body.len();
        body.extend_from_slice(&bytes);
        (
            [
                (axum::http::header::CONTENT_TYPE, "application/octet-stream".to_string()),
                (axum::http::HeaderName::from_static("inference-header-content-length"), header_length.to_string()),
            ],
            body,
        )
            .into_response()
    } else {
        ([(axum::http::header::CONTENT_TYPE, "application/json".to_string())], body).into_response()
    };
    Ok(crate::with_route_headers(answer, arm, model.version))
}

pub async fn infer(
    State(state): AppState,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<axum::response::Response, ApiError> {
    let routed = state.models.route(&name)?;
    run_infer(&state, &routed.answer, routed.shadow, routed.arm, &headers, &crate::error::body(body)?).await
}

pub async fn infer_version(
    State(state): AppState,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<axum::response::Response, ApiError> {
    let model = state.models.version(&name, &version)?;
    run_infer(&state, &model, None, "pinned", &headers, &crate::error::body(body)?).await
}
