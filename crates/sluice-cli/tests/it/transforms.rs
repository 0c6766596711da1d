//! Feature engineering in a train step: fitted on the training split, shipped in the model, and
//! applied by `sluice predict` and `sluice serve` to raw rows with the same results.

use serde_json::json;

use crate::support::{Sandbox, object_path, parquet_f64_column};

const TRANSFORMS: &str = r#"    transforms:
      - {op: impute, columns: [workclass, occupation, native_country], strategy: constant, value: missing}
      - {op: log1p, columns: [capital_gain, capital_loss]}
      - {op: bucketize, columns: [age], quantiles: 8}
      - {op: onehot, columns: [age]}
      - {op: target, columns: [native_country], folds: 5, smoothing: 20}
      - {op: cross, columns: [sex, race]}
      - {op: frequency, columns: [occupation]}
      - {op: clip, columns: [hours_per_week], min: 10, max: 80}
"#;

#[test]
fn transforms_ship_in_the_model_and_predict_and_serve_agree() {
    let sb = Sandbox::new();
    let spec_path = sb.copy_adult();
    let spec = std::fs::read_to_string(&spec_path).unwrap();
    let spec = spec.replace("    label: label\n", &format!("    label: label\n{TRANSFORMS}"));
    assert!(spec.contains("op: target"), "the train step got the transforms");
    std::fs::write(&spec_path, spec).unwrap();
    let events = sb.run_json(&spec_path, &[]);
    let run = sb.sluice(&["runs", "show", &events.run_id(), "--json"]).ok().json();
    let auc =
        run["metrics"].as_array().unwrap().iter().find(|m| m["key"] == "roc_auc").unwrap()["value"].as_f64().unwrap();
    println!("test AUC with transforms {auc:.4}");
    assert!(auc > 0.88, "{auc}");

    // The model's inputs are the raw columns; its features include the engineered ones.
    let model_hash = &events.outputs("train")[0].1;
    let model: serde_json::Value =
        serde_json::from_slice(&std::fs::read(object_path(&sb.home(), model_hash, "json")).unwrap()).unwrap();
    let inputs: Vec<&str> = model["inputs"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap()).collect();
    assert!(inputs.contains(&"age") && inputs.contains(&"sex") && !inputs.contains(&"sex_x_race"), "{inputs:?}");
    let names = model["feature_names"].to_string();
    assert!(names.contains("age=3") && names.contains("sex_x_race=Male|White"), "{names}");
    assert_eq!(model["features"]["steps"].as_array().unwrap().len(), 11, "one fitted step per column");

    // Batch scoring on the raw test split gives evaluate's probabilities exactly.
    let test =
        object_path(&sb.home(), &events.outputs("split").iter().find(|(n, _)| n == "test").unwrap().1, "parquet");
    let expected = parquet_f64_column(
        &object_path(
            &sb.home(),
            &events.outputs("evaluate").iter().find(|(n, _)| n == "predictions").unwrap().1,
            "parquet",
        ),
        "probability",
    );
    let out = sb.path().join("scored.parquet");
    sb.sluice(&[
        "predict",
        "--model",
        "adult-income@champion",
        "--input",
        test.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ])
    .ok();
    let got = parquet_f64_column(&out, "probability");
    assert!(got.len() == expected.len() && got.iter().zip(&expected).all(|(a, b)| a.to_bits() == b.to_bits()));

    // Serving a raw row (with a country missing) gives the same probability as batch scoring.
    let server = crate::serve::start(&sb, &["adult-income@champion"]);
    let row = json!({"age": 39.0, "workclass": "State-gov", "education": "Bachelors", "education_num": 13.0,
        "marital_status": "Never-married", "occupation": "Adm-clerical", "relationship": "Not-in-family",
        "race": "White", "sex": "Male", "capital_gain": 2174.0, "capital_loss": 0.0, "hours_per_week": 40.0,
        "native_country": null});
    let (status, body) = crate::serve::post_json(&server, "/invocations", &json!({"dataframe_records": [row.clone()]}));
    assert_eq!(status, 200, "{body}");
    let served = body["predictions"][0]["probability"].as_f64().unwrap();
    let csv = sb.path().join("one.csv");
    std::fs::write(
        &csv,
        "age,workclass,education,education_num,marital_status,occupation,relationship,race,sex,capital_gain,capital_loss,hours_per_week,native_country\n\
         39,State-gov,Bachelors,13,Never-married,Adm-clerical,Not-in-family,White,Male,2174,0,40,\n",
    )
    .unwrap();
    let one = sb.path().join("one.parquet");
    sb.sluice(&[
        "predict",
        "--model",
        "adult-income@champion",
        "--input",
        csv.to_str().unwrap(),
        "--output",
        one.to_str().unwrap(),
    ])
    .ok();
    assert_eq!(parquet_f64_column(&one, "probability")[0].to_bits(), served.to_bits(), "served {served}");
}

#[test]
fn transform_options_are_checked_per_operation() {
    let sb = Sandbox::new();
    let spec_path = sb.copy_adult();
    let spec = std::fs::read_to_string(&spec_path).unwrap();
    for (bad, message) in [
        ("{op: clip, columns: [age], quantiles: 3}", "`clip` does not take `quantiles` (it takes min, max)"),
        ("{op: bucketize, columns: [age]}", "`bucketize` needs either `quantiles` or `bins`"),
        ("{op: impute, columns: [age], strategy: constant}", "`value` goes with `strategy: constant`"),
        ("{op: cross, columns: [sex]}", "`cross` needs at least two `columns`"),
        ("{op: scale, columns: [age]}", "unknown variant `scale`"),
    ] {
        let with = spec.replace("    label: label\n", &format!("    label: label\n    transforms:\n      - {bad}\n"));
        std::fs::write(&spec_path, with).unwrap();
        let out = sb.sluice(&["plan", spec_path.to_str().unwrap()]).expect_code(2);
        assert!(out.stderr.contains(message) && out.stderr.contains("train"), "{bad}: {}", out.stderr);
    }
}

