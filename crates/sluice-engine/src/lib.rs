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
    DatasetWriter, WrittenDataset, for_each_batch, read_dataset_batch, schema_meta, write_batches, write_dataframe,
};
pub use error::{EngineError, Result};
pub use split::{SplitSpec, split};
pub use stream::{Received, read_stream};

use std::path::PathBuf;
use std::sync::Arc;

use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};

use datafusion::execution::context::SessionContext;
use datafusion::prelude::{ParquetReadOptions, SessionConfig};

/// The query engine behind every data step.
#[derive(Clone)]
pub struct Engine {
    config: SessionConfig,
    /// Shared by every step's context: one memory budget, one spill directory.
    runtime: Arc<RuntimeEnv>,
}

/// `SLUICE_MEMORY_LIMIT` (`512M`, `4G`, bytes), else half of physical memory; `None` when
/// neither can be read.
pub fn memory_limit() -> Option<usize> {
    let parse = |text: &str| -> Option<usize> {
        let t = text.trim().to_ascii_uppercase();
        let t = t.strip_suffix('B').unwrap_or(&t);
        let (digits, scale) = match t.chars().last()? {
            'K' => (&t[..t.len() - 1], 1usize << 10),
            'M' => (&t[..t.len() - 1], 1 << 20),
            'G' => (&t[..t.len() - 1], 1 << 30),
            'T' => (&t[..t.len() - 1], 1 << 40),
            _ => (t, 1),
        };
        Some((digits.trim().parse::<f64>().ok()? * scale as f64) as usize)
    };
    if let Ok(v) = std::env::var("SLUICE_MEMORY_LIMIT") {
        return parse(&v);
    }
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: usize = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024 / 2)
}

impl Engine {
    /// In-process DataFusion with `partitions` parallel partitions (usually the core count).
    /// Sorts, joins and aggregations share a memory budget ([`memory_limit`]) and spill to the
    /// system's temporary directory beyond it.
    pub fn local(partitions: usize) -> Self {
        // No round-robin repartitioning: it interleaves rows by scheduling, and artifacts must
        // not depend on that. Scans still split files by byte range / row group.
        let limit = memory_limit();
        // What each sort holds back for merging its spill files (DataFusion's default, 10 MB,
        // would not fit small budgets).
        let merge_reserve = limit.map_or(10 << 20, |l| (l / 32).clamp(256 << 10, 10 << 20));
        let config = SessionConfig::new()
            .with_target_partitions(partitions.max(1))
            .with_information_schema(true)
            .with_round_robin_repartition(false)
            .with_sort_spill_reservation_bytes(merge_reserve);
        let builder = RuntimeEnvBuilder::new();
        // A fair pool splits the budget between the operators that can spill, so concurrent
        // sorts and aggregations each spill rather than one starving the others.
        let builder = match limit {
            Some(bytes) => builder.with_memory_pool(Arc::new(FairSpillPool::new(bytes))),
            None => builder,
        };
        // Building a runtime with the default disk manager cannot fail; fall back to defaults.
        let runtime = builder.build_arc().unwrap_or_else(|_| Arc::new(RuntimeEnv::default()));
        Self { config, runtime }
    }

    /// A fresh context for one step execution.
    pub fn context(&self) -> SessionContext {
        SessionContext::new_with_config_rt(self.config.clone(), self.runtime.clone())
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
