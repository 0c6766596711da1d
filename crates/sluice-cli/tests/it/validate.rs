//! The validate step and `sluice data`: expectations inferred from clean data, then checked on
//! dirty data with quarantine, warn and fail policies; reports, profiles, and clear errors.

use std::path::{Path, PathBuf};

use arrow::array::AsArray;
use serde_json::Value;

use crate::support::{Sandbox, object_path, read_parquet};

/// 1,000 people; `dirty` breaks four rows: id 10 too young, id 20 an unknown city, id 30 a bad
/// email, id 40 no age.
fn people(dirty: bool) -> String {
    let mut s = String::from("id,age,city,email\n");
    for i in 0..1000 {
        let mut age = (20 + i % 50).to_string();
        let mut city = ["Paris", "Lyon", "Nice"][i % 3].to_string();
        let mut email = format!("u{i}@example.org");
        if dirty {
            match i {
                10 => age = "-5".into(),
                20 => city = "Atlantis".into(),
                30 => email = "nope".into(),
                40 => age = String::new(),
                _ => {}
            }
        }
        s.push_str(&format!("{i},{age},{city},{email}\n"));
    }
    s
}

fn setup(sb: &Sandbox, step: &str) -> PathBuf {
    let dir = sb.path().join("v");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("clean.csv"), people(false)).unwrap();
    std::fs::write(dir.join("people.csv"), people(true)).unwrap();
    let inferred = sb.sluice(&["data", "infer-schema", dir.join("clean.csv").to_str().unwrap()]).ok();
    std::fs::write(dir.join("expectations.yaml"), &inferred.stdout).unwrap();
    let spec = format!("name: v\nsources:\n  people: {{path: people.csv}}\nsteps:\n{step}");
    std::fs::write(dir.join("pipeline.yaml"), spec).unwrap();
    dir.join("pipeline.yaml")
}

fn read_json(home: &Path, hash: &str) -> Value {
    serde_json::from_slice(&std::fs::read(object_path(home, hash, "json")).unwrap()).unwrap()
}

#[test]
fn inferred_expectations_describe_the_clean_data() {
    let sb = Sandbox::new();
    setup(&sb, "");
    let text = std::fs::read_to_string(sb.path().join("v/expectations.yaml")).unwrap();
    for line in [
        "  id:\n    type: \"integer\"\n    nullable: false\n    min: 0.0\n    max: 999.0\n    unique: true",
        "  age:\n    type: \"integer\"\n    nullable: false\n    min: 20.0\n    max: 69.0",
        "  city:\n    type: \"string\"\n    nullable: false\n    allowed: [\"Lyon\", \"Nice\", \"Paris\"]",
        "  email:\n    type: \"string\"\n    nullable: false\n    unique: true",
        "dataset:\n  row_count:\n    min: 1",
    ] {
        assert!(text.contains(line), "expected\n{line}\nin\n{text}");
    }
    let profile =
        sb.sluice(&["data", "profile", "--json", sb.path().join("v/people.csv").to_str().unwrap()]).ok().json();
    assert_eq!(profile["rows"], 1000);
    let age = &profile["columns"][1];
    assert_eq!(
        (age["name"].as_str(), age["nulls"].as_u64(), age["numeric"]["min"].as_f64()),
        (Some("age"), Some(1), Some(-5.0))
    );
    assert_eq!(profile["columns"][2]["distinct"], 4);
    let table = sb.sluice(&["data", "profile", sb.path().join("v/people.csv").to_str().unwrap()]).ok().stdout;
    assert!(table.contains("1000 rows") && table.contains("Paris (334), Lyon (333), Nice (332)"), "{table}");
}

const QUARANTINE_STEP: &str = r#"  check:
    kind: validate
    input: people
    expectations: expectations.yaml
    policy: quarantine
    columns:
      email: {regex: '^[^@]+@[^@]+$', policy: warn}
    rows:
      - {name: plausible_age, check: "age < 120"}
    dataset:
      row_count: {min: 900}
"#;

