//! Tuning studies: trials as rows that several workers (threads, processes, machines sharing
//! the store) read and write. Every change bumps the study's sequence number, so a worker keeps
//! its copy of the history current by reading only what changed since it last looked.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::Result;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrialState {
    Running,
    Complete,
    /// Stopped early by the pruner; its intermediate values are kept.
    Pruned,
    Failed,
}

impl TrialState {
    pub fn as_str(self) -> &'static str {
        match self {
            TrialState::Running => "running",
            TrialState::Complete => "complete",
            TrialState::Pruned => "pruned",
            TrialState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Self {
        match s {
            "running" => Self::Running,
            "complete" => Self::Complete,
            "pruned" => Self::Pruned,
            _ => Self::Failed,
        }
    }

    pub fn finished(self) -> bool {
        self != TrialState::Running
    }
}

/// One trial of a study: a child of the run that executed it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrialRecord {
    /// 0-based and unique within the study, whichever worker ran it.
    pub number: u64,
    pub state: TrialState,
    /// Empty until the sampler has chosen them.
    pub params: BTreeMap<String, serde_json::Value>,
    /// The objective's value (complete trials).
    pub value: Option<f64>,
    /// Values reported while the trial ran, by step (boosting round, fold), in step order.
    pub intermediate: Vec<(u64, f64)>,
    /// Other metrics of the trial.
    pub metrics: BTreeMap<String, f64>,
    /// Sampler bookkeeping (e.g. the CMA-ES generation that proposed it).
    pub meta: BTreeMap<String, f64>,
    /// `host:pid` of the worker running or last running it.
    pub worker: String,
    /// The pipeline run the trial belongs to.
    pub run_id: Option<String>,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub error: Option<String>,
    /// How many times the trial was handed out again after its worker died; its intermediate
    /// values restart with each attempt.
    pub attempt: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StudyRecord {
    pub name: String,
    /// `minimize` or `maximize`.
    pub direction: String,
    /// What was searched and how (space, sampler, pruner, seed); a study keeps its definition.
    pub definition: serde_json::Value,
    pub created_at: String,
}

/// A trial handed to a worker by [`StudyStore::start_trial`].
#[derive(Clone, Debug, PartialEq)]
pub struct StartedTrial {
    pub number: u64,
    /// Set when this is a trial whose worker died, handed out again with the params it had.
    pub resumed: Option<BTreeMap<String, serde_json::Value>>,
}

/// Changes since a sequence number.
#[derive(Clone, Debug, Default)]
pub struct StudyChanges {
    /// The sequence number to ask from next time.
    pub seq: u64,
    /// Trials whose row changed (state, params, value), without intermediate values.
    pub trials: Vec<TrialRecord>,
    /// Intermediate values reported since, as (trial, step, value), in the order reported.
    pub intermediate: Vec<(u64, u64, f64)>,
}

/// Storage of studies. Every method is one transaction.
pub trait StudyStore: Send + Sync {
    /// Create the study, or open it if it exists with the same direction and definition (a
    /// different one is an error naming what changed).
    fn open_study(&self, study: &StudyRecord) -> Result<StudyRecord>;
    fn study(&self, name: &str) -> Result<Option<StudyRecord>>;
    fn studies(&self) -> Result<Vec<StudyRecord>>;
    /// The next trial for `worker`: a trial whose worker died (its process is gone on this host,
    /// or, on another host, it has not reported for `stale_after_secs`), else a new number while
    /// fewer than `max_trials` exist. `None` when the budget is spent.
    fn start_trial(
        &self,
        study: &str,
        worker: &Worker,
        max_trials: Option<u64>,
        stale_after_secs: u64,
    ) -> Result<Option<StartedTrial>>;
    fn set_params(
        &self,
        study: &str,
        number: u64,
        params: &BTreeMap<String, serde_json::Value>,
        meta: &BTreeMap<String, f64>,
    ) -> Result<()>;
    fn report(&self, study: &str, number: u64, step: u64, value: f64) -> Result<()>;
    fn finish_trial(
        &self,
        study: &str,
        number: u64,
        state: TrialState,
        value: Option<f64>,
        metrics: &BTreeMap<String, f64>,
        error: Option<&str>,
    ) -> Result<()>;
    fn changes_since(&self, study: &str, seq: u64) -> Result<StudyChanges>;
    /// The trials a pipeline run executed (its child runs), by study and number, with their
    /// intermediate values.
    fn trials_of_run(&self, run_id: &str) -> Result<Vec<(String, TrialRecord)>>;
}

/// Who runs a trial: a process on a host, within a pipeline run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Worker {
    pub host: String,
    pub pid: u32,
    pub run_id: Option<String>,
}

impl Worker {
    pub fn this_process(run_id: Option<String>) -> Self {
        Self { host: hostname(), pid: std::process::id(), run_id }
    }

    pub fn id(&self) -> String {
        format!("{}:{}", self.host, self.pid)
    }
}

/// This machine's name, as recorded with runs and trials.
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}
