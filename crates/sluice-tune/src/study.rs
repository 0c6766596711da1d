//! Running a study: workers (threads here; other processes through the store) take trial
//! numbers from the store, sample, evaluate, report and finish trials until a budget is spent.
//!
//! Reproducibility: trial `n`'s parameters are drawn from a generator seeded by the study's seed
//! and `n`, and the sampler sees the same history whatever the timing: with `parallel = P`
//! this process's trials up to `n - P` as finished, and its trials `n - P + 1 .. n - 1` as
//! running (waiting, if needed, until that is so). One uninterrupted process with a given seed,
//! budget and `parallel` therefore proposes the same trials every time; pruning decisions with
//! `parallel > 1` depend on which trials have reported what, as in every asynchronous tuner.
//! Trials of other processes are used as soon as they are seen.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use sluice_core::memory::{self, Meter};
use sluice_store::{StudyRecord, StudyStore, TrialRecord, TrialState, Worker};

use crate::pruner::PrunerSpec;
use crate::sampler::{History, Sampler, SamplerSpec};
use crate::space::{Params, Space};
use crate::{Direction, TuneError};

/// A running trial whose worker has not reported for this long, on another host, is dead.
const STALE_AFTER_SECS: u64 = 600;

#[derive(Clone, Debug, Serialize)]
pub struct StudyConfig {
    pub name: String,
    pub direction: Direction,
    pub space: Space,
    pub sampler: SamplerSpec,
    pub pruner: PrunerSpec,
    pub seed: u64,
    /// More of the definition to keep with the study (the metric, the model), compared when the
    /// study is opened again.
    pub extra: serde_json::Value,
}

impl StudyConfig {
    pub fn new(name: &str, direction: Direction, space: Space, sampler: SamplerSpec, seed: u64) -> Self {
        Self {
            name: name.into(),
            direction,
            space,
            sampler,
            pruner: PrunerSpec::None,
            seed,
            extra: serde_json::Value::Null,
        }
    }

    fn definition(&self) -> serde_json::Value {
        serde_json::json!({
            "space": self.space,
            "sampler": self.sampler,
            "pruner": self.pruner,
            "seed": self.seed,
            "extra": self.extra,
        })
    }
}

/// When to stop, and how to run trials.
#[derive(Clone, Debug)]
pub struct Budget {
    /// Trials in the study (all workers together, whatever their outcome).
    pub trials: Option<u64>,
    /// Wall time of this `optimize` call: no trial starts after it.
    pub timeout: Option<Duration>,
    /// Stop when this many finished trials followed the best one without beating it.
    pub patience: Option<u64>,
    /// Trials at once in this process.
    pub parallel: usize,
    /// A trial still running after this is stopped at its next report and marked failed.
    pub trial_timeout: Option<Duration>,
    /// Bytes a trial may use. Where the process allocates through
    /// [`sluice_core::memory::Counting`], the trial's threads are metered: a trial over the budget
    /// is stopped at its next report (or [`TrialContext::check`]) and marked failed, and so is one
    /// that finishes after peaking over it. The objective can also refuse up front from its own
    /// estimate ([`TrialContext::check_memory`]).
    pub trial_memory: Option<u64>,
}

impl Default for Budget {
    fn default() -> Self {
        Self { trials: None, timeout: None, patience: None, parallel: 1, trial_timeout: None, trial_memory: None }
    }
}

/// What an objective returns for a trial.
#[derive(Clone, Debug, Default)]
pub struct Evaluation {
    pub value: f64,
    pub metrics: BTreeMap<String, f64>,
}

impl Evaluation {
    pub fn value(value: f64) -> Self {
        Self { value, metrics: BTreeMap::new() }
    }
}

pub trait Objective: Sync {
    fn evaluate(&self, trial: &mut TrialContext) -> Result<Evaluation, String>;
}

