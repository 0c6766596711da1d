//! Dynamic micro-batching: concurrent requests for one model version are coalesced and scored in
//! one vectorized call, then answered individually.
//!
//! Each loaded version owns a batcher task fed by a channel. The task takes the first queued
//! request, then whatever else is already queued (and, with a wait budget, whatever arrives
//! within it) up to `max_rows`, concatenates the batches — they share the model's input schema —
//! and splits the scores back by row offsets. With a zero wait budget nothing is ever delayed:
//! requests coalesce only when they would have queued anyway.

use std::sync::Arc;
use std::time::Duration;

use arrow_array::RecordBatch;
use sluice_model::{Predictions, Predictor};
use tokio::sync::{mpsc, oneshot};

use crate::ApiError;

#[derive(Clone, Copy, Debug)]
pub struct BatchOptions {
    /// Most rows scored in one call (a single larger request is scored alone).
    pub max_rows: usize,
    /// How long the first request of a batch may wait for company.
    pub max_wait: Duration,
}

impl Default for BatchOptions {
    fn default() -> Self {
        Self { max_rows: 1024, max_wait: Duration::ZERO }
    }
}

struct Job {
    batch: RecordBatch,
    reply: oneshot::Sender<Result<Predictions, ApiError>>,
}

/// The sending side, held by a loaded model version.
#[derive(Clone)]
pub struct Batcher {
    jobs: mpsc::Sender<Job>,
}

/// Called with the rows of each scoring call (for the batch-size metric).
pub type OnBatch = Arc<dyn Fn(usize) + Send + Sync>;

impl Batcher {
    /// Start the task for one model version; it ends when the last `Batcher` clone is dropped.
    pub fn start(predictor: Arc<Predictor>, options: BatchOptions, on_batch: OnBatch) -> Self {
        let (jobs, rx) = mpsc::channel(4096);
        tokio::spawn(run(rx, predictor, options, on_batch));
        Self { jobs }
    }

    pub async fn predict(&self, batch: RecordBatch) -> Result<Predictions, ApiError> {
        let (reply, answer) = oneshot::channel();
        self.jobs.send(Job { batch, reply }).await.map_err(|_| ApiError::internal("the model's batcher stopped"))?;
        answer.await.map_err(|_| ApiError::internal("the model's batcher dropped a request"))?
    }
}

async fn run(mut rx: mpsc::Receiver<Job>, predictor: Arc<Predictor>, options: BatchOptions, on_batch: OnBatch) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        let mut rows = jobs[0].batch.num_rows();
        let deadline = tokio::time::Instant::now() + options.max_wait;
        while rows < options.max_rows {
            let next = match rx.try_recv() {
                Ok(job) => Some(job),
                Err(mpsc::error::TryRecvError::Empty) if !options.max_wait.is_zero() => {
                    tokio::time::timeout_at(deadline, rx.recv()).await.ok().flatten()
                }
                Err(_) => None,
            };
            let Some(job) = next else { break };
            rows += job.batch.num_rows();
            jobs.push(job);
        }
        score(&predictor, jobs, rows, &on_batch);
    }
}

fn score(predictor: &Predictor, jobs: Vec<Job>, rows: usize, on_batch: &OnBatch) {
    on_batch(rows);
    let batches: Vec<&RecordBatch> = jobs.iter().map(|j| &j.batch).collect();
    let combined = match batches.as_slice() {
        [one] => Ok((*one).clone()),
        many => arrow_select::concat::concat_batches(&many[0].schema(), many.iter().copied()),
    };
    let result = combined
        .map_err(|e| ApiError::internal(format!("cannot combine requests: {e}")))
        .and_then(|b| predictor.predict(&b).map_err(|e| ApiError::bad_request(e.to_string())));
    let mut offset = 0;
    for job in jobs {
        let n = job.batch.num_rows();
        let answer = match &result {
            Ok(p) => Ok(p.slice(offset, n)),
            Err(e) => Err(ApiError { status: e.status, message: e.message.clone() }),
        };
        offset += n;
        let _ = job.reply.send(answer);
    }
}
