//! `sluice plan`: every step's cache key and whether it would run, without running anything.

use std::collections::HashMap;

use serde::Serialize;
use sluice_spec::Pipeline;
use sluice_store::OutputRecord;

use crate::cache_key::cache_key;
use crate::error::Result;
use crate::run::{cache_hit, chain, key_inputs};
use crate::workspace::Workspace;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", content = "reason", rename_all = "snake_case")]
pub enum Decision {
    /// Outputs exist for this exact key: the step will be skipped.
    Cached,
    /// The step will run, and why.
    Run(String),
}

#[derive(Clone, Debug, Serialize)]
pub struct PlanEntry {
    pub step: String,
    pub kind: String,
    /// Unknown while an upstream step still has to run (its output hash is not known yet).
    pub key: Option<String>,
    #[serde(flatten)]
    pub decision: Decision,
}

/// Why a key has no cache entry, by comparison with the step's last successful execution.
fn miss_reason(
    ws: &Workspace,
    key: &sluice_core::ContentHash,
    pipeline: &str,
    step: &sluice_spec::Step,
    inputs: &[sluice_store::KeyInput],
) -> Result<String> {
    let Some(last) = ws.meta.last_step(pipeline, &step.name)? else { return Ok("never run".into()) };
    if last.config != step.config.to_json() {
        let changed = match (last.config.as_object(), step.config.to_json().as_object()) {
            (Some(a), Some(b)) => {
                b.iter().filter(|(k, v)| a.get(*k) != Some(v)).map(|(k, _)| format!("`{k}`")).collect::<Vec<_>>()
            }
            _ => vec![],
        };
        return Ok(if changed.is_empty() {
            "config changed".into()
        } else {
            format!("config changed: {}", changed.join(", "))
        });
    }
    let changed: Vec<String> = inputs
        .iter()
        .filter(|i| !last.inputs.iter().any(|l| l.name == i.name && l.hash == i.hash))
        .map(|i| format!("`{}`", i.name.trim_start_matches("file:")))
        .collect();
    if !changed.is_empty() {
        return Ok(format!("input changed: {}", changed.join(", ")));
    }
    if last.cache_key != *key {
        return Ok("sluice or the step kind's version changed".into());
    }
    if matches!(step.config, sluice_spec::StepConfig::Register(_)) {
        return Ok("the registry changed since (alias moved or version missing)".into());
    }
    Ok("outputs missing from the artifact store".into())
}

pub async fn plan(ws: &Workspace, pipeline: &Pipeline, force: &[String]) -> Result<Vec<PlanEntry>> {
    crate::tune::check_pipeline(pipeline)?;
    let mut known: HashMap<String, Vec<OutputRecord>> = HashMap::new();
    let mut entries = Vec::new();
    for step in &pipeline.steps {
        let entry = |key: Option<String>, decision| PlanEntry {
            step: step.name.clone(),
            kind: step.kind().into(),
            key,
            decision,
        };
        let pending: Vec<&str> = step.upstream().into_iter().filter(|u| !known.contains_key(*u)).collect();
        if !pending.is_empty() {
            let names: Vec<String> = pending.iter().map(|p| format!("`{p}`")).collect();
            entries.push(entry(
                None,
                Decision::Run(format!("after {} runs (cached if its output is unchanged)", names.join(", "))),
            ));
            continue;
        }
        let resolved: Vec<_> = step
            .inputs
            .iter()
            .filter_map(|i| {
                known
                    .get(&i.source.step)
                    .and_then(|o| o.iter().find(|o| o.name == i.source.output))
                    .map(|o| (i.clone(), o.clone()))
            })
            .collect();
        let inputs = match key_inputs(ws, &pipeline.base_dir, step, &resolved, None).await {
            Ok(i) => i,
            Err(e) => {
                entries.push(entry(None, Decision::Run(format!("cannot compute key: {}", chain(&e)))));
                continue;
            }
        };
        let key = cache_key(step, &inputs);
        let cached = cache_hit(ws, step, &resolved, &key).await.ok().flatten();
        let decision = match cached {
            _ if force.contains(&step.name) => Decision::Run("forced".into()),
            _ if step.config.always_runs() => {
                Decision::Run(format!("reads a {} (runs every time; what follows is cached by content)", step.kind()))
            }
            Some(outputs) => {
                known.insert(step.name.clone(), outputs);
                Decision::Cached
            }
            None => Decision::Run(miss_reason(ws, &key, &pipeline.name, step, &inputs)?),
        };
        entries.push(entry(Some(key.to_string()), decision));
    }
    Ok(entries)
}
