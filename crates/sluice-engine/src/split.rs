//! Splitting a dataset into parts (train/test/...) reproducibly.
//!
//! Rows are assigned by a seeded hash of their content, never by their position: DataFusion may
//! deliver rows in a different order from run to run, and a split must not change when it does.
//! Part sizes are the requested fractions rounded to whole rows (largest remainder); stratified
//! splits also keep each stratum's share of every part within one row. Each part's rows are
//! ordered by that hash (or by time), so a part's bytes — and content hash — are stable.

use std::collections::BTreeMap;

use datafusion::arrow::array::{RecordBatch, UInt32Array};
use datafusion::arrow::compute::take_record_batch;
use datafusion::arrow::row::{RowConverter, SortField};
use indexmap::IndexMap;
use sluice_spec::kinds::SplitMethod;

use crate::error::{EngineError, Result};

fn rows_of(batch: &RecordBatch, columns: &[usize]) -> Result<datafusion::arrow::row::Rows> {
    let fields = columns.iter().map(|&i| SortField::new(batch.schema().field(i).data_type().clone())).collect();
    let converter = RowConverter::new(fields)?;
    let arrays: Vec<_> = columns.iter().map(|&i| batch.column(i).clone()).collect();
    Ok(converter.convert_columns(&arrays)?)
}

fn column_index(batch: &RecordBatch, name: &str) -> Result<usize> {
    batch.schema().index_of(name).map_err(|_| EngineError::MissingColumn {
        column: name.to_string(),
        available: batch.schema().fields().iter().map(|f| format!("`{}`", f.name())).collect::<Vec<_>>().join(", "),
    })
}

/// Split sizes for `n` rows: floor of each share, then the leftover rows to the largest
/// remainders (earlier parts win ties).
fn apportion(n: usize, fractions: &[f64]) -> Vec<usize> {
    let exact: Vec<f64> = fractions.iter().map(|f| f * n as f64).collect();
    let mut counts: Vec<usize> = exact.iter().map(|e| e.floor() as usize).collect();
    let mut left = n - counts.iter().sum::<usize>();
    let mut order: Vec<usize> = (0..fractions.len()).collect();
    order.sort_by(|&a, &b| (exact[b] - exact[b].floor()).total_cmp(&(exact[a] - exact[a].floor())).then(a.cmp(&b)));
    for &i in order.iter().cycle() {
        if left == 0 {
            break;
        }
        counts[i] += 1;
        left -= 1;
    }
    counts
}

/// Give rows, in order, to parts by smooth weighted round robin: every row adds each part's
/// fraction to its credit, the part with the most credit takes the row and pays one. Any run of
/// `m` consecutive rows then gives each part within one row of `m * fraction`; credit carries
/// over between calls, so a sequence of strata also adds up to the overall fractions.
fn round_robin(ordered: &[usize], shares: &[f64], credit: &mut [f64], parts: &mut [Vec<u32>]) {
    for &row in ordered {
        credit.iter_mut().zip(shares).for_each(|(c, s)| *c += s);
        let mut best = 0;
        for p in 1..credit.len() {
            if credit[p] > credit[best] + 1e-12 {
                best = p;
            }
        }
        credit[best] -= 1.0;
        parts[best].push(row as u32);
    }
}

/// How a dataset is split.
pub struct SplitSpec<'a> {
    pub method: SplitMethod,
    pub fractions: &'a IndexMap<String, f64>,
    pub seed: u64,
    /// Stratify (`stratified`) or order (`time`) by this column.
    pub by: Option<&'a str>,
    /// Columns that decide a row's part; all when `None`.
    pub key: Option<&'a [String]>,
}

