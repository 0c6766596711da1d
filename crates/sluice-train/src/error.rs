#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("column `{0}` is not in the input data")]
    MissingColumn(String),
    #[error("label `{column}` has {nulls} missing values; drop or fill them before training")]
    NullLabels { column: String, nulls: usize },
    #[error("label `{column}` must be boolean or 0/1 for classification, found value {value}")]
    NotBinary { column: String, value: String },
    #[error("label `{column}` has type {found}; expected {expected}")]
    LabelType { column: String, found: String, expected: String },
    #[error("feature `{column}` has type {found}, which is neither numeric nor text")]
    FeatureType { column: String, found: String },
    #[error("{0}")]
    Invalid(String),
    #[error("no training rows")]
    Empty,
    #[error(
        "the {dim}x{dim} system is not positive definite even with a ridge; features may be constant or duplicated, try a larger `l2`"
    )]
    Singular { dim: usize },
    #[error(transparent)]
    Model(#[from] sluice_model::ModelError),
}

pub type Result<T, E = TrainError> = std::result::Result<T, E>;
