//! Dataset artifacts: Parquet files whose content hash is computed while they are written.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, RecordBatchReader};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::SchemaRef;
use futures::StreamExt;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
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

fn properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_created_by(format!("sluice {}", sluice_core::ENGINE_VERSION))
        // Several row groups per file let later scans read one file in parallel.
        .set_max_row_group_row_count(Some(128 * 1024))
        .build()
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
pub struct DatasetWriter {
    writer: ArrowWriter<HashingWriter<BufWriter<File>>>,
    chunks: Rechunker,
    schema: SchemaRef,
    rows: u64,
    path: std::path::PathBuf,
}

impl DatasetWriter {
    pub fn create(path: &Path, schema: SchemaRef) -> Result<Self> {
        let file = File::create(path).map_err(|source| EngineError::Io { path: path.to_path_buf(), source })?;
        let sink = HashingWriter { inner: BufWriter::new(file), hasher: blake3::Hasher::new(), written: 0 };
        let writer = ArrowWriter::try_new(sink, schema.clone(), Some(properties()))?;
        Ok(Self { writer, chunks: Rechunker::new(schema.clone()), schema, rows: 0, path: path.to_path_buf() })
    }

    pub fn write(&mut self, batch: RecordBatch) -> Result<()> {
        self.rows += batch.num_rows() as u64;
        for chunk in self.chunks.push(batch)? {
            self.writer.write(&chunk)?;
        }
        Ok(())
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Flush, fsync, and return what was written. The caller renames the file into place.
    pub fn finish(mut self) -> Result<WrittenDataset> {
        let io = |source| EngineError::Io { path: self.path.clone(), source };
        if let Some(rest) = std::mem::replace(&mut self.chunks, Rechunker::new(self.schema.clone())).finish()? {
            self.writer.write(&rest)?;
        }
        let mut sink = self.writer.into_inner()?;
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

    fn push(&mut self, batch: RecordBatch) -> Result<Vec<RecordBatch>> {
        self.rows += batch.num_rows();
        self.pending.push(batch);
        if self.rows < WRITE_BATCH_ROWS {
            return Ok(Vec::new());
        }
        let all = concat_batches(&self.schema, &self.pending)?;
        let full = all.num_rows() / WRITE_BATCH_ROWS * WRITE_BATCH_ROWS;
        let out = (0..full).step_by(WRITE_BATCH_ROWS).map(|o| all.slice(o, WRITE_BATCH_ROWS)).collect();
        self.pending = vec![all.slice(full, all.num_rows() - full)];
        self.rows = all.num_rows() - full;
        Ok(out)
    }

    fn finish(self) -> Result<Option<RecordBatch>> {
        if self.rows == 0 {
            return Ok(None);
        }
        Ok(Some(concat_batches(&self.schema, &self.pending)?))
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
    mut f: impl FnMut(RecordBatch) -> Result<()>,
) -> Result<()> {
    let mut streams = df.execute_stream_partitioned().await?.into_iter();
    let Some(mut first) = streams.next() else { return Ok(()) };
    let mut queues = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    for mut stream in streams {
        let (tx, rx) = tokio::sync::mpsc::channel(READ_AHEAD_BATCHES);
        queues.push(rx);
        tasks.spawn(async move {
            while let Some(batch) = stream.next().await {
                let failed = batch.is_err();
                // A closed queue means the consumer stopped (it failed): stop too.
                if tx.send(batch.map_err(EngineError::from)).await.is_err() || failed {
                    break;
                }
            }
        });
    }
    while let Some(batch) = first.next().await {
        f(batch?)?;
    }
    for mut queue in queues {
        while let Some(batch) = queue.recv().await {
            f(batch?)?;
        }
    }
    while let Some(joined) = tasks.join_next().await {
        joined.map_err(|e| EngineError::Invalid(format!("partition task failed: {e}")))?;
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
