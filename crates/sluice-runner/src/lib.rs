//! The pipeline runner: builds the DAG from a validated pipeline, decides from content-addressed
//! cache keys which steps must run, runs independent steps in parallel (bounded by `jobs`), and
//! records everything in the metadata store.
//!
//! A step's cache key hashes the engine version, its kind and that kind's semantics version, its
//! resolved config and the content hashes of its inputs (for sources: the files' bytes). Keys are
//! computed only once inputs are known, so a re-run upstream step that produces identical bytes
//! leaves everything downstream cached.
//!
//! ```no_run
//! # async fn demo(pipeline: sluice_spec::Pipeline) -> sluice_runner::Result<()> {
//! let ws = std::sync::Arc::new(sluice_runner::Workspace::open(std::path::Path::new(".sluice"))?);
//! let summary = sluice_runner::run(ws, &pipeline, &sluice_runner::RunOptions::default(), std::sync::Arc::new(sluice_runner::NoReporter)).await?;
//! println!("run {} {}", summary.run_id, summary.status.as_str());
//! # Ok(()) }
//! ```

mod cache_key;
mod error;
mod event;
mod gates;
mod importance;
mod monitor;
mod plan;
mod run;
mod slices;
mod steps;
mod tune;
mod validate;
mod workspace;

pub use cache_key::{cache_key, semantics_version};
pub use error::{Result, RunnerError, StepError};
pub use event::{Event, NoReporter, Reporter};
pub use gates::{GateResult, check_gates};
pub use plan::{Decision, PlanEntry, plan};
pub use run::{RunOptions, RunSummary, run};
pub use validate::{FAILED_CHECKS, Report as ValidationReport, infer as infer_expectations};
pub use workspace::Workspace;
