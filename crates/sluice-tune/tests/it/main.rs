#![allow(clippy::unwrap_used)]
//! Samplers on known functions, pruners on learning curves, and studies on both stores.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;
use sluice_store::{SqliteStore, StudyStore, TrialState, Worker};
use sluice_tune::*;

// Allocations are metered here as in the `sluice` binary, so trial memory budgets are enforced.
#[global_allocator]
static ALLOCATOR: sluice_core::memory::Counting<std::alloc::System> = sluice_core::memory::Counting(std::alloc::System);

fn float(name: &str, low: f64, high: f64) -> Param {
    Param {
        name: name.into(),
        distribution: Distribution::Float { low, high, log: false, step: None },
        when: None,
        grid: None,
    }
}

fn x(t: &TrialContext, name: &str) -> f64 {
    t.params[name].as_f64().expect("a number")
}

/// Branin–Hoo on [-5, 10] x [0, 15]; the global minimum is 0.397887.
fn branin(t: &mut TrialContext) -> Result<Evaluation, String> {
    let (a, b) = (x(t, "x1"), x(t, "x2"));
    let pi = std::f64::consts::PI;
    let v = (b - 5.1 / (4.0 * pi * pi) * a * a + 5.0 / pi * a - 6.0).powi(2)
        + 10.0 * (1.0 - 1.0 / (8.0 * pi)) * a.cos()
        + 10.0;
    Ok(Evaluation::value(v))
}

fn branin_space() -> Space {
    Space::new(vec![float("x1", -5.0, 10.0), float("x2", 0.0, 15.0)]).unwrap()
}

fn best_value(sampler: SamplerSpec, space: &Space, objective: &dyn Objective, seed: u64, trials: u64) -> f64 {
    let store = MemoryStudies::default();
    let study =
        Study::open(&store, StudyConfig::new("s", Direction::Minimize, space.clone(), sampler, seed), None).unwrap();
    let summary = study.optimize(objective, &Budget { trials: Some(trials), ..Budget::default() }).unwrap();
    summary.best.unwrap().value.unwrap()
}

/// Over 30 seeds, `a` ends with a lower best value than `b` in at least `min_wins` of them.
/// Under "no difference" a win is a coin flip: P(>= 22 of 30) = 0.008.
fn beats(a: SamplerSpec, b: SamplerSpec, space: &Space, objective: &dyn Objective, trials: u64, min_wins: usize) {
    let mut wins = 0;
    let (mut sum_a, mut sum_b) = (0.0, 0.0);
    for seed in 0..30 {
        let va = best_value(a.clone(), space, objective, seed, trials);
        let vb = best_value(b.clone(), space, objective, seed, trials);
        wins += usize::from(va < vb);
        sum_a += va;
        sum_b += vb;
    }
    assert!(wins >= min_wins, "{a:?} won {wins}/30 against {b:?} (means {} vs {})", sum_a / 30.0, sum_b / 30.0);
    assert!(sum_a < sum_b, "mean best {} vs {}", sum_a / 30.0, sum_b / 30.0);
}

#[test]
fn tpe_beats_random_on_branin() {
    beats(SamplerSpec::tpe(), SamplerSpec::Random, &branin_space(), &branin, 60, 22);
}

#[test]
fn multivariate_tpe_beats_random_on_branin() {
    let tpe = SamplerSpec::Tpe { startup_trials: 10, candidates: 24, multivariate: true };
    beats(tpe, SamplerSpec::Random, &branin_space(), &branin, 60, 22);
}

/// A 4-dimensional shifted ellipsoid with a log-scaled and a whole-number parameter.
fn mixed(t: &mut TrialContext) -> Result<Evaluation, String> {
    let lr = t.params["lr"].as_f64().unwrap();
    let leaves = t.params["leaves"].as_i64().unwrap() as f64;
    let (a, b) = (x(t, "a"), x(t, "b"));
    Ok(Evaluation::value(
        (lr.log10() + 2.0).powi(2) + ((leaves - 40.0) / 20.0).powi(2) + (a - 0.3).powi(2) + 4.0 * (b + 0.6).powi(2),
    ))
}

