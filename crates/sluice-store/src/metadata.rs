//! The metadata store interface. The SQLite implementation is the embedded default; a PostgreSQL
//! one (same schema and migrations) is the team/cluster backend.

use sluice_core::{ArtifactMeta, ContentHash};

use crate::error::Result;
use crate::records::*;

pub trait MetadataStore: crate::studies::StudyStore + Send + Sync {
    /// Mark runs whose process is gone as interrupted. Returns how many were marked.
    fn reap_dead_runs(&self) -> Result<usize>;
    fn begin_run(&self, run: &RunRecord) -> Result<()>;
    fn finish_run(&self, id: &str, status: RunStatus, error: Option<&str>) -> Result<()>;

    /// Record a finished (ran or cached) step: its execution row, its artifacts, lineage edges,
    /// metrics and — when it ran successfully — the cache entry, all or nothing.
    fn record_step(&self, completion: &StepCompletion) -> Result<()>;
    /// Record a step that produced nothing: failed or skipped (no outputs, no cache entry).
    fn record_incomplete(&self, step: &StepRecord) -> Result<()>;

    /// Outputs recorded for a cache key, if a step with that key has completed.
    fn lookup_cache(&self, key: &ContentHash) -> Result<Option<Vec<OutputRecord>>>;
    /// The last successful execution of a step of this pipeline (for explaining cache misses).
    fn last_step(&self, pipeline: &str, step: &str) -> Result<Option<StepRecord>>;

    /// A remembered file hash, valid while the file's fingerprint (size, modification and
    /// change times, inode) is unchanged.
    fn file_hash(&self, path: &str, fingerprint: &str) -> Result<Option<ContentHash>>;
    fn remember_file_hash(&self, path: &str, fingerprint: &str, hash: &ContentHash) -> Result<()>;

    fn list_runs(&self, limit: usize) -> Result<Vec<RunRecord>>;
    /// A run by id or unique id prefix, with its steps, outputs and metrics.
    fn get_run(&self, id: &str) -> Result<RunDetails>;
    /// An artifact by hash or unique hash prefix.
    fn get_artifact(&self, hash_prefix: &str) -> Result<ArtifactMeta>;
    fn provenance(&self, hash: &ContentHash) -> Result<Provenance>;

    /// Add a version of a model (the existing version if that artifact is already registered
    /// under the name, with its metrics, gates and evaluation replaced by these), and point
    /// `alias` at it — all in one transaction.
    fn register_model(&self, new: &NewVersion, alias: Option<&str>) -> Result<ModelVersion>;
    fn set_alias(&self, name: &str, alias: &str, version: u32) -> Result<()>;
    fn set_tag(&self, name: &str, version: u32, key: &str, value: &str) -> Result<()>;
    fn resolve_model(&self, name: &str, selector: &ModelSelector) -> Result<ModelVersion>;
    fn list_models(&self) -> Result<Vec<ModelSummary>>;
    fn model_versions(&self, name: &str) -> Result<Vec<ModelVersion>>;

    /// Record a monitoring alert that fired (and what its actions did); returns its id.
    fn record_alert(&self, alert: &AlertRecord) -> Result<i64>;
    /// The latest alerts, newest first.
    fn list_alerts(&self, limit: usize) -> Result<Vec<AlertRecord>>;
}
