use std::path::Path;
use std::process::ExitCode;

use super::existing_workspace;
use crate::output::{duration, json, short, table};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Recent runs, newest first.
    List {
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// One run: its steps, their cache keys, outputs and metrics, and the tuning trials it ran.
    Show {
        /// Run id (a unique prefix is enough).
        id: String,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(home: &Path, cmd: Command) -> anyhow::Result<ExitCode> {
    let ws = existing_workspace(home)?;
    match cmd {
        Command::List { limit, json: as_json } => {
            let runs = ws.meta.list_runs(limit)?;
            if as_json {
                json(&runs)?;
            } else {
                let mut t = table(&["run", "pipeline", "status", "started", "error"]);
                for r in runs {
                    t.add_row(vec![
                        r.id,
                        r.pipeline,
                        r.status.as_str().into(),
                        r.started_at,
                        r.error.unwrap_or_default(),
                    ]);
                }
                println!("{t}");
            }
        }
        Command::Show { id, json: as_json } => {
            let sluice_store::RunDetails { run, steps, metrics } = ws.meta.get_run(&id)?;
            let trials = ws.meta.trials_of_run(&run.id)?;
            if as_json {
                json(&serde_json::json!({
                    "run": run,
                    "steps": steps.iter().map(|(s, o)| serde_json::json!({"step": s, "outputs": o})).collect::<Vec<_>>(),
                    "metrics": metrics.iter().map(|(s, k, v)| serde_json::json!({"step": s, "key": k, "value": v})).collect::<Vec<_>>(),
                    "trials": trials.iter().map(|(study, t)| serde_json::json!({"study": study, "trial": t})).collect::<Vec<_>>(),
                }))?;
                return Ok(ExitCode::SUCCESS);
            }
            println!("run       {}", run.id);
            println!("pipeline  {} ({})", run.pipeline, run.spec_path);
            println!("status    {}", run.status.as_str());
            println!("started   {}", run.started_at);
            if let Some(f) = &run.finished_at {
                println!("finished  {f}");
            }
            for (k, v) in &run.params {
                println!("param     {k}={v}");
            }
            if let Some(e) = &run.error {
                println!("error     {e}");
            }
            let mut t = table(&["step", "kind", "status", "time", "rows", "cache key", "outputs"]);
            for (s, outputs) in &steps {
                let outs: Vec<String> =
                    outputs.iter().map(|o| format!("{}={}", o.name, short(&o.artifact.hash.to_string()))).collect();
                t.add_row(vec![
                    s.step.clone(),
                    s.kind.clone(),
                    s.status.as_str().into(),
                    duration(s.duration_ms),
                    s.rows.map(|r| r.to_string()).unwrap_or_default(),
                    short(&s.cache_key.to_string()).into(),
                    outs.join(" "),
                ]);
            }
            println!("{t}");
            if !metrics.is_empty() {
                let mut t = table(&["step", "metric", "value"]);
                for (s, k, v) in &metrics {
                    t.add_row(vec![s.clone(), k.clone(), format!("{v:.6}")]);
                }
                println!("{t}");
            }
            if !trials.is_empty() {
                // The tuning trials this run executed (child runs); `sluice tune show STUDY` has
                // the whole study.
                let mut t = table(&["study", "trial", "state", "value", "reported", "params"]);
                for (study, trial) in &trials {
                    let params: Vec<String> = trial.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    t.add_row(vec![
                        study.clone(),
                        trial.number.to_string(),
                        trial.state.as_str().into(),
                        trial.value.map(|v| format!("{v:.6}")).unwrap_or_default(),
                        trial.intermediate.len().to_string(),
                        params.join(" "),
                    ]);
                }
                println!("{t}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
