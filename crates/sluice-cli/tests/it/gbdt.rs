//! `model: gbdt` end to end: the example pipeline trains with early stopping on a validation
//! split, passes its gate, and `sluice predict` reproduces `evaluate` bit for bit.

use crate::support::{Sandbox, adult_example, object_path, parquet_f64_column};

#[test]
fn gbdt_pipeline_early_stops_registers_and_predicts_like_evaluate() {
    let sb = Sandbox::new();
    let spec = adult_example().join("gbdt.yaml");
    let events = sb.run_json(&spec, &[]);
    events.check_complete(&["adult", "clean", "check", "split", "train", "evaluate", "register"]);
    let run_id = events.run_id();
    let show = sb.sluice(&["runs", "show", &run_id, "--json"]).ok().json();
    let step =
        |name: &str| show["steps"].as_array().unwrap().iter().find(|s| s["step"]["step"] == name).unwrap().clone();
    let metric = |name: &str| run_metric(&show, name, None);
    let trees = metric("trees");
    println!("trees {trees}, validation logloss {}", metric("validation_logloss"));
    assert!(trees > 20.0 && trees < 500.0, "early stopping should end well before 500 rounds: {trees}");
    let auc = metric("roc_auc");
    println!("test AUC {auc}");
    assert!(auc > 0.92, "{auc}");
    let dpd = metric("demographic_parity_difference_sex");
    let eod = metric("equal_opportunity_difference_race");
    println!("demographic parity difference (sex) {dpd:.3}, equal opportunity difference (race) {eod:.3}");
    assert!(dpd > 0.05 && dpd < 1.0 && (0.0..1.0).contains(&eod));
    let doc_path = object_path(&sb.home(), &output_of(&step("evaluate"), "metrics"), "json");
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(doc_path).unwrap()).unwrap();
    let female = &doc["slices"]["sex"]["Female"];
    assert!(
        female["rows"].as_u64().unwrap() > 2000 && female["metrics"]["roc_auc"].as_f64().unwrap() > 0.85,
        "{female}"
    );
    let ranked = doc["explanations"]["permutation_importance"].as_array().unwrap();
    assert_eq!(ranked.len(), 13);
    println!("most important: {} ({:.4} AUC)", ranked[0]["column"], ranked[0]["mean"].as_f64().unwrap());
    assert!(ranked[0]["mean"].as_f64().unwrap() > 0.01, "{ranked:?}");
    let age = doc["explanations"]["partial_dependence"]["age"].as_array().unwrap();
    assert!(age.len() >= 5 && age.iter().all(|p| (0.0..=1.0).contains(&p["mean_prediction"].as_f64().unwrap())));
    assert_eq!(
        doc["reliability_curve"].as_array().unwrap().iter().map(|b| b["rows"].as_u64().unwrap()).sum::<u64>(),
        9769
    );

    let output = |step_name: &str, name: &str| output_of(&step(step_name), name);
    let test = object_path(&sb.home(), &output("split", "test"), "parquet");
    let expected =
        parquet_f64_column(&object_path(&sb.home(), &output("evaluate", "predictions"), "parquet"), "probability");
    let out = sb.path().join("out.parquet");
    sb.sluice(&[
        "predict",
        "--model",
        "adult-income-gbdt@champion",
        "--input",
        test.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ])
    .ok();
    let got = parquet_f64_column(&out, "probability");
    assert_eq!(got.len(), expected.len());
    assert!(got.iter().zip(&expected).all(|(g, e)| g.to_bits() == e.to_bits()));

    // `sluice explain`: per-column TreeSHAP contributions that add up to the raw score.
    let explained = sb.path().join("explained.parquet");
    let out = sb
        .sluice(&[
            "explain",
            "--model",
            "adult-income-gbdt@champion",
            "--input",
            test.to_str().unwrap(),
            "--output",
            explained.to_str().unwrap(),
        ])
        .ok();
    assert!(out.stderr.contains("explained 9769 rows"), "{}", out.stderr);
    let columns = ["age", "workclass", "education", "education_num", "marital_status", "occupation", "relationship"];
    let columns = columns.iter().chain(&["race", "sex", "capital_gain", "capital_loss", "hours_per_week"]);
    let mut total = parquet_f64_column(&explained, "contribution_bias");
    for c in columns.chain(&["native_country"]) {
        let v = parquet_f64_column(&explained, &format!("contribution_{c}"));
        total.iter_mut().zip(&v).for_each(|(t, v)| *t += v);
    }
    let p = parquet_f64_column(&explained, "probability");
    for (row, (t, p)) in total.iter().zip(&p).enumerate() {
        let logit = (p / (1.0 - p)).ln();
        assert!((t - logit).abs() < 1e-6, "row {row}: contributions sum to {t}, log-odds {logit}");
    }
    let age = parquet_f64_column(&explained, "contribution_age");
    assert!(age.iter().any(|v| *v > 0.1) && age.iter().any(|v| *v < -0.1), "age should matter both ways");

    // Cached on a second run.
    let again = sb.run_json(&spec, &[]);
    assert!(again.ran().is_empty(), "{:?}", again.ran());
}

