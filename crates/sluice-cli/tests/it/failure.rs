//! A step that fails at run time: exit code 1, the step and the cause named, a resume hint,
//! dependents skipped, independent steps finished — and after the fix, completed steps cached.

use crate::support::{Sandbox, set};

const SPEC: &str = r#"
name: failing
sources:
  people:
    path: people.csv
steps:
  adults:
    kind: sql
    inputs: [people]
    query: SELECT name, age FROM people WHERE agee >= 18
  named:
    kind: sql
    inputs: [adults]
    query: SELECT name FROM adults
  counts:
    kind: sql
    inputs: [people]
    query: SELECT count(*) AS n FROM people
"#;

#[test]
fn failing_step_is_named_skips_dependents_and_resumes() {
    let sb = Sandbox::new();
    let dir = sb.path().join("p");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("people.csv"), "name,age\nana,31\nbo,12\ncy,18\n").unwrap();
    let spec = dir.join("pipeline.yaml");
    std::fs::write(&spec, SPEC).unwrap();

    let out = sb.sluice(&["run", spec.to_str().unwrap(), "--jobs", "1"]).expect_code(1);
    assert!(out.stderr.contains("step `adults` failed"), "{}", out.stderr);
    assert!(out.stderr.contains("agee"), "the unknown column is named: {}", out.stderr);
    assert!(out.stderr.contains("hint:") && out.stderr.contains("sluice run"), "{}", out.stderr);

    let events = sb.sluice(&["run", spec.to_str().unwrap(), "--json", "--jobs", "1"]).expect_code(1).events();
    assert_eq!(events.steps("step_failed"), set(&["adults"]));
    assert_eq!(events.steps("step_skipped"), set(&["named"]));
    // `people` and `counts` do not depend on the failure: done in the first run, cached now.
    assert_eq!(events.cached(), set(&["people", "counts"]));
    assert_eq!(events.finished()["status"], "failed");

    std::fs::write(&spec, SPEC.replace("agee", "age")).unwrap();
    let fixed = sb.run_json(&spec, &["--jobs", "1"]);
    assert_eq!(fixed.finished()["status"], "succeeded");
    assert_eq!(fixed.cached(), set(&["people", "counts"]));
    assert_eq!(fixed.ran(), set(&["adults", "named"]));
    let runs = sb.sluice(&["runs", "list", "--json"]).ok().json();
    let statuses: Vec<&str> = runs.as_array().unwrap().iter().map(|r| r["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["succeeded", "failed", "failed"], "newest first");
}

#[test]
fn a_bad_or_unreachable_metadata_store_is_a_clear_error_before_anything_runs() {
    let sb = Sandbox::new();
    std::fs::write(sb.path().join("people.csv"), "name,age\nana,31\n").unwrap();
    std::fs::write(sb.path().join("p.yaml"), SPEC).unwrap();
    for (url, expected) in [
        ("mysql://root:pw@db/x", "`mysql://root:***@db/x`: unknown metadata store (from SLUICE_METADATA)"),
        (
            "postgres://ana:secret@127.0.0.1:1/x",
            "`postgres://ana:***@127.0.0.1:1/x`: cannot connect to the metadata database",
        ),
    ] {
        let out = sb.command(&["run", "p.yaml"]).env("SLUICE_METADATA", url).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
        assert!(!stderr.contains("secret") && !stderr.contains(":pw@"), "passwords are masked: {stderr}");
    }
    assert!(!sb.home().join("metadata.db").exists(), "no SQLite file appears in place of the asked store");
}
