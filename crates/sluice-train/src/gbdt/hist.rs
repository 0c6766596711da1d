//! Gradient histograms: per feature and bin, the sums of gradients and hessians and the row
//! count. Building them is the only pass over the data; split finding reads only histograms.
//! Histograms of disjoint row sets add up ([`Histogram::merge`]), so each partition of a dataset
//! can build its own — on another thread or another machine — and the sums are exact in counts
//! and equal up to floating-point rounding in gradient sums.

use std::ops::{Add, Sub};

use rayon::prelude::*;

use super::bin::{BinnedData, GROUP};

/// A row's gradient and hessian. Stored in single precision (as LightGBM does) to halve the
/// memory traffic of the scattered reads; histograms sum them in double precision.
pub type GradPair = [f32; 2];

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BinStat {
    pub g: f64,
    pub h: f64,
    pub n: u64,
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
    pub bins: Vec<BinStat>,
}

impl Histogram {
    pub fn zeros(layout: &Layout) -> Self {
        Self { bins: vec![BinStat::default(); layout.total] }
    }

    /// Add another partition's histogram of the same leaf.
    pub fn merge(&mut self, other: &Histogram) {
        self.bins.iter_mut().zip(&other.bins).for_each(|(a, b)| *a = *a + *b);
    }

    /// The sibling's histogram: parent minus this child.
    pub fn sibling_of(&self, parent: &Histogram) -> Histogram {
        Histogram { bins: parent.bins.iter().zip(&self.bins).map(|(p, c)| *p - *c).collect() }
    }

    pub fn feature<'a>(&'a self, layout: &Layout, j: usize) -> &'a [BinStat] {
        &self.bins[layout.range(j)]
    }
}

/// Rows per task for large leaves: a leaf's rows are cut into blocks of this size, so that both
/// cores have work even when the feature groups do not divide evenly; block results are added
/// in block order, so the histogram does not depend on the number of threads.
const BLOCK: usize = 64 * 1024;

/// How many rows ahead the scattered reads of a leaf's rows are prefetched.
pub(crate) const PREFETCH: usize = 32;

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
    let blocks = if rows.len() >= 2 * BLOCK { rows.len().div_ceil(BLOCK) } else { 1 };
    let block_len = rows.len().div_ceil(blocks).max(1);
    let tasks: Vec<(usize, usize)> = groups.iter().flat_map(|&g| (0..blocks).map(move |b| (g, b))).collect();
    // The leaf's gradient pairs, gathered once in its row order (LightGBM's ordered gradients):
    // every feature group then reads them sequentially instead of scattered.
    let ordered: Vec<GradPair> = if all_rows { Vec::new() } else { gather(rows, gh) };
    let sum_task = |&(g, b): &(usize, usize)| -> [[BinStat; 256]; GROUP] {
        let bins = &data.groups[g];
        let range = b * block_len..((b + 1) * block_len).min(rows.len());
        let mut acc = [[BinStat::default(); 256]; GROUP];
        let mut add = |row: &[u8; GROUP], [g, h]: GradPair| {
            let (g, h) = (f64::from(g), f64::from(h));
            for t in 0..GROUP {
                let s = &mut acc[t][row[t] as usize];
                s.g += g;
                s.h += h;
                s.n += 1;
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
    let sums: Vec<[[BinStat; 256]; GROUP]> = if rows.len() < PARALLEL_ROWS {
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
        let whole = build(&leaf);
        let (a, b): (Vec<u32>, Vec<u32>) = leaf.iter().partition(|r| **r < 600);
        let mut merged = build(&a);
        merged.merge(&build(&b));
        for (x, y) in whole.bins.iter().zip(&merged.bins) {
            assert_eq!(x.n, y.n);
            assert!((x.g - y.g).abs() < 1e-9 && (x.h - y.h).abs() < 1e-9);
        }
        assert_eq!(whole.bins.iter().map(|s| s.n).sum::<u64>(), 2 * leaf.len() as u64);
        let all: Vec<u32> = (0..rows as u32).collect();
        let everything = build(&all);
        let mut parts = build(&all[..500]);
        parts.merge(&build(&all[500..]));
        assert_eq!(
            everything.bins.iter().map(|s| s.n).collect::<Vec<_>>(),
            parts.bins.iter().map(|s| s.n).collect::<Vec<_>>()
        );
        // Subtraction gives the complement's histogram.
        let sib = build(&a).sibling_of(&whole);
        let direct = build(&b);
        for (x, y) in sib.bins.iter().zip(&direct.bins) {
            assert_eq!(x.n, y.n);
            assert!((x.g - y.g).abs() < 1e-9);
        }
    }
}