impl<F: Fn(&mut TrialContext) -> Result<Evaluation, String> + Sync> Objective for F {
    fn evaluate(&self, trial: &mut TrialContext) -> Result<Evaluation, String> {
        self(trial)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    Pruned,
    TimedOut,
    /// Live bytes when the trial was stopped.
    OverMemory(u64),
}

/// A trial as its objective sees it.
pub struct TrialContext<'s> {
    study: &'s Study<'s>,
    pub number: u64,
    pub params: Params,
    deadline: Option<Instant>,
    pub memory_budget: Option<u64>,
    /// The trial's allocations, when the budget is set and the allocator counts.
    meter: Option<Arc<Meter>>,
    stop: Option<Stop>,
    last_step: Option<u64>,
}

impl TrialContext<'_> {
    /// Record an intermediate value (a boosting round's validation metric, a fold's score).
    /// `Break` means stop now: the pruner gave up on the trial, or it ran out of time.
    pub fn report(&mut self, step: u64, value: f64) -> ControlFlow<()> {
        self.check()?;
        if self.last_step.is_some_and(|s| step <= s) {
            return ControlFlow::Continue(());
        }
        self.last_step = Some(step);
        match self.study.report(self.number, step, value) {
            Ok(true) => {
                self.stop = Some(Stop::Pruned);
                ControlFlow::Break(())
            }
            Ok(false) => ControlFlow::Continue(()),
            // Losing a report loses only a pruning decision; the trial goes on.
            Err(_) => ControlFlow::Continue(()),
        }
    }

    /// Whether the trial is still within its time and memory budgets; `Break` means stop now
    /// (for objectives that report nothing at some steps).
    pub fn check(&mut self) -> ControlFlow<()> {
        if self.stop.is_some_and(|s| s != Stop::Pruned) {
            return ControlFlow::Break(());
        }
        if let Some(d) = self.deadline
            && Instant::now() >= d
        {
            self.stop = Some(Stop::TimedOut);
            return ControlFlow::Break(());
        }
        if let (Some(meter), Some(budget)) = (&self.meter, self.memory_budget) {
            let live = meter.live();
            if live > budget {
                self.stop = Some(Stop::OverMemory(live));
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    }

    /// The most the trial's threads have had allocated at once, when measured.
    pub fn peak_memory(&self) -> Option<u64> {
        self.meter.as_ref().map(|m| m.peak())
    }

    /// The trial's peak, if it went over its memory budget (even if it freed it since).
    fn peak_over_budget(&self) -> Option<u64> {
        self.peak_memory().filter(|peak| self.memory_budget.is_some_and(|budget| *peak > budget))
    }

    /// Fail the trial up front when the objective's own estimate of its memory exceeds the
    /// budget.
    pub fn check_memory(&self, estimate_bytes: u64) -> Result<(), String> {
        match self.memory_budget {
            Some(b) if estimate_bytes > b => {
                Err(format!("needs about {}, over the trial memory budget of {}", mib(estimate_bytes), mib(b)))
            }
            _ => Ok(()),
        }
    }

    pub fn pruned(&self) -> bool {
        self.stop == Some(Stop::Pruned)
    }

    /// Pruned, or over its time or memory budget (now or at its peak): the trial will not
    /// count as complete.
    pub fn stopped(&self) -> bool {
        self.stop.is_some() || self.peak_over_budget().is_some()
    }
}

/// The metric a complete trial with a memory budget records its peak in, in MiB.
pub const PEAK_MEMORY_METRIC: &str = "peak_memory_mib";

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

/// Trials one [`Study::optimize`] call ran, and how many of them failed.
#[derive(Default)]
struct Tally {
    ran: AtomicUsize,
    failed: AtomicUsize,
    /// The first failure's message (in finishing order).
    first_error: Mutex<Option<String>>,
}

/// How a call to [`Study::optimize`] ended.
#[derive(Clone, Debug)]
pub struct Summary {
    pub best: Option<TrialRecord>,
    pub complete: usize,
    pub pruned: usize,
    pub failed: usize,
    /// Trials this call ran (others were run before, or by other workers).
    pub ran: usize,
    pub elapsed: Duration,
}

struct View {
    seq: u64,
    trials: BTreeMap<u64, TrialRecord>,
}

impl View {
    fn apply(&mut self, changes: sluice_store::StudyChanges) {
        for t in changes.trials {
            match self.trials.get_mut(&t.number) {
                Some(old) if old.attempt == t.attempt => {
                    let intermediate = std::mem::take(&mut old.intermediate);
                    *old = TrialRecord { intermediate, ..t };
                }
                _ => {
                    self.trials.insert(t.number, t);
                }
            }
        }
        for (number, step, value) in changes.intermediate {
            if let Some(t) = self.trials.get_mut(&number) {
                let i = t.intermediate.partition_point(|(s, _)| *s < step);
                match t.intermediate.get(i) {
                    Some((s, _)) if *s == step => t.intermediate[i].1 = value,
                    _ => t.intermediate.insert(i, (step, value)),
                }
            }
        }
        self.seq = changes.seq;
    }
}

/// Every trial of a study in `store`, with its intermediate values, by number.
pub fn load_trials(store: &dyn StudyStore, study: &str) -> Result<Vec<TrialRecord>, TuneError> {
    let mut view = View { seq: 0, trials: BTreeMap::new() };
    view.apply(store.changes_since(study, 0)?);
    Ok(view.trials.into_values().collect())
}

/// This process's trials in flight: `false` while sampling, `true` once its params are set.
#[derive(Default)]
struct Local {
    running: BTreeMap<u64, bool>,
}

pub struct Study<'s> {
    store: &'s dyn StudyStore,
    config: StudyConfig,
    sampler: Box<dyn Sampler>,
    worker: Worker,
    view: Mutex<View>,
    local: Mutex<Local>,
    changed: Condvar,
}