fn mixed_space() -> Space {
    Space::new(vec![
        Param {
            name: "lr".into(),
            distribution: Distribution::Float { low: 1e-4, high: 1.0, log: true, step: None },
            when: None,
            grid: None,
        },
        Param {
            name: "leaves".into(),
            distribution: Distribution::Int { low: 2, high: 256, log: true, step: 1 },
            when: None,
            grid: None,
        },
        float("a", -1.0, 1.0),
        float("b", -1.0, 1.0),
    ])
    .unwrap()
}

#[test]
fn tpe_and_cmaes_beat_random_on_a_mixed_space() {
    beats(SamplerSpec::tpe(), SamplerSpec::Random, &mixed_space(), &mixed, 80, 22);
    beats(SamplerSpec::Cmaes { population: None }, SamplerSpec::Random, &mixed_space(), &mixed, 80, 22);
}

#[test]
fn tpe_handles_conditional_parameters() {
    // `l1` exists only for the "dart" booster; the best value needs dart with l1 near 0.7.
    let space = Space::new(vec![
        Param {
            name: "booster".into(),
            distribution: Distribution::Categorical { choices: vec![json!("gbdt"), json!("dart")] },
            when: None,
            grid: None,
        },
        Param {
            name: "l1".into(),
            distribution: Distribution::Float { low: 0.0, high: 1.0, log: false, step: None },
            when: Some(Condition { param: "booster".into(), values: vec![json!("dart")] }),
            grid: None,
        },
        float("x", -1.0, 1.0),
    ])
    .unwrap();
    let objective = |t: &mut TrialContext| -> Result<Evaluation, String> {
        let base = x(t, "x").powi(2);
        Ok(Evaluation::value(match t.params.get("l1") {
            Some(l1) => {
                assert_eq!(t.params["booster"], json!("dart"));
                base + (l1.as_f64().unwrap() - 0.7).powi(2)
            }
            None => {
                assert_eq!(t.params["booster"], json!("gbdt"));
                base + 0.2
            }
        }))
    };
    for multivariate in [false, true] {
        let tpe = SamplerSpec::Tpe { startup_trials: 10, candidates: 24, multivariate };
        let store = MemoryStudies::default();
        let study =
            Study::open(&store, StudyConfig::new("c", Direction::Minimize, space.clone(), tpe, 3), None).unwrap();
        let s = study.optimize(&objective, &Budget { trials: Some(60), ..Budget::default() }).unwrap();
        let best = s.best.unwrap();
        assert_eq!(best.params["booster"], json!("dart"), "{best:?}");
        assert!(best.value.unwrap() < 0.05, "{best:?}");
    }
}

fn params_of(sampler: SamplerSpec, seed: u64, parallel: usize) -> Vec<Params> {
    let store = MemoryStudies::default();
    let study =
        Study::open(&store, StudyConfig::new("r", Direction::Minimize, mixed_space(), sampler, seed), None).unwrap();
    study.optimize(&mixed, &Budget { trials: Some(30), parallel, ..Budget::default() }).unwrap();
    study.trials().unwrap().into_iter().map(|t| t.params).collect()
}

#[test]
fn same_seed_same_trials() {
    for sampler in [SamplerSpec::Random, SamplerSpec::tpe(), SamplerSpec::Cmaes { population: Some(6) }] {
        assert_eq!(params_of(sampler.clone(), 5, 1), params_of(sampler.clone(), 5, 1), "{sampler:?}");
        assert_ne!(params_of(sampler.clone(), 5, 1), params_of(sampler.clone(), 6, 1), "{sampler:?}");
        // With trials in parallel too: each trial sees the same history whatever the timing.
        assert_eq!(params_of(sampler.clone(), 5, 3), params_of(sampler.clone(), 5, 3), "{sampler:?}");
    }
}

