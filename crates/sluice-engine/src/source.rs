//! Reading source files (CSV, Parquet, NDJSON, Arrow IPC; optionally compressed; hive-partitioned
//! directories) into a DataFrame.

use std::path::{Path, PathBuf};

use datafusion::arrow::datatypes::Schema;
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::datasource::file_format::file_compression_type::FileCompressionType;
use datafusion::datasource::file_format::options::ArrowReadOptions;
use datafusion::execution::context::SessionContext;
use datafusion::functions::expr_fn::regexp_like;
use datafusion::prelude::{CsvReadOptions, DataFrame, JsonReadOptions, ParquetReadOptions, cast, col, lit, when};
use datafusion::scalar::ScalarValue;
use sluice_spec::infer_format;
use sluice_spec::kinds::{FileFormat, SourceStep};

use crate::Engine;
use crate::error::{EngineError, Result};

/// The largest row groups a Parquet source may have to be ingested as it is (the dataset writer
/// itself writes 128k-row groups).
pub const COPY_MAX_ROW_GROUP_ROWS: i64 = 1 << 20;

/// A source that names one plain Parquet file or object: nothing to rename, decompress or add.
fn plain_parquet(source: &SourceStep, location: &str) -> bool {
    source.format.or_else(|| infer_format(&source.path)) == Some(FileFormat::Parquet)
        && source.columns.is_none()
        && compression_of(location) == FileCompressionType::UNCOMPRESSED
        && hive_segments(location).is_empty()
}

fn compression_of(path: &str) -> FileCompressionType {
    match Path::new(path).extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("gz") => FileCompressionType::GZIP,
        Some("zst") => FileCompressionType::ZSTD,
        Some("bz2") => FileCompressionType::BZIP2,
        Some("xz") => FileCompressionType::XZ,
        _ => FileCompressionType::UNCOMPRESSED,
    }
}

/// `key=value` directories on a path or URL (hive partitioning), outermost first.
fn hive_segments(path: &str) -> Vec<(String, String)> {
    let mut segments: Vec<&str> = path.split(['/', '\\']).collect();
    segments.pop(); // the file name
    segments
        .into_iter()
        .filter_map(|segment| {
            let (key, value) = segment.split_once('=')?;
            let valid = !key.is_empty()
                && key.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            valid.then(|| (key.to_string(), value.to_string()))
        })
        .collect()
}

/// Partition columns shared by every file: names, and per file the values (None = missing,
/// Hive's `__HIVE_DEFAULT_PARTITION__`), typed Int64 when every value is an integer.
struct Partitions {
    keys: Vec<String>,
    values: Vec<Vec<Option<String>>>,
    integer: Vec<bool>,
}

impl Partitions {
    fn of(files: &[String]) -> Option<Self> {
        let per_file: Vec<Vec<(String, String)>> = files.iter().map(|f| hive_segments(f)).collect();
        let keys: Vec<String> = per_file.first()?.iter().map(|(k, _)| k.clone()).collect();
        let same = per_file.iter().all(|p| p.iter().map(|(k, _)| k).eq(keys.iter()));
        if keys.is_empty() || !same {
            return None;
        }
        let values: Vec<Vec<Option<String>>> = per_file
            .into_iter()
            .map(|p| p.into_iter().map(|(_, v)| (v != "__HIVE_DEFAULT_PARTITION__").then_some(v)).collect())
            .collect();
        let integer = (0..keys.len())
            .map(|k| values.iter().all(|v| v[k].as_ref().is_none_or(|x| x.parse::<i64>().is_ok())))
            .collect();
        Some(Self { keys, values, integer })
    }

    fn add(&self, df: DataFrame, file: usize) -> Result<DataFrame> {
        let mut exprs: Vec<datafusion::prelude::Expr> =
            df.schema().fields().iter().map(|f| col(format!("\"{}\"", f.name()))).collect();
        for (k, key) in self.keys.iter().enumerate() {
            if df.schema().fields().iter().any(|f| f.name() == key) {
                return Err(EngineError::Invalid(format!(
                    "partition directory `{key}=...` names a column the files already have"
                )));
            }
            let value = &self.values[file][k];
            let literal = match (self.integer[k], value) {
                (true, Some(v)) => lit(v.parse::<i64>().unwrap_or_default()),
                (true, None) => lit(ScalarValue::Int64(None)),
                (false, Some(v)) => lit(v.clone()),
                (false, None) => lit(ScalarValue::Utf8(None)),
            };
            exprs.push(literal.alias(key));
        }
        Ok(df.select(exprs)?)
    }
}

