//! Reading sources: several files with different inferred types, and tab-separated files.

use crate::support::{Sandbox, set};

#[test]
fn multi_file_csv_types_are_widened_over_all_files() {
    let sb = Sandbox::new();
    let dir = sb.path().join("m");
    std::fs::create_dir_all(&dir).unwrap();
    // `code` looks numeric in the first file only; `x` is integer in one file, float in the other.
    let first: String = "code,x\n".to_string() + &(0..12_000).map(|i| format!("{i},{i}\n")).collect::<String>();
    std::fs::write(dir.join("a.csv"), first).unwrap();
    std::fs::write(dir.join("b.csv"), "code,x\nA7,1.5\n").unwrap();
    std::fs::write(
        dir.join("pipeline.yaml"),
        "name: m\nsources:\n  raw: {path: '*.csv'}\nsteps:\n  typed:\n    kind: sql\n    inputs: [raw]\n    query: SELECT arrow_typeof(code) AS c, arrow_typeof(x) AS t, count(*) AS n FROM raw GROUP BY 1, 2\n",
    )
    .unwrap();
    let events = sb.run_json(&dir.join("pipeline.yaml"), &[]);
    assert_eq!(events.ran(), set(&["raw", "typed"]));
    let run = sb.sluice(&["runs", "show", &events.run_id(), "--json"]).ok().json();
    let schema = &run["steps"][0]["outputs"][0]["artifact"]["schema"];
    assert_eq!(schema[0]["name"], "code");
    assert_eq!(schema[0]["data_type"], "Utf8", "text in any file makes the column text: {schema}");
    assert_eq!(schema[1]["data_type"], "Float64", "{schema}");
    assert_eq!(run["steps"][0]["outputs"][0]["artifact"]["rows"], 12_001);
}

#[test]
fn tsv_files_default_to_tab_delimiters() {
    let sb = Sandbox::new();
    let dir = sb.path().join("t");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("d.tsv"), "a\tb\n1\t2\n3\t4\n").unwrap();
    std::fs::write(dir.join("pipeline.yaml"), "name: t\nsources:\n  d: {path: d.tsv}\n").unwrap();
    let events = sb.run_json(&dir.join("pipeline.yaml"), &[]);
    let run = sb.sluice(&["runs", "show", &events.run_id(), "--json"]).ok().json();
    let schema = &run["steps"][0]["outputs"][0]["artifact"]["schema"];
    assert_eq!(schema.as_array().unwrap().len(), 2, "two columns, not one named `a\\tb`: {schema}");
    assert_eq!(schema[1]["name"], "b");
}

#[test]
fn hive_partitioned_directory_of_arrow_ipc_files() {
    use std::sync::Arc;

    use arrow::array::{Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};

    let sb = Sandbox::new();
    let dir = sb.path().join("h");
    let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
    for (part, values) in [
        ("year=2023/region=eu", vec![1, 2]),
        ("year=2024/region=us", vec![3, 4, 5]),
        ("year=2024/region=__HIVE_DEFAULT_PARTITION__", vec![6]),
    ] {
        let folder = dir.join("lake").join(part);
        std::fs::create_dir_all(&folder).unwrap();
        let file = std::fs::File::create(folder.join("part-0.arrow")).unwrap();
        let mut w = arrow::ipc::writer::FileWriter::try_new(file, &schema).unwrap();
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(values))]).unwrap();
        w.write(&batch).unwrap();
        w.finish().unwrap();
    }
    // Markers that writers leave next to the data are not data.
    std::fs::write(dir.join("lake/_SUCCESS"), "").unwrap();
    std::fs::write(dir.join("lake/year=2023/.part-0.arrow.crc"), "x").unwrap();
    std::fs::write(
        dir.join("pipeline.yaml"),
        "name: h\nsources:\n  lake: {path: lake, format: arrow}\nsteps:\n  by_part:\n    kind: sql\n    inputs: [lake]\n    query: SELECT year, coalesce(region, '?') AS region, count(*) AS n, sum(x) AS total FROM lake GROUP BY 1, 2 ORDER BY 1, 2\n",
    )
    .unwrap();
    let events = sb.run_json(&dir.join("pipeline.yaml"), &[]);
    let run = sb.sluice(&["runs", "show", &events.run_id(), "--json"]).ok().json();
    let schema = &run["steps"][0]["outputs"][0]["artifact"]["schema"];
    let columns: Vec<(String, String)> = schema
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap().to_string(), c["data_type"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(
        columns,
        vec![("x".into(), "Int64".into()), ("year".into(), "Int64".into()), ("region".into(), "Utf8".into())]
    );
    assert_eq!(run["steps"][0]["outputs"][0]["artifact"]["rows"], 6);
    let out = crate::support::object_path(&sb.home(), &events.outputs("by_part")[0].1, "parquet");
    let totals = crate::support::parquet_f64_column(&out, "total");
    assert_eq!(totals, vec![3.0, 6.0, 12.0], "2023/eu, 2024/? (the default partition), 2024/us");
}