/// A metric of a `runs show --json` document, optionally of one step.
fn run_metric(show: &serde_json::Value, key: &str, step: Option<&str>) -> f64 {
    let all = show["metrics"].as_array().unwrap();
    all.iter()
        .find(|m| m["key"] == key && step.is_none_or(|s| m["step"] == s))
        .and_then(|m| m["value"].as_f64())
        .unwrap_or_else(|| panic!("no metric {key} (step {step:?}) in {all:?}"))
}

fn output_of(step: &serde_json::Value, name: &str) -> String {
    let o = step["outputs"].as_array().unwrap().iter().find(|o| o["name"] == name).unwrap();
    o["artifact"]["hash"].as_str().unwrap().to_string()
}

#[test]
fn gbdt_params_are_checked_against_the_model_kind() {
    let sb = Sandbox::new();
    let spec = adult_example().join("gbdt.yaml");
    // A linear-model setting under `model: gbdt` is an unknown key, with the GBDT keys listed.
    let out = sb.sluice(&["plan", spec.to_str().unwrap(), "--set", "train.params.l2=0.1"]).expect_code(2);
    assert!(out.stderr.contains("`l2`") && out.stderr.contains("num_leaves"), "{}", out.stderr);
    let out = sb.sluice(&["plan", spec.to_str().unwrap(), "--set", "train.params.num_leaves=1"]).expect_code(2);
    assert!(out.stderr.contains("`params.num_leaves` must be at least 2"), "{}", out.stderr);
    let out = sb
        .sluice(&[
            "plan",
            spec.to_str().unwrap(),
            "--set",
            "train.params.objective=quantile",
            "--set",
            "train.params.alpha=1.5",
        ])
        .expect_code(2);
    assert!(out.stderr.contains("`params.alpha`"), "{}", out.stderr);
    let out =
        sb.sluice(&["plan", spec.to_str().unwrap(), "--set", "train.params.monotone.education_num=2"]).expect_code(2);
    assert!(out.stderr.contains("`params.monotone`"), "{}", out.stderr);
}

#[test]
fn warm_start_continues_another_steps_model() {
    let sb = Sandbox::new();
    let dir = sb.copy_adult().parent().unwrap().to_path_buf();
    let spec = std::fs::read_to_string(adult_example().join("gbdt.yaml")).unwrap();
    let more = "  more:\n    kind: train\n    input: split.valid\n    init_model: train\n    model: gbdt\n    label: label\n    params: {num_rounds: 10}\n\n  evaluate:";
    let spec = spec
        .replace("  evaluate:", more)
        .replace("model: train\n    input: split.test", "model: more\n    input: split.test");
    std::fs::write(dir.join("warm.yaml"), spec).unwrap();
    let events = sb.run_json(&dir.join("warm.yaml"), &[]);
    events.check_complete(&["train", "more", "evaluate"]);
    let show = sb.sluice(&["runs", "show", &events.run_id(), "--json"]).ok().json();
    let trees = |step: &str| run_metric(&show, "trees", Some(step));
    assert_eq!(trees("more"), trees("train") + 10.0);
    // A linear model cannot be warm-started.
    let out = sb
        .sluice(&["plan", dir.join("pipeline.yaml").to_str().unwrap(), "--set", "train.init_model=split.train"])
        .expect_code(2);
    assert!(out.stderr.contains("`init_model`"), "{}", out.stderr);
}

