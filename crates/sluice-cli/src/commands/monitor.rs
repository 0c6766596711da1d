//! `sluice monitor`: drift of data or of a served model's traffic against a reference, the
//! model's performance once ground truth arrives, an HTML report, and the alerts that fired.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use sluice_model::Predictor;
use sluice_monitor::performance::{Performance, PerformanceJoin};
use sluice_profile::drift::ColumnDrift;
use sluice_profile::{Profile, Profiler, Window, WindowStart, WindowedProfiler};
use sluice_store::{ModelSelector, ModelVersion};

use super::data::{FileArgs, Format, profile_file, stream_file};
use super::{existing_workspace, runtime};
use crate::output::{json, table};

const REFERENCE_HELP: &str = "a profile (`.json`: a validate step's `profile` artifact or `sluice data profile --json`), \
     a data file, or `model:NAME@ALIAS` (the registered model's training data and its predictions on them)";

#[derive(clap::Args)]
pub struct Inputs {
    /// The reference: a profile (`.json`), a data file, or `model:NAME@ALIAS` — the registered
    /// model's training data and its predictions on them (so the prediction is checked too).
    #[arg(long)]
    reference: String,
    /// The current data: a data file, a profile (`.json`), or `logs:MODEL` — the server's
    /// prediction logs of that model (`sluice serve --log-predictions`).
    #[arg(long)]
    current: String,
    /// The data files' format, when their extensions do not tell.
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Compare each window of the current data with the reference: `hour`, `day`, `week`,
    /// a duration (`6h`, `2d`) of the `--time` column, or `N rows` as `5000rows`.
    #[arg(long)]
    window: Option<String>,
    /// The current data's time column (a date, a timestamp, or seconds since the epoch);
    /// prediction logs use their `time` column when none is given.
    #[arg(long)]
    time: Option<String>,
}

#[derive(clap::Args)]
pub struct Truth {
    /// Ground truth that arrived later (a data file) with the `--key` columns and the label.
    #[arg(long)]
    truth: Option<PathBuf>,
    /// Columns joining the ground truth to the current data (comma-separated).
    #[arg(long, default_value = "request_id,row", value_delimiter = ',')]
    key: Vec<String>,
    /// The ground truth's label column [default: the model's label].
    #[arg(long)]
    label: Option<String>,
}

