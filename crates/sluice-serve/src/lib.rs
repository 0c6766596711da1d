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
//! let models = sluice_serve::ModelSet::load(home, &["adult-income@champion".to_string()]).await?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! sluice_serve::serve(listener, models, std::future::pending()).await?;
//! # Ok(()) }
//! ```

mod convert;
mod error;
mod mlflow;
mod models;
mod v2;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

pub use error::ApiError;
pub use models::{LoadedModel, ModelSet, ServeError};

/// The HTTP API over a set of loaded models.
pub fn router(models: ModelSet) -> Router {
    let state = Arc::new(models);
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
        .fallback(error::not_found)
        .with_state(state)
}

/// Serve until `shutdown` resolves, then finish in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    models: ModelSet,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(models)).with_graceful_shutdown(shutdown).await
}