impl Engine {
    /// Read a source's files. Column names from `columns` replace the file's (or the generated
    /// `column_N` ones of a header-less CSV), after checking the count matches; `key=value`
    /// directories on the files' paths become columns after the files' own.
    pub async fn read_source(&self, source: &SourceStep, files: &[PathBuf]) -> Result<DataFrame> {
        let paths = files
            .iter()
            .map(|p| p.to_str().map(str::to_string).ok_or_else(|| EngineError::Path(p.clone())))
            .collect::<Result<Vec<_>>>()?;
        self.read_locations(source, paths, None).await
    }

    /// Ingest a source that is one plain Parquet file by copying its bytes to `tmp` (hashed as
    /// they go) instead of decoding and encoding every row: the artifact is the user's file, as
    /// DVC would store it. Only when a re-encode would add nothing the file lacks: one file, no
    /// `columns` renames, no `key=value` directories, row groups of at most 1Mi rows
    /// (`COPY_MAX_ROW_GROUP_ROWS`; later scans split on row groups) and codecs this build reads
    /// (none, Snappy, zstd). `None`: read it the general way.
    pub async fn copy_parquet_source(
        &self,
        source: &SourceStep,
        files: &[PathBuf],
        tmp: &Path,
    ) -> Result<Option<crate::WrittenDataset>> {
        let [file] = files else { return Ok(None) };
        let Some(path) = file.to_str() else { return Ok(None) };
        if !plain_parquet(source, path) || crate::dataset::copyable_parquet(file, COPY_MAX_ROW_GROUP_ROWS).is_none() {
            return Ok(None);
        }
        let (from, to) = (file.clone(), tmp.to_path_buf());
        let (hash, size) = tokio::task::spawn_blocking(move || crate::dataset::copy_hashed(&from, &to))
            .await
            .map_err(|e| EngineError::Invalid(format!("copying `{path}` failed: {e}")))??;
        self.copied(source, tmp, hash, size).await
    }

