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
