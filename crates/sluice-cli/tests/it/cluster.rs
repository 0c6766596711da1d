//! `sluice cluster`: a Ballista scheduler and two executors as separate processes on 127.0.0.1,
//! running the same pipelines as the local engine and writing the same artifacts.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Events, SLUICE, Sandbox, object_path};

/// A port nothing listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn listening(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_ok()
}

#[track_caller]
fn wait_listening(port: u16, who: &str, child: &mut Child) {
    let t0 = Instant::now();
    while !listening(port) {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("{who} exited with {status} before listening on {port}");
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "{who} did not listen on {port} within 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The scheduler and executors, killed when dropped.
struct Cluster {
    scheduler: Child,
    executors: Vec<Child>,
    port: u16,
}

impl Cluster {
    fn start(dir: &Path, executors: usize) -> Self {
        let port = free_port();
        let log = |name: &str| std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
        let mut scheduler = Command::new(SLUICE)
            .args(["cluster", "scheduler", "--port", &port.to_string(), "--executor-timeout", "5"])
            .stdout(Stdio::null())
            .stderr(log("scheduler"))
            .spawn()
            .unwrap();
        wait_listening(port, "the scheduler", &mut scheduler);
        let mut cluster = Self { scheduler, executors: Vec::new(), port };
        for i in 0..executors {
            let (flight, grpc) = (free_port(), free_port());
            let mut executor = Command::new(SLUICE)
                .args(["cluster", "executor", "--scheduler", &format!("127.0.0.1:{port}")])
                .args(["--flight-port", &flight.to_string(), "--grpc-port", &grpc.to_string()])
                .args(["--slots", "1", "--heartbeat", "1"])
                .arg("--work-dir")
                .arg(dir.join(format!("executor-{i}")))
                // Object-store settings come from the client with each query.
                .env_remove("AWS_ENDPOINT")
                .env_remove("AWS_ENDPOINT_URL")
                .env_remove("AWS_ACCESS_KEY_ID")
                .env_remove("AWS_SECRET_ACCESS_KEY")
                .stdout(Stdio::null())
                .stderr(log(&format!("executor-{i}")))
                .spawn()
                .unwrap();
            wait_listening(flight, "an executor", &mut executor);
            cluster.executors.push(executor);
        }
        cluster
    }

    fn url(&self) -> String {
        format!("ballista://127.0.0.1:{}", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.executors.iter_mut().chain([&mut self.scheduler]) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Every step's outputs (`step/output` → content hash) in one run.
fn outputs(events: &Events) -> BTreeMap<String, String> {
    let mut all = BTreeMap::new();
    for e in events.of_type("step_finished") {
        let step = e["step"].as_str().unwrap();
        for (name, hash) in events.outputs(step) {
            all.insert(format!("{step}/{name}"), hash);
        }
    }
    all
}

/// The two runs wrote the same artifacts, byte for byte: a finished Ballista job hands its result
/// partitions back by partition number, so even outputs of many partitions without `ORDER BY`
/// match the local engine's.
#[track_caller]
fn check_same(local: &Events, remote: &Events) {
    let (expected, found) = (outputs(local), outputs(remote));
    assert_eq!(found, expected, "artifacts differ between the local engine and the cluster");
}

/// One sandbox per engine, so each runs every step (nothing is taken from another's cache).
fn run_on(spec: &Path, engine: &str) -> (Sandbox, Events) {
    let sb = Sandbox::new();
    let events = sb.run_json(spec, &["--engine", engine]);
    (sb, events)
}

/// A pipeline big enough for shuffles: 400k rows in 4 CSV files (split by byte range into the
/// engine's partitions), an aggregate joined back, a window, a filter whose first partition is
/// the slowest, a fit_transform (fitted on the executors, applied in the client's process), and
/// validate steps (with profiles, computed on the executors, and reports) over the aggregate and
/// over the 4-file source itself.
fn write_larger_pipeline(dir: &Path) -> std::path::PathBuf {
    use std::io::Write;
    std::fs::create_dir_all(dir.join("data")).unwrap();
    for part in 0..4 {
        let mut f = std::io::BufWriter::new(std::fs::File::create(dir.join(format!("data/part-{part}.csv"))).unwrap());
        writeln!(f, "id,shop,amount,day").unwrap();
        for i in 0..100_000u64 {
            let id = part * 100_000 + i;
            let h = id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 33;
            writeln!(f, "{id},s{},{}.{:02},{}", h % 997, h % 5000, h % 100, 1 + h % 28).unwrap();
        }
    }
    let spec = dir.join("pipeline.yaml");
    std::fs::write(
        &spec,
        r#"
name: cluster-larger
sources:
  sales: {path: "data/part-*.csv"}
steps:
  shops:
    kind: sql
    inputs: [sales]
    query: |
      SELECT shop, count(*) AS n, sum(amount) AS total, avg(amount) AS mean, max(day) AS last_day
      FROM sales GROUP BY shop ORDER BY shop
  enriched:
    kind: sql
    inputs: [sales, shops]
    query: |
      SELECT s.id, s.shop, s.amount, s.day, t.mean, s.amount - t.mean AS above_mean,
             rank() OVER (PARTITION BY s.shop ORDER BY s.amount DESC, s.id) AS shop_rank
      FROM sales s JOIN shops t ON s.shop = t.shop
      ORDER BY s.id
  slow_first:
    kind: sql
    inputs: [sales]
    # No ORDER BY. Rows of the first file (in the first partition) pay for a costly predicate,
    # so that partition's task finishes last; the result still comes back partition 0 first.
    query: |
      SELECT id, shop, amount FROM sales
      WHERE id >= 100000 OR length(repeat(shop, 4000)) > 0
  scaled:
    kind: fit_transform
    input: sales
    transforms:
      - {op: standardize, columns: [amount]}
      - {op: onehot, columns: [shop], max_categories: 5}
  checked:
    kind: validate
    input: shops
    policy: quarantine
    columns:
      n: {min: 300, max: 500}
      mean: {min: 0, max: 5000, policy: fail}
      last_day: {min: 1, max: 28, policy: warn}
  checked_sales:
    kind: validate
    input: sales
    policy: quarantine
    columns:
      amount: {min: 0, max: 4990}
      day: {min: 1, max: 28}
"#,
    )
    .unwrap();
    spec
}

/// Training on the larger pipeline's data (400k rows, 4 row groups): a logistic regression
/// trained data-parallel (`distributed: true`) and the same model trained in this process, each
/// scored on the same rows.
fn write_training_pipeline(dir: &Path) -> std::path::PathBuf {
    let spec = dir.join("train.yaml");
    std::fs::write(
        &spec,
        r#"
name: cluster-training
sources:
  sales: {path: "data/part-*.csv"}
steps:
  labelled:
    kind: sql
    inputs: [sales]
    # P(label) = amount / 5000, with noise from a hash of the id.
    query: |
      SELECT amount, day, shop, (id * 2654435761) % 1000 < amount / 5 AS label FROM sales
  spread:
    kind: train
    input: labelled
    model: logistic_regression
    label: label
    distributed: true
    preprocessing: {max_categories: 20}
  here:
    kind: train
    input: labelled
    model: logistic_regression
    label: label
    preprocessing: {max_categories: 20}
  spread_amount:
    kind: train
    input: labelled
    model: linear_regression
    label: amount
    features: [day, shop]
    distributed: true
    preprocessing: {max_categories: 20}
  here_amount:
    kind: train
    input: labelled
    model: linear_regression
    label: amount
    features: [day, shop]
    preprocessing: {max_categories: 20}
  score_spread:
    kind: evaluate
    model: spread
    input: labelled
  score_here:
    kind: evaluate
    model: here
    input: labelled
"#,
    )
    .unwrap();
    spec
}

/// The JSON artifact a step wrote.
fn json_output(home: &Path, events: &Events, output: &str) -> serde_json::Value {
    let hash = &outputs(events)[output];
    serde_json::from_str(&std::fs::read_to_string(object_path(home, hash, "json")).unwrap()).unwrap()
}

/// A linear model's weights then intercept, wherever the artifact nests them.
fn coefficients(model: &serde_json::Value) -> Vec<f64> {
    fn find(v: &serde_json::Value) -> Option<&serde_json::Value> {
        match v {
            serde_json::Value::Object(m) if m.contains_key("weights") => Some(v),
            serde_json::Value::Object(m) => m.values().find_map(find),
            _ => None,
        }
    }
    let linear = find(model).expect("a linear model");
    let mut c: Vec<f64> = linear["weights"].as_array().unwrap().iter().map(|w| w.as_f64().unwrap()).collect();
    c.push(linear["intercept"].as_f64().unwrap());
    c
}

/// Coefficients (`expected` of them, with the intercept) within 1e-8 of the largest.
#[track_caller]
fn check_coefficients(spread: &serde_json::Value, here: &serde_json::Value, expected: usize, engine: &str) {
    let (a, b) = (coefficients(spread), coefficients(here));
    assert_eq!((a.len(), b.len()), (expected, expected), "{engine}: {a:?} vs {b:?}");
    let scale = b.iter().fold(1.0f64, |m, c| m.max(c.abs()));
    let diff = a.iter().zip(&b).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max) / scale;
    println!("{engine}: distributed vs in-process coefficients differ by at most {diff:e} (relative)");
    assert!(diff < 1e-8, "{engine}: {a:?} vs {b:?}");
}

/// The model trained by aggregates (`spread`) is the in-process one (`here`) up to rounding:
/// same coefficients and the same metrics on the same rows.
#[track_caller]
fn check_spread_matches_here(home: &Path, events: &Events, engine: &str) {
    let (spread, here) = (json_output(home, events, "spread/model"), json_output(home, events, "here/model"));
    check_coefficients(&spread, &here, 23, engine);
    // Ridge: one exact Newton step on the engine vs the centred solve in-process.
    let (spread_amount, here_amount) =
        (json_output(home, events, "spread_amount/model"), json_output(home, events, "here_amount/model"));
    check_coefficients(&spread_amount, &here_amount, 22, engine);
    // The same one-hot categories; means and scales from the engine's aggregates, to rounding.
    let (ts, th) = (spread["transforms"].as_array().unwrap(), here["transforms"].as_array().unwrap());
    assert_eq!(ts.len(), th.len());
    for (s, h) in ts.iter().zip(th) {
        assert_eq!(s["categories"], h["categories"], "{engine}: {s}");
        for key in ["mean", "scale"] {
            if let (Some(a), Some(b)) = (s[key].as_f64(), h[key].as_f64()) {
                assert!((a - b).abs() <= 1e-12 * b.abs().max(1.0), "{engine}: {key} {a} vs {b}");
            }
        }
    }
    let (ms, mh) = (json_output(home, events, "score_spread/metrics"), json_output(home, events, "score_here/metrics"));
    for (name, value) in mh["metrics"].as_object().unwrap() {
        let other = ms["metrics"][name].as_f64().unwrap();
        assert!((other - value.as_f64().unwrap()).abs() < 1e-9, "{engine}: {name} {other} vs {value}");
    }
    let report = events.of_type("step_report").find(|e| e["step"] == "spread").expect("a report from `spread`");
    assert!(report["text"].as_str().unwrap().contains("trained data-parallel on the engine"), "{report}");
}

/// The Adult quickstart and a larger shuffling pipeline give the same artifacts, byte for byte
/// (same content hashes), on a scheduler with two executors as on the local engine; then an
/// executor killed in the middle of a run either leaves the run to finish on the other one with
/// the same artifacts, or fails it with an error that says so — never a different result.
#[test]
fn pipelines_on_a_ballista_cluster_match_the_local_engine() {
    let dir = Sandbox::new();
    let cluster = Cluster::start(dir.path(), 2);

    let quickstart = dir.copy_adult();
    let (_local_home, local) = run_on(&quickstart, "local");
    let t0 = Instant::now();
    let (_cluster_home, remote) = run_on(&quickstart, &cluster.url());
    println!("quickstart on the cluster: {:.1} s", t0.elapsed().as_secs_f64());
    assert_eq!(outputs(&local).len(), 7, "every step wrote its outputs: {:?}", outputs(&local));
    check_same(&local, &remote);
    for model in ["train/model", "evaluate/metrics"] {
        assert_eq!(outputs(&remote)[model], outputs(&local)[model], "{model}");
    }

    let larger = write_larger_pipeline(&dir.path().join("larger"));
    let (_larger_local_home, larger_local) = run_on(&larger, "local");
    let t0 = Instant::now();
    let (_remote_home, remote) = run_on(&larger, &cluster.url());
    println!("larger pipeline on the cluster: {:.1} s", t0.elapsed().as_secs_f64());
    let expected = outputs(&larger_local);
    assert!(expected.len() >= 9, "{expected:?}");
    check_same(&larger_local, &remote);
    let rows = |e: &Events, step: &str| e.of_type("step_finished").find(|s| s["step"] == step).unwrap()["rows"].clone();
    assert_eq!(rows(&remote, "enriched"), 400_000);
    assert_eq!(rows(&remote, "shops"), 997);

    // Training data-parallel: on the executors as in-process DataFusion, the model matches the
    // one trained in this process.
    let training = write_training_pipeline(&dir.path().join("larger"));
    let (train_local_home, train_local) = run_on(&training, "local");
    check_spread_matches_here(&train_local_home.home(), &train_local, "local engine");
    let t0 = Instant::now();
    let (train_remote_home, train_remote) = run_on(&training, &cluster.url());
    println!("training pipeline on the cluster: {:.1} s", t0.elapsed().as_secs_f64());
    check_spread_matches_here(&train_remote_home.home(), &train_remote, "cluster");
    // Partitions' states are added in a canonical order, and the data splits into the same
    // partitions (one per row group) on both engines: the distributed models are the same bytes.
    check_same(&train_local, &train_remote);
    for output in ["labelled/data", "here/model", "spread/model", "spread_amount/model", "score_spread/metrics"] {
        assert_eq!(outputs(&train_remote)[output], outputs(&train_local)[output], "{output}");
    }

    // An `s3://` source (a real S3-compatible server): the executors read the objects with the
    // settings the client sends, and the artifacts are the local engine's.
    let s3 = crate::object_store::S3::start();
    assert_eq!(s3.http("PUT", "/sluice-test", b"").0, 200);
    for part in 0..2 {
        let mut csv = String::from("id,shop,amount\n");
        for i in 0..20_000 {
            let id = part * 20_000 + i;
            csv.push_str(&format!("{id},s{},{}.{}\n", id % 13, id % 997, id % 7));
        }
        s3.put(&format!("sales/part-{part}.csv"), &csv);
    }
    let s3_spec = dir.path().join("s3.yaml");
    std::fs::write(
        &s3_spec,
        "name: s3-cluster\nsources:\n  sales: {path: 's3://sluice-test/sales/*.csv'}\nsteps:\n  \
         shops:\n    kind: sql\n    inputs: [sales]\n    query: SELECT shop, count(*) AS n, sum(amount) AS total FROM sales GROUP BY shop ORDER BY shop\n  \
         checked:\n    kind: validate\n    input: sales\n    columns:\n      amount: {min: 0, max: 996.5, policy: quarantine}\n",
    )
    .unwrap();
    let run_s3 = |engine: &str| {
        let sb = Sandbox::new();
        let args = ["run", s3_spec.to_str().unwrap(), "--json", "--engine", engine];
        let events = crate::object_store::run_with(&sb, &s3.env(), &args).ok().events();
        (sb, events)
    };
    let (_s3_local_home, s3_local) = run_s3("local");
    let (_s3_remote_home, s3_remote) = run_s3(&cluster.url());
    assert_eq!(rows(&s3_remote, "sales"), 40_000);
    assert_eq!(rows(&s3_remote, "shops"), 13);
    assert!(outputs(&s3_local).contains_key("checked/profile"), "{:?}", outputs(&s3_local));
    check_same(&s3_local, &s3_remote);

    // Kill one executor while the larger pipeline runs.
    let mut cluster = cluster;
    let sb = Sandbox::new();
    let run = sb
        .command(&["run", larger.to_str().unwrap(), "--json", "--engine", &cluster.url()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let mut victim = cluster.executors.remove(1);
    victim.kill().unwrap();
    victim.wait().unwrap();
    let out = run.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let events = crate::support::Output { code: out.status.code(), stdout, stderr: stderr.clone() }.events();
    match out.status.code() {
        Some(0) => {
            println!("the run recovered from the lost executor");
            check_same(&larger_local, &events);
        }
        code => {
            println!("the run failed after the executor was killed: {stderr}");
            assert_eq!(code, Some(1), "{stderr}");
            let failed: Vec<_> = events.of_type("step_failed").collect();
            assert!(!failed.is_empty(), "a failed run names the failed step: {stderr}");
            assert!(stderr.contains("error: step `"), "{stderr}");
            // What did finish is what the local engine wrote.
            for (key, hash) in outputs(&events) {
                assert_eq!(expected.get(&key), Some(&hash), "{key}");
            }
        }
    }
}

/// A scheduler that is not there is a clear error naming the address, before any step runs.
#[test]
fn an_unreachable_scheduler_is_a_clear_error() {
    let sb = Sandbox::new();
    let spec = sb.copy_adult();
    let port = free_port();
    let out = sb.sluice(&["run", spec.to_str().unwrap(), "--engine", &format!("ballista://127.0.0.1:{port}")]);
    assert_ne!(out.code, Some(0));
    assert!(out.stderr.contains(&format!("cannot reach the scheduler at 127.0.0.1:{port}")), "{}", out.stderr);
    assert!(out.stderr.contains("sluice cluster scheduler"), "{}", out.stderr);
    // Checked before the run is recorded: no failed run without steps in the history.
    let runs = sb.sluice(&["runs", "list", "--json"]).ok().json();
    assert_eq!(runs, serde_json::json!([]), "{runs}");

    let out = sb.sluice(&["run", spec.to_str().unwrap(), "--engine", "spark://x:1"]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("expected `local` or `ballista://HOST:PORT`"), "{}", out.stderr);
}
