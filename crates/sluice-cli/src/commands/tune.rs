use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::json;
use sluice_store::{StudyRecord, StudyStore, TrialRecord, TrialState};
use sluice_tune::{Direction, Space};

use super::existing_workspace;
use crate::output::{Hint, json, table};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Studies with their trial counts and best values.
    List {
        #[arg(long)]
        json: bool,
    },
    /// A study's leaderboard (best trials first), its trial counts and parameter importances.
    Show {
        /// The study's name, or a prefix that names one study.
        study: String,
        /// Trials to list.
        #[arg(long, default_value_t = 10)]
        top: usize,
        #[arg(long)]
        json: bool,
        /// Also write a self-contained HTML page with the optimization history.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
    },
}

fn direction(study: &StudyRecord) -> Direction {
    if study.direction == "maximize" { Direction::Maximize } else { Direction::Minimize }
}

/// Complete trials best first, then pruned and failed ones by number.
fn ranked(trials: &[TrialRecord], dir: Direction) -> Vec<&TrialRecord> {
    let mut complete: Vec<&TrialRecord> =
        trials.iter().filter(|t| t.state == TrialState::Complete && t.value.is_some()).collect();
    complete.sort_by(|a, b| {
        dir.loss(a.value.unwrap_or(f64::NAN))
            .total_cmp(&dir.loss(b.value.unwrap_or(f64::NAN)))
            .then(a.number.cmp(&b.number))
    });
    complete.extend(trials.iter().filter(|t| t.state != TrialState::Complete || t.value.is_none()));
    complete
}

fn params_text(t: &TrialRecord) -> String {
    let value = |v: &serde_json::Value| match v {
        serde_json::Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            if f != 0.0 && f.abs() < 0.01 { format!("{f:.3e}") } else { format!("{f:.4}") }
        }
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    t.params.iter().map(|(k, v)| format!("{k}={}", value(v))).collect::<Vec<_>>().join(" ")
}

fn find(store: &dyn StudyStore, name: &str) -> anyhow::Result<StudyRecord> {
    if let Some(s) = store.study(name)? {
        return Ok(s);
    }
    let all = store.studies()?;
    let matching: Vec<&StudyRecord> = all.iter().filter(|s| s.name.starts_with(name)).collect();
    match matching.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(anyhow::Error::new(Hint(format!(
            "studies here: {}",
            if all.is_empty() {
                "none".into()
            } else {
                all.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")
            }
        )))
        .context(format!("no study `{name}`"))),
        many => anyhow::bail!(
            "`{name}` names {} studies ({}); give more of the name",
            many.len(),
            many.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")
        ),
    }
}

