#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    Engine(#[from] sluice_engine::EngineError),
    #[error(transparent)]
    Train(#[from] sluice_train::TrainError),
    #[error(transparent)]
    Model(#[from] sluice_model::ModelError),
    #[error(transparent)]
    Metrics(#[from] sluice_metrics::MetricsError),
    #[error(transparent)]
    Store(#[from] sluice_store::StoreError),
    #[error(transparent)]
    Monitor(#[from] sluice_monitor::MonitorError),
    #[error("{0}")]
    Invalid(String),
    #[error("internal error: {0}; this is a bug")]
    Internal(String),
}

impl From<arrow::error::ArrowError> for StepError {
    fn from(e: arrow::error::ArrowError) -> Self {
        StepError::Engine(e.into())
    }
}

impl From<datafusion::error::DataFusionError> for StepError {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        StepError::Engine(e.into())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error(transparent)]
    Store(#[from] sluice_store::StoreError),
    #[error("`--force {step}`: no step named `{step}` in this pipeline{suggestion}")]
    UnknownForce { step: String, suggestion: sluice_spec::Suggestion },
    /// A step's configuration that only the runner can check (a tuning study's space, sampler
    /// and pruner), found before anything runs.
    #[error("step `{step}`: {message}")]
    InvalidStep { step: String, message: String },
    #[error("engine `{engine}`: {source}")]
    Engine {
        engine: String,
        #[source]
        source: sluice_engine::EngineError,
    },
    #[error("internal error: {0}; this is a bug")]
    Internal(String),
}

pub type Result<T, E = RunnerError> = std::result::Result<T, E>;