#[test]
fn quarantine_moves_bad_rows_with_reasons_and_profiles_the_rest() {
    let sb = Sandbox::new();
    let spec = setup(&sb, QUARANTINE_STEP);
    let events = sb.run_json(&spec, &[]);
    let outputs: std::collections::HashMap<String, String> = events.outputs("check").into_iter().collect();
    let home = sb.home();

    // Rows that failed a quarantine check moved out, each with the checks it failed.
    let bad = read_parquet(&object_path(&home, &outputs["quarantine"], "parquet"));
    let reasons: Vec<(i64, String)> = bad
        .iter()
        .flat_map(|b| {
            let ids = b.column_by_name("id").unwrap().as_primitive::<arrow::datatypes::Int64Type>().clone();
            let why = b.column_by_name("_failed_checks").unwrap().as_string::<i32>().clone();
            (0..b.num_rows()).map(move |i| (ids.value(i), why.value(i).to_string()))
        })
        .collect();
    assert_eq!(
        reasons,
        vec![(10, "age.min".into()), (20, "city.allowed".into()), (40, "age.nullable".into())],
        "id 30 only fails a `warn` check and stays"
    );
    let good = read_parquet(&object_path(&home, &outputs["data"], "parquet"));
    assert_eq!(good.iter().map(|b| b.num_rows()).sum::<usize>(), 997);
    assert!(good[0].schema().column_with_name("_failed_checks").is_none());

    let report = read_json(&home, &outputs["report"]);
    assert_eq!(
        (report["rows_in"].as_u64(), report["rows_out"].as_u64(), report["rows_quarantined"].as_u64()),
        (Some(1000), Some(997), Some(3))
    );
    assert_eq!(report["passed"], true);
    let check = |name: &str| {
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no check {name} in {report}"))
    };
    let email = check("email.regex");
    assert_eq!((email["status"].as_str(), email["failing"].as_u64()), (Some("warned"), Some(1)));
    assert_eq!(email["samples"][0]["id"], "30");
    assert_eq!(email["samples"][0]["email"], "nope");
    assert_eq!(check("age.min")["status"], "quarantined");
    assert_eq!(check("plausible_age")["status"], "passed");
    assert_eq!(check("id.unique")["status"], "passed");
    assert_eq!(check("dataset.row_count")["observed"], "997 rows");

    // The profile describes the rows that flow on.
    let profile = read_json(&home, &outputs["profile"]);
    assert_eq!(profile["rows"], 997);
    assert_eq!(profile["columns"][1]["nulls"], 0);
    assert_eq!(profile["columns"][1]["numeric"]["min"], 20.0);

    // People see the summary; the run records the counts.
    let report_event = events.of_type("step_report").next().unwrap();
    let text = report_event["text"].as_str().unwrap();
    assert!(text.contains("1000 rows in, 997 flow on, 3 quarantined") && text.contains("email.regex"), "{text}");
    let run = sb.sluice(&["runs", "show", &events.run_id(), "--json"]).ok().json();
    assert!(run["metrics"].to_string().contains("rows_quarantined"), "{}", run["metrics"]);

    // Downstream steps read the clean rows.
    let spec_text = std::fs::read_to_string(&spec).unwrap()
        + "  count:\n    kind: sql\n    inputs: [check]\n    query: SELECT count(*) AS n, min(age) AS youngest FROM \"check\"\n";
    std::fs::write(&spec, spec_text).unwrap();
    let events = sb.run_json(&spec, &[]);
    assert!(events.cached().contains("check"));
    let n = read_parquet(&object_path(&home, &events.outputs("count")[0].1, "parquet"));
    assert_eq!(n[0].column(0).as_primitive::<arrow::datatypes::Int64Type>().value(0), 997);
}

#[test]
fn failing_checks_stop_the_step_with_the_report_and_store_nothing() {
    let sb = Sandbox::new();
    let spec = setup(&sb, "  check: {kind: validate, input: people, expectations: expectations.yaml}\n");
    let out = sb.sluice(&["run", spec.to_str().unwrap()]).expect_code(1);
    for needle in [
        "failed validation",
        "age.min",
        "FAILED",
        "1 rows",
        "city.allowed",
        "\"city\":\"Atlantis\"",
        "13 of 16 checks passed",
    ] {
        assert!(out.stderr.contains(needle), "`{needle}` missing from\n{}", out.stderr);
    }
    // Only the source's dataset was stored.
    let objects = crate::support::object_files(&sb.home());
    assert_eq!(objects.len(), 1, "{objects:?}");
}

