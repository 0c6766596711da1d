//! Dataset artifacts: Parquet files whose content hash is computed while they are written.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, RecordBatchReader};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use futures::StreamExt;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::arrow_writer::{ArrowColumnChunk, ArrowColumnWriter, ArrowRowGroupWriterFactory, compute_leaves};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::ColumnPath;
use rayon::prelude::*;
use sluice_core::{ColumnMeta, ContentHash};

use crate::error::{EngineError, Result};

/// A dataset written to a local file.
#[derive(Clone, Debug)]
pub struct WrittenDataset {
    pub hash: ContentHash,
    pub size: u64,
    pub rows: u64,
    pub schema: Vec<ColumnMeta>,
}

/// Hashes and counts the bytes passing through to the file.
struct HashingWriter<W: Write> {
    inner: W,
    hasher: blake3::Hasher,
    written: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Rows per row group: several row groups per file let later scans read one file in parallel.
const ROW_GROUP_ROWS: usize = 128 * 1024;

/// ZSTD, row groups of [`ROW_GROUP_ROWS`], and top-level floating-point columns without a dictionary (as
/// Polars writes them): interning every value of a float column cost more than encoding it
/// plain — 20 one-hot columns of 10M rows took the `fit_transform` benchmark from 3.4-3.7 s to
/// 3.9-4.3 s with a dictionary.
fn properties(schema: &Schema) -> WriterProperties {
    let builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_created_by(format!("sluice {}", sluice_core::ENGINE_VERSION))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS));
    schema
        .fields()
        .iter()
        .filter(|f| f.data_type().is_floating())
        .fold(builder, |b, f| b.set_column_dictionary_enabled(ColumnPath::from(f.name().as_str()), false))
        .build()
}

/// The row count of a Parquet file whose footer reads and is [`copyable`]; `None` otherwise (or
/// when it is not Parquet at all). Only the footer is read: pages are decoded by the steps that
/// read the dataset.
pub(crate) fn copyable_parquet(path: &Path, max_group_rows: i64) -> Option<u64> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let reader = SerializedFileReader::new(File::open(path).ok()?).ok()?;
    copyable(reader.metadata(), max_group_rows)
}

/// The row count of a Parquet file whose row groups hold at most `max_group_rows` rows and
/// whose column chunks use codecs this build decodes.
pub(crate) fn copyable(meta: &parquet::file::metadata::ParquetMetaData, max_group_rows: i64) -> Option<u64> {
    let groups = meta.row_groups();
    let readable = |c: Compression| matches!(c, Compression::UNCOMPRESSED | Compression::SNAPPY | Compression::ZSTD(_));
    let fits = groups
        .iter()
        .all(|g| (0..=max_group_rows).contains(&g.num_rows()) && g.columns().iter().all(|c| readable(c.compression())));
    fits.then(|| groups.iter().map(|g| g.num_rows() as u64).sum())
}

/// Copy `from` to `to` and sync it, returning the copy's content hash and size (hashed from
/// the bytes as written, so a file changing under the copy cannot leave a hash that does not
/// match). Errors name the file that failed: a read error `from`, a write error `to`.
pub(crate) fn copy_hashed(from: &Path, to: &Path) -> Result<(ContentHash, u64)> {
    use std::io::Read;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| EngineError::Io { path, source }
    };
    let mut input = File::open(from).map_err(io(from))?;
    let file = File::create(to).map_err(io(to))?;
    let mut out = HashingWriter { inner: file, hasher: blake3::Hasher::new(), written: 0 };
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = match input.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io(from)(e)),
        };
        out.write_all(&buffer[..n]).map_err(io(to))?;
    }
    out.inner.sync_all().map_err(io(to))?;
    Ok((ContentHash::from_bytes(*out.hasher.finalize().as_bytes()), out.written))
}

pub fn schema_meta(schema: &SchemaRef) -> Vec<ColumnMeta> {
    schema
        .fields()
        .iter()
        .map(|f| ColumnMeta { name: f.name().clone(), data_type: f.data_type().to_string(), nullable: f.is_nullable() })
        .collect()
}

