//! Gradient histograms: per feature and bin, the sums of gradients and hessians. Building them
//! is the only pass over the data; split finding reads only histograms. Histograms of disjoint
//! row sets add up ([`Histogram::merge`]), so each partition of a dataset can build its own — on
//! another thread or another machine — and the sums are equal up to floating-point rounding.
//!
//! Bins hold no row counts, as in LightGBM: counting would be a third read-modify-write per
//! feature and row; dropping it made root histograms a third and child histograms a fifth
//! faster on the 1M x 28 benchmark. Split finding estimates a bin range's rows from its share
//! of the leaf's hessian and the leaf's exactly known row count ([`super::split::Node`]): exact
//! when every row's hessian is the same (L2, L1, Huber and quantile losses without weights) and
//! for unweighted forests, whose hessians count bootstrap draws.

use std::ops::{Add, Sub};

use rayon::prelude::*;

use super::bin::{BinnedData, GROUP};

/// A row's gradient and hessian. Stored in single precision (as LightGBM does) to halve the
/// memory traffic of the scattered reads; histograms sum them in double precision.
pub type GradPair = [f32; 2];

/// Sums of gradients and hessians over some rows: one histogram bin.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct GradSum {
    pub g: f64,
    pub h: f64,
}

impl GradSum {
    pub fn of([g, h]: GradPair) -> Self {
        Self { g: f64::from(g), h: f64::from(h) }
    }
}

impl Add for GradSum {
    type Output = Self;
    fn add(self, o: Self) -> Self {
        Self { g: self.g + o.g, h: self.h + o.h }
    }
}

impl Sub for GradSum {
    type Output = Self;
    fn sub(self, o: Self) -> Self {
        Self { g: self.g - o.g, h: self.h - o.h }
    }
}

/// Sums over some rows and how many rows: a leaf's totals, or one side of a split.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BinStat {
    pub g: f64,
    pub h: f64,
    pub n: u64,
}

impl BinStat {
    pub fn new(sum: GradSum, n: u64) -> Self {
        Self { g: sum.g, h: sum.h, n }
    }

    pub fn sum(&self) -> GradSum {
        GradSum { g: self.g, h: self.h }
    }
}

impl Add for BinStat {
    type Output = Self;
    fn add(self, o: Self) -> Self {
        Self { g: self.g + o.g, h: self.h + o.h, n: self.n + o.n }
    }
}

impl Sub for BinStat {
    type Output = Self;
    fn sub(self, o: Self) -> Self {
        Self { g: self.g - o.g, h: self.h - o.h, n: self.n - o.n }
    }
}

/// Where each feature's bins start in a flat histogram.
#[derive(Clone, Debug)]
pub struct Layout {
    pub offsets: Vec<usize>,
    pub total: usize,
}

impl Layout {
    pub fn new(num_bins: impl Iterator<Item = usize>) -> Self {
        let mut offsets = Vec::new();
        let mut total = 0;
        for n in num_bins {
            offsets.push(total);
            total += n;
        }
        Self { offsets, total }
    }

    pub fn range(&self, feature: usize) -> std::ops::Range<usize> {
        let end = self.offsets.get(feature + 1).copied().unwrap_or(self.total);
        self.offsets[feature]..end
    }
}

/// One leaf's histograms for all features, flat.
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    pub bins: Vec<GradSum>,
}

impl Histogram {
    pub fn zeros(layout: &Layout) -> Self {
        Self { bins: vec![GradSum::default(); layout.total] }
    }

    /// Add another partition's histogram of the same leaf.
    pub fn merge(&mut self, other: &Histogram) {
        self.bins.iter_mut().zip(&other.bins).for_each(|(a, b)| *a = *a + *b);
    }

    /// The sibling's histogram: parent minus this child.
    pub fn sibling_of(&self, parent: &Histogram) -> Histogram {
        Histogram { bins: parent.bins.iter().zip(&self.bins).map(|(p, c)| *p - *c).collect() }
    }

