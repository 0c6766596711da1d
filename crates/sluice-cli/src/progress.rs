//! Run progress: a live table on a terminal, plain log lines otherwise, JSON events with `--json`.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use sluice_runner::{Event, Reporter};

use crate::output::duration;

/// One JSON object per line on stdout.
pub struct JsonReporter;

impl Reporter for JsonReporter {
    fn event(&self, event: &Event) {
        // A closed pipe (`sluice run --json | head -1`) must not stop the run: ignore write errors.
        if let Ok(line) = serde_json::to_string(event) {
            let _ = writeln!(std::io::stdout().lock(), "{line}");
        }
    }
}

/// One line per state change on stderr, for logs and CI.
pub struct PlainReporter {
    start: Instant,
}

impl PlainReporter {
    pub fn new() -> Self {
        Self { start: Instant::now() }
    }
}

fn rows(r: Option<u64>) -> String {
    r.map(|r| format!("{r} rows")).unwrap_or_default()
}

impl Reporter for PlainReporter {
    fn event(&self, event: &Event) {
        let t = self.start.elapsed().as_secs_f64();
        let line = match event {
            Event::RunStarted { run_id, pipeline, steps, jobs } => {
                format!("run {run_id}: pipeline `{pipeline}`, {} steps, {jobs} at a time", steps.len())
            }
            Event::StepStarted { step, kind, key } => format!("{step:<16} {kind:<9} started   key {key}"),
            Event::StepProgress { .. } => return,
            Event::StepCached { step, kind, key, rows: r } => {
                format!("{step:<16} {kind:<9} cached    key {key}  {}", rows(*r))
            }
            Event::StepFinished { step, rows: r, elapsed_ms, .. } => {
                format!("{step:<16} {:<9} done      {}  {}", "", duration(*elapsed_ms), rows(*r))
            }
            Event::StepFailed { step, error, .. } => format!("{step:<16} {:<9} FAILED    {error}", ""),
            Event::StepReport { text, .. } => text.trim_end().to_string(),
            Event::StepSkipped { step, reason } => format!("{step:<16} {:<9} skipped   {reason}", ""),
            Event::RunFinished { status, elapsed_ms, ran, cached, failed, .. } => {
                format!("run {status} in {}: {ran} ran, {cached} cached, {failed} failed", duration(*elapsed_ms))
            }
        };
        let _ = writeln!(std::io::stderr().lock(), "[{t:7.2}s] {line}");
    }
}

/// A live line per step: state, rows so far, elapsed time.
pub struct LiveReporter {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, (ProgressBar, String)>>,
}

impl LiveReporter {
    pub fn new() -> Self {
        Self { multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()), bars: Mutex::new(HashMap::new()) }
    }

    fn style(template: &str) -> ProgressStyle {
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_spinner())
    }

    fn set(&self, step: &str, kind: Option<&str>, f: impl FnOnce(&ProgressBar, &str)) {
        let Ok(mut bars) = self.bars.lock() else { return };
        let (bar, known_kind) = bars.entry(step.to_string()).or_insert_with(|| {
            let bar = self.multi.add(ProgressBar::new_spinner());
            bar.set_prefix(format!("{step:<16}"));
            (bar, String::new())
        });
        if let Some(k) = kind {
            *known_kind = k.to_string();
        }
        f(bar, known_kind);
    }
}

impl Reporter for LiveReporter {
    fn event(&self, event: &Event) {
        match event {
            Event::RunStarted { run_id, pipeline, steps, jobs } => {
                let _ = self
                    .multi
                    .println(format!("run {run_id}: pipeline `{pipeline}`, {} steps, {jobs} at a time", steps.len()));
                for step in steps {
                    self.set(step, None, |bar, _| {
                        bar.set_style(Self::style("· {prefix:.dim} {msg:.dim}"));
                        bar.set_message("waiting");
                        bar.tick();
                    });
                }
            }
            Event::StepStarted { step, kind, .. } => self.set(step, Some(kind), |bar, kind| {
                bar.reset_elapsed();
                bar.set_style(Self::style("{spinner:.cyan} {prefix} {msg} {elapsed:>4}"));
                bar.set_message(format!("{kind:<9} running"));
                bar.enable_steady_tick(Duration::from_millis(120));
            }),
            Event::StepProgress { step, rows } => self.set(step, None, |bar, kind| {
                bar.set_message(format!("{kind:<9} running  {rows} rows"));
            }),
            Event::StepCached { step, kind, rows: r, .. } => self.set(step, Some(kind), |bar, kind| {
                bar.set_style(Self::style("○ {prefix:.dim} {msg:.dim}"));
                bar.finish_with_message(format!("{kind:<9} cached   {}", rows(*r)));
            }),
            Event::StepFinished { step, rows: r, elapsed_ms, .. } => self.set(step, None, |bar, kind| {
                bar.set_style(Self::style("✔ {prefix:.green} {msg}"));
                bar.finish_with_message(format!("{kind:<9} done     {:<12} {}", rows(*r), duration(*elapsed_ms)));
            }),
            Event::StepFailed { step, error, .. } => self.set(step, None, |bar, kind| {
                bar.set_style(Self::style("✘ {prefix:.red} {msg}"));
                bar.finish_with_message(format!("{kind:<9} FAILED   {error}"));
            }),
            Event::StepReport { text, .. } => {
                let _ = self.multi.println(text.trim_end());
            }
            Event::StepSkipped { step, reason } => self.set(step, None, |bar, _| {
                bar.set_style(Self::style("- {prefix:.yellow} {msg}"));
                bar.finish_with_message(format!("skipped   {reason}"));
            }),
            Event::RunFinished { status, elapsed_ms, ran, cached, failed, .. } => {
                // Every line is finished by now: print below them, not above.
                let _ = writeln!(
                    std::io::stderr().lock(),
                    "run {status} in {}: {ran} ran, {cached} cached, {failed} failed",
                    duration(*elapsed_ms)
                );
            }
        }
    }
}
