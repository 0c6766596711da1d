//! Cross-validation folds: k-fold, stratified, group and time-ordered (expanding window).

use std::collections::{BTreeMap, HashMap};

use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch};
use arrow_cast::cast;
use arrow_schema::DataType;

use crate::error::{Result, TrainError};
use sluice_core::rng::SplitMix64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CvMethod {
    KFold,
    Stratified,
    Group,
    Time,
}

#[derive(Clone, Debug)]
pub struct CvSpec {
    pub folds: usize,
    pub method: CvMethod,
    /// Group column (`Group`) or time column (`Time`).
    pub by: Option<String>,
    pub seed: u64,
}

fn text(batch: &RecordBatch, column: &str) -> Result<Vec<String>> {
    let c = batch.column_by_name(column).ok_or_else(|| TrainError::MissingColumn(column.to_string()))?;
    let t = cast(c, &DataType::Utf8).map_err(|e| TrainError::Invalid(format!("column `{column}`: {e}")))?;
    let t = t.as_string::<i32>();
    Ok((0..t.len()).map(|i| if t.is_valid(i) { t.value(i).to_string() } else { String::new() }).collect())
}

/// `(train rows, test rows)` per fold, each sorted. Every row is tested exactly once, except
/// with `Time`, where the first block only ever trains.
pub fn cv_folds(batch: &RecordBatch, label: &str, spec: &CvSpec) -> Result<Vec<(Vec<u32>, Vec<u32>)>> {
    let n = batch.num_rows();
    let k = spec.folds;
    if k < 2 || n < k + 1 {
        return Err(TrainError::Invalid(format!("{k}-fold cross-validation needs at least {} rows, got {n}", k + 1)));
    }
    let mut rng = SplitMix64::new(spec.seed);
    let by = || spec.by.as_deref().ok_or_else(|| TrainError::Invalid("this cross-validation method needs `by`".into()));
    // fold[i] = the fold row i is tested in.
    let fold: Vec<usize> = match spec.method {
        CvMethod::KFold => {
            let order = rng.sample_indices(n, n);
            let mut fold = vec![0; n];
            for (pos, &row) in order.iter().enumerate() {
                fold[row] = pos % k;
            }
            fold
        }
        CvMethod::Stratified => {
            let labels = text(batch, label)?;
            let mut by_class: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
            for (i, l) in labels.iter().enumerate() {
                by_class.entry(l).or_default().push(i);
            }
            let mut fold = vec![0; n];
            let mut next = 0;
            for rows in by_class.values() {
                for &p in &rng.sample_indices(rows.len(), rows.len()) {
                    fold[rows[p]] = next % k;
                    next += 1;
                }
            }
            fold
        }
        CvMethod::Group => {
            let by = by()?;
            let groups = text(batch, by)?;
            let mut distinct: Vec<&str> =
                groups.iter().map(String::as_str).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
            if distinct.len() < k {
                return Err(TrainError::Invalid(format!(
                    "{} groups in `{}` cannot fill {k} folds",
                    distinct.len(),
                    by
                )));
            }
            let order = rng.sample_indices(distinct.len(), distinct.len());
            distinct = order.iter().map(|&i| distinct[i]).collect();
            let of: HashMap<&str, usize> = distinct.iter().enumerate().map(|(i, g)| (*g, i % k)).collect();
            groups.iter().map(|g| of[g.as_str()]).collect()
        }
        CvMethod::Time => {
            let by = by()?;
            let column = batch.column_by_name(by).ok_or_else(|| TrainError::MissingColumn(by.to_string()))?;
            let keys = arrow_ord::sort::sort_to_indices(column, None, None)
                .map_err(|e| TrainError::Invalid(format!("cannot order by `{by}`: {e}")))?;
            // k + 1 equal blocks in time order; fold j tests block j + 1 and trains on 0..=j.
            let mut out = Vec::with_capacity(k);
            let block = |b: usize| (b * n / (k + 1))..((b + 1) * n / (k + 1));
            for j in 0..k {
                let mut train: Vec<u32> = (0..block(j).end).map(|p| keys.value(p)).collect();
                let mut test: Vec<u32> = block(j + 1).map(|p| keys.value(p)).collect();
                train.sort_unstable();
                test.sort_unstable();
                out.push((train, test));
            }
            return Ok(out);
        }
    };
    Ok((0..k)
        .map(|f| {
            let (test, train): (Vec<u32>, Vec<u32>) = (0..n as u32).partition(|&i| fold[i as usize] == f);
            (train, test)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Float64Array, Int64Array, StringArray};

    use super::*;

    fn batch() -> RecordBatch {
        let n = 100;
        RecordBatch::try_from_iter([
            (
                "label",
                Arc::new(Float64Array::from((0..n).map(|i| f64::from(i % 10 == 0)).collect::<Vec<_>>())) as ArrayRef,
            ),
            (
                "user",
                Arc::new(StringArray::from((0..n).map(|i| format!("u{}", i % 7)).collect::<Vec<_>>())) as ArrayRef,
            ),
            ("t", Arc::new(Int64Array::from((0..n as i64).rev().collect::<Vec<_>>())) as ArrayRef),
        ])
        .unwrap()
    }

    fn spec(method: CvMethod, by: Option<&str>) -> CvSpec {
        CvSpec { folds: 4, method, by: by.map(str::to_string), seed: 1 }
    }

    #[test]
    fn every_row_is_tested_once_and_never_trained_on_in_its_fold() {
        let b = batch();
        for method in [CvMethod::KFold, CvMethod::Stratified, CvMethod::Group] {
            let folds = cv_folds(&b, "label", &spec(method, Some("user"))).unwrap();
            let mut tested: Vec<u32> = folds.iter().flat_map(|(_, t)| t.clone()).collect();
            tested.sort();
            assert_eq!(tested, (0..100).collect::<Vec<u32>>(), "{method:?}");
            for (train, test) in &folds {
                assert_eq!(train.len() + test.len(), 100);
                assert!(test.iter().all(|r| train.binary_search(r).is_err()));
            }
        }
        // Stratified: every fold holds 2 or 3 of the 10 positives.
        for (_, test) in cv_folds(&b, "label", &spec(CvMethod::Stratified, None)).unwrap() {
            let positives = test.iter().filter(|r| *r % 10 == 0).count();
            assert!((2..=3).contains(&positives), "{positives}");
        }
        // Group: a user's rows are never split across a fold boundary.
        for (train, test) in cv_folds(&b, "label", &spec(CvMethod::Group, Some("user"))).unwrap() {
            let users = |rows: &[u32]| rows.iter().map(|r| r % 7).collect::<std::collections::BTreeSet<_>>();
            assert!(users(&train).is_disjoint(&users(&test)));
        }
    }

    #[test]
    fn time_folds_train_only_on_the_past() {
        // `t` decreases with the row number: the latest rows come first.
        let folds = cv_folds(&batch(), "label", &spec(CvMethod::Time, Some("t"))).unwrap();
        assert_eq!(folds.len(), 4);
        for (j, (train, test)) in folds.iter().enumerate() {
            assert_eq!(train.len(), 20 * (j + 1));
            assert_eq!(test.len(), 20);
            // Smaller row number = later time; every test row is later than every train row.
            assert!(test.iter().max() < train.iter().min());
        }
    }
}