#[test]
fn grid_tries_every_combination_once() {
    let space = Space::new(vec![
        Param {
            name: "k".into(),
            distribution: Distribution::Int { low: 1, high: 3, log: false, step: 1 },
            when: None,
            grid: None,
        },
        Param {
            name: "mode".into(),
            distribution: Distribution::Categorical { choices: vec![json!("a"), json!("b")] },
            when: None,
            grid: None,
        },
        Param {
            name: "lr".into(),
            distribution: Distribution::Float { low: 0.01, high: 1.0, log: true, step: None },
            when: Some(Condition { param: "mode".into(), values: vec![json!("b")] }),
            grid: Some(vec![json!(0.01), json!(0.1)]),
        },
    ])
    .unwrap();
    let store = MemoryStudies::default();
    let study =
        Study::open(&store, StudyConfig::new("g", Direction::Minimize, space, SamplerSpec::Grid, 0), None).unwrap();
    let s = study
        .optimize(
            &|_: &mut TrialContext| Ok(Evaluation::value(1.0)),
            &Budget { trials: Some(100), ..Budget::default() },
        )
        .unwrap();
    // 3 values of k x (mode a, or mode b with 2 learning rates) = 9.
    assert_eq!(s.complete, 9);
    let distinct: BTreeSet<String> =
        study.trials().unwrap().iter().map(|t| serde_json::to_string(&t.params).unwrap()).collect();
    assert_eq!(distinct.len(), 9);
}

/// Learning curves: a trial's quality is fixed by `q`; its loss falls towards `q` with the steps.
fn curves(t: &mut TrialContext) -> Result<Evaluation, String> {
    let q = x(t, "q");
    let mut last = 0.0;
    for step in 1..=64u64 {
        last = q + 1.0 / step as f64;
        if t.report(step, last).is_break() {
            return Ok(Evaluation::value(last));
        }
    }
    Ok(Evaluation::value(last))
}

fn run_pruned(pruner: PrunerSpec) -> (Summary, usize) {
    let store = MemoryStudies::default();
    let space = Space::new(vec![float("q", 0.0, 1.0)]).unwrap();
    let mut config = StudyConfig::new("p", Direction::Minimize, space, SamplerSpec::Random, 11);
    config.pruner = pruner;
    let study = Study::open(&store, config, None).unwrap();
    let s = study.optimize(&curves, &Budget { trials: Some(60), ..Budget::default() }).unwrap();
    let steps: usize = study.trials().unwrap().iter().map(|t| t.intermediate.len()).sum();
    (s, steps)
}

#[test]
fn pruners_stop_losing_trials_and_keep_the_winner() {
    let (unpruned, all_steps) = run_pruned(PrunerSpec::None);
    assert_eq!(all_steps, 60 * 64);
    assert_eq!(unpruned.pruned, 0);
    let best = unpruned.best.unwrap();
    for pruner in [
        PrunerSpec::Median { startup_trials: 5, warmup_steps: 0 },
        PrunerSpec::Asha { min_resource: Some(1), reduction_factor: 4 },
        PrunerSpec::Hyperband { min_resource: 1, max_resource: Some(64), reduction_factor: 3 },
    ] {
        let (s, steps) = run_pruned(pruner.clone());
        assert!(s.pruned >= 20, "{pruner:?}: only {} pruned", s.pruned);
        assert!(steps * 2 < all_steps, "{pruner:?}: {steps} of {all_steps} steps ran");
        // Same sampler and seed: the winner of the full study still completes and wins.
        let b = s.best.unwrap();
        assert_eq!(b.number, best.number, "{pruner:?}");
        // Every pruned trial was worse at its last step than the winner at that step.
        for t in study_trials_pruned(&pruner) {
            let (step, v) = *t.intermediate.last().unwrap();
            assert!(v > best.intermediate[step as usize - 1].1, "{pruner:?} pruned a better trial: {t:?}");
        }
    }
}

