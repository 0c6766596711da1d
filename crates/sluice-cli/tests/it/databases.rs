//! Database and stream sources against the PostgreSQL, MariaDB and NATS JetStream servers on
//! 127.0.0.1 (see `.ci/run`), and SQLite files.

use std::process::Command;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Date32Type, Float64Type, Int64Type};

use crate::support::{Sandbox, object_path, read_parquet};

/// A table name of this test process's own, so concurrent runs do not collide.
fn table() -> String {
    format!("sluice_it_flights_{}", std::process::id())
}

fn psql(sql: &str) {
    let sql = sql.replace("sluice_it_flights", &table());
    let out = Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-v", "ON_ERROR_STOP=1", "-q", "-c", &sql])
        .output()
        .expect("psql");
    assert!(out.status.success(), "psql: {}", String::from_utf8_lossy(&out.stderr));
}

fn mariadb(sql: &str) {
    let sql = sql.replace("sluice_it_flights", &table());
    let out =
        Command::new("mariadb").args(["-h", "127.0.0.1", "-u", "root", "test", "-e", &sql]).output().expect("mariadb");
    assert!(out.status.success(), "mariadb: {}", String::from_utf8_lossy(&out.stderr));
}

/// The `data` output of `step` in a run, and the column types recorded for it.
fn output(
    sb: &Sandbox,
    events: &crate::support::Events,
    step: &str,
) -> (Vec<arrow::array::RecordBatch>, Vec<(String, String)>) {
    let hash = &events.outputs(step)[0].1;
    let run = sb.sluice(&["runs", "show", &events.run_id(), "--json"]).ok().json();
    let s = run["steps"].as_array().unwrap().iter().find(|s| s["step"]["step"] == step).unwrap().clone();
    let types = s["outputs"][0]["artifact"]["schema"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap().to_string(), c["data_type"].as_str().unwrap().to_string()))
        .collect();
    (read_parquet(&object_path(&sb.home(), hash, "parquet")), types)
}

#[test]
fn postgres_query_with_parameters_types_and_always_fresh_reads() {
    psql(
        "DROP TABLE IF EXISTS sluice_it_flights; \
         CREATE TABLE sluice_it_flights (id int4, carrier text, delay float8, dist int8, price numeric(10,2), \
           ok bool, day date, at timestamp, atz timestamptz, code varchar(3), small int2, ratio float4, u uuid, j jsonb); \
         INSERT INTO sluice_it_flights VALUES \
           (1, 'AA', 5.5, 1000, 12.34, true, '2013-01-02', '2013-01-02 03:04:05.5', '2013-01-02 03:04:05+00', 'JFK', 7, 0.5, \
            'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{\"k\": 1}'), \
           (2, 'UA', NULL, 2000, -0.5, false, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL), \
           (3, 'AA', -3, 300, 100, true, '2013-12-31', '2013-12-31 23:59:59', '2013-12-31 23:59:59+00', 'LGA', 1, 1.5, NULL, NULL);",
    );
    let sb = Sandbox::new();
    std::fs::write(
        sb.path().join("pg.yaml"),
        "name: pg\nsources:\n  flights:\n    kind: database\n    url: postgres://${SLUICE_IT_PG_USER}@127.0.0.1:5432/test\n    \
         query: SELECT * FROM sluice_it_flights WHERE dist >= $1 AND carrier <> $2 ORDER BY id\n    params: ['500', 'XX']\n    batch_rows: 1\n\
         steps:\n  total:\n    kind: sql\n    inputs: [flights]\n    query: SELECT count(*) AS n, sum(dist) AS dist FROM flights\n"
            .replace("sluice_it_flights", &table()),
    )
    .unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec!["run", "pg.yaml", "--json"];
        args.extend_from_slice(extra);
        let out = sb.command(&args).env("SLUICE_IT_PG_USER", "postgres").output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        crate::support::Events(
            String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect(),
        )
    };
    let events = run(&[]);
    let (batches, types) = output(&sb, &events, "flights");
    let expected = [
        ("id", "Int32"),
        ("carrier", "Utf8"),
        ("delay", "Float64"),
        ("dist", "Int64"),
        ("price", "Float64"),
        ("ok", "Boolean"),
        ("day", "Date32"),
        ("at", "Timestamp(µs)"),
        ("atz", "Timestamp(µs, \"UTC\")"),
        ("code", "Utf8"),
        ("small", "Int16"),
        ("ratio", "Float32"),
        ("u", "Utf8"),
        ("j", "Utf8"),
    ];
    let got: Vec<(&str, &str)> = types.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    assert_eq!(got, expected);
    let all = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
    assert_eq!(all.num_rows(), 2, "the WHERE ran in PostgreSQL with the parameters");
    let price = all.column_by_name("price").unwrap().as_primitive::<Float64Type>();
    assert_eq!((price.value(0), price.value(1)), (12.34, -0.5));
    let day = all.column_by_name("day").unwrap().as_primitive::<Date32Type>();
    assert_eq!((day.value(0), day.is_null(1)), (15_707, true), "2013-01-02 is day 15707");
    let at = all.column_by_name("at").unwrap().as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
    assert_eq!(at.value(0), 1_357_095_845_500_000);
    let u = all.column_by_name("u").unwrap().as_string::<i32>();
    assert_eq!(u.value(0), "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
    assert_eq!(all.column_by_name("j").unwrap().as_string::<i32>().value(0), "{\"k\": 1}");

    // A database source reads again every run; what follows is cached when nothing changed.
    let again = run(&[]);
    assert!(
        again.ran().contains("flights") && again.cached().contains("total"),
        "{:?} {:?}",
        again.ran(),
        again.cached()
    );
    psql(
        "INSERT INTO sluice_it_flights VALUES (4, 'DL', 1, 700, 1, true, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
    );
    let changed = run(&[]);
    assert!(changed.ran().contains("total"));
    let (totals, _) = output(&sb, &changed, "total");
    assert_eq!(totals[0].column(0).as_primitive::<Int64Type>().value(0), 3);

    // Errors name the source and the database (password masked).
    std::fs::write(
        sb.path().join("bad.yaml"),
        "name: bad\nsources:\n  flights: {kind: database, url: 'postgres://postgres:hunter2@127.0.0.1:5432/test', query: 'SELECT * FROM no_such_table'}\n",
    )
    .unwrap();
    let out = sb.sluice(&["run", "bad.yaml"]).expect_code(1);
    assert!(
        out.stderr.contains("source `flights`")
            && out.stderr.contains("no_such_table")
            && !out.stderr.contains("hunter2"),
        "{}",
        out.stderr
    );
    let out = sb.sluice(&["run", "pg.yaml"]).expect_code(1);
    assert!(out.stderr.contains("SLUICE_IT_PG_USER"), "unset variable is named: {}", out.stderr);
    psql("DROP TABLE sluice_it_flights");
}

