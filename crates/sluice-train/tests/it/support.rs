//! Fixture loading and numeric comparison helpers.

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_csv::ReaderBuilder;
use arrow_csv::reader::Format;
use serde::de::DeserializeOwned;

pub fn fixture_path(name: &str) -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())
        .join("tests")
        .join("fixtures")
        .join(name)
}

fn open(name: &str) -> File {
    let path = fixture_path(name);
    File::open(&path).unwrap_or_else(|e| panic!("{}: {e} (run scripts/reference/linear_models.py)", path.display()))
}

pub fn read_json<T: DeserializeOwned>(name: &str) -> T {
    serde_json::from_reader(std::io::BufReader::new(open(name))).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A CSV fixture with a header, schema inferred, as one batch.
pub fn read_csv(name: &str) -> RecordBatch {
    let format = Format::default().with_header(true);
    let (schema, _) = format.infer_schema(open(name), None).unwrap_or_else(|e| panic!("{name}: {e}"));
    let reader = ReaderBuilder::new(Arc::new(schema))
        .with_format(format)
        .with_batch_size(1 << 20)
        .build(open(name))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut batches = reader.collect::<Result<Vec<_>, _>>().unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(batches.len(), 1, "{name}: expected one batch");
    batches.remove(0)
}

/// The largest difference between `ours` and `reference`, and where it is.
#[derive(Clone, Copy, Debug)]
pub struct MaxDiff {
    pub value: f64,
    pub index: usize,
}

fn worst(ours: &[f64], reference: &[f64], diff: impl Fn(f64, f64) -> f64) -> MaxDiff {
    assert_eq!(ours.len(), reference.len(), "lengths differ");
    let mut worst = MaxDiff { value: 0.0, index: 0 };
    for (i, (&a, &b)) in ours.iter().zip(reference).enumerate() {
        let d = diff(a, b);
        // A NaN is the worst difference of all.
        if !worst.value.is_nan() && (d.is_nan() || d > worst.value) {
            worst = MaxDiff { value: d, index: i };
        }
    }
    worst
}

/// Largest `|ours - reference| / max(|reference|, floor)`.
pub fn max_rel_diff(ours: &[f64], reference: &[f64], floor: f64) -> MaxDiff {
    worst(ours, reference, |a, b| (a - b).abs() / b.abs().max(floor))
}

/// Largest `|ours - reference|`.
pub fn max_abs_diff(ours: &[f64], reference: &[f64]) -> MaxDiff {
    worst(ours, reference, |a, b| (a - b).abs())
}

/// Assert a comparison is within `tol`, naming the worst element; print the measured value.
pub fn check(what: &str, diff: MaxDiff, tol: f64, ours: &[f64], reference: &[f64]) {
    println!("{what}: max diff {:.3e} (tolerance {tol:.0e})", diff.value);
    assert!(
        diff.value <= tol,
        "{what}: diff {:.3e} > {tol:.0e} at [{}]: ours {} vs scikit-learn {}",
        diff.value,
        diff.index,
        ours[diff.index],
        reference[diff.index],
    );
}
