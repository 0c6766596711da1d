#![allow(clippy::unwrap_used)]
//! The metadata store behaves the same on SQLite and on PostgreSQL (the server on 127.0.0.1),
//! and the shared store keeps its promises under concurrent writers in separate connections.

use std::collections::BTreeSet;
use std::sync::Arc;

use sluice_core::{ArtifactKind, ArtifactMeta, ColumnMeta, ContentHash};
use sluice_store::testing::PgScratch;
use sluice_store::*;

/// Run `check` on a fresh SQLite store and on a fresh PostgreSQL store.
fn on_both(check: impl Fn(&dyn MetadataStore, &str)) {
    let dir = tempfile::tempdir().unwrap();
    check(&SqliteStore::open(&dir.path().join("metadata.db")).unwrap(), "sqlite");
    let scratch = PgScratch::new();
    check(&PostgresStore::open(&scratch.url).unwrap(), "postgres");
}

fn run(id: &str) -> RunRecord {
    RunRecord {
        id: id.into(),
        pipeline: "p".into(),
        spec_path: "p.yaml".into(),
        status: RunStatus::Running,
        started_at: now(),
        finished_at: None,
        params: vec![("train.seed".into(), "7".into()), ("a".into(), "b".into())],
        error: None,
        pid: std::process::id(),
    }
}

fn step(run_id: &str, name: &str, key: &[u8], inputs: Vec<KeyInput>) -> StepRecord {
    StepRecord {
        run_id: run_id.into(),
        step: name.into(),
        kind: "sql".into(),
        cache_key: ContentHash::of_bytes(key),
        status: StepStatus::Ran,
        started_at: now(),
        duration_ms: 12,
        rows: Some(3),
        config: serde_json::json!({"query": "SELECT 1", "n": [1, 2]}),
        inputs,
        error: None,
    }
}

fn dataset(bytes: &[u8]) -> ArtifactMeta {
    ArtifactMeta {
        hash: ContentHash::of_bytes(bytes),
        kind: ArtifactKind::Dataset,
        size: bytes.len() as u64,
        rows: Some(3),
        schema: Some(vec![ColumnMeta { name: "x".into(), data_type: "Float64".into(), nullable: true }]),
    }
}

/// A minimizing study with an empty space.
fn empty_study(name: &str) -> StudyRecord {
    StudyRecord {
        name: name.into(),
        direction: "minimize".into(),
        definition: serde_json::json!({"space": {}}),
        created_at: String::new(),
    }
}

fn model(store: &dyn MetadataStore, run_id: &str, bytes: &[u8]) -> ContentHash {
    let artifact = ArtifactMeta {
        hash: ContentHash::of_bytes(bytes),
        kind: ArtifactKind::Model,
        size: 1,
        rows: None,
        schema: None,
    };
    store
        .record_step(&StepCompletion {
            step: step(run_id, &format!("train-{}", artifact.hash), bytes, vec![]),
            outputs: vec![OutputRecord { name: "model".into(), artifact: artifact.clone() }],
            metrics: vec![],
        })
        .unwrap();
    artifact.hash
}

