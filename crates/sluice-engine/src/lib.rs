//! Data work on Apache DataFusion: reading sources, running SQL over named datasets, splitting,
//! and writing dataset artifacts as Parquet with their content hash.
//!
//! The engine is a choice of `SessionContext`: today an in-process one; later a Ballista cluster.
//! Each step execution gets its own context cloned from the engine's state, so parallel steps can
//! register tables under the same names without seeing each other.
//!
//! ```no_run
//! # async fn demo() -> sluice_engine::Result<()> {
//! let engine = sluice_engine::Engine::local(2);
//! let df = engine.sql(&[("t".into(), "data.parquet".into())], "SELECT count(*) FROM t").await?;
//! let batches = df.collect().await?;
//! # Ok(()) }
//! ```

mod database;
mod dataset;
mod error;
mod source;
mod split;
mod stream;

pub use database::{Chunk, interpolate_env, read_database};
pub use datafusion::error::DataFusionError;
pub use datafusion::prelude::DataFrame;
pub use dataset::{
    DatasetWriter, WrittenDataset, for_each_batch, read_dataset_batch, read_dataset_columns, schema_meta,
    write_batches, write_dataframe,
};
pub use error::{EngineError, Result};
pub use split::{SplitSpec, split};
pub use stream::{Received, read_stream};

use std::path::PathBuf;

use datafusion::execution::context::SessionContext;
use datafusion::prelude::{ParquetReadOptions, SessionConfig};

/// The query engine behind every data step.
#[derive(Clone)]
pub struct Engine {
    config: SessionConfig,
}

impl Engine {
    /// In-process DataFusion with `partitions` parallel partitions (usually the core count).
    pub fn local(partitions: usize) -> Self {
        // No round-robin repartitioning: it interleaves rows by scheduling, and artifacts must
        // not depend on that. Scans still split files by byte range / row group.
        let config = SessionConfig::new()
            .with_target_partitions(partitions.max(1))
            .with_information_schema(true)
            .with_round_robin_repartition(false);
        Self { config }
    }

    /// A fresh context for one step execution.
    pub fn context(&self) -> SessionContext {
        SessionContext::new_with_config(self.config.clone())
    }

    /// Run `query` with each `(table, parquet file)` registered under its table name.
    pub async fn sql(&self, tables: &[(String, PathBuf)], query: &str) -> Result<DataFrame> {
        let ctx = self.context();
        for (name, path) in tables {
            let path = path.to_str().ok_or_else(|| EngineError::Path(path.clone()))?;
            ctx.register_parquet(name.as_str(), path, ParquetReadOptions::default().file_extension("")).await?;
        }
        Ok(ctx.sql(query).await?)
    }
}