/// A Parquet dataset file being written under a temporary name, hashed as it goes; the caller
/// renames it into place after [`DatasetWriter::finish`].
///
/// Row groups are gathered as Arrow batches and their columns encoded in parallel (rayon), one
/// task per field, then appended in column order: the bytes are those `ArrowWriter` writes
/// from the same batches, which encodes the columns one after another. That holds while row
/// groups end by row count alone (`properties()` sets no byte limit and no content-defined
/// chunking, which `ArrowWriter` would apply as it goes). Encoding runs on a thread of its own,
/// one row group behind the writer's caller, whose next batches are computed meanwhile.
pub struct DatasetWriter {
    /// Row groups go to the encoding thread as they fill, so the next one is gathered (and the
    /// batches for it computed) while the last is encoded. `None` once that thread was joined.
    encoding: Option<(std::sync::mpsc::SyncSender<Vec<RecordBatch>>, EncoderThread)>,
    chunks: Rechunker,
    /// The row group being gathered, and its rows so far.
    group: Vec<RecordBatch>,
    group_rows: usize,
    schema: SchemaRef,
    rows: u64,
    path: std::path::PathBuf,
}

/// The encoding thread, which gives back the file once its queue is closed.
type EncoderThread = std::thread::JoinHandle<Result<Encoder>>;

/// The file and its column writers, on the encoding thread.
struct Encoder {
    file: SerializedFileWriter<HashingWriter<BufWriter<File>>>,
    columns: ArrowRowGroupWriterFactory,
    schema: SchemaRef,
}

impl DatasetWriter {
    pub fn create(path: &Path, schema: SchemaRef) -> Result<Self> {
        let file = File::create(path).map_err(|source| EngineError::Io { path: path.to_path_buf(), source })?;
        let sink = HashingWriter { inner: BufWriter::new(file), hasher: blake3::Hasher::new(), written: 0 };
        // Through `ArrowWriter` for the file's Arrow schema metadata, then its parts.
        let (file, columns) =
            ArrowWriter::try_new(sink, schema.clone(), Some(properties(&schema)))?.into_serialized_writer()?;
        let mut encoder = Encoder { file, columns, schema: schema.clone() };
        // A hand-over, not a queue: one group is encoded while the next is gathered, so at most
        // two row groups are in memory.
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<RecordBatch>>(0);
        let thread = std::thread::Builder::new()
            .name("sluice-parquet".into())
            .spawn(move || {
                for group in rx {
                    encoder.write_group(group)?;
                }
                Ok(encoder)
            })
            .map_err(|source| EngineError::Io { path: path.to_path_buf(), source })?;
        Ok(Self {
            encoding: Some((tx, thread)),
            chunks: Rechunker::new(schema.clone()),
            group: Vec::new(),
            group_rows: 0,
            schema,
            rows: 0,
            path: path.to_path_buf(),
        })
    }

    pub fn write(&mut self, batch: RecordBatch) -> Result<()> {
        // The file's schema, checked (types; no nulls where the schema has none): chunks go on
        // as slices of this batch, and the Parquet writer would not check them.
        let options = datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        let batch = RecordBatch::try_new_with_options(self.schema.clone(), batch.columns().to_vec(), &options)?;
        self.rows += batch.num_rows() as u64;
        for chunk in self.chunks.push(batch)? {
            self.gather(chunk)?;
        }
        Ok(())
    }

    /// Add a batch to the row group, which is written when full; as `ArrowWriter` does, a batch
    /// that would overflow it is split at the boundary.
    fn gather(&mut self, batch: RecordBatch) -> Result<()> {
        let room = ROW_GROUP_ROWS - self.group_rows;
        if batch.num_rows() > room {
            self.gather(batch.slice(0, room))?;
            return self.gather(batch.slice(room, batch.num_rows() - room));
        }
        self.group_rows += batch.num_rows();
        self.group.push(batch);
        if self.group_rows == ROW_GROUP_ROWS {
            self.write_group()?;
        }
        Ok(())
    }

