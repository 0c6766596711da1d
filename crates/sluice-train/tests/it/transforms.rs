//! Feature engineering: fitted values against scikit-learn (scripts/reference/transforms.py),
//! and the property that what training saw is what scoring and serving compute.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::{Array, ArrayRef, Float64Array, RecordBatch, StringArray};
use proptest::prelude::*;
use serde_json::Value;
use sluice_model::{DatePart, Feature, Unseen};
use sluice_train::{FeatureSpec as F, Impute, fit_pipeline};

fn fixture() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/transforms.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap_or(f64::NAN)).collect()
}

fn input() -> (RecordBatch, Value) {
    let f = fixture();
    let x: Float64Array = f["input"]["x"].as_array().unwrap().iter().map(Value::as_f64).collect();
    let y = Float64Array::from(floats(&f["input"]["y"]));
    let text: StringArray = f["input"]["text"].as_array().unwrap().iter().map(|v| v.as_str()).collect();
    let cat: StringArray = f["input"]["cat"].as_array().unwrap().iter().map(|v| v.as_str()).collect();
    let batch = RecordBatch::try_from_iter([
        ("x", Arc::new(x) as ArrayRef),
        ("y", Arc::new(y) as ArrayRef),
        ("text", Arc::new(text) as ArrayRef),
        ("cat", Arc::new(cat) as ArrayRef),
    ])
    .unwrap();
    (batch, f)
}

fn column(batch: &RecordBatch, name: &str) -> Vec<f64> {
    let c = batch.column_by_name(name).unwrap_or_else(|| panic!("no `{name}` in {:?}", batch.schema()));
    let c = arrow_cast::cast(c, &arrow_schema::DataType::Float64).unwrap();
    let c = c.as_primitive::<Float64Type>();
    (0..c.len()).map(|i| if c.is_null(i) { f64::NAN } else { c.value(i) }).collect()
}

#[track_caller]
fn close(got: &[f64], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g.is_nan() && w.is_nan()) || (g - w).abs() <= 1e-12 * w.abs().max(1.0), "{what}[{i}]: {g} vs {w}");
    }
}

