//! Quantile binning: every feature value becomes a small bin index, so histograms have at most
//! 256 entries per feature. The last bin of every feature holds its missing values.

use rayon::prelude::*;
use sluice_model::DesignMatrix;

use sluice_core::rng::SplitMix64;

/// How one feature's values map to bins.
#[derive(Clone, Debug, PartialEq)]
pub enum BinMapper {
    /// Value bin `b` holds `upper[b-1] < x <= upper[b]`; the last upper bound is `+inf`.
    Numeric { upper: Vec<f64> },
    /// Bin `k` holds category index `k`; indices at or past `categories` count as missing.
    Categorical { categories: usize },
}

impl BinMapper {
    /// Bins for values, not counting the missing bin.
    pub fn value_bins(&self) -> usize {
        match self {
            BinMapper::Numeric { upper } => upper.len(),
            BinMapper::Categorical { categories } => *categories,
        }
    }

    /// The missing-value bin, after the value bins.
    pub fn missing_bin(&self) -> usize {
        self.value_bins()
    }

    pub fn num_bins(&self) -> usize {
        self.value_bins() + 1
    }

    pub fn is_categorical(&self) -> bool {
        matches!(self, BinMapper::Categorical { .. })
    }

    #[inline]
    pub fn bin(&self, x: f64) -> u8 {
        if x.is_nan() {
            return self.missing_bin() as u8;
        }
        match self {
            // First bound >= x: the bin where `x <= upper[b]` first holds.
            BinMapper::Numeric { upper } => upper.partition_point(|u| *u < x) as u8,
            BinMapper::Categorical { categories } => {
                if x >= 0.0 && (x as usize) < *categories {
                    x as u8
                } else {
                    *categories as u8
                }
            }
        }
    }

    /// The split threshold on raw values for "bins `0..=b` go left".
    pub fn threshold(&self, b: usize) -> f64 {
        match self {
            BinMapper::Numeric { upper } => upper[b],
            BinMapper::Categorical { .. } => 0.0,
        }
    }

    /// Fit numeric bins from the non-missing values of a sample: one bin per distinct value when
    /// there are few, else greedy equal-frequency bins over the distinct values (a value holding
    /// more than a bin's share gets its own bin). Bounds sit halfway between neighbouring values.
    pub fn fit_numeric(mut values: Vec<f64>, max_bin: usize) -> Self {
        values.retain(|v| !v.is_nan());
        values.sort_by(f64::total_cmp);
        let mut distinct: Vec<(f64, usize)> = Vec::new();
        for v in values {
            match distinct.last_mut() {
                Some((d, c)) if *d == v => *c += 1,
                _ => distinct.push((v, 1)),
            }
        }
        let mut upper = Vec::new();
        if distinct.len() <= max_bin {
            for w in distinct.windows(2) {
                upper.push(midpoint(w[0].0, w[1].0));
            }
        } else {
            let mut remaining: usize = distinct.iter().map(|d| d.1).sum();
            let mut bins_left = max_bin;
            let mut acc = 0;
            for i in 0..distinct.len() - 1 {
                let target = remaining as f64 / bins_left as f64;
                acc += distinct[i].1;
                // Close the bin when it is full, or before a value that deserves a bin alone.
                if acc as f64 >= target || distinct[i + 1].1 as f64 >= target {
                    upper.push(midpoint(distinct[i].0, distinct[i + 1].0));
                    remaining -= acc;
                    acc = 0;
                    bins_left -= 1;
                    if bins_left == 1 {
                        break;
                    }
                }
            }
        }
        upper.push(f64::INFINITY);
        BinMapper::Numeric { upper }
    }
}

pub(crate) fn midpoint(a: f64, b: f64) -> f64 {
    let m = a + (b - a) / 2.0;
    // Keep `a <= m < b` even when the two are adjacent floats.
    if m >= b { a } else { m }
}

/// Features stored together, row by row: one 4-byte read gives a row's bins for the group.
pub const GROUP: usize = 4;

