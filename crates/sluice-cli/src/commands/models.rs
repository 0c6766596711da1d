use std::path::Path;
use std::process::ExitCode;

use sluice_store::ModelSelector;

use super::existing_workspace;
use crate::output::{json, short, table};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Registered models with their latest version, aliases and the latest version's tags.
    List {
        #[arg(long)]
        json: bool,
    },
    /// A model's versions with metrics, aliases, tags and gates.
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Point an alias at a version, without checks: `sluice models alias adult-income@champion 3`.
    Alias {
        /// `NAME@ALIAS`.
        target: String,
        /// The version number the alias should point at.
        #[arg(value_name = "VERSION")]
        number: u32,
    },
    /// Move an alias to a version only if the version's gates pass against the alias's current
    /// holder (scored on the version's own evaluation data).
    Promote {
        #[arg(value_name = "NAME:VERSION")]
        reference: String,
        /// The alias to move.
        #[arg(long, default_value = "champion")]
        alias: String,
        #[arg(long)]
        json: bool,
    },
    /// Set a tag on a version: `sluice models tag adult-income:3 owner=ana`.
    Tag {
        #[arg(value_name = "NAME:VERSION")]
        reference: String,
        /// `KEY=VALUE`.
        tag: String,
    },
}

/// `NAME:VERSION` → (name, version).
fn name_version(reference: &str) -> anyhow::Result<(String, u32)> {
    match ModelSelector::parse(reference) {
        (name, ModelSelector::Version(v)) => Ok((name, v)),
        _ => anyhow::bail!("expected `NAME:VERSION` (e.g. `adult-income:3`), got `{reference}`"),
    }
}

pub fn run(home: &Path, cmd: Command) -> anyhow::Result<ExitCode> {
    let ws = existing_workspace(home)?;
    match cmd {
        Command::List { json: as_json } => {
            let models = ws.meta.list_models()?;
            // The latest version's tags, beside the summary.
            let mut tags: Vec<Vec<(String, String)>> = Vec::with_capacity(models.len());
            for m in &models {
                let versions = ws.meta.model_versions(&m.name)?;
                tags.push(
                    versions.into_iter().find(|v| v.version == m.latest_version).map(|v| v.tags).unwrap_or_default(),
                );
            }
            if as_json {
                let listed: Vec<serde_json::Value> = models
                    .iter()
                    .zip(&tags)
                    .map(|(m, tags)| {
                        let mut v = serde_json::to_value(m).unwrap_or_default();
                        v["latest_tags"] =
                            tags.iter().map(|(k, val)| (k.clone(), serde_json::Value::from(val.as_str()))).collect();
                        v
                    })
                    .collect();
                return json(&listed).map(|_| ExitCode::SUCCESS);
            }
            let mut t = table(&["model", "latest", "versions", "aliases", "latest's tags", "updated"]);
            for (m, tags) in models.into_iter().zip(tags) {
                let aliases: Vec<String> = m.aliases.iter().map(|(a, v)| format!("{a}→{v}")).collect();
                let tags: Vec<String> = tags.iter().map(|(k, val)| format!("{k}={val}")).collect();
                t.add_row(vec![
                    m.name,
                    m.latest_version.to_string(),
                    m.versions.to_string(),
                    aliases.join(", "),
                    tags.join(" "),
                    m.updated_at,
                ]);
            }
            println!("{t}");
        }
        Command::Show { name, json: as_json } => {
            let versions = ws.meta.model_versions(&name)?;
            if as_json {
                return json(&versions).map(|_| ExitCode::SUCCESS);
            }
            let mut t = table(&["version", "aliases", "artifact", "run", "created", "metrics", "tags", "gates"]);
            for v in versions {
                let metrics: Vec<String> = v.metrics.iter().map(|(k, m)| format!("{k}={m:.4}")).collect();
                let tags: Vec<String> = v.tags.iter().map(|(k, val)| format!("{k}={val}")).collect();
                t.add_row(vec![
                    v.version.to_string(),
                    v.aliases.join(", "),
                    short(&v.artifact.to_string()).into(),
                    short(&v.run_id).into(),
                    v.created_at,
                    metrics.join(" "),
                    tags.join(" "),
                    v.gates.join("; "),
                ]);
            }
            println!("{t}");
        }
        Command::Alias { target, number: version } => {
            let (name, alias) = match ModelSelector::parse(&target) {
                (name, ModelSelector::Alias(alias)) => (name, alias),
                _ => anyhow::bail!("expected `NAME@ALIAS` (e.g. `adult-income@champion`), got `{target}`"),
            };
            ws.meta.set_alias(&name, &alias, version)?;
            eprintln!("{name}@{alias} → {name}:{version}");
        }
        Command::Tag { reference, tag } => {
            let (name, v) = name_version(&reference)?;
            let Some((key, value)) = tag.split_once('=').filter(|(k, _)| !k.is_empty()) else {
                anyhow::bail!("expected `KEY=VALUE`, got `{tag}`");
            };
            ws.meta.set_tag(&name, v, key, value)?;
        }
        Command::Promote { reference, alias, json: as_json } => {
            let (name, v) = name_version(&reference)?;
            let candidate = ws.meta.resolve_model(&name, &ModelSelector::Version(v))?;
            let results = super::runtime()?.block_on(sluice_runner::check_gates(
                &ws,
                &name,
                &candidate.artifact,
                &candidate.gates,
                &candidate.metrics,
                candidate.evaluation.as_ref(),
            ))?;
            let passed = results.iter().all(|r| r.passed);
            if passed {
                ws.meta.set_alias(&name, &alias, v)?;
            }
            if as_json {
                json(&serde_json::json!({"promoted": passed, "alias": alias, "version": v, "gates": results}))?;
            } else {
                for r in &results {
                    println!("{r}");
                }
                if results.is_empty() {
                    println!("{name}:{v} has no gates");
                }
            }
            if !passed {
                eprintln!("error: {name}:{v} failed its gates; `{name}@{alias}` left where it was");
                return Ok(ExitCode::from(1));
            }
            eprintln!("{name}@{alias} → {name}:{v}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
