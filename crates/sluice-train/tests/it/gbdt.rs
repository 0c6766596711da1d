//! GBDT: accuracy against LightGBM on the same data and settings (`tests/fixtures/gbdt.json`,
//! written by `scripts/reference/gbdt.py`), and the behaviours each option promises.

use std::io::{BufRead, BufReader, Read};
use std::ops::ControlFlow;
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray};
use arrow_csv::ReaderBuilder;
use arrow_csv::reader::Format;
use flate2::read::GzDecoder;
use proptest::prelude::*;
use serde::Deserialize;
use sluice_model::{DesignMatrix, Model, ModelArtifact, Predictor, Task};
use sluice_train::gbdt::{GbdtData, GbdtOptions, Loss, Metric, RoundReport, fit_gbdt};
use sluice_train::{ClassWeight, GbdtRequest, label_values, train_gbdt};

use crate::support::fixture_path;

#[derive(Deserialize)]
struct Reference {
    adult: Case,
    flights: Case,
}

#[derive(Deserialize)]
struct Case {
    rounds: u32,
    #[serde(default)]
    roc_auc: f64,
    #[serde(default)]
    rmse: f64,
}

fn reference() -> Reference {
    crate::support::read_json("gbdt.json")
}

fn repo_path(rel: &str) -> std::path::PathBuf {
    // fixtures -> tests -> sluice-train -> crates -> workspace root
    let fixtures = fixture_path("");
    fixtures.ancestors().nth(4).unwrap_or_else(|| panic!("no workspace root above {}", fixtures.display())).join(rel)
}

const ADULT_NUMERIC: [&str; 5] = ["age", "education_num", "capital_gain", "capital_loss", "hours_per_week"];
const ADULT_TEXT: [&str; 8] =
    ["workclass", "education", "marital_status", "occupation", "relationship", "race", "sex", "native_country"];

/// An Adult file as the quickstart cleans it: trimmed fields, `?` missing, label = income >50K.
fn adult(name: &str) -> RecordBatch {
    let path = repo_path(&format!("examples/adult/data/{name}"));
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let cols = [
        "age",
        "workclass",
        "fnlwgt",
        "education",
        "education_num",
        "marital_status",
        "occupation",
        "relationship",
        "race",
        "sex",
        "capital_gain",
        "capital_loss",
        "hours_per_week",
        "native_country",
        "income",
    ];
    let mut fields: Vec<Vec<Option<String>>> = vec![Vec::new(); cols.len()];
    for line in BufReader::new(GzDecoder::new(file)).lines() {
        let line = line.expect("read adult");
        if line.starts_with('|') || line.trim().is_empty() {
            continue;
        }
        let values: Vec<&str> = line.split(',').map(str::trim).collect();
        assert_eq!(values.len(), cols.len(), "{line}");
        for (f, v) in fields.iter_mut().zip(values) {
            f.push((v != "?").then(|| v.to_string()));
        }
    }
    let col = |name: &str| &fields[cols.iter().position(|c| *c == name).expect("column")];
    let mut arrays: Vec<(&str, ArrayRef)> = Vec::new();
    for name in ADULT_NUMERIC {
        let v: Float64Array = col(name).iter().map(|v| v.as_ref().map(|s| s.parse::<f64>().expect("number"))).collect();
        arrays.push((name, Arc::new(v)));
    }
    for name in ADULT_TEXT {
        arrays.push((name, Arc::new(col(name).iter().cloned().collect::<StringArray>())));
    }
    let label: Float64Array =
        col("income").iter().map(|v| v.as_ref().map(|s| f64::from(s.trim_end_matches('.') == ">50K"))).collect();
    arrays.push(("label", Arc::new(label)));
    RecordBatch::try_from_iter(arrays).expect("batch")
}

fn flights() -> (RecordBatch, RecordBatch) {
    let path = fixture_path("flights_sample.csv.gz");
    let open = || GzDecoder::new(std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())));
    let format = Format::default().with_header(true);
    let (schema, _) = format.infer_schema(open(), None).expect("schema");
    let mut text = String::new();
    open().read_to_string(&mut text).expect("read");
    let reader =
        ReaderBuilder::new(Arc::new(schema)).with_format(format).with_batch_size(1 << 20).build(text.as_bytes());
    let batches = reader.expect("csv").collect::<Result<Vec<_>, _>>().expect("batches");
    let all = arrow_select::concat::concat_batches(&batches[0].schema(), &batches).expect("concat");
    (all.slice(0, 48_000), all.slice(48_000, all.num_rows() - 48_000))
}

fn features_of(batch: &RecordBatch, label: &str) -> Vec<String> {
    batch.schema().fields().iter().map(|f| f.name().clone()).filter(|n| n != label).collect()
}

