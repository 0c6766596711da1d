//! The validated, typed pipeline that the rest of sluice receives.

use std::path::PathBuf;

use serde::Serialize;

use crate::error::Location;
use crate::kinds::{
    DatabaseStep, EvaluateStep, FitTransformStep, MonitorStep, RegisterStep, SourceStep, SplitStep, SqlStep,
    StreamStep, TrainStep, ValidateStep,
};

/// What an output holds, so that references can be type-checked before anything runs.
pub type OutputType = sluice_core::ArtifactKind;

/// One step's configuration, by kind. (A pipeline holds a handful of these, parsed once: the
/// train step's larger size costs nothing worth boxing for.)
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
#[allow(clippy::large_enum_variant)]
pub enum StepConfig {
    Source(SourceStep),
    Database(DatabaseStep),
    Stream(StreamStep),
    Sql(SqlStep),
    Split(SplitStep),
    Validate(ValidateStep),
    FitTransform(FitTransformStep),
    Train(TrainStep),
    Evaluate(EvaluateStep),
    Register(RegisterStep),
    Monitor(MonitorStep),
}

/// The kinds a step can have, in the order `sluice schema` documents them.
pub const KINDS: &[&str] = &[
    "source",
    "database",
    "stream",
    "sql",
    "split",
    "validate",
    "fit_transform",
    "train",
    "evaluate",
    "register",
    "monitor",
];

/// The kinds that may be declared under `sources:` (they read from outside the pipeline).
pub const SOURCE_KINDS: &[&str] = &["source", "database", "stream"];

impl StepConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            StepConfig::Source(_) => "source",
            StepConfig::Database(_) => "database",
            StepConfig::Stream(_) => "stream",
            StepConfig::Sql(_) => "sql",
            StepConfig::Split(_) => "split",
            StepConfig::Validate(_) => "validate",
            StepConfig::FitTransform(_) => "fit_transform",
            StepConfig::Train(_) => "train",
            StepConfig::Evaluate(_) => "evaluate",
            StepConfig::Register(_) => "register",
            StepConfig::Monitor(_) => "monitor",
        }
    }

    /// The references this step reads, with the role each plays and the type it must have.
    pub fn references(&self) -> Vec<(&'static str, &marked_yaml::Spanned<String>, OutputType)> {
        use sluice_core::ArtifactKind::*;
        match self {
            StepConfig::Source(_) | StepConfig::Database(_) | StepConfig::Stream(_) => vec![],
            StepConfig::Sql(s) => s.inputs.iter().map(|r| ("inputs", r, Dataset)).collect(),
            StepConfig::Split(s) => vec![("input", &s.input, Dataset)],
            StepConfig::Validate(s) => vec![("input", &s.input, Dataset)],
            StepConfig::FitTransform(s) => {
                let mut v = vec![("input", &s.input, Dataset)];
                if let Some(f) = &s.fit {
                    v.push(("fit", f, Dataset));
                }
                v
            }
            StepConfig::Train(s) => {
                let mut v = vec![("input", &s.input, Dataset)];
                if let Some(r) = &s.validation {
                    v.push(("validation", r, Dataset));
                }
                if let Some(r) = &s.init_model {
                    v.push(("init_model", r, Model));
                }
                v
            }
            StepConfig::Evaluate(s) => vec![("model", &s.model, Model), ("input", &s.input, Dataset)],
            StepConfig::Monitor(s) => {
                let mut v = vec![("current", &s.current, Dataset)];
                if let Some(r) = &s.reference {
                    v.push(("reference", r, Profile));
                }
                if let Some(t) = &s.truth {
                    v.push(("truth", t, Dataset));
                }
                v
            }
            StepConfig::Register(s) => {
                let mut v = vec![("model", &s.model, Model)];
                if let Some(m) = &s.metrics {
                    v.push(("metrics", m, Metrics));
                }
                v
            }
        }
    }

    /// Named outputs; the first is the default one that a bare `step` reference means.
    pub fn outputs(&self) -> Vec<(String, OutputType)> {
        use sluice_core::ArtifactKind::*;
        match self {
            StepConfig::Source(_)
            | StepConfig::Database(_)
            | StepConfig::Stream(_)
            | StepConfig::Sql(_)
            | StepConfig::FitTransform(_) => vec![("data".into(), Dataset)],
            StepConfig::Split(s) => s.fractions.keys().map(|k| (k.clone(), Dataset)).collect(),
            StepConfig::Validate(_) => vec![
                ("data".into(), Dataset),
                ("quarantine".into(), Dataset),
                ("report".into(), Metrics),
                ("profile".into(), Profile),
            ],
            StepConfig::Train(_) => vec![("model".into(), Model)],
            StepConfig::Evaluate(_) => {
                vec![("metrics".into(), Metrics), ("predictions".into(), Dataset)]
            }
            StepConfig::Register(_) => vec![],
            StepConfig::Monitor(_) => vec![("report".into(), Metrics), ("profile".into(), Profile)],
        }
    }

    /// Whether the step reads something outside sluice that can change without any file or
    /// artifact changing (a database, a stream): it runs every time.
    pub fn always_runs(&self) -> bool {
        match self {
            StepConfig::Database(_) | StepConfig::Stream(_) => true,
            // The registry's alias may have moved since the last run.
            StepConfig::Monitor(m) => m.model.is_some(),
            _ => false,
        }
    }

    /// The resolved configuration (defaults filled in), as it enters cache keys and run records.
    pub fn to_json(&self) -> serde_json::Value {
        // Serializing plain data structs to a JSON value cannot fail.
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

/// A resolved reference: which step, which of its outputs.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct OutputRef {
    pub step: String,
    pub output: String,
}

