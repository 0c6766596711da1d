//! Live drift: the server keeps sketches (mergeable profiles) of recent inputs and predictions
//! per model and, every interval, compares them with the model's reference profile (its
//! training data and predictions, `sluice_monitor::reference`), exporting the scores as
//! Prometheus gauges. The request path only copies the request's values and predictions into its
//! model version's row buffers (a few appends under a short lock: no allocation per request and
//! no hand-off to another thread); a thread of its own takes the buffered rows every [`PAUSE`],
//! profiles them as one batch and runs the drift tests. A buffer the thread has not emptied in
//! time stops taking requests at [`MAX_PENDING_ROWS`] (they are counted as dropped) rather than
//! slowing requests or growing without bound.
//!
//! "Recent" is the last one to two intervals: each interval's profile is merged with the one
//! before it, so a score always rests on at least one full interval of traffic.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use sluice_model::{Predictions, Predictor};
use sluice_profile::drift::{ColumnDrift, drift};
use sluice_profile::{Profile, Profiler};
use sluice_store::{ArtifactStore, ModelVersion};

use crate::LoadedModel;
use crate::columns::Builder;
use crate::metrics::{escape, header};

#[derive(Clone, Debug)]
pub struct DriftOptions {
    /// How often drift gauges are recomputed; `None` turns live drift off.
    pub every: Option<Duration>,
    /// Fewest rows (over the last one to two intervals) before scores are published.
    pub min_rows: u64,
}

impl Default for DriftOptions {
    fn default() -> Self {
        Self { every: Some(Duration::from_secs(30)), min_rows: 100 }
    }
}

const SHARDS: usize = 8;

/// This thread's shard of the row buffers.
fn shard() -> usize {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    thread_local! {
        static SHARD: usize = (NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS as u64) as usize;
    }
    SHARD.with(|s| *s)
}

/// How often the drift thread takes the buffered rows and profiles them.
const PAUSE: Duration = Duration::from_millis(50);

/// Rows a version's buffers hold at most, over all shards (about 25 MB of Adult rows), before
/// they drop requests.
const MAX_PENDING_ROWS: usize = 1 << 18;

/// The last published scores of one model.
#[derive(Default)]
pub(crate) struct Published {
    version: u32,
    rows: u64,
    updated: f64,
    columns: Vec<ColumnDrift>,
}

pub(crate) struct LiveDrift {
    /// Row buffers in shards, a request thread always using the same one, so that concurrent
    /// requests rarely wait for each other's appends.
    pending: [Mutex<Vec<Pending>>; SHARDS],
    /// Versions whose rows are not kept (no reference): buffers made later start off.
    disabled: Mutex<Vec<(String, u32)>>,
    pub dropped: AtomicU64,
    published: RwLock<BTreeMap<String, Published>>,
}

/// One model version's rows since the drift thread last took them.
struct Pending {
    record: Arc<ModelVersion>,
    predictor: Arc<Predictor>,
    /// The request batches' schema; a request with another one is not kept.
    schema: SchemaRef,
    columns: Vec<Builder>,
    /// The predictions' task and classes (from the first request) with the scores and
    /// probabilities of the buffered rows.
    predictions: Predictions,
    rows: usize,
    /// No rows are kept: the version has no reference, or inputs of a type not buffered.
    off: bool,
}

impl Pending {
    fn new(model: &LoadedModel, schema: SchemaRef, predictions: &Predictions, disabled: bool) -> Self {
        let columns: Option<Vec<Builder>> = schema.fields().iter().map(|f| Builder::for_type(f.data_type())).collect();
        Self {
            record: model.record.clone(),
            predictor: model.predictor.clone(),
            schema,
            off: disabled || columns.is_none(),
            columns: columns.unwrap_or_default(),
            predictions: empty_like(predictions),
            rows: 0,
        }
    }

    /// Append a request's rows and predictions; `false` (and nothing appended) if they do not fit.
    fn append(&mut self, batch: &RecordBatch, predictions: &Predictions) -> bool {
        // An empty buffer takes any one request (its size is bounded by `--max-rows`).
        let fits = (self.rows == 0 || self.rows + batch.num_rows() <= MAX_PENDING_ROWS / SHARDS)
            && (Arc::ptr_eq(&self.schema, &batch.schema()) || *self.schema == *batch.schema())
            && predictions.classes.len() == self.predictions.classes.len()
            && self.columns.iter().zip(batch.columns()).all(|(b, a)| b.fits(a));
        if !fits {
            return false;
        }
        for (builder, array) in self.columns.iter_mut().zip(batch.columns()) {
            builder.extend(array);
        }
        self.predictions.scores.extend_from_slice(&predictions.scores);
        self.predictions.probabilities.extend_from_slice(&predictions.probabilities);
        self.rows += batch.num_rows();
        true
    }