fn request<'a>(label: &'a str, features: &'a [String], options: GbdtOptions) -> GbdtRequest<'a> {
    GbdtRequest { label, features, options, max_categories: 255, class_weight: None, monotone: vec![] }
}

fn no_callback() -> impl FnMut(&RoundReport) -> ControlFlow<()> + Send {
    |_| ControlFlow::Continue(())
}

fn scores(model: &ModelArtifact, batch: &RecordBatch) -> Vec<f64> {
    Predictor::new(model.clone()).expect("model").predict(batch).expect("predict").scores
}

#[test]
fn adult_auc_matches_lightgbm() {
    let r = reference().adult;
    let (train, test) = (adult("adult.data.gz"), adult("adult.test.gz"));
    let features = features_of(&train, "label");
    let options = GbdtOptions { num_rounds: r.rounds, threads: 2, ..Default::default() };
    let model = train_gbdt(&train, None, &request("label", &features, options), None, &mut no_callback()).unwrap();
    let y = label_values(&test, "label", Task::BinaryClassification).unwrap();
    let auc = sluice_metrics::roc_auc(&y, &scores(&model, &test)).unwrap();
    println!("adult: sluice AUC {auc:.5}, LightGBM {:.5}", r.roc_auc);
    assert!(auc >= r.roc_auc - 0.005, "AUC {auc} vs LightGBM {}", r.roc_auc);
}

#[test]
fn flights_rmse_matches_lightgbm() {
    let r = reference().flights;
    let (train, test) = flights();
    let features = features_of(&train, "arr_delay");
    let options = GbdtOptions { loss: Loss::L2, num_rounds: r.rounds, threads: 2, ..Default::default() };
    let model = train_gbdt(&train, None, &request("arr_delay", &features, options), None, &mut no_callback()).unwrap();
    let y = label_values(&test, "arr_delay", Task::Regression).unwrap();
    let rmse = sluice_metrics::regression(&y, &scores(&model, &test)).unwrap().rmse;
    println!("flights: sluice RMSE {rmse:.4}, LightGBM {:.4}", r.rmse);
    assert!(rmse <= r.rmse * 1.01, "RMSE {rmse} vs LightGBM {}", r.rmse);
}