fn study_trials_pruned(pruner: &PrunerSpec) -> Vec<sluice_store::TrialRecord> {
    let store = MemoryStudies::default();
    let space = Space::new(vec![float("q", 0.0, 1.0)]).unwrap();
    let mut config = StudyConfig::new("p", Direction::Minimize, space, SamplerSpec::Random, 11);
    config.pruner = pruner.clone();
    let study = Study::open(&store, config, None).unwrap();
    study.optimize(&curves, &Budget { trials: Some(60), ..Budget::default() }).unwrap();
    study.trials().unwrap().into_iter().filter(|t| t.state == TrialState::Pruned).collect()
}

#[test]
fn budgets_stop_the_study() {
    let store = MemoryStudies::default();
    let config = StudyConfig::new("b", Direction::Minimize, branin_space(), SamplerSpec::Random, 1);
    let study = Study::open(&store, config, None).unwrap();
    // Patience: stop once 5 finished trials follow the best without beating it.
    let s = study.optimize(&branin, &Budget { trials: Some(1000), patience: Some(5), ..Budget::default() }).unwrap();
    let best = s.best.unwrap();
    let trials = study.trials().unwrap();
    assert_eq!(
        trials.len() as u64,
        best.number + 6,
        "stopped {} trials after the best",
        trials.len() as u64 - best.number - 1
    );
    // Wall time.
    let slow = |t: &mut TrialContext| {
        std::thread::sleep(Duration::from_millis(20));
        branin(t)
    };
    let study =
        Study::open(&store, StudyConfig::new("t", Direction::Minimize, branin_space(), SamplerSpec::Random, 1), None)
            .unwrap();
    let s = study.optimize(&slow, &Budget { timeout: Some(Duration::from_millis(300)), ..Budget::default() }).unwrap();
    assert!((5..=20).contains(&s.complete), "{} trials in 300 ms of 20 ms trials", s.complete);
}

#[test]
fn trial_budgets_fail_the_trial_and_failures_are_reported() {
    let store = MemoryStudies::default();
    let space = Space::new(vec![float("q", 0.0, 1.0)]).unwrap();
    let study =
        Study::open(&store, StudyConfig::new("f", Direction::Minimize, space.clone(), SamplerSpec::Random, 1), None)
            .unwrap();
    // Time: a trial that keeps reporting past its budget is stopped and marked failed; the
    // study goes on with the next.
    let slow = |t: &mut TrialContext| -> Result<Evaluation, String> {
        for step in 1.. {
            std::thread::sleep(Duration::from_millis(5));
            if t.report(step, 1.0).is_break() {
                break;
            }
            if step > 3 && t.number > 0 {
                break;
            }
        }
        Ok(Evaluation::value(1.0))
    };
    let s = study
        .optimize(
            &slow,
            &Budget { trials: Some(3), trial_timeout: Some(Duration::from_millis(50)), ..Budget::default() },
        )
        .unwrap();
    let trials = study.trials().unwrap();
    assert_eq!(trials[0].state, TrialState::Failed);
    assert!(trials[0].error.as_deref().unwrap().contains("trial time budget"), "{:?}", trials[0].error);
    assert_eq!(s.complete, 2);
    // Memory: the objective's estimate against the budget.
    let big = |t: &mut TrialContext| -> Result<Evaluation, String> {
        t.check_memory(3 << 30)?;
        Ok(Evaluation::value(0.0))
    };
    let study =
        Study::open(&store, StudyConfig::new("m", Direction::Minimize, space, SamplerSpec::Random, 1), None).unwrap();
    let err = study
        .optimize(&big, &Budget { trials: Some(10), trial_memory: Some(1 << 30), ..Budget::default() })
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("no trial completed (3 failed)")
            && text.contains("needs about 3072.0 MiB, over the trial memory budget of 1024.0 MiB"),
        "{text}"
    );
}

