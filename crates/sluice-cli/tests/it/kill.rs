//! SIGKILL in the middle of a step, then resume: the stores stay consistent and finished steps
//! are not redone.

use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::process::Stdio;
use std::time::Instant;

use serde_json::Value;

use crate::support::{Events, Sandbox, check_objects_match_their_names, object_path, parquet_f64_column, set};

/// Rows of the slow source: a few seconds of CSV parsing in a debug build.
const BIG_ROWS: u64 = 1_500_000;

// `big` is declared among the steps so that, one step at a time, `small` and `small_sql` finish
// before it starts.
const SPEC: &str = r#"
name: kill-and-resume
sources:
  small:
    path: small.csv
steps:
  small_sql:
    kind: sql
    inputs: [small]
    query: SELECT cat, CAST(w AS DOUBLE) * 10 AS w10 FROM small
  big:
    kind: source
    path: big.csv
  big_sql:
    kind: sql
    inputs: [big]
    query: SELECT cat, CAST(count(*) AS DOUBLE) AS n, sum(x) AS sx FROM big GROUP BY cat
  joined:
    kind: sql
    inputs: [small_sql, big_sql]
    query: SELECT s.cat, w10, n, sx FROM small_sql s JOIN big_sql b ON s.cat = b.cat ORDER BY s.cat
"#;

fn write_big_csv(path: &Path) {
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    w.write_all(b"id,x,y,cat\n").unwrap();
    for i in 0..BIG_ROWS {
        writeln!(w, "{i},{}.5,{},c{}", i / 2, (i * 7919) % 1000, i % 13).unwrap();
    }
    w.flush().unwrap();
}

#[test]
fn sigkill_mid_step_then_resume() {
    let sb = Sandbox::new();
    let dir = sb.path().join("kill");
    std::fs::create_dir_all(&dir).unwrap();
    let spec = dir.join("pipeline.yaml");
    std::fs::write(&spec, SPEC).unwrap();
    std::fs::write(dir.join("small.csv"), "cat,w\nc1,1\nc2,2\nc3,3\n").unwrap();
    write_big_csv(&dir.join("big.csv"));
    let home = sb.home();

    // Run one step at a time and kill as soon as `big` reports rows written: it is then in the
    // middle of writing its Parquet output.
    let mut child = sb
        .command(&["run", spec.to_str().unwrap(), "--json", "--jobs", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sluice");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut seen = Vec::new();
    let t0 = Instant::now();
    let mut line = String::new();
    loop {
        line.clear();
        if stdout.read_line(&mut line).unwrap() == 0 {
            let _ = child.kill();
            panic!("sluice exited before `big` made progress: {seen:#?}");
        }
        let event: Value = serde_json::from_str(&line).unwrap();
        let is_big = event["step"] == "big";
        let kind = event["event"].as_str().unwrap().to_string();
        seen.push(event);
        if is_big && kind == "step_progress" {
            break;
        }
        assert!(
            !(is_big && kind == "step_finished") && kind != "run_finished",
            "`big` finished before it could be killed; make BIG_ROWS larger: {seen:#?}"
        );
    }
    child.kill().expect("SIGKILL sluice");
    let status = child.wait().unwrap(); // reap it, so its pid is gone
    let killed_after = t0.elapsed();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    seen.extend(rest.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()));
    let killed = Events(seen);

    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9), "sluice should have died of SIGKILL: {status:?}");
    assert_eq!(killed.of_type("run_finished").count(), 0, "the run must not have finished: {:#?}", killed.0);
    assert_eq!(killed.ran(), set(&["small", "small_sql"]));
    assert_eq!(killed.steps("step_started"), set(&["small", "small_sql", "big"]));
    let killed_run = killed.run_id();

    // The kill left a half-written scratch file, and nothing partial under a final name.
    let scratch: Vec<_> =
        std::fs::read_dir(home.join("artifacts/tmp")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(
        scratch.iter().any(|n| n.to_string_lossy().ends_with(".parquet.partial")),
        "expected the interrupted write in artifacts/tmp, found {scratch:?}"
    );
    assert_eq!(check_objects_match_their_names(&home), 2, "the outputs of `small` and `small_sql`");

    // The metadata database is intact, and still says the run is running.
    {
        let db = rusqlite::Connection::open(home.join("metadata.db")).unwrap();
        let check: String = db.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
        assert_eq!(check, "ok");
        let status: String =
            db.query_row("SELECT status FROM runs WHERE id = ?1", [&killed_run], |r| r.get(0)).unwrap();
        assert_eq!(status, "running");
    }

    // Resume: what finished before the kill is cached, the rest runs.
    let t1 = Instant::now();
    let resumed = sb.run_json(&spec, &[]);
    let resume_time = t1.elapsed();
    resumed.check_complete(&["small", "small_sql", "big", "big_sql", "joined"]);
    assert_eq!(resumed.cached(), set(&["small", "small_sql"]));
    assert_eq!(resumed.ran(), set(&["big", "big_sql", "joined"]));
    let big = resumed.of_type("step_finished").find(|e| e["step"] == "big").unwrap();
    assert_eq!(big["rows"], BIG_ROWS);
    assert_eq!(check_objects_match_their_names(&home), 5);
    eprintln!("killed after {killed_after:?}; resumed run took {resume_time:?}, `big` {}ms", big["elapsed_ms"]);

    let runs = sb.sluice(&["runs", "list", "--json"]).ok().json();
    let status_of = |id: &str| runs.as_array().unwrap().iter().find(|r| r["id"] == id).map(|r| r["status"].clone());
    assert_eq!(runs.as_array().unwrap().len(), 2, "{runs:#}");
    assert_eq!(status_of(&killed_run), Some("interrupted".into()), "{runs:#}");
    assert_eq!(status_of(&resumed.run_id()), Some("succeeded".into()), "{runs:#}");

    // The result is right: categories c1..c3 of 13, each with its rows counted once.
    let joined = object_path(&home, &resumed.outputs("joined")[0].1, "parquet");
    assert_eq!(parquet_f64_column(&joined, "w10"), [10.0, 20.0, 30.0]);
    let per_category = |k: u64| ((BIG_ROWS - 1 - k) / 13 + 1) as f64;
    assert_eq!(parquet_f64_column(&joined, "n"), [per_category(1), per_category(2), per_category(3)]);
    let db = rusqlite::Connection::open(home.join("metadata.db")).unwrap();
    let check: String = db.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");
}