/// A synthetic task: y depends on x0 (non-monotonically), x1, and a categorical x2; x3 is NaN
/// exactly when the label is likely positive.
fn synthetic(n: usize, seed: u64) -> (DesignMatrix, Vec<f64>) {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut next = move || {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (s >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut data = Vec::with_capacity(n * 4);
    let mut y = Vec::with_capacity(n);
    for _ in 0..n {
        let x0 = next() * 4.0 - 2.0;
        let x1 = next();
        let cat = (next() * 10.0).floor();
        let z = (x0 * 2.0).sin() + 2.0 * x1 + if [1.0, 4.0, 7.0].contains(&cat) { 1.5 } else { -0.5 } - 1.0;
        let label = f64::from(next() < 1.0 / (1.0 + (-3.0 * z).exp()));
        let x3 = if label == 1.0 && next() < 0.5 { f64::NAN } else { next() };
        data.extend([x0, x1, cat, x3]);
        y.push(label);
    }
    (DesignMatrix { data, rows: n, cols: 4 }, y)
}

const SYNTH_CATS: [usize; 4] = [0, 0, 10, 0];

fn fit(x: &DesignMatrix, y: &[f64], opts: &GbdtOptions) -> sluice_train::gbdt::GbdtFit {
    fit_gbdt(&GbdtData { x, y, weight: None }, &SYNTH_CATS, None, opts, None, &mut no_callback()).expect("fit")
}

fn auc(model: &sluice_model::GbdtModel, x: &DesignMatrix, y: &[f64]) -> f64 {
    sluice_metrics::roc_auc(y, &model.raw_scores(x)).expect("auc")
}

#[test]
fn learns_categorical_sets_and_missingness() {
    let (x, y) = synthetic(20_000, 1);
    let (xt, yt) = synthetic(5_000, 2);
    let opts = GbdtOptions { num_rounds: 50, ..Default::default() };
    let m = fit(&x, &y, &opts).model;
    let full = auc(&m, &xt, &yt);
    // Without the categorical column, or with x3's missingness hidden, the model is worse.
    let mut hide = xt.clone();
    for r in 0..hide.rows {
        hide.data[r * 4 + 2] = f64::NAN;
    }
    let no_cat = auc(&m, &hide, &yt);
    let mut hide = xt.clone();
    for r in 0..hide.rows {
        if hide.data[r * 4 + 3].is_nan() {
            hide.data[r * 4 + 3] = 0.5;
        }
    }
    let no_missing = auc(&m, &hide, &yt);
    println!("AUC {full:.4}; categorical hidden {no_cat:.4}; missingness hidden {no_missing:.4}");
    assert!(full > 0.9, "{full}");
    assert!(full - no_cat > 0.03 && full - no_missing > 0.015, "{full} {no_cat} {no_missing}");
    let categorical_splits: usize = m.trees.iter().map(|t| t.cat_sets.len()).sum();
    assert!(categorical_splits > 0);
}

#[test]
fn same_model_for_any_thread_count_and_seeded_sampling() {
    // Bags of over 2 x 64k rows, so large leaves take the blocked, parallel histogram path.
    let (x, y) = synthetic(200_000, 3);
    let opts = |threads, seed| GbdtOptions {
        num_rounds: 10,
        threads,
        seed,
        bagging_fraction: 0.7,
        bagging_freq: 1,
        feature_fraction: 0.75,
        ..Default::default()
    };
    let one = fit(&x, &y, &opts(1, 7)).model;
    let two = fit(&x, &y, &opts(2, 7)).model;
    let three = fit(&x, &y, &opts(3, 7)).model;
    assert_eq!(one, two);
    assert_eq!(one, three);
    assert_ne!(one, fit(&x, &y, &opts(2, 8)).model, "another seed samples other rows");
}

#[test]
fn early_stopping_and_round_callback() {
    let (x, y) = synthetic(5_000, 4);
    let (xv, yv) = synthetic(2_000, 5);
    let opts = GbdtOptions {
        num_rounds: 500,
        learning_rate: 0.5,
        num_leaves: 63,
        split: min_data_in_leaf_for_test(),
        early_stopping_rounds: Some(10),
        metric: Metric::Logloss,
        ..Default::default()
    };
    let mut seen = Vec::new();
    let fit = fit_gbdt(
        &GbdtData { x: &x, y: &y, weight: None },
        &SYNTH_CATS,
        Some(&GbdtData { x: &xv, y: &yv, weight: None }),
        &opts,
        None,
        &mut |r: &RoundReport| {
            seen.push(r.valid_metric.unwrap());
            ControlFlow::Continue(())
        },
    )
    .unwrap();
    let (best_round, best) = fit.best.unwrap();
    assert!(fit.rounds < 500, "overfits quickly at learning rate 0.5");
    assert_eq!(fit.rounds, best_round + 10);
    assert_eq!(fit.model.best_rounds, best_round as usize);
    assert_eq!(seen, fit.history);
    assert_eq!(seen.iter().copied().fold(f64::INFINITY, f64::min), best);
    // The callback can stop training (a tuner's pruner).
    let fit = fit_gbdt(
        &GbdtData { x: &x, y: &y, weight: None },
        &SYNTH_CATS,
        Some(&GbdtData { x: &xv, y: &yv, weight: None }),
        &GbdtOptions { num_rounds: 100, ..Default::default() },
        None,
        &mut |r: &RoundReport| if r.round == 7 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) },
    )
    .unwrap();
    assert_eq!((fit.rounds, fit.model.trees.len()), (7, 7));
}

fn min_data_in_leaf_for_test() -> sluice_train::gbdt::split::SplitParams {
    sluice_train::gbdt::split::SplitParams { min_data_in_leaf: 5, ..GbdtOptions::default().split }
}

#[test]
fn monotone_constraint_holds_everywhere() {
    let (x, y) = synthetic(20_000, 6);
    let opts = GbdtOptions { num_rounds: 30, monotone: vec![1, 0, 0, 0], ..Default::default() };
    let m = fit(&x, &y, &opts).model;
    // sin(2 x0) goes up and down; the constrained model's prediction may only rise with x0.
    for base in 0..50 {
        let mut row = x.row(base).to_vec();
        let mut last = f64::NEG_INFINITY;
        for k in 0..=200 {
            row[0] = -2.5 + 5.0 * k as f64 / 200.0;
            let s = m.raw_scores(&DesignMatrix { data: row.clone(), rows: 1, cols: 4 })[0];
            assert!(s >= last - 1e-12, "row {base}: score fell from {last} to {s} at x0 = {}", row[0]);
            last = s;
        }
    }
    let free = fit(&x, &y, &GbdtOptions { num_rounds: 30, ..Default::default() }).model;
    assert!(auc(&free, &x, &y) > auc(&m, &x, &y), "the constraint costs fit on non-monotone data");
}