    pub fn feature<'a>(&'a self, layout: &Layout, j: usize) -> &'a [GradSum] {
        &self.bins[layout.range(j)]
    }
}

/// Rows per task for large leaves: a leaf's rows are cut into blocks of this size, so that both
/// cores have work even when the feature groups do not divide evenly; block results are added
/// in block order, so the histogram does not depend on the number of threads.
const BLOCK: usize = 64 * 1024;

/// How many rows ahead the scattered reads of a leaf's rows are prefetched.
pub(crate) const PREFETCH: usize = 32;

/// A leaf of under 2 x [`BLOCK`] rows is cut into `TASKS / groups` row blocks (rounded up, each
/// of at least [`PARALLEL_ROWS`]), so its tasks (groups x blocks) keep both threads busy. The
/// blocks depend on the rows and the features, never on the thread count.
const TASKS: usize = 8;

/// Leaves with fewer rows build their histograms on one thread.
const PARALLEL_ROWS: usize = 4 * 1024;

/// Ask the CPU to start loading `data[i]` into cache; a hint with no effect on results.
#[inline(always)]
#[allow(unsafe_code)]
pub(crate) fn prefetch<T>(data: &[T], i: usize) {
    #[cfg(target_arch = "x86_64")]
    if let Some(x) = data.get(i) {
        // SAFETY: `_mm_prefetch` needs SSE, which every x86_64 CPU has; a prefetch never faults
        // and reads nothing into the program, and the pointer comes from a live reference.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>((x as *const T).cast::<i8>());
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (data, i);
}

/// Build the histograms of the rows in `rows` (sorted indices into `data`) for the features in
/// `features` (sorted; others stay zero), from the gradient pairs `gh` of all rows.
pub fn build(data: &BinnedData, layout: &Layout, rows: &[u32], gh: &[GradPair], features: &[usize]) -> Histogram {
    // Every row, in order: the bins are read sequentially.
    let all_rows = rows.len() == data.rows;
    let mut groups: Vec<usize> = features.iter().map(|j| j / GROUP).collect();
    groups.dedup();
    // Large leaves in blocks of BLOCK rows; smaller ones see TASKS.
    let blocks = if rows.len() >= 2 * BLOCK {
        rows.len().div_ceil(BLOCK)
    } else {
        TASKS.div_ceil(groups.len()).min(rows.len() / PARALLEL_ROWS).max(1)
    };
    let block_len = rows.len().div_ceil(blocks).max(1);
    let tasks: Vec<(usize, usize)> = groups.iter().flat_map(|&g| (0..blocks).map(move |b| (g, b))).collect();
    // The leaf's gradient pairs, gathered once in its row order (LightGBM's ordered gradients):
    // every feature group then reads them sequentially instead of scattered.
    let ordered: Vec<GradPair> = if all_rows { Vec::new() } else { gather(rows, gh) };
    let sum_task = |&(g, b): &(usize, usize)| -> [[GradSum; 256]; GROUP] {
        let bins = &data.groups[g];
        let range = b * block_len..((b + 1) * block_len).min(rows.len());
        let mut acc = [[GradSum::default(); 256]; GROUP];
        let mut add = |row: &[u8; GROUP], [g, h]: GradPair| {
            let (g, h) = (f64::from(g), f64::from(h));
            for t in 0..GROUP {
                let s = &mut acc[t][row[t] as usize];
                s.g += g;
                s.h += h;
            }
        };
        if all_rows {
            for (row, &pair) in bins[range.clone()].iter().zip(&gh[range]) {
                add(row, pair);
            }
        } else {
            let (rows, pairs) = (&rows[range.clone()], &ordered[range]);
            for (k, (&r, &pair)) in rows.iter().zip(pairs).enumerate() {
                if let Some(&ahead) = rows.get(k + PREFETCH) {
                    prefetch(bins, ahead as usize);
                }
                add(&bins[r as usize], pair);
            }
        }
        acc
    };
    // Small leaves are summed on this thread: waking the pool costs more than the work.
    let sums: Vec<[[GradSum; 256]; GROUP]> = if rows.len() < PARALLEL_ROWS {
        tasks.iter().map(sum_task).collect()
    } else {
        tasks.par_iter().map(sum_task).collect()
    };
    let mut hist = Histogram::zeros(layout);
    for (&(g, _), acc) in tasks.iter().zip(&sums) {
        for (t, bins) in acc.iter().enumerate() {
            let j = g * GROUP + t;
            if features.binary_search(&j).is_ok() {
                let range = layout.range(j);
                let len = range.len();
                hist.bins[range].iter_mut().zip(&bins[..len]).for_each(|(a, b)| *a = *a + *b);
            }
        }
    }
    hist
}

/// `gh[r]` for each row `r` of `rows`, in that order; large leaves gather in parallel blocks.
fn gather(rows: &[u32], gh: &[GradPair]) -> Vec<GradPair> {
    let mut out = vec![[0.0f32; 2]; rows.len()];
    let fill = |(rows, out): (&[u32], &mut [GradPair])| {
        for (k, (&r, o)) in rows.iter().zip(out.iter_mut()).enumerate() {
            if let Some(&ahead) = rows.get(k + PREFETCH) {
                prefetch(gh, ahead as usize);
            }
            *o = gh[r as usize];
        }
    };
    if rows.len() < PARALLEL_ROWS {
        fill((rows, &mut out));
    } else {
        rows.par_chunks(BLOCK).zip(out.par_chunks_mut(BLOCK)).for_each(fill);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_histograms_merge_to_the_whole() {
        let rows = 1000;
        let data = BinnedData::from_columns(vec![
            (0..rows).map(|i| (i % 7) as u8).collect(),
            (0..rows).map(|i| (i * 31 % 5) as u8).collect(),
        ]);
        let layout = Layout::new([8, 6].into_iter());
        let gh: Vec<GradPair> = (0..rows).map(|i| [(i as f32).sin(), 1.0 + (i % 3) as f32]).collect();
        let leaf: Vec<u32> = (0..rows as u32).filter(|r| r % 4 != 0).collect();
        let build = |rows: &[u32]| super::build(&data, &layout, rows, &gh, &[0, 1]);
        let close = |x: &Histogram, y: &Histogram| {
            x.bins.iter().zip(&y.bins).all(|(a, b)| (a.g - b.g).abs() < 1e-9 && (a.h - b.h).abs() < 1e-9)
        };
        let whole = build(&leaf);
        // Every feature's bins sum to the leaf's totals; bin 3 of feature 0 holds rows 3, 10, ...
        let expected: GradSum =
            leaf.iter().map(|&r| GradSum::of(gh[r as usize])).fold(GradSum::default(), |a, b| a + b);
        for j in 0..2 {
            let sum = whole.feature(&layout, j).iter().fold(GradSum::default(), |a, b| a + *b);
            assert!((sum.g - expected.g).abs() < 1e-9 && (sum.h - expected.h).abs() < 1e-9);
        }
        let bin3 = leaf.iter().filter(|&&r| r % 7 == 3).map(|&r| f64::from(gh[r as usize][1])).sum::<f64>();
        assert_eq!(whole.feature(&layout, 0)[3].h, bin3);
        let (a, b): (Vec<u32>, Vec<u32>) = leaf.iter().partition(|r| **r < 600);
        let mut merged = build(&a);
        merged.merge(&build(&b));
        assert!(close(&whole, &merged));
        let all: Vec<u32> = (0..rows as u32).collect();
        let mut parts = build(&all[..500]);
        parts.merge(&build(&all[500..]));
        assert!(close(&build(&all), &parts));
        // Subtraction gives the complement's histogram.
        assert!(close(&build(&a).sibling_of(&whole), &build(&b)));
    }
}
