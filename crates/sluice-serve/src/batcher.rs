//! Dynamic micro-batching: with a wait budget (`--max-batch-wait-ms`), concurrent requests for
//! one model version are coalesced and scored in one vectorized call, then answered
//! individually.
//!
//! With a budget, each loaded version owns a batcher task fed by a channel. The task takes the
//! first queued request, then whatever else is queued or arrives within the budget, up to
//! `max_rows`, concatenates the batches — they share the model's input schema — and splits the
//! scores back by row offsets. Without one (the default), a request is scored in its own task as
//! it arrives — small ones right in the request's task (handing rows to a batching task and the
//! scores back costs two cross-thread wake-ups, more than scoring a few rows takes), large ones
//! on the blocking pool, so that they neither hold a runtime worker nor outlive the timeout.

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
    /// How long the first request of a batch may wait for company; zero scores each request as
    /// it arrives.
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

/// The scoring point of a loaded model version.
#[derive(Clone)]
pub struct Batcher {
    /// The batching task's queue, when requests may wait for company.
    jobs: Option<mpsc::Sender<Job>>,
    predictor: Arc<Predictor>,
    on_batch: OnBatch,
}

/// Called with the rows of each scoring call (for the batch-size metric).
pub type OnBatch = Arc<dyn Fn(usize) + Send + Sync>;

impl Batcher {
    /// With a wait budget, start the batching task for one model version (it ends when the last
    /// `Batcher` clone is dropped).
    pub fn start(predictor: Arc<Predictor>, options: BatchOptions, on_batch: OnBatch) -> Self {
        let jobs = (!options.max_wait.is_zero()).then(|| {
            let (jobs, rx) = mpsc::channel(4096);
            tokio::spawn(run(rx, predictor.clone(), options, on_batch.clone()));
            jobs
        });
        Self { jobs, predictor, on_batch }
    }

    pub async fn predict(&self, batch: RecordBatch) -> Result<Predictions, ApiError> {
        let Some(jobs) = &self.jobs else {
            if batch.num_rows() <= INLINE_ROWS {
                return score(&self.predictor, &[&batch], &self.on_batch).pop().unwrap_or_else(nothing_scored);
            }
            // A large request scores on the blocking pool: the runtime's workers stay free for
            // other requests and health checks, and the request timeout can fire meanwhile.
            let (predictor, on_batch) = (self.predictor.clone(), self.on_batch.clone());
            return tokio::task::spawn_blocking(move || score(&predictor, &[&batch], &on_batch).pop())
                .await
                .map_err(|e| ApiError::internal(format!("scoring stopped: {e}")))?
                .unwrap_or_else(nothing_scored);
        };
        let (reply, answer) = oneshot::channel();
        jobs.send(Job { batch, reply }).await.map_err(|_| ApiError::internal("the model's batcher stopped"))?;
        answer.await.map_err(|_| ApiError::internal("the model's batcher dropped a request"))?
    }
}

/// Requests up to this many rows are scored in the request's task (microseconds of work);
/// larger ones on the blocking pool.
const INLINE_ROWS: usize = 256;

fn nothing_scored() -> Result<Predictions, ApiError> {
    Err(ApiError::internal("scoring answered no request"))
}

async fn run(mut rx: mpsc::Receiver<Job>, predictor: Arc<Predictor>, options: BatchOptions, on_batch: OnBatch) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        let mut rows = jobs[0].batch.num_rows();
        let deadline = tokio::time::Instant::now() + options.max_wait;
        while rows < options.max_rows {
            let next = match rx.try_recv() {
                Ok(job) => Some(job),
                Err(mpsc::error::TryRecvError::Empty) => {
                    tokio::time::timeout_at(deadline, rx.recv()).await.ok().flatten()
                }
                Err(_) => None,
            };
            let Some(job) = next else { break };
            rows += job.batch.num_rows();
            jobs.push(job);
        }
        let batches: Vec<&RecordBatch> = jobs.iter().map(|j| &j.batch).collect();
        let answers = score(&predictor, &batches, &on_batch);
        for (job, answer) in jobs.into_iter().zip(answers) {
            let _ = job.reply.send(answer);
        }
    }
}

/// Score several requests' batches in one call and split the scores back by row offsets.
fn score(predictor: &Predictor, batches: &[&RecordBatch], on_batch: &OnBatch) -> Vec<Result<Predictions, ApiError>> {
    on_batch(batches.iter().map(|b| b.num_rows()).sum());
    let combined = match batches {
        [one] => Ok((*one).clone()),
        many => arrow_select::concat::concat_batches(&many[0].schema(), many.iter().copied()),
    };
    let result = combined
        .map_err(|e| ApiError::internal(format!("cannot combine requests: {e}")))
        .and_then(|b| predictor.predict(&b).map_err(|e| ApiError::bad_request(e.to_string())));
    if batches.len() == 1 {
        return vec![result];
    }
    let mut offset = 0;
    batches
        .iter()
        .map(|b| {
            let n = b.num_rows();
            let answer = match &result {
                Ok(p) => Ok(p.slice(offset, n)),
                Err(e) => Err(ApiError { status: e.status, message: e.message.clone() }),
            };
            offset += n;
            answer
        })
        .collect()
}