#[derive(clap::Subcommand)]
pub enum Command {
    /// Drift of every column between a reference and current data, from one profiling pass over
    /// each. Per column: PSI, Jensen–Shannon distance, and Kolmogorov–Smirnov + Wasserstein
    /// (numbers) or chi-squared (text, booleans); which decides "drifted" depends on the type
    /// and size (see `sluice_profile::drift`).
    Drift {
        #[command(flatten)]
        inputs: Inputs,
        #[arg(long)]
        json: bool,
        /// Exit with status 1 when any column drifted.
        #[arg(long)]
        fail_on_drift: bool,
    },
    /// A served model's metrics once ground truth arrives: the labels (`--truth`, keyed by the
    /// logs' `request_id` and `row`) joined to its prediction logs, per window and overall,
    /// next to the metrics recorded when it was evaluated.
    Performance {
        /// The model, `NAME@ALIAS`, `NAME:VERSION` or `NAME`.
        #[arg(long)]
        model: String,
        #[command(flatten)]
        truth: Truth,
        /// Scored rows: `logs:MODEL` (default: the model's logs) or a data file with the key and
        /// prediction columns.
        #[arg(long)]
        current: Option<String>,
        #[arg(long)]
        window: Option<String>,
        #[arg(long)]
        time: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Write a self-contained HTML report (no network needed to open it): summary, drift per
    /// column sorted by severity, reference vs current distributions, drift over time and —
    /// with `--truth` and a `model:` reference — the model's metrics over time.
    Report {
        #[command(flatten)]
        inputs: Inputs,
        #[command(flatten)]
        truth: Truth,
        /// The HTML file to write.
        #[arg(long, short)]
        out: PathBuf,
        /// The report's title.
        #[arg(long)]
        title: Option<String>,
    },
    /// The alerts monitor steps fired, newest first, with what their actions did.
    Alerts {
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
}

/// The reference's profile, and the model behind a `model:` reference.
type Reference = (Profile, Option<(Arc<Predictor>, ModelVersion)>);

fn load_reference(
    home: &Path,
    spec: &str,
    format: Option<Format>,
    engine: &sluice_engine::Engine,
) -> anyhow::Result<Reference> {
    if let Some(name) = spec.strip_prefix("model:") {
        let ws = existing_workspace(home)?;
        let r = runtime()?
            .block_on(sluice_monitor::reference::for_model(ws.meta.as_ref(), &ws.artifacts, name))
            .with_context(|| format!("cannot build the reference of `{name}`"))?;
        return Ok((r.profile, Some((r.predictor, r.version))));
    }
    let path = PathBuf::from(spec);
    Ok((load_profile(&path, format, engine).with_context(|| format!("--reference: {REFERENCE_HELP}"))?, None))
}

fn load_profile(path: &Path, format: Option<Format>, engine: &sluice_engine::Engine) -> anyhow::Result<Profile> {
    if path.extension().is_some_and(|e| e == "json") {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read `{}`", path.display()))?;
        return Profile::from_json(&bytes).with_context(|| {
            format!(
                "`{}` is not a sluice profile (a validate step's `profile` artifact or `sluice data profile --json`)",
                path.display()
            )
        });
    }
    let file = FileArgs { input: path.to_path_buf(), format, no_header: false };
    runtime()?.block_on(profile_file(engine, &file))
}

/// Stream the current data (a file or `logs:MODEL`) through a state built from its schema.
fn scan<P>(
    home: &Path,
    engine: &sluice_engine::Engine,
    current: &str,
    format: Option<Format>,
    make: impl FnOnce(SchemaRef) -> anyhow::Result<P>,
    mut update: impl FnMut(&mut P, &RecordBatch) -> anyhow::Result<()>,
) -> anyhow::Result<P> {
    if let Some(model) = current.strip_prefix("logs:") {
        let ws = existing_workspace(home)?;
        let mut make = Some(make);
        let mut state: Option<P> = None;
        runtime()?
            .block_on(sluice_monitor::logs::for_each_batch(
                &ws.artifacts,
                model,
                |schema, batch| -> anyhow::Result<()> {
                    if let Some(make) = make.take() {
                        state = Some(make(schema.clone())?);
                    }
                    state.as_mut().map_or(Ok(()), |s| update(s, &batch))
                },
            ))
            .with_context(|| format!("cannot read the prediction logs of `{model}`"))?;
        return state.context("the prediction logs hold no rows");
    }
    let file = FileArgs { input: PathBuf::from(current), format, no_header: false };
    runtime()?.block_on(stream_file(engine, &file, make, update))
}

/// Everything a monitor command reports, from one pass over the current data.
struct Analysis {
    reference: Profile,
    current: Profile,
    windows: Vec<(WindowStart, Profile)>,
    untimed: u64,
    window: Option<Window>,
    time: Option<String>,
    performance: Option<Performance>,
    model: Option<(Arc<Predictor>, ModelVersion)>,
}

fn parse_window(spec: &Option<String>) -> anyhow::Result<Option<Window>> {
    match spec {
        None => Ok(None),
        Some(s) => Window::parse(s).map(Some).with_context(|| {
            format!("--window must be hour, day, week, a duration like `6h`, or rows like `5000rows`; got `{s}`")
        }),
    }
}

fn read_truth(engine: &sluice_engine::Engine, path: &Path) -> anyhow::Result<Vec<RecordBatch>> {
    let file = FileArgs { input: path.to_path_buf(), format: None, no_header: false };
    runtime()?.block_on(stream_file(
        engine,
        &file,
        |_| Ok(Vec::new()),
        |v: &mut Vec<RecordBatch>, b| {
            v.push(b.clone());
            Ok(())
        },
    ))
}

fn analyze(
    home: &Path,
    engine: &sluice_engine::Engine,
    inputs: &Inputs,
    truth: Option<&Truth>,
) -> anyhow::Result<Analysis> {
    let (reference, model) = load_reference(home, &inputs.reference, inputs.format, engine)?;
    let window = parse_window(&inputs.window)?;
    let logs = inputs.current.starts_with("logs:");
    let time = inputs.time.clone().or_else(|| (logs && window.is_some()).then(|| "time".to_string()));
    let truth_given = truth.is_some_and(|t| t.truth.is_some());
    if window.is_none() && inputs.time.is_some() {
        anyhow::bail!("--time goes with --window");
    }
    let profile_given = !logs && inputs.current.ends_with(".json");
    if profile_given {
        if window.is_some() || truth_given {
            anyhow::bail!("--window and --truth need current data (a file or `logs:MODEL`), not a profile");
        }
        let current = load_profile(Path::new(&inputs.current), inputs.format, engine)?;
        return Ok(Analysis {
            reference,
            current,
            windows: vec![],
            untimed: 0,
            window,
            time,
            performance: None,
            model,
        });
    }
    let mut join = match (truth.filter(|t| t.truth.is_some()), &model) {
        (None, _) => None,
        (Some(_), None) => {
            anyhow::bail!("--truth needs `--reference model:NAME@ALIAS` (the model whose predictions it checks)")
        }
        (Some(t), Some((predictor, version))) => {
            let batches = read_truth(engine, t.truth.as_deref().context("--truth")?)?;
            let threshold = version.evaluation.as_ref().map_or(0.5, |e| e.threshold);
            Some(PerformanceJoin::new(
                predictor.artifact(),
                &batches,
                &t.key,
                t.label.as_deref(),
                threshold,
                window.map(|w| (w, time.clone().unwrap_or_default())),
            )?)
        }
    };
    enum Pass {
        Whole(Profiler),
        Windows(WindowedProfiler),
    }
    let pass = scan(
        home,
        engine,
        &inputs.current,
        inputs.format,
        |schema| {
            Ok(match window {
                Some(w) => Pass::Windows(WindowedProfiler::new(schema, time.as_deref(), w)?),
                None => Pass::Whole(Profiler::new(schema)),
            })
        },
        |pass, batch| {
            match pass {
                Pass::Whole(p) => p.update(batch)?,
                Pass::Windows(w) => w.update(batch)?,
            }
            if let Some(j) = &mut join {
                j.update(batch)?;
            }
            Ok(())
        },
    )?;
    let (current, windows, untimed) = match pass {
        Pass::Whole(p) => (p.finish(), vec![], 0),
        Pass::Windows(w) => {
            let untimed = w.untimed;
            let (windows, whole) = w.finish_with_whole();
            (whole, windows, untimed)
        }
    };
    Ok(Analysis {
        reference,
        current,
        windows,
        untimed,
        window,
        time,
        performance: join.map(PerformanceJoin::finish),
        model,
    })
}

pub fn run(home: &Path, cmd: Command) -> anyhow::Result<ExitCode> {
    let engine = sluice_engine::Engine::local(std::thread::available_parallelism().map_or(2, |n| n.get()));
    match cmd {
        Command::Drift { inputs, json: as_json, fail_on_drift } => {
            let a = analyze(home, &engine, &inputs, None)?;
            if let Some(w) = a.window {
                return report_windows(&a, w, as_json, fail_on_drift);
            }
            let drift = sluice_profile::drift::drift(&a.reference, &a.current);
            let drifted = drift.iter().filter(|d| d.drifted).count();
            if as_json {
                json(&serde_json::json!({
                    "reference_rows": a.reference.rows,
                    "current_rows": a.current.rows,
                    "drifted": drifted,
                    "columns": drift,
                }))?;
            } else {
                print_drift(&a.reference, &a.current, &drift, drifted);
            }
            Ok(if fail_on_drift && drifted > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
        }
        Command::Performance { model, truth, current, window, time, json: as_json } => {
            if truth.truth.is_none() {
                anyhow::bail!("--truth FILE is required: the ground truth, keyed by {}", truth.key.join(" + "));
            }
            let (name, _) = ModelSelector::parse(&model);
            let inputs = Inputs {
                reference: format!("model:{model}"),
                current: current.unwrap_or_else(|| format!("logs:{name}")),
                format: None,
                window,
                time,
            };
            let a = analyze(home, &engine, &inputs, Some(&truth))?;
            let p = a.performance.as_ref().context("no performance computed")?;
            if p.matched == 0 {
                anyhow::bail!(
                    "no scored row of `{}` matched the {} rows of the ground truth by {}: check --key (the truth's \
                     keys must be the logs' request ids and row indexes)",
                    inputs.current,
                    p.truth_rows,
                    truth.key.join(" + ")
                );
            }
            let evaluation: BTreeMap<String, f64> =
                a.model.as_ref().map(|(_, v)| v.metrics.iter().cloned().collect()).unwrap_or_default();
            print_performance(&a, p, &evaluation, as_json)
        }
        Command::Report { inputs, truth, out, title } => {
            let a = analyze(home, &engine, &inputs, Some(&truth))?;
            let drift = sluice_profile::drift::drift(&a.reference, &a.current);
            let per_window = sluice_profile::drift::window_drift(&a.reference, &a.windows, a.time.as_deref());
            let labels: Vec<String> = match a.window {
                Some(w) => per_window.iter().map(|d| sluice_monitor::window_label(d.start, w, d.rows)).collect(),
                None => vec![],
            };
            let performance = a.performance.as_ref().map(|p| {
                let labels = match a.window {
                    Some(w) => p.windows.iter().map(|x| sluice_monitor::window_label(x.start, w, x.rows)).collect(),
                    None => vec![],
                };
                let evaluation = a.model.as_ref().map(|(_, v)| v.metrics.iter().cloned().collect()).unwrap_or_default();
                (p, labels, evaluation)
            });
            let input = sluice_monitor::report::ReportInput {
                title: title.unwrap_or_else(|| format!("Drift report: {}", inputs.current)),
                reference_name: inputs.reference.clone(),
                current_name: inputs.current.clone(),
                reference: &a.reference,
                current: &a.current,
                drift: &drift,
                windows: labels.into_iter().zip(per_window.into_iter().map(|w| w.columns)).collect(),
                performance,
                generated_at: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
            };
            let html = sluice_monitor::report::render(&input);
            let partial = out.with_extension("html.partial");
            std::fs::write(&partial, html).with_context(|| format!("cannot write `{}`", partial.display()))?;
            std::fs::rename(&partial, &out).with_context(|| format!("cannot write `{}`", out.display()))?;
            let drifted = drift.iter().filter(|d| d.drifted).count();
            println!("wrote {} ({drifted} of {} columns drifted)", out.display(), drift.len());
            Ok(ExitCode::SUCCESS)
        }
        Command::Alerts { limit, json: as_json } => {
            let ws = existing_workspace(home)?;
            let alerts = ws.meta.list_alerts(limit)?;
            if as_json {
                json(&alerts)?;
                return Ok(ExitCode::SUCCESS);
            }
            if alerts.is_empty() {
                println!("no alerts have fired");
                return Ok(ExitCode::SUCCESS);
            }
            let mut t = table(&["fired at", "alert", "where", "rule", "value", "since", "actions"]);
            for a in &alerts {
                let actions: Vec<String> = a
                    .actions
                    .iter()
                    .map(|x| {
                        let ok = if x["ok"] == true { "ok" } else { "failed" };
                        let extra = x["run_id"].as_str().map(|r| format!(" {r}")).unwrap_or_default();
                        format!("{} {ok}{extra}", x["action"].as_str().unwrap_or("?"))
                    })
                    .collect();
                t.add_row(vec![
                    a.fired_at.clone(),
                    a.name.clone(),
                    a.source.clone(),
                    a.rule.clone(),
                    format!("{:.4}", a.value),
                    a.since.clone().unwrap_or_default(),
                    actions.join(", "),
                ]);
            }
            println!("{t}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_performance(
    a: &Analysis,
    p: &Performance,
    evaluation: &BTreeMap<String, f64>,
    as_json: bool,
) -> anyhow::Result<ExitCode> {
    let labels: Vec<String> = match a.window {
        Some(w) => p.windows.iter().map(|x| sluice_monitor::window_label(x.start, w, x.rows)).collect(),
        None => vec![],
    };
    if as_json {
        let mut v = serde_json::to_value(p)?;
        v["evaluation"] = serde_json::to_value(evaluation)?;
        if let Some(ws) = v["windows"].as_array_mut() {
            for (w, l) in ws.iter_mut().zip(&labels) {
                w["label"] = l.clone().into();
            }
        }
        json(&v)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("{} logged rows labeled ({} not yet; the ground truth has {} rows)", p.matched, p.unlabeled, p.truth_rows);
    let mut t = table(&["metric", "production", "at evaluation", "change"]);
    for (k, v) in &p.overall {
        let (was, change) = match evaluation.get(k) {
            Some(e) => (format!("{e:.4}"), format!("{:+.4}", v - e)),
            None => (String::new(), String::new()),
        };
        t.add_row(vec![k.clone(), format!("{v:.4}"), was, change]);
    }
    println!("{t}");
    if !p.windows.is_empty() {
        let names: Vec<&str> = ["roc_auc", "log_loss", "accuracy", "rmse", "mae"]
            .into_iter()
            .filter(|m| p.overall.contains_key(*m))
            .collect();
        let mut header = vec!["window", "rows"];
        header.extend(&names);
        let mut t = table(&header);
        for (w, label) in p.windows.iter().zip(&labels) {
            let mut row = vec![label.clone(), w.rows.to_string()];
            for n in &names {
                row.push(w.metrics.get(*n).map(|v| format!("{v:.4}")).unwrap_or_else(|| "–".into()));
            }
            t.add_row(row);
        }
        println!("{t}");
    }
    Ok(ExitCode::SUCCESS)
}

fn report_windows(a: &Analysis, window: Window, as_json: bool, fail_on_drift: bool) -> anyhow::Result<ExitCode> {
    let drifts = sluice_profile::drift::window_drift(&a.reference, &a.windows, a.time.as_deref());
    let any = drifts.iter().any(|w| !w.drifted_columns.is_empty());
    let rows_out: Vec<serde_json::Value> = drifts
        .iter()
        .map(|w| {
            let mut v = serde_json::to_value(w).unwrap_or_default();
            v["label"] = sluice_monitor::window_label(w.start, window, w.rows).into();
            v["drifted"] = w.drifted_columns.len().into();
            v
        })
        .collect();
    if as_json {
        json(
            &serde_json::json!({ "reference_rows": a.reference.rows, "untimed_rows": a.untimed, "windows": rows_out }),
        )?;
    } else {
        let mut t = table(&["window", "rows", "drifted", "columns (PSI)"]);
        for w in &rows_out {
            let columns: Vec<String> = w["columns"]
                .as_array()
                .map(|cs| {
                    cs.iter()
                        .filter(|c| c["drifted"] == true)
                        .map(|c| {
                            format!("{} ({:.3})", c["column"].as_str().unwrap_or(""), c["psi"].as_f64().unwrap_or(0.0))
                        })
                        .collect()
                })
                .unwrap_or_default();
            t.add_row(vec![
                w["label"].as_str().unwrap_or("").to_string(),
                w["rows"].to_string(),
                w["drifted"].to_string(),
                columns.join(", "),
            ]);
        }
        println!("{t}");
        if a.untimed > 0 {
            println!("{} rows had no time and are in no window", a.untimed);
        }
    }
    Ok(if fail_on_drift && any { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn print_drift(r: &Profile, c: &Profile, drift: &[ColumnDrift], drifted: usize) {
    println!("{drifted} of {} columns drifted (reference {} rows, current {} rows)", drift.len(), r.rows, c.rows);
    let mut t =
        table(&["column", "drifted", "method", "score", "threshold", "PSI", "Jensen-Shannon", "null % ref → cur"]);
    for d in drift {
        t.add_row(vec![
            d.column.clone(),
            if d.drifted { "yes".into() } else { "no".into() },
            d.method.label().into(),
            format!("{:.4}", d.score),
            format!("{}", d.threshold),
            format!("{:.4}", d.psi),
            format!("{:.4}", d.jensen_shannon),
            format!("{:.1} → {:.1}", 100.0 * d.null_fraction.0, 100.0 * d.null_fraction.1),
        ]);
    }
    println!("{t}");
}
