//! Batch scoring with a registered model. Uses the model artifact alone: no pipeline, no engine.

use std::fs::File;
use std::io::{BufReader, Seek};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use arrow::array::RecordBatch;
use arrow::csv::reader::Format;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use sluice_core::ArtifactKind;
use sluice_model::{ModelArtifact, Predictor};
use sluice_store::ModelSelector;

use super::{existing_workspace, runtime};

#[derive(clap::Args)]
pub struct Args {
    /// `NAME`, `NAME@ALIAS` or `NAME:VERSION`.
    #[arg(long)]
    pub model: String,
    /// CSV (with a header) or Parquet file to score.
    #[arg(long)]
    pub input: PathBuf,
    /// Where to write the input columns plus predictions (.parquet or .csv).
    #[arg(long)]
    pub output: PathBuf,
    /// Probability at or above which a binary prediction is positive.
    #[arg(long, default_value_t = 0.5)]
    pub threshold: f64,
}

enum Kind {
    Csv,
    Parquet,
}

fn kind_of(path: &Path, what: &str) -> anyhow::Result<Kind> {
    match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("csv") => Ok(Kind::Csv),
        Some("parquet") | Some("pq") => Ok(Kind::Parquet),
        _ => bail!("{what} `{}` must end in .csv or .parquet", path.display()),
    }
}

fn read(path: &Path) -> anyhow::Result<Vec<RecordBatch>> {
    let open = || File::open(path).with_context(|| format!("cannot open input `{}`", path.display()));
    match kind_of(path, "input")? {
        Kind::Parquet => {
            let reader = ParquetRecordBatchReaderBuilder::try_new(open()?)
                .with_context(|| format!("`{}` is not a readable Parquet file", path.display()))?
                .build()?;
            Ok(reader.collect::<Result<Vec<_>, _>>()?)
        }
        Kind::Csv => {
            let mut file = open()?;
            let (schema, _) = Format::default()
                .with_header(true)
                .infer_schema(BufReader::new(&mut file), Some(10_000))
                .with_context(|| format!("cannot read the header and types of `{}`", path.display()))?;
            file.rewind()?;
            let reader =
                arrow::csv::ReaderBuilder::new(Arc::new(schema)).with_header(true).build(BufReader::new(file))?;
            reader.collect::<Result<Vec<_>, _>>().with_context(|| format!("cannot parse `{}`", path.display()))
        }
    }
}

pub fn run(home: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let out_kind = kind_of(&args.output, "output")?;
    let ws = existing_workspace(home)?;
    let (name, selector) = ModelSelector::parse(&args.model);
    let version = ws.meta.resolve_model(&name, &selector)?;
    let bytes = runtime()?.block_on(ws.artifacts.get_bytes(&version.artifact, ArtifactKind::Model))?;
    let predictor = Predictor::new(ModelArtifact::from_json(&bytes)?)?;
    let batches = read(&args.input)?;
    let scored = batches
        .iter()
        .map(|b| predictor.score_batch(b, args.threshold))
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("cannot score `{}` with {}:{}", args.input.display(), name, version.version))?;
    let rows: usize = scored.iter().map(RecordBatch::num_rows).sum();

    // Write next to the destination under a temporary name, then rename: a failed or killed
    // write never leaves a half-written file where the output should be.
    let dir = args.output.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".{}.partial", args.output.file_name().and_then(|n| n.to_str()).unwrap_or("out")));
    let file = File::create(&tmp).with_context(|| format!("cannot write `{}`", tmp.display()))?;
    let schema = scored.first().map(|b| b.schema());
    match (out_kind, schema) {
        (Kind::Parquet, Some(schema)) => {
            let mut w = ArrowWriter::try_new(file, schema, None)?;
            for b in &scored {
                w.write(b)?;
            }
            w.close()?;
        }
        (Kind::Csv, Some(_)) => {
            let mut w = arrow::csv::WriterBuilder::new().with_header(true).build(file);
            for b in &scored {
                w.write(b)?;
            }
        }
        (_, None) => bail!("input `{}` has no rows", args.input.display()),
    }
    std::fs::rename(&tmp, &args.output).with_context(|| format!("cannot write `{}`", args.output.display()))?;
    eprintln!("scored {rows} rows with {name}:{} → {}", version.version, args.output.display());
    Ok(ExitCode::SUCCESS)
}
