//! Data work on Apache DataFusion: reading sources, running SQL over named datasets, splitting,
//! and writing dataset artifacts as Parquet with their content hash.
//!
//! The engine is a choice of `SessionContext`: in-process DataFusion ([`Engine::local`]) or a
//! Ballista cluster ([`Engine::cluster`], `ballista://host:port`), behind the same code path.
//! Each step execution gets its own context built from the engine's state, so parallel steps can
//! register tables under the same names without seeing each other.
//!
//! ```no_run
//! # async fn demo() -> sluice_engine::Result<()> {
//! let engine = sluice_engine::Engine::local(2);
//! let df = engine.sql(&[("t".into(), "data.parquet".into())], "SELECT count(*) FROM t").await?;
//! let batches = df.collect().await?;
//! # Ok(()) }
//! ```

mod aggregate;
mod database;
mod dataset;
mod error;
pub mod functions;
mod source;
mod split;
mod stream;
mod train;

pub use aggregate::{fit_stage, profile};
pub use database::{Chunk, interpolate_env, read_database};
pub use datafusion::error::DataFusionError;
pub use datafusion::prelude::DataFrame;
pub use dataset::{
    DatasetWriter, WrittenDataset, for_each_batch, for_each_mapped, read_dataset_batch, schema_meta, write_batches,
    write_dataframe,
};
pub use error::{EngineError, Result};
pub use split::{SplitSpec, split};
pub use stream::{Received, read_stream};
pub use train::{EngineFit, LinearOnEngine, train_linear};

use std::path::PathBuf;
use std::sync::Arc;

use sluice_spec::EngineUrl;

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
    /// Where queries run: in-process, or on the executors of a Ballista scheduler.
    url: EngineUrl,
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
        let limit = memory_limit();
        let builder = RuntimeEnvBuilder::new();
        // A fair pool splits the budget between the operators that can spill, so concurrent
        // sorts and aggregations each spill rather than one starving the others.
        let builder = match limit {
            Some(bytes) => builder.with_memory_pool(Arc::new(FairSpillPool::new(bytes))),
            None => builder,
        };
        // Building a runtime with the default disk manager cannot fail; fall back to defaults.
        let runtime = builder.build_arc().unwrap_or_else(|_| Arc::new(RuntimeEnv::default()));
        Self { config: session_config(SessionConfig::new(), partitions, limit), runtime, url: EngineUrl::Local }
    }

    /// Queries planned here and executed by the executors of the Ballista scheduler at
    /// `host:port` (started with `sluice cluster scheduler`). Scans, joins and aggregations run
    /// on the executors; what a step writes is streamed back and written here, so artifacts are
    /// the same bytes as with [`Engine::local`]. `partitions`: how many partitions each scan and
    /// shuffle is split into (the executors' total task slots is a good value).
    pub fn cluster(host: &str, port: u16, partitions: usize) -> Result<Self> {
        // Ballista's configuration (no round-robin repartitioning, no view types in Arrow
        // Flight) plus its S3 options, with which executors open `s3://` sources.
        let mut base = ballista_core::object_store::session_config_with_s3_support();
        // The client's S3 settings travel with each query (as `SET s3.*` would send them), so
        // executors read the same buckets the client lists without being configured apiece.
        for (key, vars) in S3_ENV {
            if let Some(value) = vars.iter().find_map(|v| std::env::var(v).ok().filter(|v| !v.is_empty())) {
                base.options_mut()
                    .set(key, &value)
                    .map_err(|e| EngineError::Invalid(format!("{} for the cluster: {e}", vars[0])))?;
            }
        }
        let config = session_config(base, partitions, None);
        let url = EngineUrl::Ballista { host: host.to_string(), port };
        Ok(Self { config, runtime: Arc::new(RuntimeEnv::default()), url })
    }

    /// The engine a spec's `engine:` (or `--engine`) names.
    pub fn from_url(url: &EngineUrl, partitions: usize) -> Result<Self> {
        match url {
            EngineUrl::Local => Ok(Self::local(partitions)),
            EngineUrl::Ballista { host, port } => Self::cluster(host, *port, partitions),
        }
    }

    /// Fail early, with the address in the error, when the scheduler cannot be reached (an
    /// in-process engine is always there).
    pub async fn reachable(&self) -> Result<()> {
        let EngineUrl::Ballista { host, port } = &self.url else { return Ok(()) };
        let connect = tokio::net::TcpStream::connect((host.as_str(), *port));
        match tokio::time::timeout(std::time::Duration::from_secs(10), connect).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(EngineError::Invalid(format!(
                "cannot reach the scheduler at {host}:{port}: {e} (start one with `sluice cluster scheduler`)"
            ))),
            Err(_) => {
                Err(EngineError::Invalid(format!("cannot reach the scheduler at {host}:{port}: no answer in 10 s")))
            }
        }
    }

    /// A fresh context for one step execution.
    pub fn context(&self) -> Result<SessionContext> {
        let EngineUrl::Ballista { host, port } = &self.url else {
            return Ok(self.in_process_context());
        };
        use ballista_core::extension::SessionStateExt;
        let state = datafusion::execution::SessionStateBuilder::new()
            .with_config(self.config.clone())
            .with_runtime_env(self.runtime.clone())
            .with_default_features()
            .build()
            .upgrade_for_ballista(format!("df://{host}:{port}"))?;
        // After the upgrade, which resets the state's functions to Ballista's.
        let ctx = SessionContext::new_with_state(state);
        functions::register(&ctx);
        Ok(ctx)
    }

    /// A context that runs queries here even when the engine is a cluster, for what executors
    /// cannot be sent (see `read_locations`).
    pub(crate) fn in_process_context(&self) -> SessionContext {
        let ctx = SessionContext::new_with_config_rt(self.config.clone(), self.runtime.clone());
        functions::register(&ctx);
        ctx
    }

    /// Run `query` with each `(table, parquet file)` registered under its table name.
    pub async fn sql(&self, tables: &[(String, PathBuf)], query: &str) -> Result<DataFrame> {
        Self::sql_on(self.context()?, tables, query).await
    }

    /// [`Engine::sql`] in this process even when the engine is a cluster: for plain scans of
    /// artifacts whose every row is consumed here anyway (a `fit_transform` fits and applies
    /// its transforms on the client), where executors would only read the file and ship it
    /// back over Arrow Flight.
    pub async fn sql_here(&self, tables: &[(String, PathBuf)], query: &str) -> Result<DataFrame> {
        Self::sql_on(self.in_process_context(), tables, query).await
    }

    async fn sql_on(ctx: SessionContext, tables: &[(String, PathBuf)], query: &str) -> Result<DataFrame> {
        for (name, path) in tables {
            let path = path.to_str().ok_or_else(|| EngineError::Path(path.clone()))?;
            ctx.register_parquet(name.as_str(), path, ParquetReadOptions::default().file_extension("")).await?;
        }
        Ok(ctx.sql(query).await?)
    }
}