    /// Hand the gathered row group to the encoding thread. If that thread stopped, its error.
    fn write_group(&mut self) -> Result<()> {
        if self.group_rows == 0 {
            return Ok(());
        }
        let group = std::mem::take(&mut self.group);
        self.group_rows = 0;
        match &self.encoding {
            Some((tx, _)) if tx.send(group).is_ok() => Ok(()),
            _ => self.join().map(|_| ()),
        }
    }

    /// Wait for the encoding thread to write what it was given.
    fn join(&mut self) -> Result<Encoder> {
        let (tx, thread) =
            self.encoding.take().ok_or_else(|| EngineError::Invalid("the Parquet encoder has stopped".into()))?;
        drop(tx);
        thread.join().map_err(|panic| {
            let why =
                panic.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| panic.downcast_ref::<String>().cloned());
            EngineError::Invalid(format!("the Parquet encoder failed: {}", why.unwrap_or_default()))
        })?
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Flush, fsync, and return what was written. The caller renames the file into place.
    pub fn finish(mut self) -> Result<WrittenDataset> {
        if let Some(rest) = std::mem::replace(&mut self.chunks, Rechunker::new(self.schema.clone())).finish()? {
            self.gather(rest)?;
        }
        self.write_group()?;
        let encoder = self.join()?;
        let io = |source| EngineError::Io { path: self.path.clone(), source };
        let mut sink = encoder.file.into_inner()?;
        sink.flush().map_err(io)?;
        let file = sink.inner.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)?;
        Ok(WrittenDataset {
            hash: ContentHash::from_bytes(*sink.hasher.finalize().as_bytes()),
            size: sink.written,
            rows: self.rows,
            schema: schema_meta(&self.schema),
        })
    }
}

/// A writer dropped unfinished (its step failed) waits for the encoding thread, so nothing
/// writes to the scratch file after the caller removes it.
impl Drop for DatasetWriter {
    fn drop(&mut self) {
        if let Some((tx, thread)) = self.encoding.take() {
            drop(tx);
            let _ = thread.join();
        }
    }
}

impl Encoder {
    /// Encode a row group's columns in parallel and append them to the file.
    fn write_group(&mut self, group: Vec<RecordBatch>) -> Result<()> {
        let mut writers = self.columns.create_column_writers(self.file.flushed_row_groups().len())?.into_iter();
        // A field has a writer per Parquet leaf column under it (several for nested types), in order.
        let parquet = self.file.schema_descr();
        let mut leaves = vec![0usize; self.schema.fields().len()];
        (0..parquet.num_columns()).for_each(|c| leaves[parquet.get_column_root_idx(c)] += 1);
        let tasks: Vec<(usize, Vec<ArrowColumnWriter>)> =
            leaves.iter().enumerate().map(|(i, &n)| (i, writers.by_ref().take(n).collect())).collect();
        let schema = &self.schema;
        let chunks: Vec<Vec<ArrowColumnChunk>> = tasks
            .into_par_iter()
            .map(|(i, mut writers)| -> Result<Vec<ArrowColumnChunk>> {
                let field = schema.field(i);
                for batch in &group {
                    let column: &ArrayRef = batch.column(i);
                    for (writer, leaf) in writers.iter_mut().zip(compute_leaves(field, column)?) {
                        writer.write(&leaf)?;
                    }
                }
                Ok(writers.into_iter().map(ArrowColumnWriter::close).collect::<parquet::errors::Result<_>>()?)
            })
            .collect::<Result<_>>()?;
        let mut row_group = self.file.next_row_group()?;
        for chunk in chunks.into_iter().flatten() {
            chunk.append_to_row_group(&mut row_group)?;
        }
        row_group.close()?;
        Ok(())
    }
}

/// Rows per batch handed to the Parquet writer. The writer's page boundaries follow batch
/// boundaries, so batches of a fixed size — whatever sizes the query produced — keep the bytes
/// (and the content hash) independent of how the query was partitioned.
const WRITE_BATCH_ROWS: usize = 8192;

struct Rechunker {
    schema: SchemaRef,
    pending: Vec<RecordBatch>,
    rows: usize,
}

