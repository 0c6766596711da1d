use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    DataFusion(#[from] datafusion::error::DataFusionError),
    #[error(transparent)]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    #[error(transparent)]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("cannot write `{path}`")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("path `{0}` is not valid UTF-8")]
    Path(PathBuf),
    #[error("files of one source must share a compression; `{first}` and `{other}` differ")]
    MixedCompression { first: PathBuf, other: PathBuf },
    #[error("`columns` lists {given} names but the file has {found} columns")]
    ColumnCount { given: usize, found: usize },
    #[error("column `{column}` not found; columns are: {available}")]
    MissingColumn { column: String, available: String },
    #[error(transparent)]
    Train(#[from] sluice_train::TrainError),
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;