/// Feature values as bin indices, in groups of [`GROUP`] features interleaved row by row: a
/// histogram pass over a leaf's (scattered) rows touches one cache line per row and group
/// instead of one per feature, while the group's accumulators still fit in L1 cache.
pub struct BinnedData {
    pub rows: usize,
    pub features: usize,
    pub groups: Vec<Vec<[u8; GROUP]>>,
}

impl BinnedData {
    pub fn new(x: &DesignMatrix, mappers: &[BinMapper]) -> Self {
        let groups = (0..mappers.len().div_ceil(GROUP))
            .into_par_iter()
            .map(|g| {
                (0..x.rows)
                    .map(|i| {
                        std::array::from_fn(|t| {
                            let j = g * GROUP + t;
                            mappers.get(j).map_or(0, |m| m.bin(x.data[i * x.cols + j]))
                        })
                    })
                    .collect()
            })
            .collect();
        Self { rows: x.rows, features: mappers.len(), groups }
    }

    pub fn from_columns(columns: Vec<Vec<u8>>) -> Self {
        let rows = columns.first().map_or(0, Vec::len);
        let groups = (0..columns.len().div_ceil(GROUP))
            .map(|g| {
                (0..rows).map(|i| std::array::from_fn(|t| columns.get(g * GROUP + t).map_or(0, |c| c[i]))).collect()
            })
            .collect();
        Self { rows, features: columns.len(), groups }
    }

    /// The bin of feature `j` in row `r`.
    #[inline]
    pub fn bin(&self, j: usize, r: usize) -> u8 {
        self.groups[j / GROUP][r][j % GROUP]
    }
}

/// Fit a mapper per feature from at most `sample` rows (chosen with `seed`). `categorical[j]` is
/// the number of categories of feature `j`, or 0 for a numeric feature.
pub fn fit_mappers(
    x: &DesignMatrix,
    categorical: &[usize],
    max_bin: usize,
    sample: usize,
    seed: u64,
) -> Vec<BinMapper> {
    let rows: Vec<usize> = if x.rows <= sample {
        (0..x.rows).collect()
    } else {
        let mut rng = SplitMix64::new(seed ^ 0xB1A5);
        let mut picked = rng.sample_indices(x.rows, sample);
        picked.sort_unstable();
        picked
    };
    (0..x.cols)
        .into_par_iter()
        .map(|j| match categorical[j] {
            0 => BinMapper::fit_numeric(rows.iter().map(|&i| x.data[i * x.cols + j]).collect(), max_bin),
            categories => BinMapper::Categorical { categories },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn few_distinct_values_get_one_bin_each() {
        let m = BinMapper::fit_numeric(vec![3.0, 1.0, 2.0, 2.0, f64::NAN], 255);
        assert_eq!(m, BinMapper::Numeric { upper: vec![1.5, 2.5, f64::INFINITY] });
        assert_eq!([1.0, 1.5, 1.6, 2.0, 3.0, 99.0].map(|x| m.bin(x)), [0, 0, 1, 1, 2, 2]);
        assert_eq!(m.bin(f64::NAN), 3);
        for b in 0..3 {
            // bin(x) <= b exactly when x <= threshold(b): training and prediction agree.
            for x in [0.0, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0] {
                assert_eq!(m.bin(x) as usize <= b, x <= m.threshold(b));
            }
        }
    }

    #[test]
    fn many_values_get_about_equal_frequency_bins() {
        let values: Vec<f64> = (0..10_000).map(|i| (i % 1000) as f64).collect();
        let m = BinMapper::fit_numeric(values.clone(), 10);
        assert_eq!(m.value_bins(), 10);
        let mut counts = [0usize; 11];
        values.iter().for_each(|v| counts[m.bin(*v) as usize] += 1);
        assert!(counts[..10].iter().all(|c| (900..=1100).contains(c)), "{counts:?}");
    }

    #[test]
    fn a_heavy_value_gets_its_own_bin() {
        let mut values = vec![0.0; 5000];
        values.extend((1..=5000).map(f64::from));
        let m = BinMapper::fit_numeric(values, 8);
        assert_eq!(m.bin(0.0), 0);
        assert_eq!(m.bin(1.0), 1);
    }
}