pub fn run(home: &Path, cmd: Command) -> anyhow::Result<ExitCode> {
    let ws = existing_workspace(home)?;
    let store: &dyn StudyStore = &*ws.meta;
    match cmd {
        Command::List { json: as_json } => {
            let mut rows = Vec::new();
            for s in store.studies()? {
                let trials = sluice_tune::load_trials(store, &s.name)?;
                let count = |st: TrialState| trials.iter().filter(|t| t.state == st).count();
                let best = sluice_tune::best_of(&trials, direction(&s)).and_then(|t| t.value);
                rows.push(json!({
                    "study": s.name,
                    "metric": s.definition["extra"]["metric"],
                    "direction": s.direction,
                    "trials": trials.len(),
                    "complete": count(TrialState::Complete),
                    "pruned": count(TrialState::Pruned),
                    "failed": count(TrialState::Failed),
                    "running": count(TrialState::Running),
                    "best": best,
                    "created_at": s.created_at,
                }));
            }
            if as_json {
                return json(&rows).map(|_| ExitCode::SUCCESS);
            }
            let mut t = table(&["study", "metric", "trials", "complete", "pruned", "failed", "best", "created"]);
            for r in rows {
                let text = |k: &str| r[k].as_str().map(str::to_string).unwrap_or_else(|| r[k].to_string());
                t.add_row(vec![
                    text("study"),
                    format!("{} ({})", text("metric"), text("direction")),
                    text("trials"),
                    text("complete"),
                    text("pruned"),
                    text("failed"),
                    r["best"].as_f64().map(|b| format!("{b:.5}")).unwrap_or_default(),
                    text("created_at"),
                ]);
            }
            println!("{t}");
        }
        Command::Show { study, top, json: as_json, html } => {
            let s = find(store, &study)?;
            let trials = sluice_tune::load_trials(store, &s.name)?;
            let dir = direction(&s);
            let space: Space = serde_json::from_value(s.definition["space"].clone()).unwrap_or_default();
            let importances = sluice_tune::importances(&space, &trials);
            let count = |st: TrialState| trials.iter().filter(|t| t.state == st).count();
            if let Some(path) = &html {
                std::fs::write(path, history_html(&s, &trials, dir))
                    .map_err(|e| anyhow::anyhow!("cannot write `{}`: {e}", path.display()))?;
                eprintln!("wrote {}", path.display());
            }
            if as_json {
                let out = json!({
                    "study": s,
                    "trials": trials,
                    "best": sluice_tune::best_of(&trials, dir),
                    "importances": importances.iter().map(|(k, v)| json!({"param": k, "importance": v})).collect::<Vec<_>>(),
                });
                return json(&out).map(|_| ExitCode::SUCCESS);
            }
            let metric = s.definition["extra"]["metric"].as_str().unwrap_or("value").to_string();
            println!(
                "study {} — {} {metric}; sampler {}, pruner {}, seed {}",
                s.name,
                s.direction,
                s.definition["sampler"]["kind"].as_str().unwrap_or("?"),
                s.definition["pruner"]["kind"].as_str().unwrap_or("?"),
                s.definition["seed"]
            );
            println!(
                "{} trials: {} complete, {} pruned, {} failed, {} running",
                trials.len(),
                count(TrialState::Complete),
                count(TrialState::Pruned),
                count(TrialState::Failed),
                count(TrialState::Running)
            );
            // Trials run with a `trial_memory` budget record their peak: shown when there is one.
            const PEAK: &str = sluice_tune::PEAK_MEMORY_METRIC;
            let metered = trials.iter().any(|t| t.metrics.contains_key(PEAK));
            let mut header = vec!["rank", "trial", "state", &metric, "steps"];
            header.extend(metered.then_some("peak MiB"));
            header.push("params");
            let mut t = table(&header);
            for (i, trial) in ranked(&trials, dir).into_iter().take(top).enumerate() {
                let mut row = vec![
                    if trial.state == TrialState::Complete { (i + 1).to_string() } else { "-".into() },
                    trial.number.to_string(),
                    trial.state.as_str().to_string(),
                    trial.value.map(|v| format!("{v:.5}")).unwrap_or_else(|| trial.error.clone().unwrap_or_default()),
                    trial.intermediate.last().map(|(s, _)| s.to_string()).unwrap_or_default(),
                ];
                if metered {
                    row.push(trial.metrics.get(PEAK).map(|m| format!("{m:.1}")).unwrap_or_default());
                }
                row.push(params_text(trial));
                t.add_row(row);
            }
            println!("{t}");
            if !importances.is_empty() {
                let mut t = table(&["parameter", "importance"]);
                for (p, v) in &importances {
                    t.add_row(vec![p.clone(), format!("{v:.3}")]);
                }
                println!(
                    "parameter importance (share of the variance of {} complete trials' values each explains, ε²):\n{t}",
                    count(TrialState::Complete)
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A self-contained page: each complete trial's value by trial number, and the best so far.
fn history_html(study: &StudyRecord, trials: &[TrialRecord], dir: Direction) -> String {
    let points: Vec<(u64, f64)> = trials
        .iter()
        .filter(|t| t.state == TrialState::Complete)
        .filter_map(|t| t.value.filter(|v| v.is_finite()).map(|v| (t.number, v)))
        .collect();
    let (w, h, pad) = (800.0, 360.0, 64.0);
    let max_n = trials.iter().map(|t| t.number).max().unwrap_or(0).max(1) as f64;
    let (lo, hi) = points.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), (_, v)| (a.min(*v), b.max(*v)));
    let (lo, hi) = if lo < hi { (lo, hi) } else { (lo - 1.0, lo + 1.0) };
    let x = |n: u64| pad + (w - 2.0 * pad) * n as f64 / max_n;
    let y = |v: f64| h - pad - (h - 2.0 * pad) * (v - lo) / (hi - lo);
    let dots: String = points
        .iter()
        .map(|(n, v)| {
            format!(
                "<circle cx='{:.1}' cy='{:.1}' r='3' fill='#4c78a8'><title>trial {n}: {v:.5}</title></circle>",
                x(*n),
                y(*v)
            )
        })
        .collect();
    // The best value so far, as steps: flat until a trial improves on it.
    let mut best: Option<f64> = None;
    let mut line: Vec<String> = Vec::new();
    for (n, v) in &points {
        let improved = best.is_none_or(|b| dir.loss(*v) < dir.loss(b));
        if improved {
            if let Some(b) = best {
                line.push(format!("{:.1},{:.1}", x(*n), y(b)));
            }
            best = Some(*v);
        }
        line.push(format!("{:.1},{:.1}", x(*n), y(best.unwrap_or(*v))));
    }
    let name = study.name.replace('&', "&amp;").replace('<', "&lt;");
    let metric = study.definition["extra"]["metric"].as_str().unwrap_or("value");
    format!(
        "<!doctype html><meta charset='utf-8'><title>{name}</title>\
         <body style='font-family:sans-serif'><h2>Study {name}</h2>\
         <p>{metric} ({dir}) of each complete trial; the line is the best so far.</p>\
         <svg width='{w}' height='{h}' style='border:1px solid #ccc' font-size='12'>\
         <line x1='{pad}' y1='{pad}' x2='{pad}' y2='{yb:.0}' stroke='#999'/>\
         <line x1='{pad}' y1='{yb:.0}' x2='{xr:.0}' y2='{yb:.0}' stroke='#999'/>\
         <text x='{lx:.0}' y='{yh:.0}' text-anchor='end'>{hi:.4}</text>\
         <text x='{lx:.0}' y='{yl:.0}' text-anchor='end'>{lo:.4}</text>\
         <text x='{pad}' y='{yt:.0}'>trial 0</text>\
         <text x='{xr:.0}' y='{yt:.0}' text-anchor='end'>trial {max_n}</text>\
         <polyline fill='none' stroke='#e45756' stroke-width='2' points='{line}'/>{dots}</svg>\
         <p>{complete} complete trials of {total}; best {best:.5}.</p></body>",
        dir = dir.as_str(),
        yb = h - pad,
        xr = w - pad,
        lx = pad - 4.0,
        yh = y(hi) + 4.0,
        yl = y(lo) + 4.0,
        yt = h - pad + 18.0,
        line = line.join(" "),
        complete = points.len(),
        total = trials.len(),
        best = best.unwrap_or(f64::NAN),
    )
}
