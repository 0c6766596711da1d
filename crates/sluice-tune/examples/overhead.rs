//! Per-trial overhead of a study with a trivial objective (what the sampler and the storage
//! cost), for bench/tune.py. Prints one JSON line.
//!
//! cargo run --release -p sluice-tune --example overhead -- [TRIALS] [memory|sqlite|postgres] [tpe|random|cmaes]
//!
//! `postgres` uses a scratch schema on `SLUICE_TEST_POSTGRES` (default: the local server).

use std::time::Instant;

use serde_json::json;
use sluice_tune::*;

/// The `sluice` binary's allocator (studies run in that process), so that this measures what it
/// does.
#[global_allocator]
static ALLOCATOR: sluice_core::memory::Counting<mimalloc::MiMalloc> = sluice_core::memory::Counting(mimalloc::MiMalloc);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let trials: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let storage = args.get(2).map(String::as_str).unwrap_or("memory");
    let sampler = match args.get(3).map(String::as_str).unwrap_or("tpe") {
        "random" => SamplerSpec::Random,
        "cmaes" => SamplerSpec::Cmaes { population: None },
        _ => SamplerSpec::tpe(),
    };
    // The space bench/tune.py gives Optuna: three floats (one log-scaled), a whole number and a
    // choice.
    let f = |name: &str, low: f64, high: f64, log: bool| Param {
        name: name.into(),
        distribution: Distribution::Float { low, high, log, step: None },
        when: None,
        grid: None,
    };
    let space = Space::new(vec![
        f("x", -10.0, 10.0, false),
        f("y", -10.0, 10.0, false),
        f("lr", 1e-4, 1.0, true),
        Param {
            name: "k".into(),
            distribution: Distribution::Int { low: 1, high: 100, log: false, step: 1 },
            when: None,
            grid: None,
        },
        Param {
            name: "c".into(),
            distribution: Distribution::Categorical { choices: vec![json!("a"), json!("b"), json!("c")] },
            when: None,
            grid: None,
        },
    ])
    .expect("a valid space");
    let objective = |t: &mut TrialContext| -> Result<Evaluation, String> {
        let num = |k: &str| t.params[k].as_f64().unwrap_or(0.0);
        let c = if t.params["c"] == json!("b") { 0.0 } else { 1.0 };
        Ok(Evaluation::value(num("x").powi(2) + num("y").powi(2) + num("lr").log10().abs() + num("k") / 100.0 + c))
    };
    let dir = tempfile::tempdir().expect("a temp dir");
    let (sqlite, postgres);
    let scratch = (storage == "postgres").then(sluice_store::testing::PgScratch::new);
    let memory = MemoryStudies::default();
    let store: &dyn sluice_store::StudyStore = match (storage, &scratch) {
        ("sqlite", _) => {
            sqlite = sluice_store::SqliteStore::open(&dir.path().join("metadata.db")).expect("open SQLite");
            &sqlite
        }
        ("postgres", Some(scratch)) => {
            postgres = sluice_store::PostgresStore::open(&scratch.url).expect("open PostgreSQL");
            &postgres
        }
        _ => &memory,
    };
    let config = StudyConfig::new("overhead", Direction::Minimize, space, sampler, 1);
    let t0 = Instant::now();
    let study = Study::open(store, config, None).expect("open the study");
    let summary = study.optimize(&objective, &Budget { trials: Some(trials), ..Budget::default() }).expect("optimize");
    let seconds = t0.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({
            "tool": "sluice",
            "storage": storage,
            "trials": summary.complete,
            "seconds": seconds,
            "ms_per_trial": 1000.0 * seconds / trials as f64,
            "best": summary.best.and_then(|b| b.value),
        })
    );
}