#[test]
fn runs_steps_cache_lineage_and_provenance_round_trip() {
    on_both(|s, db| {
        s.begin_run(&run("run-aaa1")).unwrap();
        let (raw, clean) = (dataset(b"raw"), dataset(b"clean"));
        s.record_step(&StepCompletion {
            step: step("run-aaa1", "load", b"k1", vec![]),
            outputs: vec![OutputRecord { name: "data".into(), artifact: raw.clone() }],
            metrics: vec![],
        })
        .unwrap();
        let input = KeyInput { name: "load.data".into(), hash: raw.hash };
        s.record_step(&StepCompletion {
            step: step("run-aaa1", "clean", b"k2", vec![input]),
            outputs: vec![
                OutputRecord { name: "z".into(), artifact: clean.clone() },
                OutputRecord { name: "a".into(), artifact: raw.clone() },
            ],
            metrics: vec![("rows_out".into(), 3.0), ("share".into(), 0.25)],
        })
        .unwrap();
        let failed = StepRecord {
            status: StepStatus::Failed,
            error: Some("boom".into()),
            ..step("run-aaa1", "train", b"k3", vec![])
        };
        s.record_incomplete(&failed).unwrap();
        s.finish_run("run-aaa1", RunStatus::Failed, Some("step `train` failed")).unwrap();

        // The cache: outputs in recorded order, with their metadata; failed steps leave none.
        let hit = s.lookup_cache(&ContentHash::of_bytes(b"k2")).unwrap().expect("cached");
        assert_eq!(hit.iter().map(|o| o.name.as_str()).collect::<Vec<_>>(), ["z", "a"], "{db}");
        assert_eq!(hit[0].artifact, clean, "{db}");
        assert!(s.lookup_cache(&ContentHash::of_bytes(b"k3")).unwrap().is_none(), "{db}");

        let details = s.get_run("run-a").unwrap();
        assert_eq!(details.run.status, RunStatus::Failed, "{db}");
        assert_eq!(details.run.error.as_deref(), Some("step `train` failed"), "{db}");
        assert_eq!(details.run.params, [("a".into(), "b".into()), ("train.seed".into(), "7".into())], "{db}");
        let steps: Vec<&str> = details.steps.iter().map(|(st, _)| st.step.as_str()).collect();
        assert_eq!(steps, ["load", "clean", "train"], "{db}");
        assert_eq!(details.steps[1].0.config, serde_json::json!({"query": "SELECT 1", "n": [1, 2]}), "{db}");
        assert_eq!(details.steps[2].0.error.as_deref(), Some("boom"), "{db}");
        assert_eq!(details.metrics, [("clean".into(), "rows_out".into(), 3.0), ("clean".into(), "share".into(), 0.25)]);

        s.begin_run(&run("run-aab2")).unwrap();
        assert!(matches!(s.get_run("run-aa"), Err(StoreError::Ambiguous(..))), "{db}");
        assert!(matches!(s.get_run("zzz"), Err(StoreError::NotFound { .. })), "{db}");
        let listed: Vec<String> = s.list_runs(10).unwrap().into_iter().map(|r| r.id).collect();
        assert_eq!(listed.len(), 2, "{db}");

        assert_eq!(s.get_artifact(&clean.hash.to_string()[..10]).unwrap(), clean, "{db}");
        let prov = s.provenance(&clean.hash).unwrap();
        assert_eq!(prov.produced_by.unwrap().step, "clean", "{db}");
        assert_eq!((prov.output.as_deref(), prov.pipeline.as_deref()), (Some("z"), Some("p")), "{db}");
        assert_eq!(s.last_step("p", "clean").unwrap().unwrap().run_id, "run-aaa1", "{db}");
        assert!(s.last_step("p", "train").unwrap().is_none(), "failed steps are not the last good one ({db})");

        let h = ContentHash::of_bytes(b"file");
        s.remember_file_hash("/data/x.csv", "fp1", &h).unwrap();
        s.remember_file_hash("/data/x.csv", "fp2", &h).unwrap();
        assert_eq!(s.file_hash("/data/x.csv", "fp1").unwrap(), None, "{db}");
        assert_eq!(s.file_hash("/data/x.csv", "fp2").unwrap(), Some(h), "{db}");
    });
}