#[test]
fn mariadb_text_and_binary_protocols_agree() {
    mariadb(
        "DROP TABLE IF EXISTS sluice_it_flights; \
         CREATE TABLE sluice_it_flights (id INT, carrier VARCHAR(8), delay DOUBLE, price DECIMAL(10,2), ok BOOLEAN, \
           day DATE, at DATETIME(6), big BIGINT UNSIGNED, blob_col VARBINARY(4)); \
         INSERT INTO sluice_it_flights VALUES \
           (1, 'AA', 5.5, 12.34, true, '2013-01-02', '2013-01-02 03:04:05.5', 7, x'0102'), \
           (2, 'UA', NULL, -0.5, false, NULL, NULL, NULL, NULL), \
           (3, 'AA', -3, 100, true, '2013-12-31', '2013-12-31 23:59:59', 9, NULL);",
    );
    let sb = Sandbox::new();
    std::fs::write(
        sb.path().join("my.yaml"),
        "name: my\nsources:\n  text_protocol: {kind: database, url: 'mariadb://root@127.0.0.1:3306/test', query: 'SELECT * FROM sluice_it_flights WHERE id <> 2 ORDER BY id'}\n  \
         binary_protocol: {kind: database, url: 'mysql://root@127.0.0.1:3306/test', query: 'SELECT * FROM sluice_it_flights WHERE id <> ? ORDER BY id', params: ['2']}\n"
            .replace("sluice_it_flights", &table()),
    )
    .unwrap();
    let events = sb.run_json(&sb.path().join("my.yaml"), &[]);
    let (text, types) = output(&sb, &events, "text_protocol");
    let (binary, binary_types) = output(&sb, &events, "binary_protocol");
    assert_eq!(types, binary_types);
    let got: Vec<&str> = types.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(got, ["Int64", "Utf8", "Float64", "Float64", "Int64", "Date32", "Timestamp(µs)", "Int64", "Binary"]);
    assert_eq!(text, binary, "both protocols read the same values");
    let t = &text[0];
    assert_eq!(t.num_rows(), 2);
    assert_eq!(t.column_by_name("price").unwrap().as_primitive::<Float64Type>().value(0), 12.34);
    assert_eq!(t.column_by_name("day").unwrap().as_primitive::<Date32Type>().value(1), 16_070);
    let at = t.column_by_name("at").unwrap().as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
    assert_eq!(at.value(0), 1_357_095_845_500_000);
    assert_eq!(t.column_by_name("blob_col").unwrap().as_binary::<i32>().value(0), &[1u8, 2]);
    mariadb("DROP TABLE sluice_it_flights");
}

