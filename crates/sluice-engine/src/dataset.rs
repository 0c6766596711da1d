//! Dataset artifacts: Parquet files whose content hash is computed while they are written.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, RecordBatchReader};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::execution::SendableRecordBatchStream;
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
        .build()
}

pub fn schema_meta(schema: &SchemaRef) -> Vec<ColumnMeta> {
    schema
        .fields()
        .iter()
        .map(|f| ColumnMeta { name: f.name().clone(), data_type: f.data_type().to_string(), nullable: f.is_nullable() })
        .collect()
}

/// Stream record batches into a Parquet file at `path` (a temporary name: the caller renames it
/// into place), calling `on_rows` with the running row count.
pub async fn write_parquet(
    mut stream: SendableRecordBatchStream,
    path: &Path,
    on_rows: &(dyn Fn(u64) + Send + Sync),
) -> Result<WrittenDataset> {
    let io = |source| EngineError::Io { path: path.to_path_buf(), source };
    let schema = stream.schema();
    let file = File::create(path).map_err(io)?;
    let sink = HashingWriter { inner: BufWriter::new(file), hasher: blake3::Hasher::new(), written: 0 };
    let mut writer = ArrowWriter::try_new(sink, schema.clone(), Some(properties()))?;
    let mut rows = 0u64;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        rows += batch.num_rows() as u64;
        writer.write(&batch)?;
        on_rows(rows);
    }
    let mut sink = writer.into_inner()?;
    sink.flush().map_err(io)?;
    let file = sink.inner.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    Ok(WrittenDataset {
        hash: ContentHash::from_bytes(*sink.hasher.finalize().as_bytes()),
        size: sink.written,
        rows,
        schema: schema_meta(&schema),
    })
}

/// Write batches that are already in memory.
pub async fn write_batches(batches: Vec<RecordBatch>, schema: SchemaRef, path: &Path) -> Result<WrittenDataset> {
    let stream = futures::stream::iter(batches.into_iter().map(Ok));
    let stream = datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(schema, stream);
    write_parquet(Box::pin(stream), path, &|_| {}).await
}

/// Read a whole Parquet dataset into one batch (for steps that need all rows in memory).
pub fn read_dataset_batch(path: &Path) -> Result<RecordBatch> {
    let file = File::open(path).map_err(|source| EngineError::Io { path: path.to_path_buf(), source })?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)?.with_batch_size(65_536).build()?;
    let schema = reader.schema();
    let batches = reader.collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(concat_batches(&Arc::clone(&schema), &batches)?)
}
