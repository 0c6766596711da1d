//! `sluice data`: look at a data file before writing a pipeline — its profile, and the
//! expectations a validate step could start from.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use sluice_profile::{ColumnKind, Profile};
use sluice_spec::kinds::{FileFormat, SourceStep};

use super::runtime;
use crate::output::{json, table};

#[derive(clap::Args)]
pub struct FileArgs {
    /// A data file (CSV, Parquet, NDJSON, Arrow IPC; optionally .gz/.zst/.bz2/.xz).
    pub input: PathBuf,
    /// The file's format, when its extension does not tell.
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// CSV: the first line is data, not column names (columns are named `column_1`, ...).
    #[arg(long)]
    pub no_header: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Csv,
    Parquet,
    Ndjson,
    Arrow,
}

#[derive(clap::Subcommand)]
pub enum Command {
    /// Propose expectations from a data file, as YAML for a validate step's `expectations:`:
    /// types, nullability, numeric ranges, allowed values, uniqueness and regexes.
    InferSchema {
        #[command(flatten)]
        file: FileArgs,
        /// Text columns with at most this many distinct values get an `allowed` list.
        #[arg(long, default_value_t = 50)]
        max_categories: usize,
    },
    /// Print a file's statistics: per column count, nulls, distinct values, min/max/mean/std,
    /// quantiles and the most frequent values (`--json`: the whole mergeable profile).
    Profile {
        #[command(flatten)]
        file: FileArgs,
        #[arg(long)]
        json: bool,
    },
}

pub(crate) async fn read(engine: &sluice_engine::Engine, args: &FileArgs) -> anyhow::Result<sluice_engine::DataFrame> {
    let path = args.input.canonicalize().with_context(|| format!("cannot open `{}`", args.input.display()))?;
    let Some(text) = path.to_str() else { bail!("`{}` is not a UTF-8 path", path.display()) };
    let format = args.format.map(|f| match f {
        Format::Csv => FileFormat::Csv,
        Format::Parquet => FileFormat::Parquet,
        Format::Ndjson => FileFormat::Ndjson,
        Format::Arrow => FileFormat::Arrow,
    });
    if format.is_none() && sluice_spec::infer_format(text).is_none() {
        bail!(
            "cannot tell the format of `{}` from its extension; pass --format csv|parquet|ndjson|arrow",
            args.input.display()
        );
    }
    let source = SourceStep::for_file(text, format, !args.no_header);
    engine
        .read_source(&source, std::slice::from_ref(&path))
        .await
        .with_context(|| format!("cannot read `{}`", args.input.display()))
}

/// A data file's profile, in one streaming pass.
pub async fn profile_file(engine: &sluice_engine::Engine, file: &FileArgs) -> anyhow::Result<Profile> {
    let profiler =
        stream_file(engine, file, |schema| Ok(sluice_profile::Profiler::new(schema)), |p, b| Ok(p.update(b)?)).await?;
    Ok(profiler.finish())
}

/// Stream a data file's batches through a profiler that `make` builds from the file's schema.
pub async fn stream_file<P>(
    engine: &sluice_engine::Engine,
    file: &FileArgs,
    make: impl FnOnce(arrow::datatypes::SchemaRef) -> anyhow::Result<P>,
    mut update: impl FnMut(&mut P, &arrow::array::RecordBatch) -> anyhow::Result<()>,
) -> anyhow::Result<P> {
    let df = read(engine, file).await?;
    let mut profiler = make(std::sync::Arc::new(df.schema().as_arrow().clone()))?;
    let mut failed = None;
    sluice_engine::for_each_batch(df, |b| {
        if failed.is_none()
            && let Err(e) = update(&mut profiler, &b)
        {
            failed = Some(e);
        }
        Ok(())
    })
    .await?;
    if let Some(e) = failed {
        return Err(e.context(format!("cannot read `{}`", file.input.display())));
    }
    Ok(profiler)
}

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    let engine = sluice_engine::Engine::local(std::thread::available_parallelism().map_or(2, |n| n.get()));
    match cmd {
        Command::InferSchema { file, max_categories } => {
            let (expectations, profile) = rt.block_on(async {
                let df = read(&engine, &file).await?;
                sluice_runner::infer_expectations(&engine, df, max_categories)
                    .await
                    .with_context(|| format!("cannot profile `{}`", file.input.display()))
            })?;
            print!(
                "# Expectations proposed by `sluice data infer-schema` from {} ({} rows).\n\
                 # Review them: ranges and allowed values are what this file holds, not what is valid.\n\
                 # Each column can set `policy: fail | warn | quarantine`; add SQL checks under `rows:`.\n",
                display_name(&file.input),
                profile.rows
            );
            print!("{}", expectations.to_yaml());
        }
        Command::Profile { file, json: as_json } => {
            let profile = rt.block_on(profile_file(&engine, &file))?;
            if as_json {
                json(&profile)?;
            } else {
                print_profile(&profile);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn display_name(p: &Path) -> String {
    p.file_name().map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into_owned())
}

fn number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 { format!("{x:.0}") } else { format!("{x:.4}") }
}

fn print_profile(p: &Profile) {
    println!("{} rows", p.rows);
    let mut t =
        table(&["column", "type", "count", "nulls", "distinct", "min", "median", "max", "mean", "std", "top values"]);
    for c in &p.columns {
        let distinct = if c.distinct_exact { c.distinct.to_string() } else { format!("~{}", c.distinct) };
        let (min, median, max, mean, std) = match &c.numeric {
            Some(n) => {
                let time = c.kind == ColumnKind::Temporal;
                let show = |x: f64| if time { seconds_as_time(x) } else { number(x) };
                let median = n.quantiles.iter().find(|q| q.q == 0.5).map(|q| show(q.value)).unwrap_or_default();
                (show(n.min), median, show(n.max), number(n.mean), n.std.map(number).unwrap_or_default())
            }
            None => Default::default(),
        };
        let top = c
            .top
            .as_ref()
            .map(|t| t.iter().take(3).map(|f| format!("{} ({})", f.value, f.count)).collect::<Vec<_>>().join(", "))
            .unwrap_or_default();
        t.add_row(vec![
            c.name.clone(),
            c.data_type.clone(),
            c.count.to_string(),
            c.nulls.to_string(),
            distinct,
            min,
            median,
            max,
            mean,
            std,
            top,
        ]);
    }
    println!("{t}");
}

fn seconds_as_time(s: f64) -> String {
    chrono::DateTime::from_timestamp(s.floor() as i64, 0).map_or_else(|| number(s), |t| t.to_rfc3339())
}