#[test]
fn fitted_transforms_match_scikit_learn() {
    let (batch, f) = input();
    let one = |spec: F| fit_pipeline(&[spec], &batch, "y", 1).unwrap();
    close(
        &column(&one(F::Impute { column: "x".into(), strategy: Impute::Mean }).train, "x"),
        &floats(&f["impute_mean"]),
        "impute mean",
    );
    close(
        &column(&one(F::Impute { column: "x".into(), strategy: Impute::Median }).train, "x"),
        &floats(&f["impute_median"]),
        "impute median",
    );
    close(
        &column(&one(F::Standardize { column: "y".into() }).train, "y"),
        &floats(&f["standardize"]),
        "StandardScaler",
    );
    close(&column(&one(F::MinMax { column: "y".into() }).train, "y"), &floats(&f["minmax"]), "MinMaxScaler");
    close(&column(&one(F::Robust { column: "y".into() }).train, "y"), &floats(&f["robust"]), "RobustScaler");
    close(&column(&one(F::Log1p { column: "y".into() }).train, "y"), &floats(&f["log1p"]), "log1p");
    let fitted = one(F::Bucketize { column: "y".into(), quantiles: Some(4), bins: None });
    let Feature::Bucketize { edges, .. } = &fitted.pipeline.steps[0] else { panic!() };
    close(edges, &floats(&f["quantile_edges_4"]), "quantile edges");
    let buckets = column(&fitted.train, "y");
    assert!((0..4).all(|b| buckets.iter().filter(|v| **v == b as f64).count() >= 70), "four buckets of about 75 rows");

    let fitted = one(F::Tokens { column: "text".into(), max_features: 6, idf: true });
    let Feature::Tokens { vocabulary, .. } = &fitted.pipeline.steps[0] else { panic!() };
    let want: Vec<String> =
        f["tfidf_vocabulary"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    assert_eq!(vocabulary, &want);
    let rows = f["tfidf"].as_array().unwrap();
    for (j, word) in want.iter().enumerate() {
        let got = column(&fitted.train, &format!("text:{word}"));
        let expected: Vec<f64> = rows.iter().map(|r| r[j].as_f64().unwrap()).collect();
        close(&got, &expected, &format!("tf-idf `{word}`"));
    }
}

#[test]
fn target_encoding_is_out_of_fold_in_training_and_full_fit_when_stored() {
    let (batch, _) = input();
    let fitted =
        fit_pipeline(&[F::Target { column: "cat".into(), folds: 5, smoothing: 10.0 }], &batch, "y", 7).unwrap();
    let Feature::Target { means, prior, .. } = &fitted.pipeline.steps[0] else { panic!() };
    let y = column(&batch, "y");
    let cats: Vec<String> =
        batch.column_by_name("cat").unwrap().as_string::<i32>().iter().map(|v| v.unwrap().into()).collect();
    assert!((prior - y.iter().sum::<f64>() / y.len() as f64).abs() < 1e-9);
    for (c, m) in means {
        let ys: Vec<f64> = cats.iter().zip(&y).filter(|(k, _)| *k == c).map(|(_, v)| *v).collect();
        let want = (ys.iter().sum::<f64>() + 10.0 * prior) / (ys.len() as f64 + 10.0);
        assert!((m - want).abs() < 1e-9, "{c}: {m} vs {want}");
    }
    // Training rows see other folds' encodings; scoring uses the stored full fit.
    let oof = column(&fitted.train, "cat");
    let scored = column(&fitted.pipeline.apply(&batch).unwrap(), "cat");
    assert!(oof.iter().zip(&scored).filter(|(a, b)| (*a - *b).abs() > 1e-9).count() > batch.num_rows() / 2);
}

fn table(xs: Vec<Option<f64>>, cats: Vec<Option<u8>>, words: Vec<u8>) -> RecordBatch {
    let n = xs.len();
    let x: Float64Array = xs.into_iter().collect();
    let cat: StringArray = cats.into_iter().take(n).map(|c| c.map(|c| format!("c{}", c % 5))).collect();
    let vocab = ["red", "green", "blue", "fast", "slow"];
    let text: StringArray =
        (0..n).map(|i| Some(format!("{} {}", vocab[words[i % words.len()] as usize % 5], vocab[i % 5]))).collect();
    let days: arrow_array::Date32Array = (0..n).map(|i| Some(15_700 + (i as i32 * 37) % 400)).collect();
    let y: Float64Array = (0..n).map(|i| Some((i % 3) as f64)).collect();
    RecordBatch::try_from_iter([
        ("x", Arc::new(x) as ArrayRef),
        ("cat", Arc::new(cat) as ArrayRef),
        ("text", Arc::new(text) as ArrayRef),
        ("day", Arc::new(days) as ArrayRef),
        ("y", Arc::new(y) as ArrayRef),
    ])
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// What a model trains on (the fitted pipeline's training output) equals what batch scoring
    /// computes on the same rows, and serving one row at a time computes the same values.
    #[test]
    fn train_time_equals_score_time_equals_serve_time(
        xs in prop::collection::vec(prop::option::of(-1e3f64..1e3), 8..60),
        cats in prop::collection::vec(prop::option::of(0u8..7), 60),
        words in prop::collection::vec(0u8..5, 1..8),
    ) {
        let batch = table(xs, cats, words);
        let specs = vec![
            F::Impute { column: "x".into(), strategy: Impute::Median },
            F::Clip { column: "x".into(), min: Some(-500.0), max: None },
            F::Cross { columns: vec!["cat".into(), "text".into()] },
            F::Frequency { column: "cat_x_text".into() },
            F::Bucketize { column: "x".into(), quantiles: Some(4), bins: None },
            F::Hash { column: "text".into(), buckets: 7 },
            F::OneHot { column: "cat".into(), max_categories: 3, unseen: Unseen::Ignore },
            F::DateParts { column: "day".into(), parts: vec![DatePart::Month, DatePart::Dayofweek] },
        ];
        let fitted = fit_pipeline(&specs, &batch, "y", 3).unwrap();
        let scored = fitted.pipeline.apply(&batch).unwrap();
        prop_assert_eq!(&scored, &fitted.train);
        let rows: Vec<RecordBatch> = (0..batch.num_rows()).map(|r| fitted.pipeline.apply(&batch.slice(r, 1)).unwrap()).collect();
        let served = arrow_select::concat::concat_batches(&scored.schema(), &rows).unwrap();
        prop_assert_eq!(&served, &scored);
        // And through the artifact's JSON, as the server loads it.
        let json = serde_json::to_vec(&fitted.pipeline).unwrap();
        let loaded: sluice_model::FeaturePipeline = serde_json::from_slice(&json).unwrap();
        prop_assert_eq!(loaded.apply(&batch).unwrap(), scored);
    }
}

/// Streaming fits (batch by batch, as the `fit_transform` step does) equal the in-memory fit
/// where their statistics are exact (moments, counts), and medians/quantiles come within the
/// KLL sketch's rank error.
#[test]
fn streaming_fit_matches_the_in_memory_fit() {
    use sluice_model::features::Table;
    use sluice_train::{Accumulator, stages};
    let (batch, _) = input();
    let specs = vec![
        F::Standardize { column: "y".into() },
        F::OneHot { column: "cat".into(), max_categories: 3, unseen: Unseen::Ignore },
        F::Frequency { column: "text".into() },
        F::Target { column: "cat".into(), folds: 5, smoothing: 10.0 },
        F::Impute { column: "x".into(), strategy: Impute::Median },
        F::MinMax { column: "x".into() },
    ];
    // `cat` is read again after one-hot wrote it, and `x` after impute: three passes.
    assert_eq!(stages(&specs), vec![vec![0, 1, 2], vec![3, 4], vec![5]]);
    let target_specs = [F::Target { column: "cat".into(), folds: 5, smoothing: 10.0 }];
    let in_memory = fit_pipeline(&specs[..3], &batch, "y", 1).unwrap().pipeline;
    let target_memory = fit_pipeline(&target_specs, &batch, "y", 1).unwrap().pipeline;
    let mut fitted = Vec::new();
    for spec in specs[..3].iter().chain(&target_specs) {
        let mut acc = Accumulator::new(spec.clone());
        for start in (0..batch.num_rows()).step_by(64) {
            let part = batch.slice(start, 64.min(batch.num_rows() - start));
            acc.update(&Table::from(&part), "y").unwrap();
        }
        fitted.push(acc.finish().unwrap());
    }
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * b.abs().max(1.0);
    match (&fitted[0], &in_memory.steps[0]) {
        (Feature::Scale { center: a, scale: b, .. }, Feature::Scale { center: c, scale: d, .. }) => {
            assert!(close(*a, *c) && close(*b, *d), "{a} {b} vs {c} {d}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(fitted[1], in_memory.steps[1], "one-hot categories");
    assert_eq!(fitted[2], in_memory.steps[2], "frequencies");
    match (&fitted[3], &target_memory.steps[0]) {
        (Feature::Target { means: a, prior: p, .. }, Feature::Target { means: b, prior: q, .. }) => {
            assert!(close(*p, *q));
            assert!(a.keys().eq(b.keys()) && a.iter().zip(b).all(|((_, x), (_, y))| close(*x, *y)));
        }
        other => panic!("{other:?}"),
    }
    // The median from the sketch is a value whose rank is within 1% of the middle.
    let mut acc = Accumulator::new(F::Impute { column: "x".into(), strategy: Impute::Median });
    acc.update(&Table::from(&batch), "y").unwrap();
    let Feature::Impute { fill: sluice_model::Fill::Number(m), .. } = acc.finish().unwrap() else { panic!() };
    let mut xs: Vec<f64> = column(&batch, "x").into_iter().filter(|v| !v.is_nan()).collect();
    xs.sort_by(f64::total_cmp);
    let rank = xs.partition_point(|v| *v < m) as f64 / xs.len() as f64;
    assert!((rank - 0.5).abs() <= 0.01, "median {m} has rank {rank}");
}

/// Numbers equal to rounding, everything else equal.
#[track_caller]
fn json_close(a: &Value, b: &Value, path: &str) {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!((x - y).abs() <= 1e-12 * y.abs().max(1.0), "{path}: {x} vs {y}");
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{path}");
            x.iter().zip(y).enumerate().for_each(|(i, (x, y))| json_close(x, y, &format!("{path}[{i}]")));
        }
        (Value::Object(x), Value::Object(y)) => {
            assert!(x.keys().eq(y.keys()), "{path}: keys {:?} vs {:?}", x.keys(), y.keys());
            x.iter().zip(y).for_each(|((k, x), (_, y))| json_close(x, y, &format!("{path}.{k}")));
        }
        _ => assert_eq!(a, b, "{path}"),
    }
}

/// A distributed fit: partitions' partial states, merged, fit what one pass over all the rows
/// fits; a lone partial merged into a fresh accumulator is that partition's state exactly.
#[test]
fn merged_partial_states_fit_what_one_pass_fits() {
    use sluice_model::features::Table;
    use sluice_train::Accumulator;
    let (batch, _) = input();
    let specs = [
        F::Standardize { column: "y".into() },
        F::MinMax { column: "x".into() },
        F::OneHot { column: "cat".into(), max_categories: 3, unseen: Unseen::Ignore },
        F::Frequency { column: "text".into() },
        F::Target { column: "cat".into(), folds: 5, smoothing: 10.0 },
        F::Tokens { column: "text".into(), max_features: 6, idf: true },
        F::Impute { column: "text".into(), strategy: Impute::MostFrequent },
        F::Impute { column: "x".into(), strategy: Impute::Mean },
    ];
    let half = batch.num_rows() / 2;
    for spec in specs {
        let mut whole = Accumulator::new(spec.clone());
        whole.update(&Table::from(&batch), "y").unwrap();
        let parts: Vec<Accumulator> = [(0, half), (half, batch.num_rows() - half)]
            .into_iter()
            .map(|(start, len)| {
                let mut a = Accumulator::new(spec.clone());
                a.update(&Table::from(&batch.slice(start, len)), "y").unwrap();
                a
            })
            .collect();
        let mut lone = Accumulator::new(spec.clone());
        lone.merge_partial(&parts[0].partial()).unwrap();
        assert_eq!(lone.partial(), parts[0].partial(), "{spec:?}: a lone partial");
        let mut merged = Accumulator::new(spec.clone());
        for p in &parts {
            merged.merge_partial(&p.partial()).unwrap();
        }
        let (got, want) = (merged.finish().unwrap(), whole.finish().unwrap());
        json_close(&serde_json::to_value(&got).unwrap(), &serde_json::to_value(&want).unwrap(), &format!("{spec:?}"));
    }
    let mut broken = Accumulator::new(F::Standardize { column: "y".into() });
    let err = broken.merge_partial(b"{\"rows\": 3}").unwrap_err().to_string();
    assert!(err.contains("`y`") && err.contains("fit state"), "{err}");
}