#[test]
fn a_study_lives_in_the_metadata_store_and_dead_workers_trials_are_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metadata.db");
    let config = || StudyConfig::new("persist", Direction::Minimize, branin_space(), SamplerSpec::tpe(), 4);
    {
        let store = SqliteStore::open(&path).unwrap();
        let study = Study::open(&store, config(), Some("run-1".into())).unwrap();
        study.optimize(&branin, &Budget { trials: Some(12), ..Budget::default() }).unwrap();
    }
    // A worker that died mid-trial: its process (pid) is gone on this host (above any pid_max).
    let store = SqliteStore::open(&path).unwrap();
    let dead = Worker { host: Worker::this_process(None).host, pid: 4_194_305, run_id: None };
    let started = store.start_trial("persist", &dead, Some(20), 600).unwrap().unwrap();
    assert_eq!(started.number, 12);
    let params = [("x1".to_string(), json!(1.0)), ("x2".to_string(), json!(2.0))].into_iter().collect();
    store.set_params("persist", 12, &params, &Default::default()).unwrap();
    store.report("persist", 12, 1, 99.0).unwrap();
    // A changed definition is refused, naming what differs.
    let mut other = config();
    other.seed = 5;
    let err = Study::open(&store, other, None).err().unwrap().to_string();
    assert!(err.contains("study `persist` exists with a different definition"), "{err}");
    let study = Study::open(&store, config(), Some("run-2".into())).unwrap();
    let s = study.optimize(&branin, &Budget { trials: Some(20), ..Budget::default() }).unwrap();
    assert_eq!(s.ran, 8, "trial 12 again plus 13..19");
    let trials = study.trials().unwrap();
    assert_eq!(trials.iter().map(|t| t.number).collect::<Vec<_>>(), (0..20).collect::<Vec<_>>());
    assert!(trials.iter().all(|t| t.state == TrialState::Complete));
    let resumed = &trials[12];
    assert_eq!((resumed.params.clone(), resumed.attempt, resumed.run_id.as_deref()), (params, 1, Some("run-2")));
    assert_eq!(trials[0].run_id.as_deref(), Some("run-1"));
    assert!(resumed.intermediate.is_empty(), "the dead attempt's values are dropped: {:?}", resumed.intermediate);
}

/// Three workers (each with its own connection to the store), two trials at a time each.
fn workers_share_the_study_without_duplicates<S: StudyStore>(open: impl Fn() -> S + Sync) {
    let config = StudyConfig::new("shared", Direction::Minimize, branin_space(), SamplerSpec::tpe(), 9);
    std::thread::scope(|s| {
        for _ in 0..3 {
            let (open, config) = (&open, config.clone());
            s.spawn(move || {
                let store = open();
                let study = Study::open(&store, config, None).unwrap();
                study.optimize(&branin, &Budget { trials: Some(45), parallel: 2, ..Budget::default() }).unwrap();
            });
        }
    });
    let store = open();
    let study = Study::open(&store, config, None).unwrap();
    let numbers: Vec<u64> = study.trials().unwrap().iter().map(|t| t.number).collect();
    assert_eq!(numbers, (0..45).collect::<Vec<_>>());
    assert!(study.trials().unwrap().iter().all(|t| t.state == TrialState::Complete && !t.params.is_empty()));
}

#[test]
fn workers_on_one_sqlite_file_share_the_study_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metadata.db");
    workers_share_the_study_without_duplicates(|| SqliteStore::open(&path).unwrap());
}

#[test]
fn workers_on_postgres_share_the_study_without_duplicates() {
    let scratch = sluice_store::testing::PgScratch::new();
    workers_share_the_study_without_duplicates(|| sluice_store::PostgresStore::open(&scratch.url).unwrap());
}

