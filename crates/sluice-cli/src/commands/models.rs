use std::path::Path;
use std::process::ExitCode;

use super::existing_workspace;
use crate::output::{json, short, table};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Registered models with their latest version and aliases.
    List {
        #[arg(long)]
        json: bool,
    },
    /// A model's versions with metrics and aliases.
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(home: &Path, cmd: Command) -> anyhow::Result<ExitCode> {
    let ws = existing_workspace(home)?;
    match cmd {
        Command::List { json: as_json } => {
            let models = ws.meta.list_models()?;
            if as_json {
                return json(&models).map(|_| ExitCode::SUCCESS);
            }
            let mut t = table(&["model", "latest", "versions", "aliases", "updated"]);
            for m in models {
                let aliases: Vec<String> = m.aliases.iter().map(|(a, v)| format!("{a}→{v}")).collect();
                t.add_row(vec![
                    m.name,
                    m.latest_version.to_string(),
                    m.versions.to_string(),
                    aliases.join(", "),
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
            let mut t = table(&["version", "aliases", "artifact", "run", "created", "metrics"]);
            for v in versions {
                let metrics: Vec<String> = v.metrics.iter().map(|(k, m)| format!("{k}={m:.4}")).collect();
                t.add_row(vec![
                    v.version.to_string(),
                    v.aliases.join(", "),
                    short(&v.artifact.to_string()).into(),
                    short(&v.run_id).into(),
                    v.created_at,
                    metrics.join(" "),
                ]);
            }
            println!("{t}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
