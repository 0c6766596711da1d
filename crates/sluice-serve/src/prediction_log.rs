//! Prediction logging for monitoring: a sample of scored requests (features, predictions, model
//! version, traffic-policy arm, request id, row, time) written asynchronously as Parquet files into the artifact store
//! under `logs/predictions/<model>/`.
//!
//! The request path only `try_send`s onto a bounded channel: it never waits and never fails
//! because of logging; when the channel is full the entry is dropped and counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arrow_array::{ArrayRef, RecordBatch, StringArray, TimestampMillisecondArray, UInt32Array};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use sluice_store::ArtifactStore;
use tokio::sync::mpsc;

#[derive(Clone, Debug)]
pub struct LogOptions {
    /// Share of requests logged, 0 to 1.
    pub sample_rate: f64,
    /// Write a file at least this often while entries are pending.
    pub flush_every: Duration,
    /// ... or as soon as this many rows are pending.
    pub max_rows: usize,
}

impl Default for LogOptions {
    fn default() -> Self {
        Self { sample_rate: 0.0, flush_every: Duration::from_secs(10), max_rows: 50_000 }
    }
}

struct Entry {
    model: String,
    version: u32,
    /// `primary`, `canary`, `pinned` (a version asked for by number) or `shadow` (scored
    /// alongside, not answered).
    arm: &'static str,
    request_id: String,
    time_ms: i64,
    /// The scored inputs with the prediction columns appended.
    scored: RecordBatch,
}

pub struct PredictionLog {
    tx: mpsc::Sender<Entry>,
    sample_rate: f64,
    seen: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) written: Arc<AtomicU64>,
}

impl PredictionLog {
    pub fn start(store: ArtifactStore, options: LogOptions) -> Arc<Self> {
        let (tx, rx) = mpsc::channel(1024);
        let written = Arc::new(AtomicU64::new(0));
        tokio::spawn(run(rx, store, options.clone(), written.clone()));
        Arc::new(Self {
            tx,
            sample_rate: options.sample_rate,
            seen: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            written,
        })
    }

    /// Whether to log the next request: sampled deterministically by request count.
    pub(crate) fn sample(&self) -> bool {
        if self.sample_rate <= 0.0 {
            return false;
        }
        let n = self.seen.fetch_add(1, Ordering::Relaxed);
        // Keep request n when the running count of kept requests would fall behind the rate.
        ((n + 1) as f64 * self.sample_rate).floor() > (n as f64 * self.sample_rate).floor()
    }

    /// Queue a sampled request's rows and `model`'s predictions for writing; never waits (a full
    /// queue drops and counts it).
    pub(crate) fn push_scored(
        &self,
        model: &crate::models::LoadedModel,
        arm: &'static str,
        request_id: String,
        batch: &RecordBatch,
        predictions: &sluice_model::Predictions,
    ) {
        let Ok(scored) = sluice_model::Predictor::append(batch, predictions, sluice_monitor::reference::LOG_THRESHOLD)
        else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let time_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let entry = Entry { model: model.name.clone(), version: model.version, arm, request_id, time_ms, scored };
        if self.tx.try_send(entry).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn run(mut rx: mpsc::Receiver<Entry>, store: ArtifactStore, options: LogOptions, written: Arc<AtomicU64>) {
    let mut pending: Vec<Entry> = Vec::new();
    let mut rows = 0usize;
    let mut tick = tokio::time::interval(options.flush_every);
    let mut files = 0u64;
    loop {
        tokio::select! {
            entry = rx.recv() => match entry {
                Some(e) => {
                    rows += e.scored.num_rows();
                    pending.push(e);
                    if rows < options.max_rows {
                        continue;
                    }
                }
                None => {
                    flush(&store, &mut pending, &mut files, &written).await;
                    return;
                }
            },
            _ = tick.tick() => {}
        }
        flush(&store, &mut pending, &mut files, &written).await;
        rows = 0;
    }
}

/// Write pending entries, one Parquet file per run of consecutive entries of one model and
/// schema: rows stay in the order they were scored (windows of N rows depend on it).
async fn flush(store: &ArtifactStore, pending: &mut Vec<Entry>, files: &mut u64, written: &AtomicU64) {
    if pending.is_empty() {
        return;
    }
    let entries = std::mem::take(pending);
    let mut groups: Vec<(String, Arc<Schema>, Vec<RecordBatch>)> = Vec::new();
    for e in entries {
        let Ok(batch) = with_context(&e) else { continue };
        match groups.last_mut().filter(|(m, s, _)| *m == e.model && *s == batch.schema()) {
            Some((_, _, batches)) => batches.push(batch),
            None => groups.push((e.model.clone(), batch.schema(), vec![batch])),
        }
    }
    for (model, schema, batches) in groups {
        let mut bytes = Vec::new();
        let result = (|| -> Result<(), parquet::errors::ParquetError> {
            let mut writer = parquet::arrow::ArrowWriter::try_new(&mut bytes, schema.clone(), None)?;
            for b in &batches {
                writer.write(b)?;
            }
            writer.close()?;
            Ok(())
        })();
        if result.is_err() {
            continue;
        }
        *files += 1;
        let stamp = chrono_like_stamp();
        let path = format!("logs/predictions/{model}/{stamp}-{}-{:06}.parquet", std::process::id(), files);
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        if store.put_at(&path, bytes).await.is_ok() {
            written.fetch_add(rows as u64, Ordering::Relaxed);
        }
    }
}

/// Milliseconds since the epoch, zero-padded so file names sort by time.
fn chrono_like_stamp() -> String {
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    format!("{ms:015}")
}

/// The scored batch plus `model_version`, `arm`, `request_id`, `row` (the row's index in its
/// request: with `request_id`, the key ground truth joins on) and `time` columns.
fn with_context(e: &Entry) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let n = e.scored.num_rows();
    let mut fields: Vec<Field> = e.scored.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    let mut columns: Vec<ArrayRef> = e.scored.columns().to_vec();
    fields.push(Field::new("model_version", DataType::UInt32, false));
    columns.push(Arc::new(UInt32Array::from(vec![e.version; n])));
    fields.push(Field::new("arm", DataType::Utf8, false));
    columns.push(Arc::new(StringArray::from(vec![e.arm; n])));
    fields.push(Field::new("request_id", DataType::Utf8, false));
    columns.push(Arc::new(StringArray::from(vec![e.request_id.as_str(); n])));
    fields.push(Field::new("row", DataType::UInt32, false));
    columns.push(Arc::new(UInt32Array::from_iter_values(0..n as u32)));
    fields.push(Field::new("time", DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())), false));
    columns.push(Arc::new(TimestampMillisecondArray::from(vec![e.time_ms; n]).with_timezone("UTC")));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}
