#![allow(clippy::unwrap_used)]
//! Profiles of real data checked against pandas/numpy (scripts/reference/profile.py).

use std::io::Read;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::csv::ReaderBuilder;
use arrow::csv::reader::Format;
use serde_json::Value;
use sluice_profile::{ColumnKind, Profile, Profiler, profile_batches};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn adult() -> (Vec<RecordBatch>, Value) {
    let mut text = Vec::new();
    let file = std::fs::File::open(format!("{FIXTURES}/adult_10k.csv.gz")).unwrap();
    flate2::read::GzDecoder::new(file).read_to_end(&mut text).unwrap();
    let format = Format::default().with_header(true);
    let (schema, _) = format.infer_schema(std::io::Cursor::new(&text), None).unwrap();
    let reader = ReaderBuilder::new(Arc::new(schema)).with_format(format).with_batch_size(1000);
    let batches = reader.build(std::io::Cursor::new(text)).unwrap().collect::<Result<Vec<_>, _>>().unwrap();
    let expected: Value =
        serde_json::from_slice(&std::fs::read(format!("{FIXTURES}/adult_10k.json")).unwrap()).unwrap();
    (batches, expected)
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * b.abs().max(1.0)
}

#[test]
fn adult_profile_matches_pandas() {
    let (batches, expected) = adult();
    let profile = profile_batches(batches[0].schema(), &batches).unwrap();
    assert_eq!(profile.rows, 10_000);
    let columns = expected["columns"].as_object().unwrap();
    assert_eq!(profile.columns.len(), columns.len());
    for (name, e) in columns {
        let c = profile.column(name).unwrap_or_else(|| panic!("no column {name}"));
        assert_eq!(c.count, e["count"].as_u64().unwrap(), "{name} count");
        assert_eq!(c.nulls, e["nulls"].as_u64().unwrap(), "{name} nulls");
        let distinct = e["distinct"].as_u64().unwrap();
        if c.distinct_exact {
            assert_eq!(c.distinct, distinct, "{name} distinct");
        } else {
            // HyperLogLog: 1.6% standard error; allow 4 of them.
            assert!(close(c.distinct as f64, distinct as f64, 0.065), "{name} distinct {} vs {distinct}", c.distinct);
        }
        if let Some(min) = e.get("min") {
            assert!(matches!(c.kind, ColumnKind::Numeric), "{name} kind");
            let n = c.numeric.as_ref().unwrap();
            assert_eq!(n.min, min.as_f64().unwrap(), "{name} min");
            assert_eq!(n.max, e["max"].as_f64().unwrap(), "{name} max");
            assert!(close(n.mean, e["mean"].as_f64().unwrap(), 1e-12), "{name} mean");
            assert!(close(n.std.unwrap(), e["std"].as_f64().unwrap(), 1e-12), "{name} std");
            let edges: Vec<f64> =
                e["histogram"]["edges"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            assert_eq!(n.histogram.edges, edges, "{name} edges");
            let counts: Vec<u64> =
                e["histogram"]["counts"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
            let quantiles: Vec<f64> = e["quantiles"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            let got: Vec<f64> = n.quantiles.iter().map(|q| q.value).collect();
            if n.exact {
                assert_eq!(n.histogram.counts, counts, "{name} histogram");
                assert_eq!(got, quantiles, "{name} quantiles");
            } else {
                // KLL: each bin's count within 1% of the rows; each quantile's rank within 1%.
                for (g, w) in n.histogram.counts.iter().zip(&counts) {
                    assert!((*g as f64 - *w as f64).abs() <= 100.0, "{name} histogram {g} vs {w}");
                }
                assert_eq!(n.histogram.counts.iter().sum::<u64>(), c.count, "{name} histogram total");
                let sorted = sorted_values(&batches, name);
                for (q, v) in sluice_profile::QUANTILES.iter().zip(&got) {
                    let lo = sorted.partition_point(|x| x < v) as f64 / sorted.len() as f64;
                    let hi = sorted.partition_point(|x| x <= v) as f64 / sorted.len() as f64;
                    assert!(lo - 0.01 <= *q && *q <= hi + 0.01, "{name} q{q}: {v} spans ranks {lo}..{hi}");
                }
            }
        } else {
            let top: Vec<(String, u64)> = e["top"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (p[0].as_str().unwrap().to_string(), p[1].as_u64().unwrap()))
                .collect();
            let got: Vec<(String, u64)> = c.top.as_ref().unwrap().iter().map(|f| (f.value.clone(), f.count)).collect();
            assert_eq!(got, top, "{name} top values");
        }
    }
}

fn sorted_values(batches: &[RecordBatch], name: &str) -> Vec<f64> {
    let mut v: Vec<f64> = batches
        .iter()
        .flat_map(|b| {
            let a =
                arrow::compute::cast(b.column_by_name(name).unwrap(), &arrow::datatypes::DataType::Float64).unwrap();
            let a = a.as_any().downcast_ref::<arrow::array::Float64Array>().unwrap().clone();
            a.iter().flatten().filter(|x| !x.is_nan()).collect::<Vec<_>>()
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v
}

/// Profiling on the calling thread alone gives the parallel profile exactly.
#[test]
fn serial_and_parallel_updates_agree() {
    let (batches, _) = adult();
    let (mut parallel, mut serial) = (Profiler::new(batches[0].schema()), Profiler::new(batches[0].schema()));
    for b in &batches {
        parallel.update(b).unwrap();
        serial.update_serial(b).unwrap();
    }
    assert_eq!(parallel.finish(), serial.finish());
    let narrower = RecordBatch::try_new(
        Arc::new(arrow::datatypes::Schema::new(vec![batches[0].schema().field(0).clone()])),
        vec![batches[0].column(0).clone()],
    )
    .unwrap();
    assert!(Profiler::new(batches[0].schema()).update_serial(&narrower).is_err());
}

#[test]
fn partition_profiles_merge_to_the_whole_and_round_trip() {
    let (batches, _) = adult();
    let schema = batches[0].schema();
    let whole = profile_batches(schema.clone(), &batches).unwrap();
    let mut merged: Option<Profile> = None;
    for part in batches.chunks(3) {
        let p = profile_batches(schema.clone(), part).unwrap();
        match &mut merged {
            None => merged = Some(p),
            Some(m) => m.merge(&p).unwrap(),
        }
    }
    let merged = merged.unwrap();
    assert_eq!(merged.rows, whole.rows);
    for (a, b) in merged.columns.iter().zip(&whole.columns) {
        assert_eq!((a.count, a.nulls, a.distinct), (b.count, b.nulls, b.distinct), "{}", a.name);
        assert_eq!(a.top, b.top, "{}", a.name);
        assert_eq!(a.state.hll, b.state.hll, "{}", a.name);
        if let (Some(x), Some(y)) = (&a.numeric, &b.numeric) {
            assert_eq!((x.min, x.max), (y.min, y.max));
            assert!(close(x.mean, y.mean, 1e-12) && close(x.std.unwrap(), y.std.unwrap(), 1e-12), "{}", a.name);
            let n = a.count as f64;
            for (p, q) in x.histogram.counts.iter().zip(&y.histogram.counts) {
                assert!((*p as f64 - *q as f64).abs() <= 0.01 * n, "{}: {p} vs {q}", a.name);
            }
        }
    }
    let back = Profile::from_json(&merged.to_json()).unwrap();
    assert_eq!(back, merged);
    // Merging profiles of different columns is refused.
    let other = Profiler::new(Arc::new(arrow::datatypes::Schema::empty())).finish();
    assert!(merged.clone().merge(&other).is_err());
}

/// Drift statistics from two profiles against SciPy on the same values
/// (scripts/reference/drift.py): samples small enough that the sketches are exact.
#[test]
fn drift_matches_scipy() {
    use arrow::array::{ArrayRef, Float64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    let fixture: Value = serde_json::from_str(include_str!("../fixtures/drift.json")).unwrap();
    let profile_of = |case: &Value, side: &str| -> Profile {
        let numeric = case["kind"] == "numeric";
        let values = case[side].as_array().unwrap();
        let (field, array): (Field, ArrayRef) = if numeric {
            let v: Vec<f64> = values.iter().map(|x| x.as_f64().unwrap()).collect();
            (Field::new("x", DataType::Float64, true), Arc::new(Float64Array::from(v)))
        } else {
            let v: Vec<&str> = values.iter().map(|x| x.as_str().unwrap()).collect();
            (Field::new("x", DataType::Utf8, true), Arc::new(StringArray::from(v)))
        };
        let schema = Arc::new(Schema::new(vec![field]));
        profile_batches(schema.clone(), &[RecordBatch::try_new(schema, vec![array]).unwrap()]).unwrap()
    };
    let near = |got: f64, want: &Value, what: &str, name: &str| {
        let want = want.as_f64().unwrap();
        assert!((got - want).abs() <= 1e-6 * want.abs().max(1.0), "{name} {what}: {got} vs SciPy {want}");
    };
    for case in fixture["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let (reference, current) = (profile_of(case, "reference"), profile_of(case, "current"));
        let drift = sluice_profile::drift::drift(&reference, &current);
        assert_eq!(drift.len(), 1, "{name}");
        let d = &drift[0];
        near(d.psi, &case["psi"], "psi", name);
        near(d.jensen_shannon, &case["js"], "jensen-shannon", name);
        if case["kind"] == "numeric" {
            near(d.ks.unwrap(), &case["ks"], "ks", name);
            near(d.ks_p_value.unwrap(), &case["ks_p_value"], "ks p-value", name);
            near(d.wasserstein.unwrap(), &case["wasserstein"], "wasserstein", name);
            assert_eq!(d.method, sluice_profile::drift::DriftMethod::KolmogorovSmirnov);
            assert_eq!(d.drifted, case["ks_p_value"].as_f64().unwrap() < 0.05, "{name}");
        } else {
            near(d.chi2.unwrap(), &case["chi2"], "chi2", name);
            near(d.chi2_p_value.unwrap(), &case["chi2_p_value"], "chi2 p-value", name);
            assert_eq!(d.method, sluice_profile::drift::DriftMethod::ChiSquared);
            assert_eq!(d.drifted, case["chi2_p_value"].as_f64().unwrap() < 0.05, "{name}");
        }
    }
}
