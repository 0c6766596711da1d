//! `sluice monitor`: compare data with a reference.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use sluice_profile::Profile;
use sluice_profile::drift::{ColumnDrift, DriftMethod};

use super::data::{FileArgs, Format, profile_file};
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
        Command::Drift { reference, current, format, json: as_json, fail_on_drift } => {
            let r = load(&reference, format, &engine)?;
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