#[test]
fn importances_find_the_parameter_that_matters() {
    let store = MemoryStudies::default();
    let space = Space::new(vec![float("matters", 0.0, 1.0), float("noise", 0.0, 1.0)]).unwrap();
    let study =
        Study::open(&store, StudyConfig::new("i", Direction::Minimize, space.clone(), SamplerSpec::Random, 2), None)
            .unwrap();
    let f = |t: &mut TrialContext| Ok(Evaluation::value(10.0 * x(t, "matters") + 0.1 * x(t, "noise")));
    study.optimize(&f, &Budget { trials: Some(100), ..Budget::default() }).unwrap();
    let imp = importances(&space, &study.trials().unwrap());
    assert_eq!(imp[0].0, "matters");
    assert!(imp[0].1 > 0.9, "{imp:?}");
    assert!((imp.iter().map(|i| i.1).sum::<f64>() - 1.0).abs() < 1e-9);
}

#[test]
fn trials_over_their_memory_budget_are_stopped_and_failed() {
    assert!(sluice_core::memory::installed());
    let store = MemoryStudies::default();
    let space = Space::new(vec![float("x", 0.0, 1.0)]).unwrap();
    // Trial 0 grows 4 MiB a step, reporting each, on its own thread and on a helper thread that
    // carries its meter (as a trainer's pool does); trial 1 peaks at 48 MiB between reports and
    // frees it before it returns; the others keep 1 MiB.
    let greedy = |t: &mut TrialContext| -> Result<Evaluation, String> {
        let mut kept: Vec<Vec<u8>> = Vec::new();
        match t.number {
            0 => {
                for step in 1..=64u64 {
                    kept.push(std::hint::black_box(vec![1u8; 2 << 20]));
                    let meter = sluice_core::memory::current();
                    let other = std::thread::spawn(move || {
                        sluice_core::memory::attach_thread(meter);
                        let v = std::hint::black_box(vec![2u8; 2 << 20]);
                        sluice_core::memory::detach_thread();
                        v
                    });
                    kept.push(other.join().unwrap());
                    if t.report(step, step as f64).is_break() {
                        return Ok(Evaluation::value(step as f64));
                    }
                }
                Err("trial 0 was never stopped".into())
            }
            1 => {
                drop(std::hint::black_box(vec![1u8; 48 << 20]));
                Ok(Evaluation::value(0.0))
            }
            _ => {
                kept.push(std::hint::black_box(vec![1u8; 1 << 20]));
                assert!(t.peak_memory().unwrap() >= 1 << 20);
                Ok(Evaluation::value(t.number as f64))
            }
        }
    };
    let study =
        Study::open(&store, StudyConfig::new("mem", Direction::Minimize, space, SamplerSpec::Random, 1), None).unwrap();
    let s = study.optimize(&greedy, &Budget { trials: Some(4), trial_memory: Some(16 << 20), ..Budget::default() });
    let s = s.unwrap();
    let trials = study.trials().unwrap();
    let error = |n: usize| trials[n].error.clone().unwrap_or_default();
    assert_eq!(trials[0].state, TrialState::Failed, "{:?}", trials[0]);
    // Stopped at the first report over 16 MiB: after 4 steps of 4 MiB, 8 with the helper's half.
    assert!(
        error(0).starts_with("used 1") && error(0).ends_with("over the trial memory budget of 16.0 MiB"),
        "{}",
        error(0)
    );
    assert!(trials[0].intermediate.len() <= 4, "{:?}", trials[0].intermediate);
    assert_eq!(trials[1].state, TrialState::Failed);
    assert!(error(1).starts_with("used 48.0 MiB"), "{}", error(1));
    for t in &trials[2..] {
        assert_eq!(t.state, TrialState::Complete);
        // The peak is recorded with the trial's metrics.
        let peak = t.metrics["peak_memory_mib"];
        assert!((1.0..2.0).contains(&peak), "{peak}");
    }
    assert_eq!((s.complete, s.failed), (2, 2));
}