#[test]
fn multiclass_pipeline_evaluates_predicts_and_serves_classes() {
    let sb = Sandbox::new();
    let dir = sb.copy_adult().parent().unwrap().to_path_buf();
    let spec = std::fs::read_to_string(adult_example().join("gbdt.yaml")).unwrap();
    // Predict `relationship` (6 classes) instead of income.
    let spec = spec
        .replace("    label: label\n    params:", "    label: relationship\n    exclude: [label]\n    params:")
        .replace("objective: binary", "objective: multiclass")
        .replace("      monotone: {education_num: 1}\n", "")
        .replace("num_rounds: 500", "num_rounds: 40")
        .replace("      - roc_auc >= 0.9", "      - accuracy >= 0.7");
    std::fs::write(dir.join("multi.yaml"), spec).unwrap();
    let events = sb.run_json(&dir.join("multi.yaml"), &[]);
    events.check_complete(&["train", "evaluate", "register"]);
    let show = sb.sluice(&["runs", "show", &events.run_id(), "--json"]).ok().json();
    let metric = |name: &str| run_metric(&show, name, None);
    let (accuracy, f1) = (metric("accuracy"), metric("f1_macro"));
    println!("relationship: accuracy {accuracy:.4}, macro F1 {f1:.4}, log loss {:.4}", metric("log_loss"));
    assert!(accuracy > 0.7 && f1 > 0.4);

    let out = sb.path().join("rel.csv");
    let rows = "age,workclass,education,education_num,marital_status,occupation,relationship,race,sex,capital_gain,capital_loss,hours_per_week,native_country,label\n\
                39,State-gov,Bachelors,13,Never-married,Adm-clerical,Not-in-family,White,Male,2174,0,40,United-States,false\n\
                50,Self-emp-not-inc,Bachelors,13,Married-civ-spouse,Exec-managerial,Husband,White,Male,0,0,13,United-States,false\n\
                28,Private,Bachelors,13,Married-civ-spouse,Prof-specialty,Wife,Black,Female,0,0,40,Cuba,false\n";
    let csv = sb.path().join("rows.csv");
    std::fs::write(&csv, rows).unwrap();
    let text = sb.predict_csv("adult-income-gbdt@champion", &csv, &out);
    let header = text.lines().next().unwrap();
    assert!(header.ends_with("prediction,probability,probability_Husband,probability_Not-in-family,probability_Other-relative,probability_Own-child,probability_Unmarried,probability_Wife"), "{header}");
    let predicted: Vec<&str> = text.lines().skip(1).map(|l| l.split(',').nth(14).unwrap()).collect();
    assert_eq!(predicted, ["Not-in-family", "Husband", "Wife"], "{text}");

    // `sluice explain` per class: each class's contributions and bias are its raw score, whose
    // softmax is the predicted probabilities.
    let explained = sb.path().join("why.parquet");
    sb.sluice(&[
        "explain",
        "--model",
        "adult-income-gbdt@champion",
        "--input",
        csv.to_str().unwrap(),
        "--output",
        explained.to_str().unwrap(),
    ])
    .ok();
    let classes = ["Husband", "Not-in-family", "Other-relative", "Own-child", "Unmarried", "Wife"];
    let inputs = ["age", "workclass", "education", "education_num", "marital_status", "occupation", "race", "sex"];
    let inputs = inputs.iter().chain(&["capital_gain", "capital_loss", "hours_per_week", "native_country", "bias"]);
    let inputs: Vec<&&str> = inputs.collect();
    let raw: Vec<Vec<f64>> = classes
        .iter()
        .map(|c| {
            let mut total = vec![0.0; 3];
            for i in &inputs {
                let v = crate::support::parquet_f64_column(&explained, &format!("contribution_{c}_{i}"));
                total.iter_mut().zip(&v).for_each(|(t, v)| *t += v);
            }
            total
        })
        .collect();
    for row in 0..3 {
        let max = raw.iter().map(|r| r[row]).fold(f64::MIN, f64::max);
        let sum: f64 = raw.iter().map(|r| (r[row] - max).exp()).sum();
        for (c, class) in classes.iter().enumerate() {
            let p = crate::support::parquet_f64_column(&explained, &format!("probability_{class}"))[row];
            let softmax = (raw[c][row] - max).exp() / sum;
            assert!((softmax - p).abs() < 1e-9, "row {row}, {class}: softmax of contributions {softmax} vs {p}");
        }
    }

    // Served: the class and every class's probability, on both protocols.
    let server = crate::serve::start(&sb, &["adult-income-gbdt@champion"]);
    let row = serde_json::json!({"age": 28, "workclass": "Private", "education": "Bachelors", "education_num": 13,
        "marital_status": "Married-civ-spouse", "occupation": "Prof-specialty", "race": "Black", "sex": "Female",
        "capital_gain": 0, "capital_loss": 0, "hours_per_week": 40, "native_country": "Cuba"});
    let (status, body) =
        crate::serve::post_json(&server, "/invocations", &serde_json::json!({"dataframe_records": [row]}));
    assert_eq!(status, 200, "{body}");
    let p = &body["predictions"][0];
    assert_eq!(p["prediction"], "Wife", "{body}");
    let total: f64 = p
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.starts_with("probability_"))
        .map(|(_, v)| v.as_f64().unwrap())
        .sum();
    assert!((total - 1.0).abs() < 1e-9, "{body}");
    let inputs: Vec<serde_json::Value> = row
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let datatype = if v.is_string() { "BYTES" } else { "FP64" };
            serde_json::json!({"name": k, "datatype": datatype, "shape": [1], "data": [v]})
        })
        .collect();
    let (status, body) =
        crate::serve::post_json(&server, "/v2/models/adult-income-gbdt/infer", &serde_json::json!({"inputs": inputs}));
    assert_eq!(status, 200, "{body}");
    let outputs = body["outputs"].as_array().unwrap();
    assert_eq!(outputs[0]["name"], "prediction");
    assert_eq!(outputs[0]["datatype"], "BYTES");
    assert_eq!(outputs[0]["data"][0], "Wife");
    assert_eq!(outputs.len(), 2 + 6, "{body}");
}