/// Ballista's S3 options and the environment variables (first set wins) they are taken from.
const S3_ENV: [(&str, &[&str]); 6] = [
    ("s3.endpoint", &["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"]),
    ("s3.allow_http", &["AWS_ALLOW_HTTP"]),
    ("s3.region", &["AWS_REGION", "AWS_DEFAULT_REGION"]),
    ("s3.access_key_id", &["AWS_ACCESS_KEY_ID"]),
    ("s3.secret_access_key", &["AWS_SECRET_ACCESS_KEY"]),
    ("s3.session_token", &["AWS_SESSION_TOKEN"]),
];

/// The settings every engine shares, so artifacts do not depend on which one ran the query.
fn session_config(base: SessionConfig, partitions: usize, memory: Option<usize>) -> SessionConfig {
    // What each sort holds back for merging its spill files (DataFusion's default, 10 MB,
    // would not fit small budgets). A sixteenth of the budget: with a thirty-second, a merge
    // under a 32 MB budget once needed 192 KB more than it held while the other partition's
    // sort had the rest, and failed.
    let merge_reserve = memory.map_or(10 << 20, |l| (l / 16).clamp(256 << 10, 10 << 20));
    base.with_target_partitions(partitions.max(1))
        .with_information_schema(true)
        // No round-robin repartitioning: it interleaves rows by scheduling, and artifacts must
        // not depend on that. Scans still split files by byte range / row group.
        .with_round_robin_repartition(false)
        .with_sort_spill_reservation_bytes(merge_reserve)
        // Each partition reads only its own files and byte ranges: with work stealing (on by
        // default in DataFusion 55) an idle partition takes a sibling's, so which rows a
        // partition returns — and the artifact's row order — would depend on thread timing;
        // Ballista, running partitions as separate tasks, needs it off too.
        .set_bool("datafusion.execution.enable_file_stream_work_stealing", false)
        // Strings as `Utf8`, not `Utf8View`: Ballista cannot ship view arrays over Arrow Flight,
        // and a dataset's schema (part of its bytes) must not depend on the engine.
        .set_bool("datafusion.execution.parquet.schema_force_view_types", false)
        .set_bool("datafusion.sql_parser.map_string_types_to_utf8view", false)
}