    /// The buffered rows (to [`finish`] outside the lock) with their predictions, leaving the
    /// buffer empty: buffers are moved, not copied, and the next ones start at the same size.
    fn take(&mut self) -> Option<Taken> {
        if self.rows == 0 {
            return None;
        }
        let fresh = self.columns.iter().map(Builder::empty_like).collect();
        let columns = std::mem::replace(&mut self.columns, fresh);
        let empty = empty_like(&self.predictions);
        let predictions = std::mem::replace(&mut self.predictions, empty);
        self.rows = 0;
        Some(Taken {
            record: self.record.clone(),
            predictor: self.predictor.clone(),
            schema: self.schema.clone(),
            columns,
            predictions,
        })
    }
}

/// Rows taken from a buffer.
struct Taken {
    record: Arc<ModelVersion>,
    predictor: Arc<Predictor>,
    schema: SchemaRef,
    columns: Vec<Builder>,
    predictions: Predictions,
}

/// The taken rows as a batch.
fn finish(taken: Taken) -> Option<(Arc<ModelVersion>, Arc<Predictor>, RecordBatch, Predictions)> {
    let arrays = taken.columns.into_iter().map(Builder::finish).collect::<Option<Vec<_>>>()?;
    let batch = RecordBatch::try_new(taken.schema, arrays).ok()?;
    Some((taken.record, taken.predictor, batch, taken.predictions))
}

/// Predictions of the same task and classes, with no rows.
fn empty_like(p: &Predictions) -> Predictions {
    Predictions { task: p.task, scores: Vec::new(), classes: p.classes.clone(), probabilities: Vec::new() }
}

/// One model version's sketches.
#[derive(Default)]
struct Tracked {
    /// The reference and the columns it covers (inputs and predictions); `None` when the
    /// version has no reference.
    reference: Option<(Profile, Vec<String>)>,
    current: Option<Profiler>,
    previous: Option<Profile>,
}

impl Tracked {
    /// Profile taken rows: their predictions appended, the monitored columns projected.
    fn profile(&mut self, batch: &RecordBatch, predictions: &Predictions) {
        let Some((_, columns)) = &self.reference else { return };
        let scored = Predictor::append(batch, predictions, sluice_monitor::reference::LOG_THRESHOLD);
        let Ok(batch) = scored
            .map_err(|e| e.to_string())
            .and_then(|b| sluice_monitor::reference::project(&b, columns).map_err(|e| e.to_string()))
        else {
            return;
        };
        let profiler = self.current.get_or_insert_with(|| Profiler::new(batch.schema()));
        if profiler.schema() == &batch.schema() {
            let _ = profiler.update_serial(&batch);
        }
    }
}

impl LiveDrift {
    pub fn start(artifacts: ArtifactStore, options: DriftOptions) -> Option<Arc<Self>> {
        let every = options.every?;
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let live = Arc::new(Self {
            pending: Default::default(),
            disabled: Mutex::new(Vec::new()),
            dropped: AtomicU64::new(0),
            published: RwLock::new(BTreeMap::new()),
        });
        // The thread holds the server's drift state weakly: it ends with the server.
        let weak = Arc::downgrade(&live);
        std::thread::Builder::new()
            .name("sluice-drift".into())
            .spawn(move || run(weak, artifacts, runtime, every, options.min_rows))
            .ok()?;
        Some(live)
    }

    /// Keep a scored request's rows for the next profile. Never waits for the drift thread.
    pub fn offer(&self, model: &LoadedModel, batch: &RecordBatch, predictions: &Predictions) {
        let Ok(mut pending) = self.pending[shard()].lock() else { return };
        let at = match pending.iter().position(|p| p.record.version == model.version && p.record.name == model.name) {
            Some(at) => at,
            None => {
                let disabled =
                    self.disabled.lock().is_ok_and(|d| d.iter().any(|(n, v)| *v == model.version && *n == model.name));
                pending.push(Pending::new(model, batch.schema(), predictions, disabled));
                pending.len() - 1
            }
        };
        let p = &mut pending[at];
        if !p.off && !p.append(batch, predictions) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The gauges, in Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let Ok(published) = self.published.read() else { return };
        type PerColumn = fn(&ColumnDrift) -> (String, f64);
        let per_column: [(&str, &str, PerColumn); 3] = [
            (
                "sluice_drift_psi",
                "Population stability index of recent traffic vs the model's reference, per column.",
                |c| (String::new(), c.psi),
            ),
            (
                "sluice_drift_score",
                "The score of each column's drift test (p-value, Wasserstein/std or Jensen-Shannon; see `method`).",
                |c| {
                    let method = serde_json::to_value(c.method).ok().and_then(|v| v.as_str().map(str::to_string));
                    (format!(",method=\"{}\"", method.unwrap_or_default()), c.score)
                },
            ),
            ("sluice_drift_detected", "1 when the column's drift test says it drifted, else 0.", |c| {
                (String::new(), f64::from(u8::from(c.drifted)))
            }),
        ];
        for (name, help, value) in per_column {
            header(out, name, "gauge", help);
            for (model, p) in published.iter() {
                for c in &p.columns {
                    let (labels, v) = value(c);
                    let _ = writeln!(
                        out,
                        "{name}{{model=\"{}\",column=\"{}\"{labels}}} {v}",
                        escape(model),
                        escape(&c.column)
                    );
                }
            }
        }
        header(out, "sluice_drift_window_rows", "gauge", "Rows behind the current drift scores.");
        for (model, p) in published.iter() {
            let _ = writeln!(
                out,
                "sluice_drift_window_rows{{model=\"{}\",version=\"{}\"}} {}",
                escape(model),
                p.version,
                p.rows
            );
        }
        header(out, "sluice_drift_updated_timestamp_seconds", "gauge", "When the drift scores were last computed.");
        for (model, p) in published.iter() {
            let _ =
                writeln!(out, "sluice_drift_updated_timestamp_seconds{{model=\"{}\"}} {}", escape(model), p.updated);
        }
        drop(published);
        header(
            out,
            "sluice_drift_dropped_total",
            "counter",
            "Scored requests the drift sketches skipped (row buffers full, or another input schema).",
        );
        let _ = writeln!(out, "sluice_drift_dropped_total {}", self.dropped.load(Ordering::Relaxed));
    }
}