#[test]
fn random_forest_model_kind_trains_and_registers() {
    let sb = Sandbox::new();
    let dir = sb.copy_adult().parent().unwrap().to_path_buf();
    let spec = std::fs::read_to_string(adult_example().join("gbdt.yaml")).unwrap();
    let start = spec.find("  train:").unwrap();
    let end = spec.find("  evaluate:").unwrap();
    let train = "  train:\n    kind: train\n    input: split.train\n    model: random_forest\n    label: label\n    params: {num_trees: 20, seed: 7}\n\n";
    let spec = format!("{}{train}{}", &spec[..start], &spec[end..]).replace("roc_auc >= 0.9", "roc_auc >= 0.85");
    std::fs::write(dir.join("rf.yaml"), spec).unwrap();
    let events = sb.run_json(&dir.join("rf.yaml"), &[]);
    events.check_complete(&["train", "evaluate", "register"]);
    let show = sb.sluice(&["runs", "show", &events.run_id(), "--json"]).ok().json();
    let metric = |name: &str| run_metric(&show, name, None);
    println!("random forest: {} trees, test AUC {:.4}", metric("trees"), metric("roc_auc"));
    assert_eq!(metric("trees"), 20.0);
    assert!(metric("roc_auc") > 0.88);
    // Forest settings are checked like any others.
    let out = sb
        .sluice(&["plan", dir.join("rf.yaml").to_str().unwrap(), "--set", "train.params.max_features=1.5"])
        .expect_code(2);
    assert!(out.stderr.contains("`params.max_features`"), "{}", out.stderr);
    let out = sb
        .sluice(&["plan", dir.join("rf.yaml").to_str().unwrap(), "--set", "train.params.categorical_splits=best"])
        .expect_code(2);
    assert!(out.stderr.contains("categorical_splits"), "{}", out.stderr);
    // Categories split in mean-label order train too.
    let events = sb.run_json(&dir.join("rf.yaml"), &["--set", "train.params.categorical_splits=order"]);
    events.check_complete(&["train", "evaluate", "register"]);
    let show = sb.sluice(&["runs", "show", &events.run_id(), "--json"]).ok().json();
    assert!(run_metric(&show, "roc_auc", None) > 0.88);
}