#[test]
fn the_registry_versions_aliases_and_tags_models() {
    on_both(|s, db| {
        s.begin_run(&run("r1")).unwrap();
        let (a, b) = (model(s, "r1", b"model a"), model(s, "r1", b"model b"));
        let (m08, m09) = ([("auc".to_string(), 0.8)], [("auc".to_string(), 0.9)]);
        let new = |artifact, metrics| NewVersion {
            name: "m",
            artifact,
            run_id: "r1",
            step: "train",
            metrics,
            gates: &[],
            evaluation: None,
        };
        let v1 = s.register_model(&new(&a, &m08), None).unwrap();
        let again = s.register_model(&new(&a, &m09), None).unwrap();
        let v2 = s.register_model(&new(&b, &[]), Some("challenger")).unwrap();
        assert_eq!((v1.version, again.version, v2.version), (1, 1, 2), "{db}");
        assert_eq!(v2.aliases, ["challenger"], "{db}");
        s.set_alias("m", "champion", 1).unwrap();
        s.set_alias("m", "champion", 2).unwrap();
        assert_eq!(s.resolve_model("m", &ModelSelector::Alias("champion".into())).unwrap().artifact, b, "{db}");
        assert!(s.set_alias("m", "champion", 7).is_err(), "{db}");
        let missing = s.resolve_model("nope", &ModelSelector::Latest).unwrap_err().to_string();
        assert!(missing.contains("`nope`") && missing.contains("registered models: m"), "{db}: {missing}");
        assert_eq!(s.model_versions("m").unwrap()[0].metrics, vec![("auc".to_string(), 0.9)], "{db}");
        s.set_tag("m", 2, "owner", "ana").unwrap();
        assert_eq!(s.resolve_model("m", &ModelSelector::Version(2)).unwrap().tags, [("owner".into(), "ana".into())]);
        let listed = s.list_models().unwrap();
        assert_eq!((listed[0].latest_version, listed[0].versions), (2, 2), "{db}");
        assert_eq!(listed[0].aliases, [("challenger".into(), 2), ("champion".into(), 2)], "{db}");

        let alert = |value| AlertRecord {
            id: 0,
            fired_at: now(),
            source: "cli".into(),
            run_id: None,
            rule: "psi(x) > 0.2".into(),
            name: "x-drift".into(),
            value,
            window_start: None,
            since: None,
            message: "drift".into(),
            actions: vec![],
        };
        let first = s.record_alert(&alert(0.3)).unwrap();
        let second = s.record_alert(&alert(0.5)).unwrap();
        assert!(second > first, "{db}");
        let alerts = s.list_alerts(10).unwrap();
        assert_eq!(alerts.iter().map(|a| (a.id, a.value)).collect::<Vec<_>>(), [(second, 0.5), (first, 0.3)]);
    });
}

#[test]
fn postgres_migrates_once_refuses_newer_schemas_and_names_a_server_it_cannot_reach() {
    let scratch = PgScratch::new();
    let store = PostgresStore::open(&scratch.url).unwrap();
    store.begin_run(&run("kept")).unwrap();
    drop(store);
    // Reopening applies nothing twice and keeps the data.
    let again = PostgresStore::open(&scratch.url).unwrap();
    assert_eq!(again.list_runs(10).unwrap().len(), 1);
    drop(again);
    let mut admin = postgres::Client::connect(&scratch.url, postgres::NoTls).unwrap();
    admin.execute("UPDATE sluice_schema SET version = 99", &[]).unwrap();
    let err = PostgresStore::open(&scratch.url).err().unwrap();
    assert!(matches!(err, StoreError::SchemaTooNew { found: 99, .. }), "{err}");

    let err = PostgresStore::open("postgres://ana:secret@127.0.0.1:1/meta").err().unwrap().to_string();
    assert!(err.contains("postgres://ana:***@127.0.0.1:1/meta") && err.contains("cannot connect"), "{err}");
    assert!(!err.contains("secret"), "{err}");
}

#[test]
fn postgres_reaps_only_this_hosts_dead_runs() {
    let scratch = PgScratch::new();
    let store = PostgresStore::open(&scratch.url).unwrap();
    for id in ["dead-here", "elsewhere", "alive"] {
        store.begin_run(&RunRecord { pid: 4_194_305, ..run(id) }).unwrap();
    }
    let mut admin = postgres::Client::connect(&scratch.url, postgres::NoTls).unwrap();
    admin.execute("UPDATE runs SET host = 'another-machine' WHERE id = 'elsewhere'", &[]).unwrap();
    admin.execute("UPDATE runs SET pid = $1 WHERE id = 'alive'", &[&i64::from(std::process::id())]).unwrap();
    assert_eq!(store.reap_dead_runs().unwrap(), 1);
    let status = |id: &str| store.get_run(id).unwrap().run.status;
    assert_eq!(
        (status("dead-here"), status("elsewhere"), status("alive")),
        (RunStatus::Interrupted, RunStatus::Running, RunStatus::Running)
    );
}