impl Rechunker {
    fn new(schema: SchemaRef) -> Self {
        Self { schema, pending: Vec::new(), rows: 0 }
    }

    /// The full chunks `batch` completes. Only rows that straddle a chunk boundary are copied
    /// (into one chunk); the rest are handed on as slices of the batch they came in.
    fn push(&mut self, batch: RecordBatch) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::new();
        let mut batch = batch;
        if self.rows > 0 {
            let need = WRITE_BATCH_ROWS - self.rows;
            if batch.num_rows() < need {
                self.rows += batch.num_rows();
                self.pending.push(batch);
                return Ok(out);
            }
            self.pending.push(batch.slice(0, need));
            out.push(concat_batches(&self.schema, &std::mem::take(&mut self.pending))?);
            self.rows = 0;
            batch = batch.slice(need, batch.num_rows() - need);
        }
        let full = batch.num_rows() / WRITE_BATCH_ROWS * WRITE_BATCH_ROWS;
        out.extend((0..full).step_by(WRITE_BATCH_ROWS).map(|o| batch.slice(o, WRITE_BATCH_ROWS)));
        if full < batch.num_rows() {
            self.rows = batch.num_rows() - full;
            self.pending.push(batch.slice(full, self.rows));
        }
        Ok(out)
    }

    fn finish(mut self) -> Result<Option<RecordBatch>> {
        match self.pending.len() {
            0 => Ok(None),
            1 => Ok(self.pending.pop()),
            _ => Ok(Some(concat_batches(&self.schema, &self.pending)?)),
        }
    }
}

/// Batches each later partition may compute ahead of the consumer.
const READ_AHEAD_BATCHES: usize = 8;

/// Hand a DataFrame's result batches to `f` in an order that does not depend on scheduling:
/// output partitions in partition order, not interleaved as they finish. Partition 0 streams
/// straight through while the others run concurrently, each into a bounded queue of
/// `READ_AHEAD_BATCHES` (then it waits), and are handed over in order — so memory stays bounded
/// whatever the data size. For scans, filters and projections the sequence is then identical
/// whatever the number of partitions; plans that hash-repartition (aggregations, joins) need an
/// `ORDER BY` for a reproducible order.
pub async fn for_each_batch(
    df: datafusion::prelude::DataFrame,
    f: impl FnMut(RecordBatch) -> Result<()>,
) -> Result<()> {
    for_each_mapped(df, Ok, f).await
}

/// [`for_each_batch`] with `map` applied to each batch where its partition runs (each later
/// partition in its own task), so per-batch work such as fitted transforms runs in parallel
/// while `f` still sees the results in partition order. A `map` error ends the stream like a
/// read error, and `f` sees nothing after it.
pub async fn for_each_mapped<T, E>(
    df: datafusion::prelude::DataFrame,
    map: impl Fn(RecordBatch) -> std::result::Result<T, E> + Send + Sync + 'static,
    mut f: impl FnMut(T) -> std::result::Result<(), E>,
) -> std::result::Result<(), E>
where
    T: Send + 'static,
    E: From<EngineError> + Send + 'static,
{
    let engine = |e: datafusion::error::DataFusionError| E::from(EngineError::from(e));
    let map = Arc::new(map);
    let mut streams = df.execute_stream_partitioned().await.map_err(engine)?.into_iter();
    let Some(mut first) = streams.next() else { return Ok(()) };
    let mut queues = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    for mut stream in streams {
        let (tx, rx) = tokio::sync::mpsc::channel(READ_AHEAD_BATCHES);
        queues.push(rx);
        let map = map.clone();
        tasks.spawn(async move {
            while let Some(batch) = stream.next().await {
                let item = batch.map_err(engine).and_then(|b| map(b));
                let failed = item.is_err();
                // A closed queue means the consumer stopped (it failed): stop too.
                if tx.send(item).await.is_err() || failed {
                    break;
                }
            }
        });
    }
    while let Some(batch) = first.next().await {
        f(map(batch.map_err(engine)?)?)?;
    }
    for mut queue in queues {
        while let Some(item) = queue.recv().await {
            f(item?)?;
        }
    }
    while let Some(joined) = tasks.join_next().await {
        joined.map_err(|e| E::from(EngineError::Invalid(format!("partition task failed: {e}"))))?;
    }
    Ok(())
}