#[test]
fn cross_validation_reports_mean_and_spread_per_metric() {
    let sb = Sandbox::new();
    let spec = adult_example().join("pipeline.yaml");
    let events = sb.run_json(&spec, &["--set", "train.cv.folds=4", "--set", "train.cv.method=stratified"]);
    events.check_complete(&["train", "evaluate"]);
    let show = sb.sluice(&["runs", "show", &events.run_id(), "--json"]).ok().json();
    let metric = |name: &str| run_metric(&show, name, None);
    let (mean, std, test) = (metric("cv_roc_auc_mean"), metric("cv_roc_auc_std"), metric("roc_auc"));
    println!("4-fold AUC {mean:.4} ± {std:.4}; held-out test {test:.4}");
    assert!((mean - test).abs() < 0.02 && std > 0.0 && std < 0.02);
    // Group and time folds need a column.
    let out = sb.sluice(&["plan", spec.to_str().unwrap(), "--set", "train.cv.method=group"]).expect_code(2);
    assert!(out.stderr.contains("`cv.by`"), "{}", out.stderr);
}

#[test]
fn ftrl_online_model_continues_on_new_data() {
    let sb = Sandbox::new();
    let dir = sb.copy_adult().parent().unwrap().to_path_buf();
    let spec = std::fs::read_to_string(dir.join("pipeline.yaml")).unwrap();
    let start = spec.find("  train:").unwrap();
    let end = spec.find("  evaluate:").unwrap();
    // Learn on the first half, then keep learning on the second half from the stored state.
    let steps = "  \
  split2:\n    kind: split\n    input: split.train\n    fractions: {first: 0.5, second: 0.5}\n\n  \
  first:\n    kind: train\n    input: split2.first\n    model: ftrl\n    label: label\n\n  \
  train:\n    kind: train\n    input: split2.second\n    init_model: first\n    model: ftrl\n    label: label\n\n";
    let spec = format!("{}{steps}{}", &spec[..start], &spec[end..]);
    std::fs::write(dir.join("online.yaml"), spec).unwrap();
    let events = sb.run_json(&dir.join("online.yaml"), &[]);
    events.check_complete(&["first", "train", "evaluate"]);
    let show = sb.sluice(&["runs", "show", &events.run_id(), "--json"]).ok().json();
    let metric = |name: &str, step: &str| run_metric(&show, name, (!step.is_empty()).then_some(step));
    // The continued model has seen both halves of the training split (split ~50/50).
    assert!(metric("train_rows", "train") > metric("train_rows", "first") * 1.9);
    let auc = metric("roc_auc", "");
    println!("online (FTRL, one pass in two batches): test AUC {auc:.4}");
    let rows = (metric("train_rows", "first"), metric("train_rows", "train"));
    assert!(rows.1 < rows.0 * 2.1, "{rows:?}");
    assert!(auc > 0.88, "{auc}");
}