#[test]
fn warm_start_continues_boosting() {
    let (x, y) = synthetic(10_000, 7);
    let opts = |rounds| GbdtOptions { num_rounds: rounds, ..Default::default() };
    let first = fit(&x, &y, &opts(20));
    let data = GbdtData { x: &x, y: &y, weight: None };
    let more = fit_gbdt(&data, &SYNTH_CATS, None, &opts(20), Some(&first.model), &mut no_callback()).unwrap();
    assert_eq!(more.model.trees.len(), 40);
    assert_eq!(more.model.trees[..20], first.model.trees[..]);
    assert!(more.train_loss < first.train_loss);
    // Continuing on the same data is the same as training longer.
    let straight = fit(&x, &y, &opts(40)).model;
    let (a, b) = (more.model.raw_scores(&x), straight.raw_scores(&x));
    assert!(a.iter().zip(&b).all(|(a, b)| (a - b).abs() < 1e-9));
    // A model with another link cannot be continued with this loss.
    let l2 = GbdtOptions { loss: Loss::L2, ..opts(1) };
    assert!(fit_gbdt(&data, &SYNTH_CATS, None, &l2, Some(&first.model), &mut no_callback()).is_err());
}

#[test]
fn regression_losses() {
    let (x, _) = synthetic(20_000, 8);
    // A skewed, noisy target: y = 3 x1 + exponential noise.
    let mut s = 99u64;
    let y: Vec<f64> = (0..x.rows)
        .map(|r| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let u = ((s >> 11) as f64 / (1u64 << 53) as f64).max(1e-12);
            3.0 * x.data[r * 4 + 1] - u.ln()
        })
        .collect();
    let run = |loss| fit(&x, &y, &GbdtOptions { loss, num_rounds: 60, ..Default::default() }).model.predict(&x);
    for alpha in [0.1, 0.5, 0.9] {
        let p = run(Loss::Quantile { alpha });
        let below = y.iter().zip(&p).filter(|(y, p)| y <= p).count() as f64 / y.len() as f64;
        println!("quantile {alpha}: {below:.3} of labels at or below the prediction");
        assert!((below - alpha).abs() < 0.03, "quantile {alpha}: coverage {below}");
    }
    let l1 = run(Loss::L1);
    let l2 = run(Loss::L2);
    let huber = run(Loss::Huber { delta: 1.0 });
    let mae = |p: &[f64]| y.iter().zip(p).map(|(y, p)| (y - p).abs()).sum::<f64>() / y.len() as f64;
    let mse = |p: &[f64]| y.iter().zip(p).map(|(y, p)| (y - p).powi(2)).sum::<f64>() / y.len() as f64;
    assert!(mae(&l1) < mae(&l2), "L1 minimizes absolute error");
    assert!(mse(&l2) < mse(&l1), "L2 minimizes squared error");
    assert!(mae(&huber) < mae(&l2) && mse(&huber) < mse(&l1));
    let counts: Vec<f64> = y.iter().map(|v| v.max(0.0).floor()).collect();
    let p = fit(
        &x,
        &counts,
        &GbdtOptions { loss: Loss::Poisson { max_delta_step: 0.7 }, num_rounds: 60, ..Default::default() },
    )
    .model
    .predict(&x);
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    assert!(p.iter().all(|v| *v > 0.0));
    assert!((mean(&p) - mean(&counts)).abs() / mean(&counts) < 0.02, "{} vs {}", mean(&p), mean(&counts));
}

#[test]
fn class_weights_shift_probabilities() {
    let (x, mut y) = synthetic(10_000, 9);
    // Make positives rare.
    for (i, v) in y.iter_mut().enumerate() {
        if i % 4 != 0 {
            *v = 0.0;
        }
    }
    let batch = |x: &DesignMatrix, y: &[f64]| {
        let col = |j: usize| Arc::new(Float64Array::from((0..x.rows).map(|r| x.data[r * 4 + j]).collect::<Vec<_>>()));
        RecordBatch::try_from_iter([
            ("x0", col(0) as ArrayRef),
            ("x1", col(1) as ArrayRef),
            ("label", Arc::new(Float64Array::from(y.to_vec())) as ArrayRef),
        ])
        .unwrap()
    };
    let b = batch(&x, &y);
    let features = vec!["x0".to_string(), "x1".to_string()];
    let train = |cw| {
        let mut r = request("label", &features, GbdtOptions { num_rounds: 20, ..Default::default() });
        r.class_weight = cw;
        let m = train_gbdt(&b, None, &r, None, &mut no_callback()).unwrap();
        let p = scores(&m, &b);
        p.iter().sum::<f64>() / p.len() as f64
    };
    let plain = train(None);
    let balanced = train(Some(ClassWeight::Balanced));
    let positives = y.iter().sum::<f64>() / y.len() as f64;
    println!("positives {positives:.3}; mean probability plain {plain:.3}, balanced {balanced:.3}");
    assert!((plain - positives).abs() < 0.02);
    assert!(balanced > plain + 0.15, "balanced weights raise the minority class's probabilities");
}