/// Write a DataFrame's result as a dataset whose bytes do not depend on scheduling (see
/// [`for_each_batch`]).
pub async fn write_dataframe(
    df: datafusion::prelude::DataFrame,
    path: &Path,
    on_rows: &(dyn Fn(u64) + Send + Sync),
) -> Result<WrittenDataset> {
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let mut sink = DatasetWriter::create(path, schema)?;
    for_each_batch(df, |batch| {
        sink.write(batch)?;
        on_rows(sink.rows);
        Ok(())
    })
    .await?;
    sink.finish()
}

/// Write batches that are already in memory.
pub fn write_batches(batches: &[RecordBatch], schema: SchemaRef, path: &Path) -> Result<WrittenDataset> {
    let mut sink = DatasetWriter::create(path, schema)?;
    for b in batches {
        sink.write(b.clone())?;
    }
    sink.finish()
}

/// Read a whole Parquet dataset into one batch (for steps that need all rows in memory).
pub fn read_dataset_batch(path: &Path) -> Result<RecordBatch> {
    let file = File::open(path).map_err(|source| EngineError::Io { path: path.to_path_buf(), source })?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)?.with_batch_size(65_536).build()?;
    let schema = reader.schema();
    let batches = reader.collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(concat_batches(&Arc::clone(&schema), &batches)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Float64Array, Int32Array, Int64Array, StringArray, StructArray};
    use datafusion::arrow::datatypes::{DataType, Field, Fields, Schema};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mapped_batches_come_in_partition_order_and_a_map_error_ends_them() {
        use datafusion::arrow::array::AsArray;
        use datafusion::arrow::datatypes::Int64Type;
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        // Four partitions of three batches of 100 consecutive values each: 0..1200 in order.
        let partitions: Vec<Vec<RecordBatch>> = (0..4)
            .map(|p| {
                (0..3)
                    .map(|b| {
                        let start = (p * 3 + b) * 100;
                        let values = Int64Array::from_iter_values(start..start + 100);
                        RecordBatch::try_new(schema.clone(), vec![Arc::new(values)]).unwrap()
                    })
                    .collect()
            })
            .collect();
        let table = Arc::new(datafusion::datasource::MemTable::try_new(schema.clone(), partitions).unwrap());
        let ctx = datafusion::prelude::SessionContext::new();
        // Doubles each value; fails on the batch that holds `refused`.
        let doubled = |refused: i64| {
            move |b: RecordBatch| -> Result<Vec<i64>> {
                let x = b.column(0).as_primitive::<Int64Type>();
                if x.values().contains(&refused) {
                    return Err(EngineError::Invalid(format!("{refused} is not allowed")));
                }
                Ok(x.values().iter().map(|v| v * 2).collect())
            }
        };
        let streams = ctx.read_table(table.clone()).unwrap().execute_stream_partitioned().await.unwrap();
        assert_eq!(streams.len(), 4, "the order is tested over several partitions");
        let mut seen = Vec::new();
        let df = ctx.read_table(table.clone()).unwrap();
        for_each_mapped(df, doubled(-1), |v| {
            seen.extend(v);
            Ok(())
        })
        .await
        .unwrap();
        assert_eq!(seen, (0..1200).map(|v| v * 2).collect::<Vec<i64>>());
        // 750 is in partition 2's second batch: everything before it arrives, nothing after.
        seen.clear();
        let df = ctx.read_table(table).unwrap();
        let failed = for_each_mapped(df, doubled(750), |v| {
            seen.extend(v);
            Ok(())
        })
        .await;
        assert!(matches!(&failed, Err(EngineError::Invalid(m)) if m == "750 is not allowed"), "{failed:?}");
        assert_eq!(seen, (0..700).map(|v| v * 2).collect::<Vec<i64>>());
    }

    #[test]
    fn a_batch_that_does_not_match_the_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let required = Arc::new(Schema::new(vec![Field::new("x", DataType::Float64, false)]));
        let mut writer = DatasetWriter::create(&dir.path().join("d.parquet"), required).unwrap();
        let nullable = Arc::new(Schema::new(vec![Field::new("x", DataType::Float64, true)]));
        let values = Float64Array::from_iter((0..10_000).map(|i| (i != 9_000).then_some(i as f64)));
        let with_null = RecordBatch::try_new(nullable, vec![Arc::new(values)]).unwrap();
        let refused = writer.write(with_null);
        assert!(matches!(&refused, Err(EngineError::Arrow(e)) if e.to_string().contains("null")), "{refused:?}");
    }

    #[test]
    fn columns_encoded_in_parallel_give_the_bytes_arrow_writer_writes() {
        // Two full row groups and part of a third, in input batches of uneven sizes; nullable
        // columns and a struct (two Parquet leaf columns for one field).
        let pair = Fields::from(vec![Field::new("a", DataType::Int32, true), Field::new("b", DataType::Utf8, true)]);
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("x", DataType::Float64, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("pair", DataType::Struct(pair.clone()), true),
        ]));
        let batch = |start: usize, len: usize| {
            let ids = start as i64..(start + len) as i64;
            let text = |i: i64, m: i64| (i % m != 0).then(|| format!("v{}", i % 97));
            let columns: Vec<ArrayRef> = vec![
                Arc::new(Int64Array::from_iter_values(ids.clone())),
                Arc::new(Float64Array::from_iter(ids.clone().map(|i| (i % 7 != 0).then_some(i as f64 * 0.5)))),
                Arc::new(StringArray::from_iter(ids.clone().map(|i| text(i, 5)))),
                Arc::new(StructArray::new(
                    pair.clone(),
                    vec![
                        Arc::new(Int32Array::from_iter(ids.clone().map(|i| (i % 3 != 0).then_some(i as i32)))),
                        Arc::new(StringArray::from_iter(ids.clone().map(|i| text(i, 11)))),
                    ],
                    None,
                )),
            ];
            RecordBatch::try_new(schema.clone(), columns).unwrap()
        };
        let sizes = [65_536, 8_192, 3, 8_189, 100_000, 16_384, 5, 101_691];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.parquet");
        let mut writer = DatasetWriter::create(&path, schema.clone()).unwrap();
        let mut start = 0;
        for len in sizes {
            writer.write(batch(start, len)).unwrap();
            start += len;
        }
        let written = writer.finish().unwrap();
        // `ArrowWriter` fed the same fixed-size chunks.
        let all = batch(0, start);
        let mut reference = Vec::new();
        let mut w = ArrowWriter::try_new(&mut reference, schema.clone(), Some(properties(&schema))).unwrap();
        for offset in (0..start).step_by(WRITE_BATCH_ROWS) {
            w.write(&all.slice(offset, WRITE_BATCH_ROWS.min(start - offset))).unwrap();
        }
        w.close().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert!(bytes == reference, "{} bytes vs {}", bytes.len(), reference.len());
        assert_eq!((written.rows, written.size), (300_000, bytes.len() as u64));
        assert_eq!(written.hash, ContentHash::from_bytes(*blake3::hash(&bytes).as_bytes()));
        let meta = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap()).unwrap();
        let groups: Vec<i64> = meta.metadata().row_groups().iter().map(|g| g.num_rows()).collect();
        assert_eq!(groups, [131_072, 131_072, 37_856]);
        // Floats are written plain; other columns keep their dictionary.
        let dictionary: Vec<bool> =
            meta.metadata().row_group(0).columns().iter().map(|c| c.dictionary_page_offset().is_some()).collect();
        assert_eq!(dictionary, [true, false, true, true, true]);
        // And it reads back as written.
        let back: Vec<RecordBatch> = meta.build().unwrap().collect::<std::result::Result<_, _>>().unwrap();
        assert_eq!(concat_batches(&schema, &back).unwrap(), all);
    }
}
