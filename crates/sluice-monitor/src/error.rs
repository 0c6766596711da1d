use thiserror::Error;

#[derive(Debug, Error)]
pub enum MonitorError {
    #[error(transparent)]
    Store(#[from] sluice_store::StoreError),
    #[error(transparent)]
    Model(#[from] sluice_model::ModelError),
    #[error(transparent)]
    Profile(#[from] sluice_profile::ProfileError),
    #[error("{context}: {source}")]
    Parquet { context: String, source: parquet::errors::ParquetError },
    #[error("{0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error(transparent)]
    Metrics(#[from] sluice_metrics::MetricsError),
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = MonitorError> = std::result::Result<T, E>;
