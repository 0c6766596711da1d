//! Live drift: the server keeps sketches (mergeable profiles) of recent inputs and predictions
//! per model and, every interval, compares them with the model's reference profile (its
//! training data and predictions, `sluice_monitor::reference`), exporting the scores as
//! Prometheus gauges. The request path only `try_send`s the request's batch and predictions onto
//! a bounded queue; joining them, profiling and drift tests run on a thread of their own, and a
//! full queue drops (and counts) the batch rather than slowing requests.
//!
//! "Recent" is the last one to two intervals: each interval's profile is merged with the one
//! before it, so a score always rests on at least one full interval of traffic.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use sluice_model::{Predictions, Predictor};
use sluice_profile::drift::{ColumnDrift, drift};
use sluice_profile::{Profile, Profiler};
use sluice_store::{ArtifactStore, ModelVersion};

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

pub(crate) struct Item {
    pub model: String,
    pub record: Arc<ModelVersion>,
    pub predictor: Arc<Predictor>,
    pub batch: RecordBatch,
    pub predictions: Predictions,
}

/// The last published scores of one model.
#[derive(Default)]
pub(crate) struct Published {
    version: u32,
    rows: u64,
    updated: f64,
    columns: Vec<ColumnDrift>,
}

pub(crate) struct LiveDrift {
    tx: SyncSender<Item>,
    pub dropped: AtomicU64,
    published: Arc<RwLock<BTreeMap<String, Published>>>,
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

impl LiveDrift {
    pub fn start(artifacts: ArtifactStore, options: DriftOptions) -> Option<Arc<Self>> {
        let every = options.every?;
        let (tx, rx) = std::sync::mpsc::sync_channel(256);
        let published = Arc::new(RwLock::new(BTreeMap::new()));
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let out = published.clone();
        std::thread::Builder::new()
            .name("sluice-drift".into())
            .spawn(move || run(rx, artifacts, runtime, every, options.min_rows, out))
            .ok()?;
        Some(Arc::new(Self { tx, dropped: AtomicU64::new(0), published }))
    }

    pub fn offer(&self, item: Item) {
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.tx.try_send(item) {
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
        header(out, "sluice_drift_dropped_total", "counter", "Scored batches the drift sketches skipped (queue full).");
        let _ = writeln!(out, "sluice_drift_dropped_total {}", self.dropped.load(Ordering::Relaxed));
    }
}

fn run(
    rx: Receiver<Item>,
    artifacts: ArtifactStore,
    runtime: tokio::runtime::Handle,
    every: Duration,
    min_rows: u64,
    published: Arc<RwLock<BTreeMap<String, Published>>>,
) {
    // By name and version: under a canary, two versions of one name take turns answering, and
    // each keeps its own reference and sketches.
    let mut tracked: BTreeMap<(String, u32), Tracked> = BTreeMap::new();
    let mut next = Instant::now() + every;
    loop {
        match rx.recv_timeout(next.saturating_duration_since(Instant::now())) {
            Ok(item) => {
                let version = item.record.version;
                let t = tracked.entry((item.model.clone(), version)).or_insert_with(|| {
                    // A new version (or the first request): its own reference, fresh sketches.
                    let reference = runtime.block_on(sluice_monitor::reference::model_reference(
                        &artifacts,
                        &item.record,
                        &item.predictor,
                    ));
                    if let Err(e) = &reference {
                        eprintln!("live drift for {} version {version} is off: {e}", item.model);
                    }
                    let columns = sluice_monitor::reference::monitored_columns(item.predictor.artifact());
                    Tracked { reference: reference.ok().map(|r| (r, columns)), ..Tracked::default() }
                });
                let Some((_, columns)) = &t.reference else { continue };
                let scored =
                    Predictor::append(&item.batch, &item.predictions, sluice_monitor::reference::LOG_THRESHOLD);
                let Ok(batch) = scored
                    .map_err(|e| e.to_string())
                    .and_then(|b| sluice_monitor::reference::project(&b, columns).map_err(|e| e.to_string()))
                else {
                    continue;
                };
                let profiler = t.current.get_or_insert_with(|| Profiler::new(batch.schema()));
                if profiler.schema() == &batch.schema() {
                    let _ = profiler.update(&batch);
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                next = Instant::now() + every;
                // Per model name, the version with the most recent rows is published (the one
                // answering most traffic; `sluice_drift_window_rows` names it).
                let mut fresh: BTreeMap<String, Published> = BTreeMap::new();
                let mut idle = Vec::new();
                for ((model, version), t) in &mut tracked {
                    let Some((reference, _)) = &t.reference else { continue };
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
                    let updated = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0.0, |d| d.as_secs_f64());
                    let columns = drift(reference, &recent);
                    fresh.insert(model.clone(), Published { version: *version, rows: recent.rows, updated, columns });
                }
                // A version no longer answering, once a newer one of its model is tracked.
                for (model, version) in idle {
                    if tracked.keys().any(|(m, v)| *m == model && *v > version) {
                        tracked.remove(&(model, version));
                    }
                }
                if let Ok(mut p) = published.write() {
                    p.extend(fresh);
                }
            }
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}
