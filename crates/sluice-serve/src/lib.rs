//! The model server: loads registered models and scores requests over HTTP with the standard
//! protocols — KServe Open Inference Protocol V2 (`/v2/...`) and MLflow scoring (`/invocations`).
//!
//! Scoring goes through `sluice_model::Predictor`, the same code as `sluice predict` and the
//! pipeline's evaluate step. Requests become Arrow record batches typed by the model's recorded
//! input schema; every malformed request is a 4xx with `{"error": "..."}` naming the field.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let home = std::path::Path::new(".sluice");
//! let options = sluice_serve::ServeOptions::default();
//! let server = sluice_serve::Server::load(home, &["adult-income@champion".to_string()], &[], options).await?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! server.run(listener, std::future::pending()).await?;
//! # Ok(()) }
//! ```

mod batcher;
mod columns;
mod convert;
mod error;
mod live;
mod metrics;
mod mlflow;
mod models;
mod prediction_log;
mod v2;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::Semaphore;

pub use batcher::BatchOptions;
pub use error::ApiError;
pub use live::DriftOptions;
pub use models::{LoadedModel, ModelSet, PolicySpec, ServeError};
pub use prediction_log::LogOptions;

/// Limits and safety settings of a server.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Largest request body accepted (413 above).
    pub max_body_bytes: usize,
    /// Most rows one request may score (413 above).
    pub max_rows: usize,
    /// Longest a request may take (503 after).
    pub timeout: Duration,
    /// Requests scored at once; more get 503 with `Retry-After` instead of queueing unboundedly.
    pub max_concurrency: usize,
    /// When set, every route but the health checks needs `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// How often to check the registry for moved aliases; `None` disables hot reload.
    pub reload_every: Option<Duration>,
    /// Dynamic micro-batching of concurrent requests.
    pub batching: BatchOptions,
    /// Prediction logging for monitoring (off when the sample rate is 0).
    pub logging: LogOptions,
    /// Live drift gauges on `/metrics`.
    pub drift: DriftOptions,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            max_body_bytes: 16 << 20,
            max_rows: 100_000,
            timeout: Duration::from_secs(30),
            max_concurrency: 256,
            token: None,
            reload_every: Some(Duration::from_secs(2)),
            batching: BatchOptions::default(),
            logging: LogOptions::default(),
            drift: DriftOptions::default(),
        }
    }
}

/// What every handler can see.
pub struct AppState {
    pub models: ModelSet,
    pub options: ServeOptions,
    permits: Semaphore,
    pub(crate) metrics: Arc<metrics::Metrics>,
    pub(crate) log: Option<Arc<prediction_log::PredictionLog>>,
    pub(crate) live: Option<Arc<live::LiveDrift>>,
    requests: std::sync::atomic::AtomicU64,
    started_ms: u128,
}