#[test]
fn fit_transform_step_writes_the_transformed_dataset() {
    let sb = Sandbox::new();
    let mut csv = String::from("x,cat,ts\n");
    for i in 0..1000 {
        let x = if i % 10 == 0 { String::new() } else { format!("{}", (i * 37 % 101) as f64 / 4.0) };
        csv.push_str(&format!("{x},{},2013-0{}-1{}T0{}:00:00Z\n", ["a", "b", "c"][i % 3], 1 + i % 9, i % 10, i % 10));
    }
    std::fs::write(sb.path().join("d.csv"), csv).unwrap();
    std::fs::write(
        sb.path().join("ft.yaml"),
        "name: ft\nsources:\n  d: {path: d.csv}\nsteps:\n  split: {kind: split, input: d, fractions: {train: 0.5, test: 0.5}}\n  \
         features:\n    kind: fit_transform\n    input: d\n    transforms:\n      - {op: impute, columns: [x], strategy: median}\n      \
         - {op: standardize, columns: [x]}\n      - {op: onehot, columns: [cat]}\n      - {op: datetime, columns: [ts], parts: [month, hour]}\n  \
         later:\n    kind: fit_transform\n    input: split.test\n    fit: split.train\n    transforms:\n      - {op: impute, columns: [x], strategy: mean}\n      - {op: bucketize, columns: [x], bins: [5, 10, 20]}\n",
    )
    .unwrap();
    let events = sb.run_json(&sb.path().join("ft.yaml"), &[]);
    let out = object_path(&sb.home(), &events.outputs("features")[0].1, "parquet");
    let x = parquet_f64_column(&out, "x");
    assert_eq!(x.len(), 1000);
    let mean = x.iter().sum::<f64>() / 1000.0;
    let std = (x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 1000.0).sqrt();
    assert!(mean.abs() < 1e-12 && (std - 1.0).abs() < 1e-12, "imputed then standardized: mean {mean}, std {std}");
    assert_eq!(parquet_f64_column(&out, "cat=b").iter().sum::<f64>(), 333.0);
    let months = parquet_f64_column(&out, "ts_month");
    assert_eq!((months[0], months[8], months[9]), (1.0, 9.0, 1.0));
    let later = object_path(&sb.home(), &events.outputs("later")[0].1, "parquet");
    let buckets = parquet_f64_column(&later, "x");
    assert!(buckets.iter().all(|b| (0.0..=3.0).contains(b)) && buckets.len() < 1000, "{buckets:?}");
}

#[test]
fn a_transform_of_a_missing_column_names_it_and_stores_nothing() {
    let sb = Sandbox::new();
    std::fs::write(sb.path().join("d.csv"), "x,cat\n1,a\n2,b\n").unwrap();
    std::fs::write(
        sb.path().join("ft.yaml"),
        "name: ft\nsources:\n  d: {path: d.csv}\nsteps:\n  features:\n    kind: fit_transform\n    input: d\n    transforms:\n      - {op: onehot, columns: [kat]}\n",
    )
    .unwrap();
    let out = sb.sluice(&["run", "ft.yaml"]).expect_code(1);
    assert!(out.stderr.contains("column `kat`") && out.stderr.contains("did you mean `cat`"), "{}", out.stderr);
    assert_eq!(crate::support::object_files(&sb.home()).len(), 1, "only the source's dataset");
}

#[test]
fn a_transform_that_fails_while_streaming_names_the_value_and_leaves_nothing() {
    // Fitted on `a` and `b`; the data (three row groups, so several partitions) meets `z` only in
    // its last rows, transformed in the last partition's task, and `unseen: error` refuses it.
    let sb = Sandbox::new();
    std::fs::write(sb.path().join("fit.csv"), "x,cat\n1,a\n2,b\n").unwrap();
    let mut csv = String::from("x,cat\n");
    for i in 0..300_000 {
        csv.push_str(&format!("{i},{}\n", if i == 299_990 { "z" } else { ["a", "b"][i % 2] }));
    }
    std::fs::write(sb.path().join("d.csv"), csv).unwrap();
    std::fs::write(
        sb.path().join("ft.yaml"),
        "name: ft\nsources:\n  d: {path: d.csv}\n  f: {path: fit.csv}\nsteps:\n  features:\n    kind: fit_transform\n    \
         input: d\n    fit: f\n    transforms:\n      - {op: onehot, columns: [cat], unseen: error}\n",
    )
    .unwrap();
    let out = sb.sluice(&["run", "ft.yaml"]).expect_code(1);
    assert!(out.stderr.contains("`cat`") && out.stderr.contains("the value `z`"), "{}", out.stderr);
    assert_eq!(crate::support::object_files(&sb.home()).len(), 2, "only the two sources' datasets");
    let scratch: Vec<_> = std::fs::read_dir(sb.home().join("artifacts/tmp")).unwrap().collect();
    assert!(scratch.is_empty(), "no scratch file is left: {scratch:?}");
}
