//! Cache decisions: what re-runs after a re-run, a `--set`, a `--force` and an edited file.

use std::path::Path;

use crate::support::{ADULT_STEPS, Sandbox, adult_example, object_path, parquet_f64_column, set};

/// `sluice plan SPEC --json ARGS...` as `(step, decision, reason)`, in plan order.
fn plan(sb: &Sandbox, spec: &Path, extra: &[&str]) -> Vec<(String, String, String)> {
    let mut args = vec!["plan", spec.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    let entries = sb.sluice(&args).ok().json();
    entries
        .as_array()
        .expect("plan --json is an array")
        .iter()
        .map(|e| {
            (
                e["step"].as_str().unwrap().to_string(),
                e["decision"].as_str().unwrap().to_string(),
                e["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn decisions(entries: &[(String, String, String)]) -> Vec<(&str, &str)> {
    entries.iter().map(|(s, d, _)| (s.as_str(), d.as_str())).collect()
}

#[test]
fn adult_reruns_sets_and_forces() {
    let sb = Sandbox::new();
    let spec = adult_example().join("pipeline.yaml");
    let all_run: Vec<(&str, &str)> = ADULT_STEPS.iter().map(|s| (*s, "run")).collect();
    let all_cached: Vec<(&str, &str)> = ADULT_STEPS.iter().map(|s| (*s, "cached")).collect();

    // Before any run, every step would run; only the source's key is known yet.
    let before = plan(&sb, &spec, &[]);
    assert_eq!(decisions(&before), all_run);
    assert_eq!(before[0].2, "never run");
    assert!(before[1].2.contains("after `adult` runs"), "{before:?}");

    let first = sb.run_json(&spec, &["--jobs", "1"]);
    first.check_complete(&ADULT_STEPS);
    assert_eq!(first.ran(), set(&ADULT_STEPS));
    assert_eq!(first.steps("step_started"), set(&ADULT_STEPS));
    assert!(first.cached().is_empty());
    assert_eq!(first.finished()["ran"], 6);

    // Afterwards, every step is cached, with the keys the run used.
    let after = plan(&sb, &spec, &[]);
    assert_eq!(decisions(&after), all_cached);
    let keys = sb.sluice(&["plan", spec.to_str().unwrap(), "--json"]).ok().json();
    for (entry, started) in keys.as_array().unwrap().iter().zip(first.of_type("step_started")) {
        assert_eq!(entry["step"], started["step"]);
        assert!(entry["key"].as_str().unwrap().starts_with(started["key"].as_str().unwrap()), "{entry} vs {started}");
    }

    // A second run does nothing.
    let second = sb.run_json(&spec, &["--jobs", "1"]);
    second.check_complete(&ADULT_STEPS);
    assert_eq!(second.cached(), set(&ADULT_STEPS));
    assert_eq!(second.of_type("step_started").count(), 0);
    assert_eq!((second.finished()["ran"].as_u64(), second.finished()["cached"].as_u64()), (Some(0), Some(6)));

    // A training parameter: the data steps stay cached, the model and everything after re-run.
    let planned = plan(&sb, &spec, &["--set", "train.params.l2=0.01"]);
    assert_eq!(
        decisions(&planned),
        [
            ("adult", "cached"),
            ("clean", "cached"),
            ("split", "cached"),
            ("train", "run"),
            ("evaluate", "run"),
            ("register", "run")
        ]
    );
    assert_eq!(planned[3].2, "config changed: `params`");
    let l2 = sb.run_json(&spec, &["--set", "train.params.l2=0.01", "--jobs", "1"]);
    l2.check_complete(&ADULT_STEPS);
    assert_eq!(l2.cached(), set(&["adult", "clean", "split"]));
    assert_eq!(l2.ran(), set(&["train", "evaluate", "register"]));
    assert_ne!(l2.outputs("train"), first.outputs("train"), "a different l2 must give a different model");
    let runs = sb.sluice(&["runs", "show", &l2.run_id(), "--json"]).ok().json();
    assert_eq!(runs["run"]["params"], serde_json::json!([["train.params.l2", "0.01"]]));

    // Forcing `clean` re-runs it; it writes the same bytes, so everything after it stays cached,
    // except `register`: `champion` points at the l2=0.01 model, and this spec's model takes it back.
    assert_eq!(
        decisions(&plan(&sb, &spec, &["--force", "clean"])),
        [
            ("adult", "cached"),
            ("clean", "run"),
            ("split", "run"),
            ("train", "run"),
            ("evaluate", "run"),
            ("register", "run")
        ]
    );
    let forced = sb.run_json(&spec, &["--force", "clean", "--jobs", "1"]);
    forced.check_complete(&ADULT_STEPS);
    assert_eq!(forced.ran(), set(&["clean", "register"]));
    assert_eq!(forced.cached(), set(&["adult", "split", "train", "evaluate"]));
    assert_eq!(forced.outputs("clean"), first.outputs("clean"));

    // An unknown `--force` step is an error that names the closest step.
    let bad = sb.sluice(&["run", spec.to_str().unwrap(), "--force", "claen"]).expect_code(1);
    assert!(bad.stderr.contains("claen") && bad.stderr.contains("`clean`"), "{}", bad.stderr);
}

/// Re-running a step with unchanged inputs writes the same bytes, whatever `--jobs` is: that is
/// what lets `--force clean` leave `split` and later cached.
#[test]
fn forced_step_with_parallel_partitions_reproduces_its_bytes() {
    let sb = Sandbox::new();
    let spec = adult_example().join("pipeline.yaml");
    let first = sb.run_json(&spec, &["--jobs", "4"]);
    let other = Sandbox::new();
    let single = other.run_json(&spec, &["--jobs", "1"]);
    for step in ["adult", "clean", "split", "train", "evaluate"] {
        assert_eq!(single.outputs(step), first.outputs(step), "`{step}` differs between --jobs 1 and 4");
    }
    for _ in 0..4 {
        let forced = sb.run_json(&spec, &["--jobs", "4", "--force", "adult", "--force", "clean"]);
        assert_eq!(forced.outputs("adult"), first.outputs("adult"));
        assert_eq!(forced.outputs("clean"), first.outputs("clean"));
        assert_eq!(forced.cached(), set(&["split", "train", "evaluate", "register"]));
    }
}

/// After a run with a different training config, going back to the original config must move
/// `@champion` back to the original model, even though every step's key is cached.
#[test]

fn returning_to_a_config_moves_the_alias_back() {
    let sb = Sandbox::new();
    let spec = adult_example().join("pipeline.yaml");
    sb.run_json(&spec, &["--jobs", "1"]);
    sb.run_json(&spec, &["--jobs", "1", "--set", "train.params.l2=0.01"]);
    let back = sb.run_json(&spec, &["--jobs", "1"]);
    assert_eq!(back.cached(), set(&["adult", "clean", "split", "train", "evaluate"]));
    assert_eq!(back.ran(), set(&["register"]), "register must run again to move the alias back");
    let again = sb.run_json(&spec, &["--jobs", "1"]);
    assert_eq!(again.cached(), set(&ADULT_STEPS), "once the alias is back, register is cached");
    let models = sb.sluice(&["models", "list", "--json"]).ok().json();
    assert_eq!(models[0]["aliases"], serde_json::json!([["champion", 1]]), "the spec as written trains version 1");
}

const TWO_SOURCES: &str = r#"
name: two-sources
sources:
  a:
    path: a.csv
  b:
    path: b.csv
steps:
  a_sql:
    kind: sql
    inputs: [a]
    query: SELECT id, v * 2 AS v2 FROM a
  b_sql:
    kind: sql
    inputs: [b]
    query: SELECT id, CAST(w AS DOUBLE) + 0.5 AS w1 FROM b
  joined:
    kind: sql
    inputs: [a_sql, b_sql]
    query: SELECT a_sql.id, v2, w1 FROM a_sql JOIN b_sql ON a_sql.id = b_sql.id ORDER BY a_sql.id
"#;

#[test]
fn editing_one_source_file_reruns_only_what_reads_it() {
    let sb = Sandbox::new();
    let dir = sb.path().join("two");
    std::fs::create_dir_all(&dir).unwrap();
    let spec = dir.join("pipeline.yaml");
    std::fs::write(&spec, TWO_SOURCES).unwrap();
    std::fs::write(dir.join("a.csv"), "id,v\n1,10\n2,20\n3,30\n").unwrap();
    std::fs::write(dir.join("b.csv"), "id,w\n1,100\n2,200\n3,300\n").unwrap();
    let steps = ["a", "b", "a_sql", "b_sql", "joined"];

    let first = sb.run_json(&spec, &[]);
    first.check_complete(&steps);
    assert_eq!(first.ran(), set(&steps));
    let again = sb.run_json(&spec, &[]);
    assert_eq!(again.cached(), set(&steps));

    // Same size, one byte different (so neither the size nor the name gives it away).
    let b = std::fs::read_to_string(dir.join("b.csv")).unwrap();
    let edited = b.replace("200", "201");
    assert_eq!(edited.len(), b.len());
    std::fs::write(dir.join("b.csv"), edited).unwrap();

    let planned = plan(&sb, &spec, &[]);
    assert_eq!(
        decisions(&planned),
        [("a", "cached"), ("b", "run"), ("a_sql", "cached"), ("b_sql", "run"), ("joined", "run")]
    );
    assert_eq!(planned[1].2, "input changed: `b.csv`");

    let after = sb.run_json(&spec, &[]);
    after.check_complete(&steps);
    assert_eq!(after.ran(), set(&["b", "b_sql", "joined"]));
    assert_eq!(after.cached(), set(&["a", "a_sql"]));
    assert_ne!(after.outputs("b"), first.outputs("b"));
    assert_ne!(after.outputs("joined"), first.outputs("joined"));

    // The join sees the new value.
    let joined = &after.outputs("joined")[0].1;
    let path = object_path(&sb.home(), joined, "parquet");
    assert_eq!(parquet_f64_column(&path, "w1"), [100.5, 201.5, 300.5]);
}

/// An edit that keeps the file's size and modification time (as `cp -p` or `touch -r` would)
/// still invalidates the source.
#[test]
fn edit_with_preserved_mtime_is_noticed() {
    let sb = Sandbox::new();
    let dir = sb.path().join("mt");
    std::fs::create_dir_all(&dir).unwrap();
    let data = dir.join("d.csv");
    std::fs::write(&data, "a,b\n1,2\n3,4\n").unwrap();
    let old = std::process::Command::new("touch").args(["-d", "2020-01-01", data.to_str().unwrap()]).status().unwrap();
    assert!(old.success());
    std::fs::write(dir.join("pipeline.yaml"), "name: mt\nsources:\n  d: {path: d.csv}\n").unwrap();
    let spec = dir.join("pipeline.yaml");
    let first = sb.run_json(&spec, &[]);
    assert_eq!(first.ran(), set(&["d"]));
    assert_eq!(sb.run_json(&spec, &[]).cached(), set(&["d"]), "the remembered hash is reused");

    std::fs::write(&data, "a,b\n1,2\n3,5\n").unwrap();
    let again =
        std::process::Command::new("touch").args(["-d", "2020-01-01", data.to_str().unwrap()]).status().unwrap();
    assert!(again.success());
    assert_eq!(sb.run_json(&spec, &[]).ran(), set(&["d"]), "same size and mtime, different bytes");
}

/// Several runs on one home at once: registrations wait for each other instead of failing.
#[test]
fn concurrent_runs_share_a_home() {
    let sb = Sandbox::new();
    let dir = sb.path().join("cc");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("d.csv"), "x,y\n1,0\n2,1\n3,0\n4,1\n5,1\n6,0\n").unwrap();
    let mut spec = String::from("name: cc\nsources:\n  d: {path: d.csv}\nsteps:\n");
    for i in 0..6 {
        spec.push_str(&format!(
            "  m{i}: {{kind: train, input: d, model: logistic_regression, label: y, params: {{l2: 0.{i}1}}}}\n  r{i}: {{kind: register, model: m{i}, name: cc, alias: a{i}}}\n"
        ));
    }
    std::fs::write(dir.join("pipeline.yaml"), spec).unwrap();
    let spec = dir.join("pipeline.yaml");
    let children: Vec<_> = (0..4)
        .map(|k| {
            let mut c = sb.command(&["run", spec.to_str().unwrap(), "--jobs", "4", "--force", &format!("r{k}")]);
            c.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped());
            c.spawn().unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let models = sb.sluice(&["models", "show", "cc", "--json"]).ok().json();
    assert_eq!(models.as_array().unwrap().len(), 6, "one version per distinct model: {models}");
}

/// A closed stdout (`sluice run --json | head -1`) does not stop the run or leave it `running`.
#[test]
fn closed_stdout_does_not_break_the_run() {
    use std::io::BufRead;
    let sb = Sandbox::new();
    let spec = adult_example().join("pipeline.yaml");
    let mut child = sb.command(&["run", spec.to_str().unwrap(), "--json"]);
    child.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::null());
    let mut child = child.spawn().unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    assert!(first.contains("run_started"));
    // The reader is dropped here: every later event hits a closed pipe.
    assert!(child.wait().unwrap().success());
    let runs = sb.sluice(&["runs", "list", "--json"]).ok().json();
    assert_eq!(runs[0]["status"], "succeeded");
}