#[test]
fn training_errors_name_the_problem() {
    let b = adult("adult.test.gz");
    let features = vec!["age".to_string(), "workclass".to_string()];
    let mut r = request("label", &features, GbdtOptions { num_rounds: 2, ..Default::default() });
    r.monotone = vec![("workclass".into(), 1)];
    let e = train_gbdt(&b, None, &r, None, &mut no_callback()).unwrap_err().to_string();
    assert!(e.contains("`workclass`") && e.contains("categorical"), "{e}");
    r.monotone = vec![("height".into(), 1)];
    let e = train_gbdt(&b, None, &r, None, &mut no_callback()).unwrap_err().to_string();
    assert!(e.contains("`height`") && e.contains("not a feature"), "{e}");
    let r = request("label", &features, GbdtOptions { loss: Loss::L2, max_bin: 300, ..Default::default() });
    let e = train_gbdt(&b, None, &r, None, &mut no_callback()).unwrap_err().to_string();
    assert!(e.contains("max_bin"), "{e}");
}

fn small_batch() -> impl Strategy<Value = RecordBatch> {
    (20usize..200).prop_flat_map(|n| {
        (
            prop::collection::vec(prop::option::weighted(0.9, -1e3f64..1e3), n),
            prop::collection::vec(
                prop::option::weighted(0.9, prop::sample::select(vec!["a", "b", "c", "d", "e", "f"])),
                n,
            ),
            prop::collection::vec(prop::bool::ANY, n),
        )
            .prop_map(|(num, cat, label)| {
                RecordBatch::try_from_iter([
                    ("num", Arc::new(Float64Array::from(num)) as ArrayRef),
                    ("cat", Arc::new(StringArray::from(cat)) as ArrayRef),
                    (
                        "label",
                        Arc::new(Float64Array::from(label.into_iter().map(f64::from).collect::<Vec<_>>())) as ArrayRef,
                    ),
                ])
                .expect("batch")
            })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Serialize → deserialize → predict gives bit-identical scores, and the thresholds the
    /// model stores route every training row to the leaf the binned training routed it to (the
    /// training loss recomputed from predictions equals the one training tracked).
    #[test]
    fn round_trip_predicts_identically(batch in small_batch(), rounds in 1u32..8) {
        let features = vec!["num".to_string(), "cat".to_string()];
        let mut split = GbdtOptions::default().split;
        split.min_data_in_leaf = 2;
        split.min_data_per_group = 1;
        let opts = GbdtOptions { num_rounds: rounds, split, ..Default::default() };
        let model = train_gbdt(&batch, None, &request("label", &features, opts), None, &mut no_callback()).unwrap();
        let back = ModelArtifact::from_json(&model.to_json()).unwrap();
        prop_assert_eq!(&back, &model);
        let (a, b) = (scores(&model, &batch), scores(&back, &batch));
        prop_assert!(a.iter().zip(&b).all(|(a, b)| a.to_bits() == b.to_bits()));
        let Model::Gbdt(m) = &model.model else { panic!("not a GBDT") };
        let y = label_values(&batch, "label", Task::BinaryClassification).unwrap();
        let x = sluice_model::design_matrix(&model.transforms, &batch).unwrap();
        let loss = Loss::Binary.mean_loss(&y, &vec![1.0; y.len()], &m.raw_scores(&x));
        prop_assert!((loss - model.training.objective).abs() < 1e-12, "{} vs {}", loss, model.training.objective);
    }
}

#[derive(Deserialize)]
struct MulticlassCase {
    rounds: u32,
    classes: Vec<String>,
    log_loss: f64,
    accuracy: f64,
}

#[test]
fn flights_origin_multiclass_matches_lightgbm() {
    #[derive(Deserialize)]
    struct Only {
        flights_origin: MulticlassCase,
    }
    let r = crate::support::read_json::<Only>("gbdt.json").flights_origin;
    let (train, test) = flights();
    let features: Vec<String> =
        ["month", "day", "dep_time", "sched_dep_time", "dep_delay", "sched_arr_time", "hour", "carrier"]
            .map(String::from)
            .to_vec();
    let options =
        GbdtOptions { loss: Loss::Multiclass { classes: 0 }, num_rounds: r.rounds, threads: 2, ..Default::default() };
    let model = train_gbdt(&train, None, &request("origin", &features, options), None, &mut no_callback()).unwrap();
    assert_eq!(model.task, Task::MulticlassClassification);
    assert_eq!(model.classes, r.classes);
    let p = Predictor::new(model.clone()).unwrap().predict(&test).unwrap();
    let y = sluice_train::model_labels(&model, &test).unwrap();
    let m = sluice_metrics::multiclass(&y, &p.probabilities, 3).unwrap();
    println!(
        "flights origin: sluice log loss {:.4} accuracy {:.4}; LightGBM {:.4} {:.4}",
        m.log_loss, m.accuracy, r.log_loss, r.accuracy
    );
    // Measured: accuracy 0.8601 vs 0.8612, log loss 0.3909 vs 0.3876. LightGBM itself moves
    // more than that with small changes: min_data_in_leaf 15 or 25 instead of 20 gives log loss
    // 0.3934 / 0.3920 and accuracy 0.8593 / 0.8568, max_bin 127 0.4110 / 0.8440 (departure
    // times nearly name the airport, so bin edges matter). These bounds catch regressions.
    assert!(m.accuracy >= r.accuracy - 0.01, "accuracy {} vs {}", m.accuracy, r.accuracy);
    assert!(m.log_loss <= r.log_loss * 1.03, "log loss {} vs {}", m.log_loss, r.log_loss);
    // Every row's probabilities sum to 1, and the output columns name the classes.
    assert!(p.probabilities.chunks(3).all(|row| (row.iter().sum::<f64>() - 1.0).abs() < 1e-12));
    let names: Vec<String> = p.columns(0.5).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["prediction", "probability", "probability_EWR", "probability_JFK", "probability_LGA"]);
    // Per-class TreeSHAP: each class's contributions and bias add up to its raw score.
    let rows = test.slice(0, 300);
    let e = Predictor::new(model.clone()).unwrap().explain(&rows).unwrap();
    assert_eq!(e.classes, r.classes);
    let Model::Gbdt(g) = &model.model else { panic!("not a GBDT") };
    let raw = g.raw_scores(&sluice_model::design_matrix(&model.transforms, &rows).unwrap());
    check_contributions(&e, &raw, 3);
    // Round trip, and a warm start keeps the classes and adds 3 trees per round.
    let back = ModelArtifact::from_json(&model.to_json()).unwrap();
    assert_eq!(Predictor::new(back).unwrap().predict(&test).unwrap(), p);
    let more = GbdtOptions { loss: Loss::Multiclass { classes: 0 }, num_rounds: 2, ..Default::default() };
    let warm = train_gbdt(&test, None, &request("origin", &features, more), Some(&model), &mut no_callback()).unwrap();
    let Model::Gbdt(w) = &warm.model else { panic!("not a GBDT") };
    assert_eq!((w.num_class, w.trees.len()), (3, 3 * (r.rounds as usize + 2)));
}

/// Every row's contributions plus bias equal its raw score, per output (class).
fn check_contributions(e: &sluice_model::Explanation, raw: &[f64], outputs: usize) {
    let block = e.columns.len() + 1;
    assert_eq!(e.values.cols, outputs * block);
    let mut worst = 0.0f64;
    for r in 0..e.values.rows {
        for (c, values) in e.values.row(r).chunks(block).enumerate() {
            worst = worst.max((values.iter().sum::<f64>() - raw[r * outputs + c]).abs());
        }
    }
    assert!(worst < 1e-9, "contributions miss the raw score by {worst:e}");
}

#[derive(Deserialize)]
struct ForestCases {
    adult_forest: ForestCase,
    flights_forest: ForestCase,
}

#[derive(Deserialize)]
struct ForestCase {
    trees: u32,
    #[serde(default)]
    roc_auc: f64,
    #[serde(default)]
    rmse: f64,
}

fn forest_options(loss: Loss, trees: u32) -> GbdtOptions {
    let mut o = GbdtOptions {
        loss,
        num_rounds: trees,
        learning_rate: 1.0,
        num_leaves: usize::MAX,
        threads: 2,
        random_forest: Some(sluice_train::gbdt::ForestOptions::default()),
        ..Default::default()
    };
    o.split.min_data_in_leaf = 1;
    o.split.min_sum_hessian_in_leaf = 0.0;
    o.split.min_data_per_group = 1;
    o.split.cat_smooth = 0.0;
    o.split.cat_l2 = 0.0;
    o
}

#[test]
fn random_forests_match_scikit_learn() {
    let r: ForestCases = crate::support::read_json("gbdt.json");
    let (train, test) = (adult("adult.data.gz"), adult("adult.test.gz"));
    let features = features_of(&train, "label");
    let started = std::time::Instant::now();
    let options = forest_options(Loss::Binary, r.adult_forest.trees);
    let model = train_gbdt(&train, None, &request("label", &features, options), None, &mut no_callback()).unwrap();
    let y = label_values(&test, "label", Task::BinaryClassification).unwrap();
    let p = scores(&model, &test);
    let (lo, hi) = p.iter().fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
    // Up to the single-precision rounding of the gradients.
    assert!(lo >= -1e-6 && hi <= 1.0 + 1e-6, "forest predictions are probabilities: {lo} .. {hi}");
    let auc = sluice_metrics::roc_auc(&y, &p).unwrap();
    println!(
        "adult forest: sluice AUC {auc:.4} ({:.1}s), scikit-learn {:.4}",
        started.elapsed().as_secs_f64(),
        r.adult_forest.roc_auc
    );
    assert!(auc >= r.adult_forest.roc_auc - 0.005, "AUC {auc} vs {}", r.adult_forest.roc_auc);

    // Regression: 48k rows grown to single-row leaves. With categories split into the best
    // subset at every node, as boosting does, the RMSE was 17.43 against scikit-learn's 17.13:
    // fully grown trees overfit `dest`'s 101 values; forests split categories in order.
    let (train, test) = flights();
    let features = features_of(&train, "arr_delay");
    let started = std::time::Instant::now();
    let options = forest_options(Loss::L2, r.flights_forest.trees);
    let model = train_gbdt(&train, None, &request("arr_delay", &features, options), None, &mut no_callback()).unwrap();
    let y = label_values(&test, "arr_delay", Task::Regression).unwrap();
    let rmse = sluice_metrics::regression(&y, &scores(&model, &test)).unwrap().rmse;
    println!(
        "flights forest: sluice RMSE {rmse:.4} ({:.1}s), scikit-learn {:.4}",
        started.elapsed().as_secs_f64(),
        r.flights_forest.rmse
    );
    assert!(rmse <= r.flights_forest.rmse * 1.01, "RMSE {rmse} vs {}", r.flights_forest.rmse);
}

#[test]
fn forests_do_not_depend_on_the_thread_count() {
    // Exact leaves (under 4,096 rows) and histogram leaves above, trees grown in parallel.
    let (x, _) = synthetic(6_000, 11);
    let y: Vec<f64> = (0..x.rows).map(|i| 3.0 * x.data[i * 4 + 1] + (2.0 * x.data[i * 4]).sin()).collect();
    let forest = |threads: usize, exact_rows: usize| {
        let mut o = forest_options(Loss::L2, 12);
        o.threads = threads;
        o.random_forest = Some(sluice_train::gbdt::ForestOptions { exact_rows, ..Default::default() });
        fit_gbdt(&GbdtData { x: &x, y: &y, weight: None }, &SYNTH_CATS, None, &o, None, &mut no_callback())
            .unwrap()
            .model
    };
    let (one, two) = (forest(1, sluice_train::gbdt::EXACT_ROWS), forest(2, sluice_train::gbdt::EXACT_ROWS));
    assert_eq!(one.trees, two.trees);
    let (xt, _) = synthetic(2_000, 12);
    let yt: Vec<f64> = (0..xt.rows).map(|i| 3.0 * xt.data[i * 4 + 1] + (2.0 * xt.data[i * 4]).sin()).collect();
    let rmse = |m: &sluice_model::GbdtModel| sluice_metrics::regression(&yt, &m.predict(&xt)).unwrap().rmse;
    let mean = yt.iter().sum::<f64>() / yt.len() as f64;
    let spread = sluice_metrics::regression(&yt, &vec![mean; yt.len()]).unwrap().rmse;
    let binned = forest(2, 0);
    println!("synthetic forest: RMSE exact {:.4}, bins only {:.4}, mean {spread:.4}", rmse(&one), rmse(&binned));
    assert!(rmse(&one) < 0.2 * spread, "{} vs {spread}", rmse(&one));
    // Exact thresholds fit the smooth x0, x1 effects more closely than 255 bins.
    assert!(rmse(&one) < rmse(&binned), "exact {} vs bins {}", rmse(&one), rmse(&binned));

    // One fully grown tree on all rows, split between the rows' own values, puts every row in
    // a leaf of its own label: training and prediction route rows the same way.
    let mut o = forest_options(Loss::L2, 1);
    o.random_forest =
        Some(sluice_train::gbdt::ForestOptions { bootstrap: false, exact_rows: usize::MAX, ..Default::default() });
    let tree = fit_gbdt(&GbdtData { x: &x, y: &y, weight: None }, &SYNTH_CATS, None, &o, None, &mut no_callback())
        .unwrap()
        .model;
    let worst = tree.predict(&x).iter().zip(&y).map(|(p, y)| (p - y).abs()).fold(0.0f64, f64::max);
    assert!(worst < 1e-4, "a training row is {worst} from its label");
}

#[derive(Deserialize)]
struct LinearReferences {
    adult_logistic: LinearReference,
    adult_logistic_l1: LinearReference,
    flights_elastic_net: LinearReference,
    flights_origin_multinomial: LinearReference,
}

#[derive(Deserialize)]
struct LinearReference {
    #[serde(default)]
    l1: f64,
    l2: f64,
    #[serde(default)]
    roc_auc: f64,
    #[serde(default)]
    rmse: f64,
    #[serde(default)]
    log_loss: f64,
    #[serde(default)]
    accuracy: f64,
}

/// Binary logistic (L2, and L1 by proximal Newton), elastic-net regression and multinomial
/// logistic regression on the real splits, against scikit-learn on the same design matrix:
/// test AUC within 0.005, RMSE and log loss within 1%.
#[test]
fn linear_models_match_scikit_learn_on_real_data() {
    use sluice_train::{FeatureOptions, LinearOptions, Objective, TrainRequest, train_linear};
    let r: LinearReferences = crate::support::read_json("gbdt.json");
    let fit = |train: &RecordBatch, label: &str, features: &[String], objective, case: &LinearReference| {
        let request = TrainRequest {
            label,
            features,
            objective,
            linear: LinearOptions { l2: case.l2, l1: case.l1, ..Default::default() },
            preprocessing: FeatureOptions::default(),
        };
        let started = std::time::Instant::now();
        let model = train_linear(train, &request).expect("trains");
        (model, started.elapsed().as_secs_f64())
    };
    let (train, test) = (adult("adult.data.gz"), adult("adult.test.gz"));
    let features = features_of(&train, "label");
    for (name, case) in [("L2", &r.adult_logistic), ("L1", &r.adult_logistic_l1)] {
        let (model, secs) = fit(&train, "label", &features, Objective::Logistic, case);
        let auc = sluice_metrics::roc_auc(
            &label_values(&test, "label", Task::BinaryClassification).unwrap(),
            &scores(&model, &test),
        )
        .unwrap();
        let Model::Linear(m) = &model.model else { panic!("not linear") };
        let zeros = m.weights.iter().filter(|w| **w == 0.0).count();
        println!(
            "adult logistic {name}: AUC {auc:.5} vs scikit-learn {:.5}; {} iterations, {zeros} zero weights, {secs:.2}s",
            case.roc_auc, model.training.iterations
        );
        assert!(model.training.converged, "{name}: {:?}", model.training);
        assert!((auc - case.roc_auc).abs() < 0.005, "{name}: AUC {auc} vs {}", case.roc_auc);
    }

    let (train, test) = flights();
    let features: Vec<String> = [
        "month",
        "day",
        "dep_time",
        "sched_dep_time",
        "dep_delay",
        "sched_arr_time",
        "carrier",
        "origin",
        "dest",
        "distance",
        "hour",
    ]
    .map(String::from)
    .to_vec();
    let case = &r.flights_elastic_net;
    let (model, secs) = fit(&train, "arr_delay", &features, Objective::SquaredError, case);
    let y = label_values(&test, "arr_delay", Task::Regression).unwrap();
    let rmse = sluice_metrics::regression(&y, &scores(&model, &test)).unwrap().rmse;
    println!("flights elastic net: RMSE {rmse:.4} vs scikit-learn {:.4}; {secs:.2}s", case.rmse);
    assert!((rmse / case.rmse - 1.0).abs() < 0.01, "RMSE {rmse} vs {}", case.rmse);

    let features: Vec<String> =
        ["month", "day", "dep_time", "sched_dep_time", "dep_delay", "sched_arr_time", "hour", "carrier"]
            .map(String::from)
            .to_vec();
    let case = &r.flights_origin_multinomial;
    let (model, secs) = fit(&train, "origin", &features, Objective::Logistic, case);
    assert_eq!(model.task, Task::MulticlassClassification);
    assert_eq!(model.classes, ["EWR", "JFK", "LGA"]);
    let p = Predictor::new(model.clone()).unwrap().predict(&test).unwrap();
    let y = sluice_train::model_labels(&model, &test).unwrap();
    let m = sluice_metrics::multiclass(&y, &p.probabilities, 3).unwrap();
    println!(
        "flights origin multinomial: log loss {:.4} accuracy {:.4} vs scikit-learn {:.4} {:.4}; {} iterations, {secs:.2}s",
        m.log_loss, m.accuracy, case.log_loss, case.accuracy, model.training.iterations
    );
    assert!(model.training.converged, "{:?}", model.training);
    assert!((m.log_loss / case.log_loss - 1.0).abs() < 0.01, "log loss {} vs {}", m.log_loss, case.log_loss);
    // Per-class linear terms add up to each class's margin.
    let rows = test.slice(0, 300);
    let e = Predictor::new(model.clone()).unwrap().explain(&rows).unwrap();
    let Model::Linear(linear) = &model.model else { panic!("not linear") };
    check_contributions(&e, &linear.margins(&sluice_model::design_matrix(&model.transforms, &rows).unwrap()), 3);
    assert!((m.accuracy - case.accuracy).abs() < 0.01, "accuracy {} vs {}", m.accuracy, case.accuracy);
}