impl<'s> Study<'s> {
    /// Create or open the study `config.name` in `store` (the same definition is required).
    pub fn open(store: &'s dyn StudyStore, config: StudyConfig, run_id: Option<String>) -> Result<Self, TuneError> {
        store.open_study(&StudyRecord {
            name: config.name.clone(),
            direction: config.direction.as_str().into(),
            definition: config.definition(),
            created_at: String::new(),
        })?;
        let sampler = config.sampler.build(config.seed);
        let study = Self {
            store,
            config,
            sampler,
            worker: Worker::this_process(run_id),
            view: Mutex::new(View { seq: 0, trials: BTreeMap::new() }),
            local: Mutex::new(Local::default()),
            changed: Condvar::new(),
        };
        study.refresh()?;
        Ok(study)
    }

    pub fn config(&self) -> &StudyConfig {
        &self.config
    }

    /// Bring this worker's copy of the trials up to date with the store.
    fn refresh(&self) -> Result<(), TuneError> {
        let mut view = self.view.lock().unwrap_or_else(|e| e.into_inner());
        let changes = self.store.changes_since(&self.config.name, view.seq)?;
        view.apply(changes);
        Ok(())
    }

    /// Every trial, current as of now.
    pub fn trials(&self) -> Result<Vec<TrialRecord>, TuneError> {
        self.refresh()?;
        Ok(self.view.lock().unwrap_or_else(|e| e.into_inner()).trials.values().cloned().collect())
    }

    /// The best complete trial (the lowest number among equals).
    pub fn best(&self) -> Result<Option<TrialRecord>, TuneError> {
        Ok(best_of(&self.trials()?, self.config.direction).cloned())
    }

    /// Record an intermediate value; whether the trial should be pruned.
    fn report(&self, number: u64, step: u64, value: f64) -> Result<bool, TuneError> {
        self.store.report(&self.config.name, number, step, value)?;
        if self.config.pruner == PrunerSpec::None {
            return Ok(false);
        }
        self.refresh()?;
        let view = self.view.lock().unwrap_or_else(|e| e.into_inner());
        let Some(trial) = view.trials.get(&number) else { return Ok(false) };
        let others: Vec<&TrialRecord> = view.trials.values().filter(|t| t.number != number).collect();
        Ok(self.config.pruner.should_prune(trial, &others, self.config.direction, self.config.seed))
    }