impl AppState {
    /// A request id: the client's, else one made from the server start time and a counter.
    pub(crate) fn request_id(&self, given: Option<String>) -> String {
        given.unwrap_or_else(|| {
            format!("{}-{}", self.started_ms, self.requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
        })
    }

    /// Whether scored requests are kept for monitoring (logged or sketched).
    pub(crate) fn observing(&self) -> bool {
        self.log.is_some() || self.live.is_some()
    }

    /// Keep a request's rows for monitoring before they are scored (`None` when nothing
    /// observes): its id, and whether the prediction log samples it.
    pub(crate) fn observe(&self, given_id: Option<String>, batch: &arrow_array::RecordBatch) -> Option<Observation> {
        self.observing().then(|| {
            let logged = self.log.as_ref().is_some_and(|l| l.sample());
            Observation { batch: batch.clone(), request_id: logged.then(|| self.request_id(given_id)) }
        })
    }

    /// Offer a scored request to the live drift sketches and (if sampled) the prediction log,
    /// with the traffic-policy arm that answered it. Never blocks: both queue it for a
    /// background task.
    pub(crate) fn log(
        &self,
        model: &LoadedModel,
        arm: &'static str,
        observed: Observation,
        predictions: &sluice_model::Predictions,
    ) {
        let Observation { batch, request_id } = observed;
        if let Some(live) = &self.live {
            live.offer(model, &batch, predictions);
        }
        if let (Some(request_id), Some(log)) = (request_id, &self.log) {
            log.push_scored(model, arm, request_id, &batch, predictions);
        }
    }

    pub(crate) fn check_rows(&self, rows: usize) -> Result<(), ApiError> {
        if rows > self.options.max_rows {
            return Err(ApiError {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                message: format!(
                    "request has {rows} rows; this server scores at most {} per request",
                    self.options.max_rows
                ),
            });
        }
        Ok(())
    }
}

/// Health checks and metrics stay open to probes and scrapers even with a token.
fn is_probe(path: &str) -> bool {
    matches!(path, "/v2/health/live" | "/v2/health/ready" | "/ping" | "/metrics" | "/openapi.json")
}

async fn metrics_text(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let versions: Vec<(String, u32)> =
        state.models.models.iter().map(|(n, s)| (n.clone(), s.current().version)).collect();
    let log = state.log.as_ref().map(|l| {
        (l.written.load(std::sync::atomic::Ordering::Relaxed), l.dropped.load(std::sync::atomic::Ordering::Relaxed))
    });
    let mut text = state.metrics.render(&versions, log);
    if let Some(live) = &state.live {
        live.render(&mut text);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text)
}

/// Every request: counted and timed by its route pattern (not its raw path: bounded label
/// values), the bearer token checked, load shed when full, the time limit applied.
async fn gate(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<axum::extract::MatchedPath>().cloned();
    let started = std::time::Instant::now();
    let in_flight = InFlight::enter(&state.metrics.in_flight);
    let response = guard(&state, request, next).await;
    drop(in_flight);
    let route = route.as_ref().map_or("unmatched", |m| m.as_str());
    state.metrics.request(route, response.status().as_u16(), started.elapsed().as_secs_f64());
    response
}

/// One request in flight; leaving counts even when the request is dropped (its client went away).
struct InFlight<'a>(&'a std::sync::atomic::AtomicI64);

impl<'a> InFlight<'a> {
    fn enter(gauge: &'a std::sync::atomic::AtomicI64) -> Self {
        gauge.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self(gauge)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

async fn guard(state: &AppState, request: Request, next: Next) -> Response {
    let probe = is_probe(request.uri().path());
    if let Some(token) = &state.options.token
        && !probe
    {
        let given = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        if given.and_then(|g| g.strip_prefix("Bearer ")) != Some(token.as_str()) {
            let mut response =
                ApiError { status: StatusCode::UNAUTHORIZED, message: "missing or wrong bearer token".into() }
                    .into_response();
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
    }
    if probe {
        return next.run(request).await;
    }
    // Load shedding: a full server answers at once rather than queueing without bound.
    let Ok(_permit) = state.permits.try_acquire() else {
        state.metrics.shed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut response = ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: format!("server busy: {} requests in flight; retry shortly", state.options.max_concurrency),
        }
        .into_response();
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    };
    match tokio::time::timeout(state.options.timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: format!("request took longer than {:?}", state.options.timeout),
        }
        .into_response(),
    }
}

/// A request's rows kept for monitoring ([`AppState::observe`]).
pub(crate) struct Observation {
    batch: arrow_array::RecordBatch,
    /// The id the prediction log records the request under; `None` when it is not sampled.
    request_id: Option<String>,
}

impl Observation {
    /// The request id under which a sampled request is logged (its shadow's rows too).
    pub(crate) fn logged_as(&self) -> Option<String> {
        self.request_id.clone()
    }
}

/// Score a copy of a request with the shadow (challenger) model in the background; its answer is
/// counted, never returned, and never delays or fails the real request. When the request is
/// logged (`logged_as`), the shadow's predictions are logged too, under the same request id
/// with arm `shadow`, to compare the two offline.
pub(crate) fn shadow(
    state: &AppState,
    model: Arc<LoadedModel>,
    batch: arrow_array::RecordBatch,
    logged_as: Option<String>,
) {
    let metrics = state.metrics.clone();
    let log = state.log.clone().filter(|_| logged_as.is_some());
    tokio::spawn(async move {
        let logged = log.is_some().then(|| batch.clone());
        if let Ok(predictions) = model.batcher.predict(batch).await {
            metrics.arm(&model.name, "shadow", model.version);
            if let (Some(log), Some(id), Some(batch)) = (log, logged_as, logged) {
                log.push_scored(&model, "shadow", id, &batch, &predictions);
            }
        }
    });
}

/// Record per request which arm of a traffic policy answered, and with which version.
pub(crate) fn with_route_headers(body: impl IntoResponse, arm: &'static str, version: u32) -> Response {
    let mut response = body.into_response();
    response.headers_mut().insert("x-sluice-arm", HeaderValue::from_static(arm));
    response.headers_mut().insert("x-sluice-model-version", HeaderValue::from(version));
    response
}

/// The OpenAPI 3.1 description of this API (a test keeps its paths equal to the router's).
pub const OPENAPI: &str = include_str!("openapi.json");

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

/// The HTTP API over a set of loaded models.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v2", get(v2::server_metadata))
        .route("/v2/health/live", get(v2::live))
        .route("/v2/health/ready", get(v2::ready))
        .route("/v2/models/{model}", get(v2::model_metadata))
        .route("/v2/models/{model}/ready", get(v2::model_ready))
        .route("/v2/models/{model}/infer", post(v2::infer))
        .route("/v2/models/{model}/versions/{version}", get(v2::model_version_metadata))
        .route("/v2/models/{model}/versions/{version}/ready", get(v2::model_version_ready))
        .route("/v2/models/{model}/versions/{version}/infer", post(v2::infer_version))
        .route("/ping", get(mlflow::ping))
        .route("/version", get(mlflow::version))
        .route("/invocations", post(mlflow::invocations))
        .route("/metrics", get(metrics_text))
        .route("/openapi.json", get(openapi))
        .fallback(error::not_found)
        .layer(middleware::from_fn_with_state(state.clone(), gate))
        .layer(DefaultBodyLimit::max(state.options.max_body_bytes))
        .with_state(state)
}