#[test]
fn sqlite_file_relative_to_the_spec() {
    let sb = Sandbox::new();
    let db = rusqlite::Connection::open(sb.path().join("local.db")).unwrap();
    db.execute_batch(
        "CREATE TABLE flights (id INTEGER, carrier TEXT, delay REAL, day DATE);
         INSERT INTO flights VALUES (1, 'AA', 5.5, '2013-01-02'), (2, 'UA', NULL, NULL), (3, 'AA', -3, '2013-12-31');",
    )
    .unwrap();
    drop(db);
    std::fs::write(
        sb.path().join("lite.yaml"),
        "name: lite\nsources:\n  flights: {kind: database, url: 'sqlite://local.db', query: 'SELECT id, carrier, delay, day, delay * 2 AS twice FROM flights WHERE carrier = ?1', params: [AA]}\n",
    )
    .unwrap();
    let events = sb.run_json(&sb.path().join("lite.yaml"), &[]);
    let (batches, types) = output(&sb, &events, "flights");
    let got: Vec<&str> = types.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(got, ["Int64", "Utf8", "Float64", "Date32", "Float64"]);
    let twice = batches[0].column_by_name("twice").unwrap().as_primitive::<Float64Type>();
    assert_eq!(twice.values().to_vec(), vec![11.0, -6.0]);
    std::fs::write(
        sb.path().join("gone.yaml"),
        "name: gone\nsources:\n  flights: {kind: database, url: 'sqlite://missing.db', table: flights}\n",
    )
    .unwrap();
    let out = sb.sluice(&["run", "gone.yaml"]).expect_code(1);
    assert!(out.stderr.contains("source `flights`") && out.stderr.contains("missing.db"), "{}", out.stderr);
}

/// A fresh JetStream stream `name` over `<subject's first token>.>`, holding `messages`
/// published to `subject`.
fn jetstream(rt: &tokio::runtime::Runtime, name: &str, subject: &str, messages: impl Iterator<Item = String>) {
    let prefix = subject.split('.').next().unwrap_or(subject).to_string();
    rt.block_on(async {
        let client = async_nats::connect("nats://127.0.0.1:4222").await.expect("NATS on 127.0.0.1:4222");
        let js = async_nats::jetstream::new(client);
        let _ = js.delete_stream(name).await;
        js.create_stream(async_nats::jetstream::stream::Config {
            name: name.to_string(),
            subjects: vec![format!("{prefix}.>")],
            ..Default::default()
        })
        .await
        .unwrap();
        for body in messages {
            js.publish(subject.to_string(), body.into()).await.unwrap().await.unwrap();
        }
    });
}

fn drop_stream(rt: &tokio::runtime::Runtime, name: &str) {
    rt.block_on(async {
        let client = async_nats::connect("nats://127.0.0.1:4222").await.unwrap();
        let _ = async_nats::jetstream::new(client).delete_stream(name).await;
    });
}

#[test]
fn nats_jetstream_micro_batches_are_acknowledged_only_once_stored() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tag = format!("sluice_it_{}", std::process::id());
    let stream_name = tag.to_uppercase();
    let messages = (0..5).map(|i| format!("{{\"id\": {i}, \"value\": {}, \"tag\": \"t{i}\"}}", i as f64 * 1.5));
    jetstream(&rt, &stream_name, &format!("{tag}.events"), messages);
    let sb = Sandbox::new();
    let spec = format!(
        "name: s\nsources:\n  events: {{kind: stream, nats: 'nats://127.0.0.1:4222', stream: {stream_name}, subject: '{tag}.>', consumer: sluice-it, max_messages: 3, max_wait: 500ms}}\n"
    );
    std::fs::write(sb.path().join("s.yaml"), spec).unwrap();
    let ids = |events: &crate::support::Events| -> Vec<i64> {
        let (batches, _) = output(&sb, events, "events");
        batches
            .iter()
            .flat_map(|b| b.column_by_name("id").unwrap().as_primitive::<Int64Type>().values().to_vec())
            .collect()
    };
    let first = sb.run_json(&sb.path().join("s.yaml"), &[]);
    assert_eq!(ids(&first), vec![0, 1, 2], "at most max_messages per run");

    // Storing fails (the object folder is a file): the messages are given back, not lost.
    let objects = sb.home().join("artifacts/objects");
    std::fs::rename(&objects, sb.home().join("objects.away")).unwrap();
    std::fs::write(&objects, "in the way").unwrap();
    sb.sluice(&["run", "s.yaml"]).expect_code(1);
    std::fs::remove_file(&objects).unwrap();
    std::fs::rename(sb.home().join("objects.away"), &objects).unwrap();
    let second = sb.run_json(&sb.path().join("s.yaml"), &[]);
    assert_eq!(ids(&second), vec![3, 4], "the failed batch came back");
    let third = sb.run_json(&sb.path().join("s.yaml"), &[]);
    let (empty, _) = output(&sb, &third, "events");
    assert_eq!(empty.iter().map(|b| b.num_rows()).sum::<usize>(), 0, "everything was acknowledged once");
    drop_stream(&rt, &stream_name);
}

