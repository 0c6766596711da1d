//! Reading source files (CSV, Parquet, NDJSON; optionally compressed) into a DataFrame.

use std::path::{Path, PathBuf};

use datafusion::arrow::datatypes::Schema;
use datafusion::datasource::file_format::file_compression_type::FileCompressionType;
use datafusion::execution::context::SessionContext;
use datafusion::prelude::{CsvReadOptions, DataFrame, JsonReadOptions, ParquetReadOptions, col};
use sluice_spec::infer_format;
use sluice_spec::kinds::{FileFormat, SourceStep};

use crate::Engine;
use crate::error::{EngineError, Result};

fn compression_of(path: &Path) -> FileCompressionType {
    match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("gz") => FileCompressionType::GZIP,
        Some("zst") => FileCompressionType::ZSTD,
        Some("bz2") => FileCompressionType::BZIP2,
        Some("xz") => FileCompressionType::XZ,
        _ => FileCompressionType::UNCOMPRESSED,
    }
}

impl Engine {
    /// Read a source's files. Column names from `columns` replace the file's (or the generated
    /// `column_N` ones of a header-less CSV), after checking the count matches.
    pub async fn read_source(&self, source: &SourceStep, files: &[PathBuf]) -> Result<DataFrame> {
        let first = files.first().ok_or_else(|| EngineError::Invalid("no files to read".into()))?;
        let compression = compression_of(first);
        if let Some(other) = files.iter().find(|f| compression_of(f) != compression) {
            return Err(EngineError::MixedCompression { first: first.clone(), other: other.clone() });
        }
        let paths = files
            .iter()
            .map(|p| p.to_str().map(str::to_string).ok_or_else(|| EngineError::Path(p.clone())))
            .collect::<Result<Vec<_>>>()?;
        let format = source
            .format
            .or_else(|| infer_format(&source.path))
            .ok_or_else(|| EngineError::Invalid(format!("cannot tell the format of `{}`", *source.path)))?;
        let ctx = self.context();
        let mut df = read(&ctx, source, format, compression, paths.clone(), None).await?;
        if paths.len() > 1 {
            // One scan over many files orders them by how it groups them into partitions, which
            // depends on the partition count. Reading file by file (sorted) and concatenating
            // keeps the row order — and the artifact's bytes — the same whatever the
            // parallelism. Each file's types are inferred from that file, then widened to one
            // schema (a column that is text in any file is text).
            let mut schema: Option<Schema> = None;
            for p in &paths {
                let one = read(&ctx, source, format, compression, vec![p.clone()], None).await?;
                let this = one.schema().as_arrow().clone();
                schema = Some(match schema {
                    None => this,
                    Some(so_far) => widen(&so_far, &this, &paths[0], p)?,
                });
            }
            let schema = schema.unwrap_or_else(|| df.schema().as_arrow().clone());
            let mut union: Option<DataFrame> = None;
            for p in paths {
                let one = read(&ctx, source, format, compression, vec![p], Some(&schema)).await?;
                union = Some(match union {
                    None => one,
                    Some(u) => u.union(one)?,
                });
            }
            if let Some(u) = union {
                df = u;
            }
        }
        match &source.columns {
            None => Ok(df),
            Some(names) => {
                let found: Vec<String> = df.schema().fields().iter().map(|f| f.name().clone()).collect();
                if found.len() != names.len() {
                    return Err(EngineError::ColumnCount { given: names.len(), found: found.len() });
                }
                let exprs = found.iter().zip(names).map(|(old, new)| col(format!("\"{old}\"")).alias(new));
                Ok(df.select(exprs.collect::<Vec<_>>())?)
            }
        }
    }
}

async fn read(
    ctx: &SessionContext,
    source: &SourceStep,
    format: FileFormat,
    compression: FileCompressionType,
    paths: Vec<String>,
    schema: Option<&Schema>,
) -> Result<DataFrame> {
    // Explicit file lists: no extension filter is needed (and `.data.gz` is not `.csv`).
    Ok(match format {
        FileFormat::Csv => {
            let mut options = CsvReadOptions::new()
                .has_header(source.header)
                .delimiter(source.delimiter_byte())
                .file_extension("")
                .file_compression_type(compression)
                .schema_infer_max_records(10_000);
            if let Some(c) = &source.comment {
                options = options.comment(c.as_bytes()[0]);
            }
            if let Some(r) = &source.null_regex {
                options = options.null_regex(Some(r.clone()));
            }
            if let Some(s) = schema {
                options = options.schema(s);
            }
            ctx.read_csv(paths, options).await?
        }
        FileFormat::Parquet => {
            let mut options = ParquetReadOptions::default().file_extension("");
            if let Some(s) = schema {
                options = options.schema(s);
            }
            ctx.read_parquet(paths, options).await?
        }
        FileFormat::Ndjson => {
            let mut options = JsonReadOptions::default().file_extension("").file_compression_type(compression);
            if let Some(s) = schema {
                options = options.schema(s);
            }
            ctx.read_json(paths, options).await?
        }
    })
}

/// One schema for two files' inferred schemas: same names in the same order, each column the
/// narrowest type both fit (integers widen to floats; anything else that differs becomes text).
fn widen(a: &Schema, b: &Schema, first: &str, other: &str) -> Result<Schema> {
    use datafusion::arrow::datatypes::{DataType, Field};
    let names = |s: &Schema| s.fields().iter().map(|f| f.name().clone()).collect::<Vec<_>>();
    if names(a) != names(b) {
        return Err(EngineError::Invalid(format!(
            "`{other}` has columns {:?} but `{first}` has {:?}; files of one source must share their columns",
            names(b),
            names(a)
        )));
    }
    let fields = a.fields().iter().zip(b.fields()).map(|(fa, fb)| {
        let t = match (fa.data_type(), fb.data_type()) {
            (x, y) if x == y => x.clone(),
            (DataType::Null, y) => y.clone(),
            (x, DataType::Null) => x.clone(),
            (x, y) if x.is_integer() && y.is_integer() => DataType::Int64,
            (x, y) if x.is_numeric() && y.is_numeric() => DataType::Float64,
            _ => DataType::Utf8,
        };
        Field::new(fa.name(), t, true)
    });
    Ok(Schema::new(fields.collect::<Vec<_>>()))
}