/// A server ready to run: its models loaded, its limits set.
pub struct Server {
    state: Arc<AppState>,
}

impl Server {
    /// Load each `NAME@ALIAS`, `NAME:VERSION` or `NAME` (latest) from the home's registry.
    /// Load the models, and the challengers of their traffic policies.
    pub async fn load(
        home: &std::path::Path,
        references: &[String],
        policies: &[PolicySpec],
        options: ServeOptions,
    ) -> Result<Self, ServeError> {
        let metrics = Arc::new(metrics::Metrics::default());
        // One artifact store, the one runs of this home write to (SLUICE_ARTIFACT_STORE): models
        // load from it, prediction logs go to it, live drift finds the training data there.
        let store = sluice_store::ArtifactStore::for_home(home)
            .map_err(|source| ServeError::Home { home: home.display().to_string(), source })?;
        let models =
            ModelSet::load(home, store.clone(), references, policies, (options.batching, metrics.clone())).await?;
        let permits = Semaphore::new(options.max_concurrency.max(1));
        let log = (options.logging.sample_rate > 0.0)
            .then(|| prediction_log::PredictionLog::start(store.clone(), options.logging.clone()));
        let live = live::LiveDrift::start(store, options.drift.clone());
        let started_ms =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
        let requests = std::sync::atomic::AtomicU64::new(0);
        Ok(Self { state: Arc::new(AppState { models, options, permits, metrics, log, live, requests, started_ms }) })
    }

    /// `(name, version, reference)` of each served model.
    pub fn served(&self) -> Vec<(String, u32, String)> {
        self.state
            .models
            .models
            .values()
            .map(|s| {
                let m = s.current();
                (m.name.clone(), m.version, s.reference.clone())
            })
            .collect()
    }

    /// Serve until `shutdown` resolves, then finish in-flight requests. With `reload_every`, a
    /// background task swaps in new versions when their alias moves; requests in flight keep
    /// the version they started with.
    pub async fn run(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let state = self.state;
        if let Some(every) = state.options.reload_every {
            let watcher = state.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                loop {
                    tick.tick().await;
                    for (name, old, new) in watcher.models.reload().await {
                        eprintln!("reloaded {name}: version {old} -> {new}");
                    }
                }
            });
        }
        axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// Every route in `router` is documented in `openapi.json`, and nothing else is.
    #[test]
    fn openapi_paths_match_the_router() {
        let doc: serde_json::Value = serde_json::from_str(super::OPENAPI).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let documented: BTreeSet<String> = doc["paths"].as_object().unwrap().keys().cloned().collect();
        let source = include_str!("lib.rs");
        let routed: BTreeSet<String> = source
            .lines()
            .filter_map(|l| l.trim().strip_prefix(".route(\""))
            .filter_map(|rest| rest.split('"').next())
            .map(str::to_string)
            .collect();
        assert!(routed.len() >= 14, "{routed:?}");
        assert_eq!(documented, routed);
    }
}
