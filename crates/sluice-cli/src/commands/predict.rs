//! Batch scoring (and explaining) with a registered model. Uses the model artifact alone: no
//! pipeline, no engine.

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

/// Read the input; CSV columns the model knows are parsed as the types it was trained on.
fn read(path: &Path, model: &ModelArtifact) -> anyhow::Result<(arrow::datatypes::SchemaRef, Vec<RecordBatch>)> {
    let open = || File::open(path).with_context(|| format!("cannot open input `{}`", path.display()));
    match kind_of(path, "input")? {
        Kind::Parquet => {
            let builder = ParquetRecordBatchReaderBuilder::try_new(open()?)
                .with_context(|| format!("`{}` is not a readable Parquet file", path.display()))?;
            let schema = builder.schema().clone();
            Ok((schema, builder.build()?.collect::<Result<Vec<_>, _>>()?))
        }
        Kind::Csv => {
            let mut file = open()?;
            let (schema, _) = Format::default()
                .with_header(true)
                .infer_schema(BufReader::new(&mut file), Some(10_000))
                .with_context(|| format!("cannot read the header and types of `{}`", path.display()))?;
            let fields: Vec<arrow::datatypes::Field> = schema
                .fields()
                .iter()
                .map(|f| {
                    let trained = model.inputs.iter().find(|i| i.name == *f.name()).and_then(|i| i.arrow_type());
                    match trained {
                        Some(t) => f.as_ref().clone().with_data_type(t).with_nullable(true),
                        None => f.as_ref().clone(),
                    }
                })
                .collect();
            let schema = Arc::new(arrow::datatypes::Schema::new(fields));
            file.rewind()?;
            let reader =
                arrow::csv::ReaderBuilder::new(schema.clone()).with_header(true).build(BufReader::new(file))?;
            let batches = reader
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("cannot parse `{}` with the model's column types", path.display()))?;
            Ok((schema, batches))
        }
    }
}

/// Score `args.input`; with `explain`, also write per-column contributions.
pub fn run(home: &Path, args: Args, explain: bool) -> anyhow::Result<ExitCode> {
    let out_kind = kind_of(&args.output, "output")?;
    if !(args.threshold > 0.0 && args.threshold < 1.0) {
        bail!("`--threshold` must be between 0 and 1, got {}", args.threshold);
    }
    let ws = existing_workspace(home)?;
    let (name, selector) = ModelSelector::parse(&args.model);
    let version = ws.meta.resolve_model(&name, &selector)?;
    let bytes = runtime()?.block_on(ws.artifacts.get_bytes(&version.artifact, ArtifactKind::Model))?;
    let predictor = Predictor::new(ModelArtifact::from_json(&bytes)?)?;
    let (schema, mut batches) = read(&args.input, predictor.artifact())?;
    if batches.is_empty() {
        // A header-only input scores to a header-only output.
        batches.push(RecordBatch::new_empty(schema));
    }
    let scored = batches
        .iter()
        .map(|b| {
            if explain { predictor.explain_batch(b, args.threshold) } else { predictor.score_batch(b, args.threshold) }
        })
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("cannot score `{}` with {}:{}", args.input.display(), name, version.version))?;
    let rows: usize = scored.iter().map(RecordBatch::num_rows).sum();
    let schema = scored[0].schema();

    // Write next to the destination under a temporary name, then rename: a failed or killed
    // write never leaves a half-written file where the output should be.
    let dir = args.output.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".{}.partial", args.output.file_name().and_then(|n| n.to_str()).unwrap_or("out")));
    let write = || -> anyhow::Result<()> {
        let file = File::create(&tmp).with_context(|| format!("cannot write `{}`", tmp.display()))?;
        match out_kind {
            Kind::Parquet => {
                let mut w = ArrowWriter::try_new(file, schema.clone(), None)?;
                for b in &scored {
                    w.write(b)?;
                }
                w.close()?;
            }
            Kind::Csv => {
                let mut w = arrow::csv::WriterBuilder::new().with_header(true).build(file);
                for b in &scored {
                    w.write(b)?;
                }
            }
        }
        std::fs::rename(&tmp, &args.output).with_context(|| format!("cannot write `{}`", args.output.display()))
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    let verb = if explain { "explained" } else { "scored" };
    eprintln!("{verb} {rows} rows with {name}:{} → {}", version.version, args.output.display());
    Ok(ExitCode::SUCCESS)
}
