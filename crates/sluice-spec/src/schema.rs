//! JSON Schema of the spec, generated from the same types the parser reads.

use indexmap::IndexMap;
use schemars::JsonSchema;

use crate::kinds::{EvaluateStep, RegisterStep, SourceStep, SplitStep, SqlStep, TrainStep};

/// A pipeline: named sources and steps.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct PipelineSpec {
    /// Pipeline name; runs and lineage are recorded under it.
    name: String,
    #[serde(default)]
    description: Option<String>,
    /// Where data steps run: `local` (in-process DataFusion, the default) or
    /// `ballista://HOST:PORT`, a scheduler started with `sluice cluster scheduler`.
    #[serde(default)]
    engine: Option<String>,
    /// Named file sources (each is a step of kind `source`).
    #[serde(default)]
    sources: IndexMap<String, SourceStep>,
    /// Named steps; each reads other steps' outputs by name (`step` or `step.output`).
    #[serde(default)]
    steps: IndexMap<String, StepSpec>,
}

#[derive(JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[allow(dead_code, clippy::large_enum_variant)]
enum StepSpec {
    Source(SourceStep),
    Sql(SqlStep),
    Split(SplitStep),
    Train(TrainStep),
    Evaluate(EvaluateStep),
    Register(RegisterStep),
}

/// The JSON Schema (draft 2020-12) of a pipeline spec file.
pub fn json_schema() -> serde_json::Value {
    let mut schema = schemars::schema_for!(PipelineSpec).to_value();
    if let Some(obj) = schema.as_object_mut() {
        obj.insert("title".into(), "sluice pipeline".into());
    }
    schema
}