    /// [`copy_parquet_source`](Self::copy_parquet_source) for a source that is one object in an
    /// object store (`listed`: the objects its cache key was computed from): the footer is
    /// checked with two range reads, then the object is downloaded, hashed as written.
    pub async fn copy_remote_parquet_source(
        &self,
        source: &SourceStep,
        listed: Option<&[sluice_store::remote::RemoteObject]>,
        tmp: &Path,
    ) -> Result<Option<crate::WrittenDataset>> {
        use futures::StreamExt;
        use object_store::ObjectStoreExt;
        use parquet::file::metadata::{FooterTail, ParquetMetaDataReader};
        use tokio::io::AsyncWriteExt;

        let Some([object]) = listed else { return Ok(None) };
        let (url, size) = (object.url.as_str(), object.size);
        if !plain_parquet(source, url) || size < 12 {
            return Ok(None);
        }
        let failed = |e: object_store::Error| EngineError::Invalid(format!("reading `{url}`: {e}"));
        let (store, _, path) = sluice_store::remote::store_for(url).map_err(|e| EngineError::Invalid(e.to_string()))?;
        let tail = store.get_range(&path, size - 8..size).await.map_err(failed)?;
        let Ok(footer) = FooterTail::try_from(&tail[..]) else { return Ok(None) };
        let length = footer.metadata_length() as u64;
        if footer.is_encrypted_footer() || length + 12 > size {
            return Ok(None);
        }
        let metadata = store.get_range(&path, size - 8 - length..size - 8).await.map_err(failed)?;
        let Ok(metadata) = ParquetMetaDataReader::decode_metadata(&metadata) else { return Ok(None) };
        if crate::dataset::copyable(&metadata, COPY_MAX_ROW_GROUP_ROWS).is_none() {
            return Ok(None);
        }
        let written = |e| EngineError::Io { path: tmp.to_path_buf(), source: e };
        let mut out = tokio::fs::File::create(tmp).await.map_err(written)?;
        let (mut hasher, mut copied) = (blake3::Hasher::new(), 0u64);
        let mut body = store.get(&path).await.map_err(failed)?.into_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(failed)?;
            out.write_all(&chunk).await.map_err(written)?;
            hasher.update(&chunk);
            copied += chunk.len() as u64;
        }
        out.sync_all().await.map_err(written)?;
        let hash = sluice_core::ContentHash::from_bytes(*hasher.finalize().as_bytes());
        self.copied(source, tmp, hash, copied).await
    }

    /// The dataset a copy at `tmp` is: rows and columns from the copy itself (the source may
    /// have changed since it was checked), the columns as the engine reads them — what a
    /// re-encoded artifact would record. `None` (and the copy removed) if it is no longer a
    /// file to copy.
    async fn copied(
        &self,
        source: &SourceStep,
        tmp: &Path,
        hash: sluice_core::ContentHash,
        size: u64,
    ) -> Result<Option<crate::WrittenDataset>> {
        let Some(rows) = crate::dataset::copyable_parquet(tmp, COPY_MAX_ROW_GROUP_ROWS) else {
            let _ = std::fs::remove_file(tmp);
            return Ok(None);
        };
        let copy = tmp.to_str().ok_or_else(|| EngineError::Path(tmp.to_path_buf()))?;
        let uncompressed = FileCompressionType::UNCOMPRESSED;
        let df = read(&self.in_process_context(), source, FileFormat::Parquet, uncompressed, vec![copy.into()], None)
            .await?;
        let schema = std::sync::Arc::new(df.schema().as_arrow().clone());
        Ok(Some(crate::WrittenDataset { hash, size, rows, schema: crate::schema_meta(&schema) }))
    }

    /// Read a source whose `path` is an object store URL (a single object, a glob or a
    /// "directory" ending in `/`), listing the matching objects now.
    /// `listed`: the objects the cache key was computed from, so exactly those are read (and
    /// the store is not listed twice); listed now when absent.
    pub async fn read_remote_source(
        &self,
        source: &SourceStep,
        listed: Option<&[sluice_store::remote::RemoteObject]>,
    ) -> Result<DataFrame> {
        let err = |e: sluice_store::StoreError| EngineError::Invalid(e.to_string());
        let (store, root, objects) = match listed {
            Some(objects) => {
                let (store, root, _) = sluice_store::remote::store_for(source.path.as_str()).map_err(err)?;
                (store, root, objects.to_vec())
            }
            None => sluice_store::remote::list(source.path.as_str()).await.map_err(err)?,
        };
        let urls = objects.into_iter().map(|o| o.url).collect();
        self.read_locations(source, urls, Some((root, store))).await
    }

    async fn read_locations(
        &self,
        source: &SourceStep,
        paths: Vec<String>,
        store: Option<(url::Url, std::sync::Arc<dyn object_store::ObjectStore>)>,
    ) -> Result<DataFrame> {
        let first = paths.first().ok_or_else(|| EngineError::Invalid("no files to read".into()))?;
        let compression = compression_of(first);
        if let Some(other) = paths.iter().find(|f| compression_of(f) != compression) {
            return Err(EngineError::MixedCompression { first: first.into(), other: other.into() });
        }
        let format = source
            .format
            .or_else(|| infer_format(&source.path))
            .ok_or_else(|| EngineError::Invalid(format!("cannot tell the format of `{}`", *source.path)))?;
        let partitions = Partitions::of(&paths);
        // DataFusion's plan serialization does not carry a scan's compression (executors would
        // read gzip bytes as text), so on a cluster compressed files are read here.
        let ctx = if compression.is_compressed() { self.in_process_context() } else { self.context()? };
        if let Some((root, store)) = store {
            ctx.register_object_store(&root, store);
        }
        let finish = |df: DataFrame, file: usize| -> Result<DataFrame> {
            let df = rename(df, source.columns.as_deref())?;
            match &partitions {
                Some(p) => p.add(df, file),
                None => Ok(df),
            }
        };
        if paths.len() == 1 {
            let df = read(&ctx, source, format, compression, paths.clone(), None).await?;
            return finish(df, 0);
        }
        // One scan over many files orders them by how it groups them into partitions, which
        // depends on the partition count. Reading file by file (sorted) and concatenating keeps
        // the row order — and the artifact's bytes — the same whatever the parallelism. Each
        // file's types are inferred from that file, then widened to one schema (a column that
        // is text in any file is text).
        let mut schema: Option<Schema> = None;
        for p in &paths {
            let one = read(&ctx, source, format, compression, vec![p.clone()], None).await?;
            let this = one.schema().as_arrow().clone();
            schema = Some(match schema {
                None => this,
                Some(so_far) => widen(&so_far, &this, &paths[0], p)?,
            });
        }
        let mut union: Option<DataFrame> = None;
        for (i, p) in paths.into_iter().enumerate() {
            let one = finish(read(&ctx, source, format, compression, vec![p], schema.as_ref()).await?, i)?;
            union = Some(match union {
                None => one,
                Some(u) => u.union(one)?,
            });
        }
        union.ok_or_else(|| EngineError::Invalid("no files to read".into()))
    }
}

