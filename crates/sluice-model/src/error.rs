#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model input is missing column `{column}` (the model needs: {needed})")]
    MissingColumn { column: String, needed: String },
    #[error("a feature step reads column `{column}`, which the data does not have (its columns: {available})")]
    FeatureColumn { column: String, available: String },
    #[error("column `{column}` has type {found}, which cannot be read as {expected}")]
    ColumnType { column: String, found: String, expected: String },
    #[error("cannot read model artifact: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("model artifact has format version {found}, this sluice reads up to {supported}; upgrade sluice")]
    UnsupportedFormat { found: u32, supported: u32 },
    #[error("model artifact is inconsistent: {0}")]
    Inconsistent(String),
    #[error("{0} are not supported yet")]
    Unsupported(String),
    #[error("internal error: {0}; this is a bug")]
    Internal(String),
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;