impl std::fmt::Display for OutputRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.step, self.output)
    }
}

/// An input of a step: the role it plays, the reference as written, and what it resolves to.
#[derive(Clone, Debug, Serialize)]
pub struct Input {
    pub role: &'static str,
    pub written: String,
    pub source: OutputRef,
}

#[derive(Clone, Debug)]
pub struct Step {
    pub name: String,
    pub config: StepConfig,
    pub inputs: Vec<Input>,
    /// Files a source step reads, resolved from its glob (sorted, absolute).
    pub files: Vec<PathBuf>,
    pub location: Location,
}

impl Step {
    pub fn kind(&self) -> &'static str {
        self.config.kind()
    }

    /// Names of the steps this one depends on (deduplicated, in input order).
    pub fn upstream(&self) -> Vec<&str> {
        let mut v: Vec<&str> = Vec::new();
        for i in &self.inputs {
            if !v.contains(&i.source.step.as_str()) {
                v.push(&i.source.step);
            }
        }
        v
    }
}

/// A validated pipeline: every reference resolves, no cycles, files exist. Steps are in a
/// topological order (declaration order where dependencies allow).
#[derive(Clone, Debug)]
pub struct Pipeline {
    pub name: String,
    pub description: Option<String>,
    /// Where data steps run (`engine:`); `None` is the in-process engine.
    pub engine: Option<EngineUrl>,
    pub spec_path: PathBuf,
    pub base_dir: PathBuf,
    pub steps: Vec<Step>,
}

impl Pipeline {
    pub fn step(&self, name: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.name == name)
    }
}

/// What `engine:` in a spec or `--engine` names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EngineUrl {
    /// In-process DataFusion.
    Local,
    /// A Ballista scheduler.
    Ballista { host: String, port: u16 },
}

impl EngineUrl {
    /// `local`, or `ballista://HOST:PORT` (`df://` is accepted too, as Ballista spells it).
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text == "local" {
            return Ok(Self::Local);
        }
        let bad = |why: String| {
            format!(
                "{why}; expected `local` or `ballista://HOST:PORT` (a scheduler started with `sluice cluster scheduler`)"
            )
        };
        let rest = text
            .strip_prefix("ballista://")
            .or_else(|| text.strip_prefix("df://"))
            .ok_or_else(|| bad(format!("unknown engine `{text}`")))?;
        let rest = rest.trim_end_matches('/');
        let (host, port) = rest.rsplit_once(':').ok_or_else(|| bad(format!("`{text}`: the port is missing")))?;
        if host.is_empty() || host.contains('/') {
            return Err(bad(format!("`{text}`: the host is missing")));
        }
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| bad(format!("`{text}`: the port is not a number from 1 to 65535")))?;
        Ok(Self::Ballista { host: host.to_string(), port })
    }
}

impl std::fmt::Display for EngineUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Local => f.write_str("local"),
            Self::Ballista { host, port } => write!(f, "ballista://{host}:{port}"),
        }
    }
}