/// Replace a DataFrame's column names with `names`, which must be as many.
fn rename(df: DataFrame, names: Option<&[String]>) -> Result<DataFrame> {
    let Some(names) = names else { return Ok(df) };
    let found: Vec<String> = df.schema().fields().iter().map(|f| f.name().clone()).collect();
    if found.len() != names.len() {
        return Err(EngineError::ColumnCount { given: names.len(), found: found.len() });
    }
    let exprs = found.iter().zip(names).map(|(old, new)| col(format!("\"{old}\"")).alias(new));
    Ok(df.select(exprs.collect::<Vec<_>>())?)
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
            if let Some(s) = schema {
                options = options.schema(s);
            }
            let Some(r) = &source.null_regex else { return Ok(ctx.read_csv(paths, options).await?) };
            // DataFusion 55 uses `null_regex` to infer types but not when parsing values (its
            // CSV reader never receives it), so `NA` in an integer column fails to parse. Read
            // every column as text and turn matches into nulls, then cast to the inferred types.
            let inferred = match schema {
                Some(s) => s.clone(),
                None => {
                    let with_regex = options.clone().null_regex(Some(r.clone()));
                    ctx.read_csv(paths.clone(), with_regex).await?.schema().as_arrow().clone()
                }
            };
            let text = Schema::new(
                inferred.fields().iter().map(|f| Field::new(f.name(), DataType::Utf8, true)).collect::<Vec<_>>(),
            );
            let df = ctx.read_csv(paths, options.schema(&text)).await?;
            let exprs = inferred.fields().iter().map(|f| {
                let c = col(format!("\"{}\"", f.name()));
                let nulled =
                    when(regexp_like(c.clone(), lit(r.clone()), None), lit(ScalarValue::Utf8(None))).otherwise(c);
                nulled.map(|e| cast(e, f.data_type().clone()).alias(f.name()))
            });
            let exprs = exprs.collect::<std::result::Result<Vec<_>, _>>()?;
            df.select(exprs)?
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
        FileFormat::Arrow => {
            let options = ArrowReadOptions { schema, file_extension: "", table_partition_cols: vec![] };
            ctx.read_arrow(paths, options).await?
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

#[cfg(test)]
mod tests {
    use std::io::Write;

    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::Int64Type;

    /// Files big enough to be split into byte ranges, read on a multi-threaded runtime: every
    /// read returns the rows in the same order (file order, then range order) — no partition
    /// takes over a sibling's range however the threads are scheduled.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn byte_range_partitions_keep_their_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = Vec::new();
        for part in 0..4u64 {
            let path = dir.path().join(format!("part-{part}.csv"));
            let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
            writeln!(f, "id,payload").unwrap();
            for i in 0..60_000u64 {
                writeln!(f, "{},{:040}", part * 60_000 + i, i * 7919).unwrap();
            }
            files.push(path);
        }
        let spec = "name: t\nsources:\n  parts: {path: \"part-*.csv\"}\n";
        let pipeline = sluice_spec::parse(spec, "t.yaml", dir.path(), &[]).unwrap();
        let step = &pipeline.steps[0];
        let sluice_spec::StepConfig::Source(source) = &step.config else { panic!("not a source") };
        assert_eq!(step.files, files);
        let engine = crate::Engine::local(2);
        for attempt in 0..6 {
            let df = engine.read_source(source, &step.files).await.unwrap();
            let plan = df.clone().create_physical_plan().await.unwrap();
            assert!(plan.properties().partitioning.partition_count() >= 8, "each file is split in two");
            let mut ids = Vec::new();
            crate::for_each_batch(df, |b| {
                ids.extend(b.column(0).as_primitive::<Int64Type>().values().iter().copied());
                Ok(())
            })
            .await
            .unwrap();
            assert_eq!(ids.len(), 240_000);
            assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "read {attempt}: rows out of order");
        }
    }

    /// A plain Parquet file is ingested as its own bytes, with the rows and columns the general
    /// path reports; renames, other codecs and oversized row groups go the general way.
    #[tokio::test]
    async fn a_plain_parquet_source_is_copied_as_it_is() {
        use std::sync::Arc;

        use datafusion::arrow::array::{Float64Array, Int64Array, RecordBatch, StringArray};
        use datafusion::arrow::datatypes::{DataType, Field, Schema};
        use parquet::arrow::ArrowWriter;
        use parquet::basic::Compression;
        use parquet::file::properties::WriterProperties;

        let dir = tempfile::tempdir().unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("x", DataType::Float64, true),
            Field::new("name", DataType::Utf8, true),
        ]));
        let write = |name: &str, compression: Compression, group: usize| {
            let path = dir.path().join(name);
            let props = WriterProperties::builder()
                .set_compression(compression)
                .set_max_row_group_row_count(Some(group))
                .build();
            let mut w =
                ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), schema.clone(), Some(props)).unwrap();
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from_iter_values(0..3000)),
                    Arc::new(Float64Array::from_iter((0..3000).map(|i| (i % 7 != 0).then_some(i as f64 / 3.0)))),
                    Arc::new(StringArray::from_iter_values((0..3000).map(|i| format!("n{}", i % 13)))),
                ],
            )
            .unwrap();
            w.write(&batch).unwrap();
            w.close().unwrap();
            path
        };
        let source = |extra: &str, file: &str| {
            let spec = format!("name: t\nsources:\n  s: {{path: {file}{extra}}}\n");
            let pipeline = sluice_spec::parse(&spec, "t.yaml", dir.path(), &[]).unwrap();
            let step = pipeline.steps[0].clone();
            let sluice_spec::StepConfig::Source(source) = step.config.clone() else { panic!("not a source") };
            (source, step.files)
        };
        let engine = crate::Engine::local(2);
        let plain = write("plain.parquet", Compression::SNAPPY, 1000);
        let (s, files) = source("", "plain.parquet");
        let tmp = dir.path().join("copy.tmp");
        let copied = engine.copy_parquet_source(&s, &files, &tmp).await.unwrap().expect("copied");
        let bytes = std::fs::read(&plain).unwrap();
        assert_eq!(std::fs::read(&tmp).unwrap(), bytes);
        assert_eq!(copied.hash, sluice_core::ContentHash::of_bytes(&bytes));
        assert_eq!((copied.rows, copied.size), (3000, bytes.len() as u64));
        // The columns the general path would record.
        let written =
            crate::write_dataframe(engine.read_source(&s, &files).await.unwrap(), &dir.path().join("general"), &|_| {})
                .await
                .unwrap();
        assert_eq!(copied.schema, written.schema);
        assert_eq!(written.rows, 3000);
        // Uncompressed and zstd files are copied too.
        write("plain.zstd.parquet", Compression::ZSTD(Default::default()), 1000);
        let (s, files) = source("", "plain.zstd.parquet");
        assert!(engine.copy_parquet_source(&s, &files, &tmp).await.unwrap().is_some());
        std::fs::create_dir(dir.path().join("year=2013")).unwrap();
        write("year=2013/plain.parquet", Compression::UNCOMPRESSED, 1000);
        let (s, files) = source("", "year=2013/plain.parquet");
        // ... but a `key=value` directory adds a column: read the general way.
        assert!(engine.copy_parquet_source(&s, &files, &tmp).await.unwrap().is_none());
        std::fs::rename(dir.path().join("year=2013/plain.parquet"), dir.path().join("plain.none.parquet")).unwrap();
        let (s, files) = source("", "plain.none.parquet");
        assert!(engine.copy_parquet_source(&s, &files, &tmp).await.unwrap().is_some());
        // Not copied: renamed columns, several files, row groups over the limit, not Parquet.
        let (renamed, files) = source(", columns: [a, b, c]", "plain.parquet");
        assert!(engine.copy_parquet_source(&renamed, &files, &tmp).await.unwrap().is_none());
        let (s, files) = source("", "\"*.parquet\"");
        assert_eq!(files.len(), 3);
        assert!(engine.copy_parquet_source(&s, &files, &tmp).await.unwrap().is_none());
        assert_eq!(crate::dataset::copyable_parquet(&plain, 1000), Some(3000));
        assert_eq!(crate::dataset::copyable_parquet(&plain, 999), None);
        std::fs::write(dir.path().join("fake.parquet"), b"not parquet at all").unwrap();
        assert_eq!(crate::dataset::copyable_parquet(&dir.path().join("fake.parquet"), 1000), None);
    }
}