/// Logistic regression on a text label with six values is multinomial: it evaluates with the
/// multiclass metrics and predicts classes; an L1 penalty on the binary quickstart drops
/// features to exactly zero; and L1 with the lbfgs solver is a spec error naming the field.
#[test]
fn multinomial_and_lasso_linear_models_through_the_spec() {
    let sb = Sandbox::new();
    let spec_path = sb.copy_adult();
    let dir = spec_path.parent().unwrap().to_path_buf();
    let spec = std::fs::read_to_string(&spec_path).unwrap();
    let multi = spec
        .replace("    label: label\n    params:", "    label: relationship\n    exclude: [label]\n    params:")
        .replace("name: adult-income\n", "name: adult-relationship\n");
    assert_ne!(multi, spec, "the quickstart's train step changed shape");
    std::fs::write(dir.join("multi.yaml"), &multi).unwrap();
    let events = sb.run_json(&dir.join("multi.yaml"), &[]);
    events.check_complete(&["train", "evaluate", "register"]);
    let show = sb.sluice(&["runs", "show", &events.run_id(), "--json"]).ok().json();
    let (accuracy, log_loss) = (run_metric(&show, "accuracy", None), run_metric(&show, "log_loss", None));
    println!("relationship, multinomial logistic: accuracy {accuracy:.4}, log loss {log_loss:.4}");
    assert!(accuracy > 0.7 && log_loss < 0.9, "accuracy {accuracy}, log loss {log_loss}");
    let csv = sb.path().join("rows.csv");
    std::fs::write(
        &csv,
        "age,workclass,fnlwgt,education,education_num,marital_status,occupation,race,sex,capital_gain,capital_loss,hours_per_week,native_country\n\
         50,Self-emp-not-inc,83311,Bachelors,13,Married-civ-spouse,Exec-managerial,White,Male,0,0,13,United-States\n\
         28,Private,338409,Bachelors,13,Married-civ-spouse,Prof-specialty,Black,Female,0,0,40,Cuba\n",
    )
    .unwrap();
    let out = sb.path().join("rel.csv");
    let text = sb.predict_csv("adult-relationship@champion", &csv, &out);
    assert!(text.lines().next().unwrap().contains(",prediction,probability,probability_Husband,"), "{text}");
    let predicted: Vec<&str> = text.lines().skip(1).map(|l| l.split(',').nth(13).unwrap()).collect();
    assert_eq!(predicted, ["Husband", "Wife"], "{text}");

    // Lasso on the binary quickstart: fewer weights, nearly the same AUC.
    let events = sb.run_json(&spec_path, &["--set", "train.params.l1=0.002"]);
    let show = sb.sluice(&["runs", "show", &events.run_id(), "--json"]).ok().json();
    let auc = run_metric(&show, "roc_auc", None);
    let artifact = sb.model_artifact("adult-income@champion");
    let weights = artifact["model"]["weights"].as_array().unwrap_or_else(|| panic!("{artifact}"));
    let zeros = weights.iter().filter(|w| w.as_f64() == Some(0.0)).count();
    println!("quickstart with l1 = 0.002: AUC {auc:.4}, {zeros} of {} weights exactly zero", weights.len());
    assert!(auc > 0.89, "AUC {auc}");
    assert!(zeros > weights.len() / 4, "{zeros} of {} weights are zero", weights.len());

    let bad = spec.replace("      l2: 0.0001", "      l2: 0.0001\n      l1: 0.01\n      solver: lbfgs");
    std::fs::write(dir.join("bad.yaml"), bad).unwrap();
    let out = sb.sluice(&["run", dir.join("bad.yaml").to_str().unwrap()]).expect_code(2);
    assert!(out.stderr.contains("params.solver") && out.stderr.contains("l1"), "{}", out.stderr);
}