/// Online learning from a stream: each run takes the next micro-batch from NATS JetStream and an
/// FTRL model continues from the version registered last (`warm_start`), so the registered model
/// has seen every batch once without retraining on old ones.
#[test]
fn ftrl_learns_online_from_nats_micro_batches() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tag = format!("sluice_online_{}", std::process::id());
    let stream_name = tag.to_uppercase();
    // label = [x1 - 0.5 x2 + noise > 0], from a fixed sequence.
    let mut state = 12345u64;
    let mut uniform = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    };
    let messages = (0..900).map(|i| {
        let (x1, x2, noise) = (uniform(), uniform(), uniform() * 0.3);
        let label = x1 - 0.5 * x2 + noise > 0.0;
        format!("{{\"id\": {i}, \"x1\": {x1}, \"x2\": {x2}, \"label\": {label}}}")
    });
    jetstream(&rt, &stream_name, &format!("{tag}.rows"), messages);
    let sb = Sandbox::new();
    let spec = format!(
        "name: online\n\
         sources:\n  events: {{kind: stream, nats: 'nats://127.0.0.1:4222', stream: {stream_name}, subject: '{tag}.>', consumer: online, max_messages: 300, max_wait: 500ms}}\n\
         steps:\n\
         \x20 learn: {{kind: train, input: events, model: ftrl, label: label, exclude: [id], warm_start: online-model@live, params: {{alpha: 0.5}}}}\n\
         \x20 score: {{kind: evaluate, model: learn, input: events}}\n\
         \x20 publish: {{kind: register, model: learn, metrics: score.metrics, name: online-model, alias: live}}\n"
    );
    std::fs::write(sb.path().join("online.yaml"), spec).unwrap();
    let model_rows = |sb: &Sandbox| -> (u64, Vec<f64>) {
        let a = sb.model_artifact("online-model@live");
        let weights = a["model"]["weights"].as_array().unwrap().iter().map(|w| w.as_f64().unwrap()).collect();
        (a["training"]["rows"].as_u64().unwrap(), weights)
    };
    let mut seen = Vec::new();
    for run in 1..=3u64 {
        let events = sb.run_json(&sb.path().join("online.yaml"), &[]);
        events.check_complete(&["learn", "score", "publish"]);
        let show = sb.sluice(&["runs", "show", &events.run_id(), "--json"]).ok().json();
        let auc = show["metrics"].as_array().unwrap().iter().find(|m| m["key"] == "roc_auc").unwrap()["value"]
            .as_f64()
            .unwrap();
        let (rows, weights) = model_rows(&sb);
        println!("run {run}: model has seen {rows} rows, batch AUC {auc:.4}, weights {weights:?}");
        assert_eq!(rows, 300 * run, "run {run}: each batch once, on top of the registered model");
        assert!(auc > 0.85, "run {run}: AUC {auc}");
        seen.push(weights);
    }
    assert!(seen[0] != seen[1] && seen[1] != seen[2], "every batch moved the weights");
    // The stream is drained: the next batch is empty, the run fails saying so, and the
    // registered model and its versions stay as they were.
    let out = sb.sluice(&["run", "online.yaml"]).expect_code(1);
    assert!(
        out.stderr.contains(
            "step `learn` failed: input `events` has no rows: nothing to train on; `online-model@live` stays"
        ),
        "{}",
        out.stderr
    );
    assert_eq!(model_rows(&sb), (900, seen[2].clone()));
    // x1 pushes towards the positive class, x2 away from it.
    assert!(seen[2][0] > 0.0 && seen[2][1] < 0.0, "{:?}", seen[2]);
    let versions = sb.sluice(&["models", "show", "online-model", "--json"]).ok().json();
    assert_eq!(versions.as_array().unwrap().len(), 3, "a version per batch, none for the empty one");
    // Only models that can continue take `warm_start`.
    let spec = std::fs::read_to_string(sb.path().join("online.yaml")).unwrap();
    std::fs::write(
        sb.path().join("bad.yaml"),
        spec.replace("model: ftrl", "model: logistic_regression").replace(", params: {alpha: 0.5}", ""),
    )
    .unwrap();
    let out = sb.sluice(&["run", "bad.yaml"]).expect_code(2);
    assert!(out.stderr.contains("warm_start") && out.stderr.contains("ftrl"), "{}", out.stderr);
    drop_stream(&rt, &stream_name);
}