#[test]
fn concurrent_writers_on_postgres_never_share_a_version_or_a_trial_number() {
    let scratch = PgScratch::new();
    let setup = PostgresStore::open(&scratch.url).unwrap();
    setup.begin_run(&run("r1")).unwrap();
    let study = empty_study("s");
    let url = Arc::new(scratch.url.clone());
    // Four processes' worth of connections, each registering models and taking trials at once.
    let per_worker: Vec<(Vec<u32>, Vec<u64>)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..4u32)
            .map(|w| {
                let (url, study) = (url.clone(), study.clone());
                s.spawn(move || {
                    let store = PostgresStore::open(&url).unwrap();
                    store.open_study(&study).unwrap();
                    let worker = Worker { host: "h".into(), pid: std::process::id(), run_id: Some(format!("w{w}")) };
                    let (mut versions, mut trials) = (Vec::new(), Vec::new());
                    for i in 0..5 {
                        let artifact = model(&store, "r1", format!("model {w}-{i}").as_bytes());
                        let new = NewVersion {
                            name: "m",
                            artifact: &artifact,
                            run_id: "r1",
                            step: "train",
                            metrics: &[],
                            gates: &[],
                            evaluation: None,
                        };
                        versions.push(store.register_model(&new, Some("latest")).unwrap().version);
                    }
                    while let Some(t) = store.start_trial("s", &worker, Some(30), 600).unwrap() {
                        store.report("s", t.number, 1, t.number as f64).unwrap();
                        store
                            .finish_trial("s", t.number, TrialState::Complete, Some(1.0), &Default::default(), None)
                            .unwrap();
                        trials.push(t.number);
                    }
                    (versions, trials)
                })
            })
            .collect();
        workers.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let versions: BTreeSet<u32> = per_worker.iter().flat_map(|(v, _)| v.iter().copied()).collect();
    assert_eq!(versions, (1..=20).collect(), "20 registrations, 20 distinct versions");
    let mut trials: Vec<u64> = per_worker.iter().flat_map(|(_, t)| t.iter().copied()).collect();
    trials.sort_unstable();
    assert_eq!(trials, (0..30).collect::<Vec<_>>(), "30 trials, each number handed out once");
    let changes = setup.changes_since("s", 0).unwrap();
    assert_eq!(changes.trials.len(), 30);
    assert!(changes.trials.iter().all(|t| t.state == TrialState::Complete));
    assert_eq!(changes.intermediate.len(), 30);
    for (w, (_, numbers)) in per_worker.iter().enumerate() {
        let listed = setup.trials_of_run(&format!("w{w}")).unwrap();
        let mut expected = numbers.clone();
        expected.sort_unstable();
        assert_eq!(listed.iter().map(|(_, t)| t.number).collect::<Vec<_>>(), expected, "worker {w}");
        assert!(listed.iter().all(|(study, t)| study == "s" && t.intermediate == [(1, t.number as f64)]));
    }
}

#[test]
fn a_homes_sqlite_store_reaps_its_dead_runs_whatever_the_hostname_was() {
    // A container gets a new hostname on every restart; its home's runs are still its own.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metadata.db");
    let store = SqliteStore::open(&path).unwrap();
    store.begin_run(&RunRecord { pid: 4_194_305, ..run("before-restart") }).unwrap();
    rusqlite::Connection::open(&path).unwrap().execute("UPDATE runs SET host = 'old-container'", []).unwrap();
    assert_eq!(store.reap_dead_runs().unwrap(), 1);
    assert_eq!(store.get_run("before-restart").unwrap().run.status, RunStatus::Interrupted);
    assert_eq!(store.reap_dead_runs().unwrap(), 0, "a reaped run is not reaped again");
}