#[test]
fn unknown_columns_bad_sql_and_bad_settings_are_clear_errors() {
    let sb = Sandbox::new();
    let spec = setup(&sb, "  check:\n    kind: validate\n    input: people\n    columns:\n      agee: {min: 0}\n");
    let out = sb.sluice(&["run", spec.to_str().unwrap()]).expect_code(1);
    assert!(out.stderr.contains("column `agee`") && out.stderr.contains("did you mean `age`"), "{}", out.stderr);

    let spec = setup(
        &sb,
        "  check:\n    kind: validate\n    input: people\n    rows:\n      - {name: broken, check: \"nosuch > 1\"}\n",
    );
    let out = sb.sluice(&["run", spec.to_str().unwrap()]).expect_code(1);
    assert!(out.stderr.contains("check `broken`") && out.stderr.contains("nosuch"), "{}", out.stderr);

    let spec = setup(
        &sb,
        "  check:\n    kind: validate\n    input: people\n    policy: quarantine\n    dataset:\n      freshness: {column: age, max_age: 2 days}\n",
    );
    let out = sb.sluice(&["plan", spec.to_str().unwrap()]).expect_code(2);
    assert!(out.stderr.contains("max_age") && out.stderr.contains("2 days"), "{}", out.stderr);

    let spec = setup(&sb, "  check: {kind: validate, input: people, expectations: missing.yaml}\n");
    let out = sb.sluice(&["plan", spec.to_str().unwrap()]).expect_code(2);
    assert!(
        out.stderr.contains("cannot read expectations file") && out.stderr.contains("missing.yaml"),
        "{}",
        out.stderr
    );
}

#[test]
fn freshness_and_null_fraction_are_dataset_checks() {
    let sb = Sandbox::new();
    let dir = sb.path().join("f");
    std::fs::create_dir_all(&dir).unwrap();
    let mut csv = String::from("ts,v\n");
    for i in 0..100 {
        let v = if i % 4 == 0 { String::new() } else { i.to_string() };
        csv.push_str(&format!("2013-01-0{}T10:00:00Z,{v}\n", 1 + i % 9));
    }
    std::fs::write(dir.join("d.csv"), csv).unwrap();
    let spec = "name: f\nsources:\n  d: {path: d.csv}\nsteps:\n  check:\n    kind: validate\n    input: d\n    \
                columns:\n      v: {max_null_fraction: 0.3}\n    dataset:\n      freshness: {column: ts, max_age: 7d, policy: warn}\n";
    std::fs::write(dir.join("p.yaml"), spec).unwrap();
    let events = sb.run_json(&dir.join("p.yaml"), &[]);
    let report: Value = serde_json::from_slice(
        &std::fs::read(object_path(
            &sb.home(),
            &events.outputs("check").iter().find(|(n, _)| n == "report").unwrap().1,
            "json",
        ))
        .unwrap(),
    )
    .unwrap();
    let check = |name: &str| report["checks"].as_array().unwrap().iter().find(|c| c["check"] == name).unwrap().clone();
    assert_eq!(check("v.max_null_fraction")["status"], "passed");
    assert_eq!(check("v.max_null_fraction")["observed"], "25.00% missing");
    let fresh = check("dataset.freshness");
    assert_eq!(fresh["status"], "warned", "{fresh}");
    assert!(fresh["observed"].as_str().unwrap().starts_with("newest is "), "{fresh}");
    // The same checks with `fail` stop the step.
    std::fs::write(dir.join("p.yaml"), spec.replace("policy: warn", "policy: fail").replace("0.3", "0.2")).unwrap();
    let out = sb.sluice(&["run", dir.join("p.yaml").to_str().unwrap()]).expect_code(1);
    assert!(out.stderr.contains("dataset.freshness") && out.stderr.contains("v.max_null_fraction"), "{}", out.stderr);
}