pub fn split(batch: &RecordBatch, spec: &SplitSpec) -> Result<Vec<(String, RecordBatch)>> {
    let SplitSpec { method, fractions, seed, by, key } = *spec;
    let n = batch.num_rows();
    let shares: Vec<f64> = fractions.values().copied().collect();
    let all: Vec<usize> = (0..batch.num_columns()).collect();
    let full = rows_of(batch, &all)?;
    let keyed = match key {
        None => None,
        Some(names) => {
            let columns = names.iter().map(|c| column_index(batch, c)).collect::<Result<Vec<_>>>()?;
            Some(rows_of(batch, &columns)?)
        }
    };
    let rows = keyed.as_ref().unwrap_or(&full);
    let hash_key = blake3::derive_key("sluice split v1", &seed.to_le_bytes());
    let hashes: Vec<u64> = (0..n)
        .map(|i| {
            let digest = blake3::keyed_hash(&hash_key, rows.row(i).as_ref());
            u64::from_le_bytes(digest.as_bytes()[..8].try_into().unwrap_or_default())
        })
        .collect();
    // Ties (equal key hashes) are broken by the rows' full content, never by position.
    let by_hash = |a: &usize, b: &usize| hashes[*a].cmp(&hashes[*b]).then_with(|| full.row(*a).cmp(&full.row(*b)));

    let mut parts: Vec<Vec<u32>> = vec![Vec::new(); shares.len()];
    let assign = |ordered: &[usize], parts: &mut Vec<Vec<u32>>| {
        let mut start = 0;
        for (p, count) in apportion(ordered.len(), &shares).into_iter().enumerate() {
            parts[p].extend(ordered[start..start + count].iter().map(|&i| i as u32));
            start += count;
        }
    };
    match method {
        SplitMethod::Random => {
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by(by_hash);
            assign(&order, &mut parts);
        }
        SplitMethod::Stratified => {
            let column = by.ok_or_else(|| EngineError::Invalid("stratified split needs `by`".into()))?;
            let keys = rows_of(batch, &[column_index(batch, column)?])?;
            let mut strata: BTreeMap<&[u8], Vec<usize>> = BTreeMap::new();
            for i in 0..n {
                strata.entry(keys.row(i).data()).or_default().push(i);
            }
            let mut credit = vec![0.0; shares.len()];
            for members in strata.values_mut() {
                members.sort_by(by_hash);
                round_robin(members, &shares, &mut credit, &mut parts);
            }
            for part in &mut parts {
                part.sort_by(|a, b| by_hash(&(*a as usize), &(*b as usize)));
            }
        }
        SplitMethod::Time => {
            let column = by.ok_or_else(|| EngineError::Invalid("time split needs `by`".into()))?;
            let keys = rows_of(batch, &[column_index(batch, column)?])?;
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by(|a, b| keys.row(*a).cmp(&keys.row(*b)).then_with(|| by_hash(a, b)));
            assign(&order, &mut parts);
        }
    }
    fractions
        .keys()
        .zip(parts)
        .map(|(name, idx)| Ok((name.clone(), take_record_batch(batch, &UInt32Array::from(idx))?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{ArrayRef, Int64Array, StringArray};
    use proptest::prelude::*;

    use super::*;

    fn batch(n: i64) -> RecordBatch {
        let ids: Vec<i64> = (0..n).collect();
        let labels: Vec<&str> = (0..n).map(|i| if i % 4 == 0 { "yes" } else { "no" }).collect();
        RecordBatch::try_from_iter([
            ("id", Arc::new(Int64Array::from(ids)) as ArrayRef),
            ("label", Arc::new(StringArray::from(labels)) as ArrayRef),
        ])
        .unwrap()
    }

    fn spec<'a>(
        method: SplitMethod,
        fractions: &'a IndexMap<String, f64>,
        seed: u64,
        by: Option<&'a str>,
    ) -> SplitSpec<'a> {
        SplitSpec { method, fractions, seed, by, key: None }
    }

    #[test]
    fn stratified_sizes_hold_even_for_tiny_strata() {
        // Every row its own stratum (the review's case: 200 rows, 0.8/0.2 gave 200/0 before).
        let f = fr(0.8);
        let parts = split(&batch(200), &spec(SplitMethod::Stratified, &f, 3, Some("id"))).unwrap();
        assert_eq!((parts[0].1.num_rows(), parts[1].1.num_rows()), (160, 40));
    }

    #[test]
    fn key_columns_decide_membership() {
        let b = batch(100);
        let extra = RecordBatch::try_from_iter(
            b.schema().fields().iter().map(|f| f.name().clone()).zip(b.columns().iter().cloned()).chain([(
                "noise".to_string(),
                Arc::new(Int64Array::from((0..100).map(|i| i * 7 % 13).collect::<Vec<i64>>())) as ArrayRef,
            )]),
        )
        .unwrap();
        let f = fr(0.7);
        let key = ["id".to_string()];
        let by_id = |batch: &RecordBatch| {
            let s = SplitSpec { method: SplitMethod::Random, fractions: &f, seed: 9, by: None, key: Some(&key) };
            let parts = split(batch, &s).unwrap();
            parts[1].1.column(0).as_any().downcast_ref::<Int64Array>().unwrap().values().to_vec()
        };
        assert_eq!(by_id(&b), by_id(&extra), "adding a column must not move rows between parts");
    }

    fn fr(a: f64) -> IndexMap<String, f64> {
        IndexMap::from([("train".to_string(), a), ("test".to_string(), 1.0 - a)])
    }

    #[test]
    fn apportion_is_exact() {
        assert_eq!(apportion(10, &[0.8, 0.2]), vec![8, 2]);
        assert_eq!(apportion(7, &[0.5, 0.5]), vec![4, 3]);
        assert_eq!(apportion(3, &[0.34, 0.33, 0.33]), vec![1, 1, 1]);
    }

    #[test]
    fn stratified_keeps_proportions() {
        let parts = split(&batch(1000), &spec(SplitMethod::Stratified, &fr(0.8), 1, Some("label"))).unwrap();
        let yes = |b: &RecordBatch| {
            let l = b.column(1).as_any().downcast_ref::<StringArray>().unwrap();
            l.iter().filter(|v| *v == Some("yes")).count()
        };
        assert_eq!(parts[0].1.num_rows(), 800);
        assert_eq!(yes(&parts[0].1), 200);
        assert_eq!(yes(&parts[1].1), 50);
    }

    #[test]
    fn time_split_takes_earliest_first() {
        let parts = split(&batch(10), &spec(SplitMethod::Time, &fr(0.7), 1, Some("id"))).unwrap();
        let ids = parts[0].1.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(ids.values().to_vec(), (0..7).collect::<Vec<i64>>());
    }

    #[test]
    fn unknown_column_is_named() {
        let e = split(&batch(10), &spec(SplitMethod::Time, &fr(0.7), 1, Some("when"))).unwrap_err();
        assert!(e.to_string().contains("`when`"), "{e}");
    }

    proptest! {
        // The split depends on row content and seed only, never on row order.
        #[test]
        fn order_independent(seed in 0u64..1000, rotate in 0usize..100) {
            let b = batch(100);
            let idx: Vec<u32> = (0..100u32).map(|i| (i + rotate as u32) % 100).collect();
            let shuffled = take_record_batch(&b, &UInt32Array::from(idx)).unwrap();
            let f = fr(0.75);
            let a = split(&b, &spec(SplitMethod::Random, &f, seed, None)).unwrap();
            let c = split(&shuffled, &spec(SplitMethod::Random, &f, seed, None)).unwrap();
            prop_assert_eq!(&a[0].1, &c[0].1);
            prop_assert_eq!(&a[1].1, &c[1].1);
            prop_assert_eq!(a[0].1.num_rows() + a[1].1.num_rows(), 100);
        }
    }
}