/// examples/nycflights: three CSV sources (with `NA` for missing values) joined in one SQL step
/// with window features, validated, split by time, trained and evaluated. The data comes from
/// scripts/fetch-nycflights.sh (run by scripts/setup.sh).
#[test]
fn nycflights_example_joins_three_sources_and_trains() {
    let example = crate::support::adult_example().parent().unwrap().join("nycflights");
    assert!(example.join("data/flights.csv").exists(), "run scripts/fetch-nycflights.sh (scripts/setup.sh does)");
    let sb = Sandbox::new();
    let events = sb.run_json(&example.join("pipeline.yaml"), &[]);
    let finished = |step: &str| events.of_type("step_finished").find(|e| e["step"] == step).unwrap().clone();
    assert_eq!(finished("flights")["rows"], 336_776);
    assert_eq!(finished("features")["rows"], 327_346, "flights with an arrival delay, one row each after the joins");
    let run = sb.sluice(&["runs", "show", &events.run_id(), "--json"]).ok().json();
    let metric =
        |k: &str| run["metrics"].as_array().unwrap().iter().find(|m| m["key"] == k).unwrap()["value"].as_f64().unwrap();
    let auc = metric("roc_auc");
    println!("nycflights late-arrival test AUC {auc:.4}");
    assert!(auc > 0.85, "{auc}");
    let features = run["steps"].as_array().unwrap().iter().find(|s| s["step"]["step"] == "features").unwrap();
    let schema = features["outputs"][0]["artifact"]["schema"].to_string();
    for (name, ty) in [("temp", "Float64"), ("seats", "Int64"), ("origin_recent_delay", "Float64"), ("late", "Boolean")]
    {
        assert!(schema.contains(&format!("\"name\":\"{name}\",\"data_type\":\"{ty}\"")), "{name}: {schema}");
    }
    let again = sb.run_json(&example.join("pipeline.yaml"), &[]);
    assert!(again.ran().is_empty(), "re-run is fully cached: {:?}", again.ran());
}

/// Sorts spill to disk under `SLUICE_MEMORY_LIMIT`: ~90 MB of rows sorted within 64 MB, and the
/// limit is real (1 MB is too little even to merge spill files, and says so). (Within 32 MB the
/// merge's own reservation could find the pool used up when the test ran among others.)
#[test]
fn sorts_spill_to_disk_under_a_memory_limit() {
    let sb = Sandbox::new();
    let dir = sb.path().join("spill");
    std::fs::create_dir_all(&dir).unwrap();
    let mut csv = String::with_capacity(80 << 20);
    csv.push_str("id,key,tag\n");
    for i in 0..1_500_000u64 {
        csv.push_str(&format!("{i},{},{:040}\n", (i * 7919 % 1_500_007) as f64 / 3.0, i * 31 % 999_983));
    }
    std::fs::write(dir.join("big.csv"), csv).unwrap();
    std::fs::write(
        dir.join("p.yaml"),
        "name: spill\nsources:\n  big: {path: big.csv}\nsteps:\n  sorted:\n    kind: sql\n    inputs: [big]\n    query: SELECT * FROM big ORDER BY key DESC\n",
    )
    .unwrap();
    let run = |limit: &str| {
        sb.command(&["run", dir.join("p.yaml").to_str().unwrap(), "--jobs", "1", "--json"])
            .env("SLUICE_MEMORY_LIMIT", limit)
            .output()
            .unwrap()
    };
    let tight = run("1M");
    assert!(!tight.status.success());
    let stderr = String::from_utf8_lossy(&tight.stderr);
    assert!(stderr.contains("memory"), "{stderr}");
    let out = run("64M");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let events = crate::support::Events(
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect(),
    );
    let sorted = crate::support::object_path(&sb.home(), &events.outputs("sorted")[0].1, "parquet");
    let keys = crate::support::parquet_f64_column(&sorted, "key");
    assert_eq!(keys.len(), 1_500_000);
    assert!(keys.windows(2).all(|w| w[0] >= w[1]), "sorted descending");
}
