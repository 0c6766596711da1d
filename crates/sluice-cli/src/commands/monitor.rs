//! `sluice monitor`: compare data with a reference.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use sluice_profile::drift::{ColumnDrift, DriftMethod};
use sluice_profile::{Profile, Window, WindowStart, WindowedProfiler};

use super::data::{FileArgs, Format, profile_file, stream_file};
use super::runtime;
use crate::output::{json, table};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Drift of every column between a reference (a profile JSON — a validate step's `profile`
    /// artifact or `sluice data profile --json` output — or a data file) and current data (a
    /// data file or a profile), from one profiling pass over each. Per column: PSI,
    /// Jensen–Shannon distance, and Kolmogorov–Smirnov + Wasserstein (numbers) or chi-squared
    /// (text, booleans); which decides "drifted" depends on the type and size (see
    /// `sluice_profile::drift`).
    Drift {
        /// The reference: a profile (`.json`) or a data file.
        #[arg(long)]
        reference: PathBuf,
        /// The current data: a data file or a profile (`.json`).
        #[arg(long)]
        current: PathBuf,
        /// The data files' format, when their extensions do not tell.
        #[arg(long, value_enum)]
        format: Option<Format>,
        #[arg(long)]
        json: bool,
        /// Exit with status 1 when any column drifted.
        #[arg(long)]
        fail_on_drift: bool,
        /// Compare each window of the current data with the reference: `hour`, `day`, `week`,
        /// a duration (`6h`, `2d`) of the `--time` column, or `N rows` as `5000rows`.
        #[arg(long)]
        window: Option<String>,
        /// The current data's time column (a date, a timestamp, or seconds since the epoch).
        #[arg(long)]
        time: Option<String>,
    },
}

fn load(path: &PathBuf, format: Option<Format>, engine: &sluice_engine::Engine) -> anyhow::Result<Profile> {
    if path.extension().is_some_and(|e| e == "json") {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read `{}`", path.display()))?;
        return Profile::from_json(&bytes).with_context(|| {
            format!(
                "`{}` is not a sluice profile (a validate step's `profile` artifact or `sluice data profile --json`)",
                path.display()
            )
        });
    }
    let file = FileArgs { input: path.clone(), format, no_header: false };
    runtime()?.block_on(profile_file(engine, &file))
}

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    let engine = sluice_engine::Engine::local(std::thread::available_parallelism().map_or(2, |n| n.get()));
    match cmd {
        Command::Drift { reference, current, format, json: as_json, fail_on_drift, window, time } => {
            let r = load(&reference, format, &engine)?;
            if let Some(spec) = window {
                let Some(w) = Window::parse(&spec) else {
                    anyhow::bail!(
                        "--window must be hour, day, week, a duration like `6h`, or rows like `5000rows`; got `{spec}`"
                    );
                };
                let windows = windowed(&engine, &current, format, time.as_deref(), w)?;
                return report_windows(&r, windows, w, time.as_deref(), as_json, fail_on_drift);
            }
            if time.is_some() {
                anyhow::bail!("--time goes with --window");
            }
            let c = load(&current, format, &engine)?;
            let drift = sluice_profile::drift::drift(&r, &c);
            let drifted = drift.iter().filter(|d| d.drifted).count();
            if as_json {
                json(&serde_json::json!({
                    "reference_rows": r.rows,
                    "current_rows": c.rows,
                    "drifted": drifted,
                    "columns": drift,
                }))?;
            } else {
                print_drift(&r, &c, &drift, drifted);
            }
            Ok(if fail_on_drift && drifted > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
        }
    }
}

/// The current data file's profile per window, in one pass.
fn windowed(
    engine: &sluice_engine::Engine,
    path: &std::path::Path,
    format: Option<Format>,
    time: Option<&str>,
    window: Window,
) -> anyhow::Result<(Vec<(WindowStart, Profile)>, u64)> {
    let file = FileArgs { input: path.to_path_buf(), format, no_header: false };
    let profiler = runtime()?.block_on(stream_file(
        engine,
        &file,
        |schema| Ok(WindowedProfiler::new(schema, time, window)?),
        |p, b| p.update(b),
    ))?;
    let untimed = profiler.untimed;
    Ok((profiler.finish(), untimed))
}

fn window_label(start: WindowStart, window: Window, rows: u64) -> String {
    match window {
        Window::Rows(_) => format!("rows {}–{}", start, start as u64 + rows.saturating_sub(1)),
        Window::Seconds(_) => chrono::DateTime::from_timestamp(start, 0)
            .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_else(|| start.to_string()),
    }
}

fn report_windows(
    reference: &Profile,
    (windows, untimed): (Vec<(WindowStart, Profile)>, u64),
    window: Window,
    time: Option<&str>,
    as_json: bool,
    fail_on_drift: bool,
) -> anyhow::Result<ExitCode> {
    let drifts = sluice_profile::drift::window_drift(reference, &windows, time);
    let any = drifts.iter().any(|w| !w.drifted_columns.is_empty());
    let rows_out: Vec<serde_json::Value> = drifts
        .iter()
        .map(|w| {
            let mut v = serde_json::to_value(w).unwrap_or_default();
            v["label"] = window_label(w.start, window, w.rows).into();
            v["drifted"] = w.drifted_columns.len().into();
            v
        })
        .collect();
    if as_json {
        json(&serde_json::json!({ "reference_rows": reference.rows, "untimed_rows": untimed, "windows": rows_out }))?;
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
        if untimed > 0 {
            println!("{untimed} rows had no time and are in no window");
        }
    }
    Ok(if fail_on_drift && any { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn print_drift(r: &Profile, c: &Profile, drift: &[ColumnDrift], drifted: usize) {
    println!("{drifted} of {} columns drifted (reference {} rows, current {} rows)", drift.len(), r.rows, c.rows);
    let mut t =
        table(&["column", "drifted", "method", "score", "threshold", "PSI", "Jensen-Shannon", "null % ref → cur"]);
    for d in drift {
        let method = match d.method {
            DriftMethod::KolmogorovSmirnov => "KS p-value",
            DriftMethod::Wasserstein => "Wasserstein / std",
            DriftMethod::ChiSquared => "chi² p-value",
            DriftMethod::JensenShannon => "Jensen-Shannon",
        };
        t.add_row(vec![
            d.column.clone(),
            if d.drifted { "yes".into() } else { "no".into() },
            method.into(),
            format!("{:.4}", d.score),
            format!("{}", d.threshold),
            format!("{:.4}", d.psi),
            format!("{:.4}", d.jensen_shannon),
            format!("{:.1} → {:.1}", 100.0 * d.null_fraction.0, 100.0 * d.null_fraction.1),
        ]);
    }
    println!("{t}");
}