/// `model: kmeans` takes no label: it trains on the quickstart's columns, evaluates with
/// inertia and silhouette, registers behind a gate, predicts each row's cluster and distance,
/// and serves them on both protocols; a label or `cv` on it is a spec error.
#[test]
fn kmeans_clusters_evaluates_predicts_and_serves() {
    let sb = Sandbox::new();
    let spec_path = sb.copy_adult();
    let dir = spec_path.parent().unwrap().to_path_buf();
    let spec = std::fs::read_to_string(&spec_path).unwrap();
    let train = "    model: logistic_regression\n    label: label\n    params:\n      l2: 0.0001\n";
    assert!(spec.contains(train), "the quickstart's train step changed shape");
    let kmeans = spec
        .replace(
            train,
            "    model: kmeans\n    features: [age, education_num, hours_per_week, capital_gain, sex]\n    params: {clusters: 4, n_init: 3, seed: 1}\n",
        )
        .replace("name: adult-income\n", "name: adult-segments\n");
    let kmeans = kmeans.replace("    alias: champion\n", "    alias: champion\n    gates: [\"silhouette >= 0.1\"]\n");
    std::fs::write(dir.join("kmeans.yaml"), &kmeans).unwrap();
    let events = sb.run_json(&dir.join("kmeans.yaml"), &[]);
    events.check_complete(&["train", "evaluate", "register"]);
    let show = sb.sluice(&["runs", "show", &events.run_id(), "--json"]).ok().json();
    let (inertia, silhouette) = (run_metric(&show, "inertia", Some("evaluate")), run_metric(&show, "silhouette", None));
    let msd = run_metric(&show, "mean_squared_distance", None);
    println!("adult segments: test inertia {inertia:.1} (mean squared distance {msd:.3}), silhouette {silhouette:.3}");
    assert!(silhouette > 0.1 && silhouette < 1.0, "silhouette {silhouette}");
    // 5 standardized or one-hot columns: a row sits well within a few units of its centroid.
    assert!(msd > 0.0 && msd < 5.0, "mean squared distance {msd}");

    let csv = sb.path().join("rows.csv");
    std::fs::write(
        &csv,
        "age,education_num,hours_per_week,capital_gain,sex\n39,13,40,2174,Male\n39,13,40,2174,Male\n70,4,10,0,Female\n",
    )
    .unwrap();
    let out = sb.path().join("segments.csv");
    let text = sb.predict_csv("adult-segments@champion", &csv, &out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "age,education_num,hours_per_week,capital_gain,sex,cluster,distance", "{text}");
    let cluster = |l: &str| l.split(',').nth(5).unwrap().parse::<i64>().unwrap();
    assert_eq!(cluster(lines[1]), cluster(lines[2]), "the same row, the same cluster");
    assert!((0..4).contains(&cluster(lines[3])));

    let server = crate::serve::start(&sb, &["adult-segments@champion"]);
    let row =
        serde_json::json!({"age": 39, "education_num": 13, "hours_per_week": 40, "capital_gain": 2174, "sex": "Male"});
    let (status, body) =
        crate::serve::post_json(&server, "/invocations", &serde_json::json!({"dataframe_records": [row]}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["predictions"][0]["cluster"].as_i64(), Some(cluster(lines[1])), "{body}");
    let served_distance = body["predictions"][0]["distance"].as_f64().unwrap();
    let predicted_distance: f64 = lines[1].split(',').nth(6).unwrap().parse().unwrap();
    assert!((served_distance - predicted_distance).abs() < 1e-9, "{body} vs {text}");
    let body: serde_json::Value =
        serde_json::from_str(&crate::serve::get_text(&server, "/v2/models/adult-segments")).unwrap();
    assert_eq!(body["outputs"][0]["name"], "cluster", "{body}");
    assert_eq!(body["outputs"][0]["datatype"], "INT64", "{body}");

    for (bad, field) in [
        (kmeans.replace("    model: kmeans\n", "    model: kmeans\n    label: sex\n"), "label"),
        (kmeans.replace("    model: kmeans\n", "    model: kmeans\n    cv: {folds: 3}\n"), "cv"),
        (kmeans.replace("clusters: 4", "clusters: 0"), "params"),
    ] {
        std::fs::write(dir.join("bad.yaml"), bad).unwrap();
        let out = sb.sluice(&["run", dir.join("bad.yaml").to_str().unwrap()]).expect_code(2);
        assert!(
            out.stderr.contains(field) && out.stderr.contains("kmeans") || out.stderr.contains("clusters"),
            "{}",
            out.stderr
        );
    }
}
