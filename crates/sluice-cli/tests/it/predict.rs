//! `sluice predict` with the registered model reproduces `evaluate`'s predictions exactly.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::Float64Type;

use crate::support::{Sandbox, adult_example, object_path, parquet_f64_column};

/// The `probability` column of a CSV file with a header, parsed as f64.
fn csv_probabilities(path: &Path) -> Vec<f64> {
    let mut file = std::fs::File::open(path).unwrap();
    let (schema, _) = arrow::csv::reader::Format::default()
        .with_header(true)
        .infer_schema(std::io::BufReader::new(&mut file), None)
        .unwrap();
    let file = std::fs::File::open(path).unwrap();
    let reader = arrow::csv::ReaderBuilder::new(Arc::new(schema)).with_header(true).build(file).unwrap();
    let mut values = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let col = batch.column_by_name("probability").expect("a probability column");
        let col = col.as_primitive_opt::<Float64Type>().unwrap_or_else(|| panic!("probability is {}", col.data_type()));
        assert_eq!(col.null_count(), 0);
        values.extend(col.values().iter().copied());
    }
    values
}

#[test]
fn predict_matches_evaluate_and_names_missing_models() {
    let sb = Sandbox::new();
    let spec = adult_example().join("pipeline.yaml");
    let run_id = sb.run_json(&spec, &[]).run_id();

    // The test split and evaluate's predictions of it, as recorded for the run.
    let show = sb.sluice(&["runs", "show", &run_id, "--json"]).ok().json();
    let output = |step: &str, name: &str| -> String {
        let s = show["steps"].as_array().unwrap().iter().find(|s| s["step"]["step"] == step).unwrap();
        let o = s["outputs"].as_array().unwrap().iter().find(|o| o["name"] == name).unwrap();
        o["artifact"]["hash"].as_str().unwrap().to_string()
    };
    let test = object_path(&sb.home(), &output("split", "test"), "parquet");
    let predictions = object_path(&sb.home(), &output("evaluate", "predictions"), "parquet");
    let expected = parquet_f64_column(&predictions, "probability");
    assert_eq!(expected.len(), 9_768);
    assert!(expected.iter().all(|p| (0.0..=1.0).contains(p)));
    assert!(expected.windows(2).any(|w| w[0] != w[1]), "probabilities should vary");

    let predict = |out: &Path| {
        sb.sluice(&[
            "predict",
            "--model",
            "adult-income@champion",
            "--input",
            test.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ])
        .ok()
    };

    let parquet = sb.path().join("out.parquet");
    let out = predict(&parquet);
    assert!(out.stderr.contains("scored 9768 rows with adult-income:1"), "{}", out.stderr);
    let got = parquet_f64_column(&parquet, "probability");
    assert_eq!(got.len(), expected.len());
    for (row, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(g.to_bits(), e.to_bits(), "row {row}: predict {g} vs evaluate {e}");
    }
    // The input columns are passed through, in order.
    assert_eq!(parquet_f64_column(&parquet, "age"), parquet_f64_column(&test, "age"));

    let csv = sb.path().join("out.csv");
    predict(&csv);
    let got = csv_probabilities(&csv);
    assert_eq!(got.len(), expected.len());
    for (row, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(g.to_bits(), e.to_bits(), "row {row}: predict (CSV) {g} vs evaluate {e}");
    }
    // No temporary files are left next to the outputs.
    let mut names: Vec<String> =
        std::fs::read_dir(sb.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["home", "out.csv", "out.parquet"]);

    // An unknown model: non-zero exit, the name in the message, and no output file.
    let missing = sb.path().join("missing.parquet");
    let out = sb.sluice(&[
        "predict",
        "--model",
        "nosuch@champion",
        "--input",
        test.to_str().unwrap(),
        "--output",
        missing.to_str().unwrap(),
    ]);
    assert_ne!(out.code, Some(0));
    assert!(out.stderr.contains("nosuch@champion"), "{}", out.stderr);
    assert!(out.stderr.contains("adult-income"), "the message should list the registered models: {}", out.stderr);
    assert!(!missing.exists());
}

/// A text column that looks numeric in a scoring file (`01`) must be read as the text the model
/// was trained on: the same row scores the same whatever else the file holds.
#[test]
fn predict_reads_csv_columns_as_the_model_trained_them() {
    let sb = Sandbox::new();
    let dir = sb.path().join("zip");
    std::fs::create_dir_all(&dir).unwrap();
    let mut train = String::from("zip,x,label\n");
    for i in 0..200 {
        let zip = ["01", "02", "x9"][i % 3];
        let label = u8::from(zip == "01" || (i % 7 == 0));
        train.push_str(&format!("{zip},{},{label}\n", i % 10));
    }
    std::fs::write(dir.join("train.csv"), train).unwrap();
    std::fs::write(
        dir.join("pipeline.yaml"),
        "name: zip\nsources:\n  d: {path: train.csv}\nsteps:\n  m: {kind: train, input: d, model: logistic_regression, label: label}\n  r: {kind: register, model: m, name: zip}\n",
    )
    .unwrap();
    sb.run_json(&dir.join("pipeline.yaml"), &[]);
    std::fs::write(dir.join("digits.csv"), "zip,x\n01,3\n").unwrap();
    std::fs::write(dir.join("mixed.csv"), "zip,x\n01,3\nx9,3\n").unwrap();
    let score = |input: &str| {
        let out = dir.join(format!("{input}.out.csv"));
        sb.sluice(&[
            "predict",
            "--model",
            "zip",
            "--input",
            dir.join(input).to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ])
        .ok();
        let text = std::fs::read_to_string(&out).unwrap();
        let row = text.lines().nth(1).unwrap().to_string();
        (row, csv_probabilities(&out)[0])
    };
    let (digits_row, digits_p) = score("digits.csv");
    let (mixed_row, mixed_p) = score("mixed.csv");
    assert_eq!(digits_p, mixed_p, "the same row must score the same");
    assert!(digits_row.starts_with("01,"), "the zip column keeps its text: {digits_row}");
    assert!(mixed_row.starts_with("01,"));
    assert!(digits_p > 0.5, "`01` is the positive zip in training, scored {digits_p}");
}
