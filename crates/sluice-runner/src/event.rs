//! What the runner reports while it works; front ends render these (live table, log lines, JSON).

use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    RunStarted {
        run_id: String,
        pipeline: String,
        steps: Vec<String>,
        jobs: usize,
    },
    StepStarted {
        step: String,
        kind: String,
        key: String,
    },
    StepProgress {
        step: String,
        rows: u64,
    },
    StepCached {
        step: String,
        kind: String,
        key: String,
        rows: Option<u64>,
    },
    StepFinished {
        step: String,
        rows: Option<u64>,
        elapsed_ms: u64,
        outputs: Vec<(String, String)>,
    },
    StepFailed {
        step: String,
        error: String,
        elapsed_ms: u64,
    },
    /// A summary for people (a validation report), shown after the step's line.
    StepReport {
        step: String,
        text: String,
    },
    StepSkipped {
        step: String,
        reason: String,
    },
    RunFinished {
        run_id: String,
        status: String,
        elapsed_ms: u64,
        ran: usize,
        cached: usize,
        failed: usize,
    },
}

pub trait Reporter: Send + Sync {
    fn event(&self, event: &Event);
}

/// Discards events (library use, tests).
pub struct NoReporter;

impl Reporter for NoReporter {
    fn event(&self, _: &Event) {}
}