    /// Run trials until the budget is spent; several workers (threads, processes) may do this
    /// on one study at once.
    pub fn optimize(&self, objective: &dyn Objective, budget: &Budget) -> Result<Summary, TuneError> {
        let start = Instant::now();
        let max_trials = match (budget.trials, self.sampler.max_trials(&self.config.space)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let parallel = budget.parallel.max(1);
        let tally = Tally::default();
        let results: Vec<Result<(), TuneError>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..parallel)
                .map(|_| s.spawn(|| self.work(objective, budget, start, max_trials, parallel, &tally)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err(TuneError::Space("a tuning worker panicked".into()))))
                .collect()
        });
        results.into_iter().collect::<Result<Vec<()>, _>>()?;
        let trials = self.trials()?;
        let count = |s: TrialState| trials.iter().filter(|t| t.state == s).count();
        let summary = Summary {
            best: best_of(&trials, self.config.direction).cloned(),
            complete: count(TrialState::Complete),
            pruned: count(TrialState::Pruned),
            failed: count(TrialState::Failed),
            ran: tally.ran.load(Ordering::Relaxed),
            elapsed: start.elapsed(),
        };
        if summary.best.is_none() && summary.failed > 0 {
            // This call's first failure, or (if it ran none) the study's.
            let first = tally.first_error.into_inner().unwrap_or_else(|e| e.into_inner());
            let first = first.or_else(|| trials.iter().find_map(|t| t.error.clone())).unwrap_or_default();
            return Err(TuneError::NoTrialCompleted { study: self.config.name.clone(), failed: summary.failed, first });
        }
        Ok(summary)
    }

    fn should_stop(&self, budget: &Budget, start: Instant, tally: &Tally) -> bool {
        if budget.timeout.is_some_and(|t| start.elapsed() >= t) {
            return true;
        }
        let view = self.view.lock().unwrap_or_else(|e| e.into_inner());
        let trials = || view.trials.values();
        let complete = trials().filter(|t| t.state == TrialState::Complete).count();
        // Every trial failing means a problem no parameter will fix: stop after three. Only this
        // call's failures count, so that a study whose trials all failed (say, over a memory
        // budget since raised) can go on.
        if complete == 0 && tally.failed.load(Ordering::Relaxed) >= 3 {
            return true;
        }
        if let Some(patience) = budget.patience
            && let Some(best) = best_of(trials(), self.config.direction)
        {
            let after = trials().filter(|t| t.state.finished() && t.number > best.number).count() as u64;
            if after >= patience {
                return true;
            }
        }
        false
    }

    fn work(
        &self,
        objective: &dyn Objective,
        budget: &Budget,
        start: Instant,
        max_trials: Option<u64>,
        parallel: usize,
        tally: &Tally,
    ) -> Result<(), TuneError> {
        loop {
            self.refresh()?;
            if self.should_stop(budget, start, tally) {
                return Ok(());
            }
            // Allocate the number and register it as ours in one step, so that a trial sampled
            // after it always knows it is there (and waits for its parameters).
            let started = {
                let mut local = self.local.lock().unwrap_or_else(|e| e.into_inner());
                let started = self.store.start_trial(&self.config.name, &self.worker, max_trials, STALE_AFTER_SECS)?;
                if let Some(s) = &started {
                    local.running.insert(s.number, false);
                }
                started
            };
            let Some(started) = started else {
                return Ok(());
            };
            let number = started.number;
            let params = match started.resumed {
                Some(p) if !p.is_empty() => p,
                _ => {
                    let (params, meta) = self.sample(number, parallel)?;
                    self.store.set_params(&self.config.name, number, &params, &meta)?;
                    params
                }
            };
            {
                let mut local = self.local.lock().unwrap_or_else(|e| e.into_inner());
                local.running.insert(number, true);
                self.changed.notify_all();
            }
            let meter = (budget.trial_memory.is_some() && memory::installed()).then(Meter::new);
            let mut ctx = TrialContext {
                study: self,
                number,
                params,
                deadline: budget.trial_timeout.map(|t| Instant::now() + t),
                memory_budget: budget.trial_memory,
                meter: meter.clone(),
                stop: None,
                last_step: None,
            };
            let entered = meter.map(memory::enter);
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| objective.evaluate(&mut ctx)))
                .unwrap_or_else(|panic| {
                    let message = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    Err(format!("the trial panicked: {message}"))
                });
            drop(entered);
            // A trial that finished (or failed) after peaking over its budget has not kept to it.
            if ctx.stop.is_none()
                && let Some(peak) = ctx.peak_over_budget()
            {
                ctx.stop = Some(Stop::OverMemory(peak));
            }
            let failed = |message: String| (TrialState::Failed, None, BTreeMap::new(), Some(message));
            let (state, value, metrics, error) = match (ctx.stop, outcome) {
                (Some(Stop::Pruned), Ok(e)) => (TrialState::Pruned, None, e.metrics, None),
                (Some(Stop::Pruned), Err(_)) => (TrialState::Pruned, None, BTreeMap::new(), None),
                (Some(Stop::TimedOut), _) => failed(format!(
                    "stopped after the trial time budget of {:.0?}",
                    budget.trial_timeout.unwrap_or_default()
                )),
                (Some(Stop::OverMemory(bytes)), _) => failed(format!(
                    "used {}, over the trial memory budget of {}",
                    mib(bytes),
                    mib(budget.trial_memory.unwrap_or_default())
                )),
                (None, Ok(mut e)) if e.value.is_finite() => {
                    if let Some(peak) = ctx.peak_memory() {
                        e.metrics.insert(PEAK_MEMORY_METRIC.into(), peak as f64 / (1 << 20) as f64);
                    }
                    (TrialState::Complete, Some(e.value), e.metrics, None)
                }
                (None, Ok(e)) => {
                    (TrialState::Failed, None, e.metrics, Some(format!("the objective returned {}", e.value)))
                }
                (None, Err(message)) => failed(message),
            };
            self.store.finish_trial(&self.config.name, number, state, value, &metrics, error.as_deref())?;
            tally.ran.fetch_add(1, Ordering::Relaxed);
            if state == TrialState::Failed {
                tally.failed.fetch_add(1, Ordering::Relaxed);
                tally.first_error.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(error.unwrap_or_default());
            }
            let mut local = self.local.lock().unwrap_or_else(|e| e.into_inner());
            local.running.remove(&number);
            self.changed.notify_all();
        }
    }

    /// Sample trial `number` from the history it is meant to see (see the module's note).
    fn sample(&self, number: u64, parallel: usize) -> Result<(Params, crate::sampler::Meta), TuneError> {
        let horizon = number.saturating_sub(parallel as u64 - 1);
        let own_pending: BTreeSet<u64> = {
            let mut local = self.local.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                let ready =
                    local.running.iter().filter(|(k, _)| **k < number).all(|(k, sampled)| *k >= horizon && *sampled);
                if ready {
                    break;
                }
                local = self.changed.wait(local).unwrap_or_else(|e| e.into_inner());
            }
            local.running.keys().copied().filter(|k| *k < number).collect()
        };
        self.refresh()?;
        let view = self.view.lock().unwrap_or_else(|e| e.into_inner());
        let me = self.worker.id();
        let mut finished = Vec::new();
        let mut pending = Vec::new();
        for t in view.trials.values() {
            if t.number == number {
                continue;
            }
            // Whose it is matters only near `number` (compared only there: a string per trial).
            let own = || t.worker == me;
            if t.number >= horizon && t.number < number && own() || own_pending.contains(&t.number) {
                pending.push(&t.params);
            } else if t.number > number && own() {
                continue;
            } else if t.state.finished() {
                finished.push(t);
            } else {
                pending.push(&t.params);
            }
        }
        let history = History { direction: self.config.direction, finished, pending };
        Ok(self.sampler.sample(&self.config.space, &history, number))
    }
}

/// The best complete trial (the lowest number among equals).
pub fn best_of<'a>(trials: impl IntoIterator<Item = &'a TrialRecord>, direction: Direction) -> Option<&'a TrialRecord> {
    trials
        .into_iter()
        .filter(|t| t.state == TrialState::Complete)
        .filter_map(|t| t.value.filter(|v| v.is_finite()).map(|v| (t, direction.loss(v))))
        .min_by(|a, b| a.1.total_cmp(&b.1).then(a.0.number.cmp(&b.0.number)))
        .map(|(t, _)| t)
}