fn run(
    live: Weak<LiveDrift>,
    artifacts: ArtifactStore,
    runtime: tokio::runtime::Handle,
    every: Duration,
    min_rows: u64,
) {
    // By name and version: under a canary, two versions of one name take turns answering, and
    // each keeps its own reference and sketches.
    let mut tracked: BTreeMap<(String, u32), Tracked> = BTreeMap::new();
    let mut next = Instant::now() + every;
    loop {
        std::thread::sleep(PAUSE.min(next.saturating_duration_since(Instant::now())));
        let Some(live) = live.upgrade() else { return };
        // Take every version's rows under the lock (moving buffers, not copying); profile after.
        let mut taken = Vec::new();
        for shard in &live.pending {
            let Ok(mut pending) = shard.lock() else { return };
            taken.extend(pending.iter_mut().filter_map(Pending::take));
        }
        for (record, predictor, batch, predictions) in taken.into_iter().filter_map(finish) {
            let t = tracked.entry((record.name.clone(), record.version)).or_insert_with(|| {
                // A new version (or the first request): its own reference, fresh sketches.
                let reference =
                    runtime.block_on(sluice_monitor::reference::model_reference(&artifacts, &record, &predictor));
                if let Err(e) = &reference {
                    eprintln!("live drift for {} version {} is off: {e}", record.name, record.version);
                    if let Ok(mut disabled) = live.disabled.lock() {
                        disabled.push((record.name.clone(), record.version));
                    }
                    for shard in &live.pending {
                        if let Ok(mut pending) = shard.lock() {
                            pending.iter_mut().filter(|p| Arc::ptr_eq(&p.record, &record)).for_each(|p| p.off = true);
                        }
                    }
                }
                let columns = sluice_monitor::reference::monitored_columns(predictor.artifact());
                Tracked { reference: reference.ok().map(|r| (r, columns)), ..Tracked::default() }
            });
            t.profile(&batch, &predictions);
        }
        if Instant::now() >= next {
            next = Instant::now() + every;
            publish(&live, &mut tracked, min_rows);
        }
    }
}

/// Score each tracked version's last one to two intervals against its reference and publish,
/// per model name, the version with the most recent rows.
fn publish(live: &LiveDrift, tracked: &mut BTreeMap<(String, u32), Tracked>, min_rows: u64) {
    // Per model name, the version with the most recent rows is published (the one answering
    // most traffic; `sluice_drift_window_rows` names it).
    let mut fresh: BTreeMap<String, Published> = BTreeMap::new();
    let mut idle = Vec::new();
    for ((model, version), t) in tracked.iter_mut() {
        let Some((reference, _)) = &t.reference else {
            // No reference, no scores: forgotten like an idle version once a newer one exists.
            idle.push((model.clone(), *version));
            continue;
        };
        // The last one to two intervals: the previous one merged with this one.
        let current = t.current.take().map(Profiler::finish);
        let recent = match (t.previous.take(), &current) {
            (Some(mut p), Some(c)) => {
                let _ = p.merge(c);
                p
            }
            (Some(p), None) => p,
            (None, Some(c)) => c.clone(),
            (None, None) => {
                idle.push((model.clone(), *version));
                continue;
            }
        };
        t.previous = current;
        if recent.rows < min_rows || fresh.get(model).is_some_and(|p| p.rows >= recent.rows) {
            continue;
        }
        let updated =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        let columns = drift(reference, &recent);
        fresh.insert(model.clone(), Published { version: *version, rows: recent.rows, updated, columns });
    }
    // A version no longer answering, once a newer one of its model is tracked: forget it and
    // its (empty) buffer.
    for (model, version) in idle {
        if tracked.keys().any(|(m, v)| *m == model && *v > version) {
            tracked.remove(&(model.clone(), version));
            for shard in &live.pending {
                if let Ok(mut pending) = shard.lock() {
                    pending.retain(|p| p.rows > 0 || p.record.name != model || p.record.version != version);
                }
            }
        }
    }
    if let Ok(mut p) = live.published.write() {
        p.extend(fresh);
    }
}