/// A trial's writes, as each store makes them (PostgreSQL: one statement each, no transaction
/// around it): params, a step reported twice (the second replaces the first), the outcome, the
/// changes feed from any sequence number, and a write to a study that does not exist refused.
#[test]
fn trial_writes_round_trip_on_sqlite_and_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let scratch = PgScratch::new();
    let sqlite = SqliteStore::open(&dir.path().join("metadata.db")).unwrap();
    let postgres = PostgresStore::open(&scratch.url).unwrap();
    for (name, store) in [("sqlite", &sqlite as &dyn StudyStore), ("postgres", &postgres)] {
        let study = empty_study("s");
        store.open_study(&study).unwrap();
        let worker = Worker { host: "h".into(), pid: std::process::id(), run_id: None };
        let t = store.start_trial("s", &worker, None, 600).unwrap().unwrap();
        let before = store.changes_since("s", 0).unwrap().seq;
        let params = [("x".to_string(), serde_json::json!(0.5))].into();
        store.set_params("s", t.number, &params, &[("k".to_string(), 1.0)].into()).unwrap();
        store.report("s", t.number, 1, 3.0).unwrap();
        store.report("s", t.number, 1, 2.0).unwrap();
        store.report("s", t.number, 2, 1.5).unwrap();
        let metrics = [("auc".to_string(), 0.9)].into();
        store.finish_trial("s", t.number, TrialState::Complete, Some(1.5), &metrics, None).unwrap();
        let all = store.changes_since("s", 0).unwrap();
        assert_eq!(all.seq, before + 5, "{name}: every write takes one sequence number");
        let trial = &all.trials[0];
        assert_eq!(
            (trial.state, trial.value, &trial.params, &trial.metrics),
            (TrialState::Complete, Some(1.5), &params, &metrics),
            "{name}"
        );
        assert_eq!(trial.meta["k"], 1.0, "{name}");
        let mut values = all.intermediate.clone();
        values.sort_by_key(|v| v.1);
        assert_eq!(values, [(t.number, 1, 2.0), (t.number, 2, 1.5)], "{name}");
        // Since the params were set: the trial (changed since) and the values reported after.
        let later = store.changes_since("s", before + 1).unwrap();
        assert_eq!((later.trials.len(), later.intermediate.len()), (1, 2), "{name}");
        assert!(store.changes_since("s", all.seq).unwrap().trials.is_empty(), "{name}");
        for refused in [
            store.set_params("nope", 0, &params, &Default::default()),
            store.report("nope", 0, 1, 1.0),
            store.finish_trial("nope", 0, TrialState::Failed, None, &Default::default(), Some("x")),
        ] {
            assert!(matches!(refused, Err(StoreError::NotFound { what: "study", .. })), "{name}: {refused:?}");
        }
    }
}

/// PostgreSQL's one-statement trial number reads the count in a snapshot taken before it waits
/// for the study row's lock. Another worker's trial committed during that wait: the number it
/// would take is refused by the primary key, and the next one is handed out instead.
#[test]
fn a_trial_number_taken_while_waiting_for_the_lock_is_not_handed_out_again() {
    let scratch = PgScratch::new();
    let store = PostgresStore::open(&scratch.url).unwrap();
    let study = empty_study("s");
    store.open_study(&study).unwrap();
    let worker = Worker { host: "h".into(), pid: std::process::id(), run_id: None };
    assert_eq!(store.start_trial("s", &worker, None, 600).unwrap().unwrap().number, 0);
    // Another worker holds the study row's lock and has inserted trial 1, not yet committed.
    let mut other = postgres::Client::connect(&scratch.url, postgres::NoTls).unwrap();
    let mut tx = other.transaction().unwrap();
    let seq: i64 = tx.query_one("UPDATE studies SET seq = seq + 1 WHERE name = 's' RETURNING seq", &[]).unwrap().get(0);
    tx.execute(
        "INSERT INTO trials (study, number, state, host, pid, started_at, heartbeat_at, seq) \
         VALUES ('s', 1, 'running', 'elsewhere', 1, '9999-01-01', '9999-01-01', $1)",
        &[&seq],
    )
    .unwrap();
    std::thread::scope(|s| {
        let taking = s.spawn(|| store.start_trial("s", &worker, None, 600).unwrap().unwrap().number);
        // Commit once this store's statement waits for the lock (its snapshot already taken).
        let mut watch = postgres::Client::connect(&scratch.url, postgres::NoTls).unwrap();
        let waiting =
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()";
        let t0 = std::time::Instant::now();
        while watch.query_one(waiting, &[]).unwrap().get::<_, i64>(0) == 0 {
            assert!(t0.elapsed().as_secs() < 30, "the store never waited for the lock");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        tx.commit().unwrap();
        assert_eq!(taking.join().unwrap(), 2, "trial 1 is the other worker's");
    });
    let numbers: Vec<u64> = store.changes_since("s", 0).unwrap().trials.iter().map(|t| t.number).collect();
    assert_eq!(numbers, [0, 1, 2]);
}
