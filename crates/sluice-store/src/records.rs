//! Rows of the metadata store, as plain data.

use serde::{Deserialize, Serialize};
use sluice_core::{ArtifactMeta, ContentHash};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
    /// The process died (e.g. SIGKILL) before finishing; found and marked on a later start.
    Interrupted,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
        }
    }

    pub fn parse(s: &str) -> Self {
        match s {
            "running" => Self::Running,
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            _ => Self::Interrupted,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: String,
    pub pipeline: String,
    pub spec_path: String,
    pub status: RunStatus,
    pub started_at: String,
    pub finished_at: Option<String>,
    /// `--set` overrides and other run parameters.
    pub params: Vec<(String, String)>,
    pub error: Option<String>,
    pub pid: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Executed in this run.
    Ran,
    /// Skipped: outputs reused from the cache.
    Cached,
    Failed,
    /// Not run because a step it reads failed or was skipped.
    Skipped,
}

impl StepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Ran => "ran",
            StepStatus::Cached => "cached",
            StepStatus::Failed => "failed",
            StepStatus::Skipped => "skipped",
        }
    }

    pub fn parse(s: &str) -> Self {
        match s {
            "ran" => Self::Ran,
            "cached" => Self::Cached,
            "skipped" => Self::Skipped,
            _ => Self::Failed,
        }
    }
}

/// A step's inputs as they entered its cache key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInput {
    /// Role and reference, e.g. `input=split.train`, or a source file path.
    pub name: String,
    pub hash: ContentHash,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StepRecord {
    pub run_id: String,
    pub step: String,
    pub kind: String,
    pub cache_key: ContentHash,
    pub status: StepStatus,
    pub started_at: String,
    pub duration_ms: u64,
    pub rows: Option<u64>,
    pub config: serde_json::Value,
    pub inputs: Vec<KeyInput>,
    pub error: Option<String>,
}

/// An output of a step execution.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OutputRecord {
    pub name: String,
    pub artifact: ArtifactMeta,
}

/// Everything one finished step writes, recorded in one transaction.
#[derive(Clone, Debug)]
pub struct StepCompletion {
    pub step: StepRecord,
    pub outputs: Vec<OutputRecord>,
    pub metrics: Vec<(String, f64)>,
}

/// A run with everything recorded about it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunDetails {
    pub run: RunRecord,
    pub steps: Vec<(StepRecord, Vec<OutputRecord>)>,
    /// `(step, metric, value)`.
    pub metrics: Vec<(String, String, f64)>,
}

/// Where an artifact came from.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Provenance {
    pub artifact: ArtifactMeta,
    /// The first step execution that produced it (None for unknown artifacts).
    pub produced_by: Option<StepRecord>,
    pub output: Option<String>,
    pub pipeline: Option<String>,
}

/// The evaluation a version's metrics come from: the dataset and threshold, so that another
/// model can be scored on exactly the same data when gates compare the two.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvaluationRef {
    pub data: ContentHash,
    pub threshold: f64,
}

/// What a `register` step (or a user) adds to the registry.
#[derive(Clone, Debug)]
pub struct NewVersion<'a> {
    pub name: &'a str,
    pub artifact: &'a ContentHash,
    pub run_id: &'a str,
    pub step: &'a str,
    pub metrics: &'a [(String, f64)],
    /// Gate expressions (as written) that guard moving an alias to this version.
    pub gates: &'a [String],
    pub evaluation: Option<&'a EvaluationRef>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ModelVersion {
    pub name: String,
    pub version: u32,
    pub artifact: ContentHash,
    pub run_id: String,
    pub step: String,
    pub created_at: String,
    pub metrics: Vec<(String, f64)>,
    pub aliases: Vec<String>,
    pub tags: Vec<(String, String)>,
    pub gates: Vec<String>,
    pub evaluation: Option<EvaluationRef>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ModelSummary {
    pub name: String,
    pub latest_version: u32,
    pub versions: u32,
    pub aliases: Vec<(String, u32)>,
    pub updated_at: String,
}

/// How a user names a model version: `name`, `name@alias` or `name:version`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelSelector {
    Latest,
    Alias(String),
    Version(u32),
}

impl ModelSelector {
    /// Parse `NAME`, `NAME@ALIAS` or `NAME:VERSION`.
    pub fn parse(reference: &str) -> (String, ModelSelector) {
        if let Some((n, a)) = reference.split_once('@') {
            return (n.to_string(), ModelSelector::Alias(a.to_string()));
        }
        if let Some((n, v)) = reference.rsplit_once(':')
            && let Ok(v) = v.parse()
        {
            return (n.to_string(), ModelSelector::Version(v));
        }
        (reference.to_string(), ModelSelector::Latest)
    }
}

/// A monitoring alert that fired: which rule, on what value and window, and what its actions did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertRecord {
    /// Assigned by the store.
    #[serde(default)]
    pub id: i64,
    pub fired_at: String,
    /// Where it was evaluated: `pipeline.step`, or `cli` for `sluice monitor`.
    pub source: String,
    pub run_id: Option<String>,
    /// The rule as written (`psi(dep_delay) > 0.2 for 2 windows`).
    pub rule: String,
    /// The rule's name.
    pub name: String,
    /// The value that crossed the threshold (in the latest window).
    pub value: f64,
    /// The latest window evaluated, when the rule ran over windows.
    pub window_start: Option<String>,
    /// The first window of the streak that made it fire.
    pub since: Option<String>,
    pub message: String,
    /// One entry per action: `{"action": "webhook", "ok": true, "detail": "..."}`.
    pub actions: Vec<serde_json::Value>,
}
