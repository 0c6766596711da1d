//! Split finding from histograms alone (no rows): the part of training that does not need the
//! data, so histograms may come from anywhere.

use super::bin::BinMapper;
use super::hist::{BinStat, GradSum};

#[derive(Clone, Debug)]
pub struct SplitParams {
    pub lambda_l1: f64,
    pub lambda_l2: f64,
    pub min_data_in_leaf: u64,
    pub min_sum_hessian_in_leaf: f64,
    pub min_gain_to_split: f64,
    pub max_delta_step: f64,
    pub max_cat_to_onehot: usize,
    pub max_cat_threshold: usize,
    pub cat_smooth: f64,
    pub cat_l2: f64,
    pub min_data_per_group: u64,
}

/// Bounds on a leaf's output from monotone constraints above it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bounds {
    pub lo: f64,
    pub hi: f64,
}

impl Bounds {
    pub const NONE: Bounds = Bounds { lo: f64::NEG_INFINITY, hi: f64::INFINITY };
}

#[derive(Clone, Debug, PartialEq)]
pub struct SplitInfo {
    pub feature: usize,
    pub gain: f64,
    /// Numeric: value bins `0..=bin` go left.
    pub bin: usize,
    /// Numeric split found among the leaf's own values rather than the feature's bins (a
    /// forest's exact splitter): rows with `x <= threshold` go left, and `bin` indexes the
    /// leaf's distinct values. None for splits over the feature's bins.
    pub threshold: Option<f64>,
    pub default_left: bool,
    /// Categorical: the categories (bins) that go left, sorted; empty for numeric splits.
    pub categories: Vec<u32>,
    pub left: BinStat,
    pub right: BinStat,
    pub left_output: f64,
    pub right_output: f64,
}

fn threshold_l1(g: f64, l1: f64) -> f64 {
    if l1 <= 0.0 { g } else { g.signum() * (g.abs() - l1).max(0.0) }
}

impl SplitParams {
    /// The loss-minimizing leaf value for sums `g`, `h`, within `bounds`.
    pub fn output(&self, s: GradSum, l2_extra: f64, bounds: Bounds) -> f64 {
        let mut w = -threshold_l1(s.g, self.lambda_l1) / (s.h + self.lambda_l2 + l2_extra);
        if self.max_delta_step > 0.0 {
            w = w.clamp(-self.max_delta_step, self.max_delta_step);
        }
        w.clamp(bounds.lo, bounds.hi)
    }

    /// Loss reduction of giving a leaf with sums `g`, `h` the value `w` (vs value 0).
    pub fn gain_of(&self, s: GradSum, l2_extra: f64, w: f64) -> f64 {
        -(2.0 * threshold_l1(s.g, self.lambda_l1) * w + (s.h + self.lambda_l2 + l2_extra) * w * w)
    }
}

/// What a candidate split is scored against: the leaf's totals (with its exact row count), the
/// bounds on its output and the parameters.
pub struct Node<'a> {
    pub total: BinStat,
    pub bounds: Bounds,
    pub params: &'a SplitParams,
    /// Rows per unit of hessian in this leaf.
    rows_per_hessian: f64,
    /// With `y = s.h * rows_per_hessian + 0.5` for a split's left sums `s` (so its estimated
    /// rows are `y` rounded down, at most the leaf's): both sides have `min_data_in_leaf` rows
    /// iff `min_y <= y < max_y` — the row-count test in floating point, exactly.
    min_y: f64,
    max_y: f64,
    /// No L1 penalty, output clamp or bounds: a side's output is `-g / (h + l2)` and its gain
    /// `-g * output`, without the general formula's branches.
    plain: bool,
}

impl<'a> Node<'a> {
    pub fn new(total: BinStat, bounds: Bounds, params: &'a SplitParams) -> Self {
        let rows_per_hessian = if total.h > 0.0 { total.n as f64 / total.h } else { 0.0 };
        let m = params.min_data_in_leaf;
        let (min_y, max_y) =
            if m == 0 { (f64::NEG_INFINITY, f64::INFINITY) } else { (m as f64, total.n as f64 - m as f64 + 1.0) };
        let plain = params.lambda_l1 <= 0.0 && params.max_delta_step <= 0.0 && bounds == Bounds::NONE;
        Self { total, bounds, params, rows_per_hessian, min_y, max_y, plain }
    }

    /// The rows behind sums `s` of this leaf's rows, estimated from their share of the leaf's
    /// hessian as LightGBM does (histograms hold no counts): exact when every row's hessian is
    /// the same, and never more than the leaf's rows.
    #[inline]
    pub fn count(&self, s: GradSum) -> u64 {
        // Rounds half up (as LightGBM's RoundInt); negative sums (rounding) saturate to 0.
        ((s.h * self.rows_per_hessian + 0.5) as i64).clamp(0, self.total.n as i64) as u64
    }

    /// Sums `s` with their estimated row count.
    fn stat(&self, s: GradSum) -> BinStat {
        BinStat::new(s, self.count(s))
    }

    fn parent_gain(&self, l2_extra: f64) -> f64 {
        let w = self.params.output(self.total.sum(), l2_extra, self.bounds);
        self.params.gain_of(self.total.sum(), l2_extra, w)
    }

    /// Gain and outputs of sending rows with sums `left` left and the rest right, or None if
    /// constraints forbid it.
    #[inline]
    fn score(&self, left: GradSum, l2_extra: f64, monotone: i8) -> Option<(f64, f64, f64)> {
        let p = self.params;
        let right = self.total.sum() - left;
        let y = left.h * self.rows_per_hessian + 0.5;
        let admissible = y >= self.min_y
            && y < self.max_y
            && left.h >= p.min_sum_hessian_in_leaf
            && right.h >= p.min_sum_hessian_in_leaf;
        if !admissible {
            return None;
        }
        if self.plain && monotone == 0 {
            let l2 = p.lambda_l2 + l2_extra;
            let (wl, wr) = (-left.g / (left.h + l2), -right.g / (right.h + l2));
            return Some((-(left.g * wl + right.g * wr), wl, wr));
        }
        let wl = p.output(left, l2_extra, self.bounds);
        let wr = p.output(right, l2_extra, self.bounds);
        if (monotone > 0 && wl > wr) || (monotone < 0 && wl < wr) {
            return None;
        }
        Some((p.gain_of(left, l2_extra, wl) + p.gain_of(right, l2_extra, wr), wl, wr))
    }
}

/// The best split of one feature, if any beats `min_gain_to_split`.
pub fn best_split(
    node: &Node,
    feature: usize,
    hist: &[GradSum],
    mapper: &BinMapper,
    monotone: i8,
) -> Option<SplitInfo> {
    match mapper {
        BinMapper::Numeric { .. } => numeric(node, feature, hist, mapper.missing_bin(), monotone),
        BinMapper::Categorical { .. } => categorical(node, feature, hist, mapper.missing_bin()),
    }
}

fn numeric(node: &Node, feature: usize, hist: &[GradSum], missing: usize, monotone: i8) -> Option<SplitInfo> {
    let parent = node.parent_gain(0.0);
    let miss = hist[missing];
    // Any hessian at all: missing rows with small hessians must not be taken as absent (their
    // sums would then be scanned on the right while the rows follow the default direction).
    let has_missing = miss.h > 0.0;
    let mut best: Option<SplitInfo> = None;
    // `missing_left`: whether `sum` includes the missing bin.
    let mut consider = |sum: GradSum, bin: usize, missing_left: bool| {
        if let Some((gain, wl, wr)) = node.score(sum, 0.0, monotone) {
            let gain = gain - parent;
            if gain > node.params.min_gain_to_split && best.as_ref().is_none_or(|b| gain > b.gain) {
                let left = node.stat(sum);
                let right = node.total - left;
                // With no missing values in training, unseen missing values follow the larger side.
                let default_left = if has_missing { missing_left } else { left.n >= right.n };
                best = Some(SplitInfo {
                    feature,
                    gain,
                    bin,
                    threshold: None,
                    default_left,
                    categories: Vec::new(),
                    left,
                    right,
                    left_output: wl,
                    right_output: wr,
                });
            }
        }
    };
    // Missing values go right: thresholds over the value bins; with missing values present the
    // last one (all values left) separates missing from present.
    let last = if has_missing { missing } else { missing.saturating_sub(1) };
    let mut acc = GradSum::default();
    for (b, s) in hist[..last].iter().enumerate() {
        acc = acc + *s;
        consider(acc, b, false);
    }
    // Missing values go left.
    if has_missing {
        let mut acc = miss;
        for (b, s) in hist[..missing.saturating_sub(1)].iter().enumerate() {
            acc = acc + *s;
            consider(acc, b, true);
        }
    }
    best
}

fn categorical(node: &Node, feature: usize, hist: &[GradSum], missing: usize) -> Option<SplitInfo> {
    let p = node.params;
    let present: Vec<usize> = (0..missing).filter(|&k| node.count(hist[k]) > 0).collect();
    // LightGBM scores set splits (with `cat_l2`) against the parent without it: a penalty.
    let parent = node.parent_gain(0.0);
    let mut best: Option<(f64, Vec<u32>, BinStat, f64, f64)> = None;
    let mut consider = |sum: GradSum, cats: &[usize], l2_extra: f64| {
        if let Some((gain, wl, wr)) = node.score(sum, l2_extra, 0) {
            let gain = gain - parent;
            if gain > p.min_gain_to_split && best.as_ref().is_none_or(|b| gain > b.0) {
                let mut set: Vec<u32> = cats.iter().map(|&c| c as u32).collect();
                set.sort_unstable();
                best = Some((gain, set, node.stat(sum), wl, wr));
            }
        }
    };
    if present.len() <= p.max_cat_to_onehot {
        // One category against the rest.
        for &k in &present {
            consider(hist[k], &[k], 0.0);
        }
    } else {
        // Order categories by their mean gradient (smoothed) and try prefixes from both ends:
        // for a convex loss the best binary partition is such a prefix. As LightGBM: only
        // categories with at least `cat_smooth` rows take part, a prefix holds at most half of
        // them, and a cut is tried only once `min_data_per_group` rows have joined since the
        // last one and while as many remain on the other side.
        let mut order: Vec<usize> =
            present.iter().copied().filter(|&k| node.count(hist[k]) as f64 >= p.cat_smooth).collect();
        let key = |k: &usize| hist[*k].g / (hist[*k].h + p.cat_smooth);
        order.sort_by(|a, b| key(a).total_cmp(&key(b)).then(a.cmp(b)));
        let limit = p.max_cat_threshold.min(order.len().div_ceil(2));
        for direction in [false, true] {
            let seq: Vec<usize> = if direction { order.iter().rev().copied().collect() } else { order.clone() };
            // Rows are counted per category, as LightGBM's `left_count`.
            let (mut acc, mut left, mut group) = (GradSum::default(), 0, 0);
            for i in 0..limit.min(seq.len()) {
                let rows = node.count(hist[seq[i]]);
                acc = acc + hist[seq[i]];
                left += rows;
                group += rows;
                if left < p.min_data_in_leaf || acc.h < p.min_sum_hessian_in_leaf {
                    continue;
                }
                let right = node.total.n.saturating_sub(left);
                if right < p.min_data_in_leaf.max(p.min_data_per_group)
                    || node.total.h - acc.h < p.min_sum_hessian_in_leaf
                {
                    break;
                }
                if group < p.min_data_per_group {
                    continue;
                }
                group = 0;
                consider(acc, &seq[..=i], p.cat_l2);
            }
        }
    }
    best.map(|(gain, categories, left, wl, wr)| category_split(node, feature, gain, categories, left, (wl, wr)))
}

/// A categorical split: `categories` (sorted) go left with sums `left`, outputs `(left, right)`.
fn category_split(
    node: &Node,
    feature: usize,
    gain: f64,
    categories: Vec<u32>,
    left: BinStat,
    (left_output, right_output): (f64, f64),
) -> SplitInfo {
    SplitInfo {
        feature,
        gain,
        bin: 0,
        threshold: None,
        default_left: false,
        categories,
        left,
        right: node.total - left,
        left_output,
        right_output,
    }
}

/// The best split of a categorical feature whose categories are tried in a fixed `order` (a
/// forest's: by mean label over all training rows, as ranger's `order` mode): the categories
/// up to some point in the order go left. Far fewer candidate partitions than re-sorting them
/// at every node, so fully grown trees overfit many-valued features less.
pub fn ordered_categorical(node: &Node, feature: usize, hist: &[GradSum], order: &[u32]) -> Option<SplitInfo> {
    let present: Vec<u32> = order.iter().copied().filter(|&k| node.count(hist[k as usize]) > 0).collect();
    let mut best: Option<(f64, usize, BinStat, f64, f64)> = None;
    let parent = node.parent_gain(0.0);
    // All present categories left is a split only when missing values go right.
    let all_left = usize::from(hist.last().is_some_and(|m| node.count(*m) > 0));
    let mut acc = GradSum::default();
    for (i, &k) in present.iter().enumerate().take((present.len() + all_left).saturating_sub(1)) {
        acc = acc + hist[k as usize];
        if let Some((gain, wl, wr)) = node.score(acc, 0.0, 0) {
            let gain = gain - parent;
            if gain > node.params.min_gain_to_split && best.as_ref().is_none_or(|b| gain > b.0) {
                best = Some((gain, i, node.stat(acc), wl, wr));
            }
        }
    }
    best.map(|(gain, last, left, wl, wr)| {
        let mut categories = present[..=last].to_vec();
        categories.sort_unstable();
        category_split(node, feature, gain, categories, left, (wl, wr))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> SplitParams {
        SplitParams {
            lambda_l1: 0.0,
            lambda_l2: 0.0,
            min_data_in_leaf: 1,
            min_sum_hessian_in_leaf: 0.0,
            min_gain_to_split: 0.0,
            max_delta_step: 0.0,
            max_cat_to_onehot: 4,
            max_cat_threshold: 32,
            cat_smooth: 0.0,
            cat_l2: 0.0,
            min_data_per_group: 1,
        }
    }

    /// Sums of `n` rows with hessian 1 each and gradients summing to `g`.
    fn stat(g: f64, n: u64) -> GradSum {
        GradSum { g, h: n as f64 }
    }

    fn total(h: &[GradSum]) -> BinStat {
        let sum = h.iter().fold(GradSum::default(), |a, b| a + *b);
        BinStat::new(sum, sum.h as u64)
    }

    #[test]
    fn numeric_split_matches_brute_force_gain() {
        // Bins 0..3 hold values; bin 3 holds missing values whose gradients look like bin 0's.
        let hist = [stat(-10.0, 10), stat(-8.0, 10), stat(9.0, 10), stat(-5.0, 5)];
        let p = params();
        let node = Node::new(total(&hist), Bounds::NONE, &p);
        let mapper = BinMapper::Numeric { upper: vec![1.0, 2.0, f64::INFINITY] };
        let s = best_split(&node, 0, &hist, &mapper, 0).unwrap();
        assert_eq!((s.bin, s.default_left), (1, true));
        let gain = |l: GradSum| {
            let r = node.total - BinStat::new(l, l.h as u64);
            l.g * l.g / l.h + r.g * r.g / r.h - node.total.g * node.total.g / node.total.h
        };
        let expected = gain(hist[0] + hist[1] + hist[3]);
        assert!((s.gain - expected).abs() < 1e-9, "{} vs {expected}", s.gain);
        assert!((s.left_output - 23.0 / 25.0).abs() < 1e-12);
    }

    #[test]
    fn monotone_constraint_rejects_decreasing_splits() {
        let hist = [stat(-10.0, 10), stat(10.0, 10), stat(0.0, 0)];
        let p = params();
        let node = Node::new(total(&hist), Bounds::NONE, &p);
        let mapper = BinMapper::Numeric { upper: vec![1.0, f64::INFINITY] };
        // Left output is +1, right -1: fine when decreasing, forbidden when increasing.
        assert!(best_split(&node, 0, &hist, &mapper, -1).is_some());
        assert!(best_split(&node, 0, &hist, &mapper, 1).is_none());
    }

    #[test]
    fn categorical_split_groups_categories_by_gradient() {
        // Categories 0 and 2 push up, 1 3 4 push down; missing bin 5 is empty.
        let hist = [stat(5.0, 10), stat(-5.0, 10), stat(6.0, 10), stat(-4.0, 10), stat(-6.0, 10), stat(0.0, 0)];
        let p = params();
        let node = Node::new(total(&hist), Bounds::NONE, &p);
        let s = best_split(&node, 0, &hist, &BinMapper::Categorical { categories: 5 }, 0).unwrap();
        let set: std::collections::BTreeSet<u32> = s.categories.iter().copied().collect();
        assert!(set == [0, 2].into() || set == [1, 3, 4].into(), "{set:?}");
        assert_eq!(s.left.n + s.right.n, 50);
    }

    #[test]
    fn categorical_cuts_wait_for_min_data_per_group_rows() {
        // Category 0 pulls down, 1-5 push up, 10 rows each: the best cut is {0} | rest, but
        // with min_data_per_group = 20 a cut is tried only every second category (LightGBM's).
        let hist =
            [stat(-10.0, 10), stat(3.0, 10), stat(3.0, 10), stat(3.0, 10), stat(3.0, 10), stat(3.0, 10), stat(0.0, 0)];
        let mapper = BinMapper::Categorical { categories: 6 };
        let cut = |min_data_per_group: u64| {
            let p = SplitParams { min_data_per_group, ..params() };
            let node = Node::new(total(&hist), Bounds::NONE, &p);
            best_split(&node, 0, &hist, &mapper, 0).unwrap().categories
        };
        assert_eq!(cut(10), [0]);
        assert_eq!(cut(20), [0, 1]);
        // Fewer than min_data_per_group rows would be left on the other side: no cut at all.
        let p = SplitParams { min_data_per_group: 51, ..params() };
        assert!(best_split(&Node::new(total(&hist), Bounds::NONE, &p), 0, &hist, &mapper, 0).is_none());
    }

    #[test]
    fn min_data_in_leaf_is_respected() {
        let hist = [stat(-10.0, 2), stat(10.0, 20), stat(0.0, 0)];
        let mut p = params();
        p.min_data_in_leaf = 3;
        let node = Node::new(total(&hist), Bounds::NONE, &p);
        let mapper = BinMapper::Numeric { upper: vec![1.0, f64::INFINITY] };
        assert!(best_split(&node, 0, &hist, &mapper, 0).is_none());
    }

    #[test]
    fn row_counts_are_estimated_from_the_hessian_share() {
        // 30 rows: 10 in bin 0 with hessian 0.5 each, 20 in bin 1 with 0.1 each; no missing.
        let hist = [GradSum { g: -3.0, h: 5.0 }, GradSum { g: 2.0, h: 2.0 }, GradSum::default()];
        let sum = hist.iter().fold(GradSum::default(), |a, b| a + *b);
        let mapper = BinMapper::Numeric { upper: vec![1.0, f64::INFINITY] };
        let split = |min_data_in_leaf: u64| {
            let p = SplitParams { min_data_in_leaf, ..params() };
            let node = Node::new(BinStat::new(sum, 30), Bounds::NONE, &p);
            // Bin 0 holds 5/7 of the hessian, so an estimated 21 rows (as LightGBM would say).
            assert_eq!((node.count(hist[0]), node.count(hist[1]), node.count(sum)), (21, 9, 30));
            best_split(&node, 0, &hist, &mapper, 0).map(|s| (s.left.n, s.right.n))
        };
        // min_data_in_leaf is judged on the estimates, exactly at the boundary.
        assert_eq!(split(9), Some((21, 9)));
        assert_eq!(split(10), None);
    }

    #[test]
    fn ordered_categorical_splits_at_a_prefix_of_the_order() {
        // Categories 0 and 2 push up, 1 3 push down; in the order [2, 0, 3, 1] the best split
        // sends {0, 2} left; in index order it can only cut between neighbours.
        let hist = [stat(5.0, 10), stat(-5.0, 10), stat(6.0, 10), stat(-4.0, 10), stat(0.0, 0)];
        let p = params();
        let node = Node::new(total(&hist), Bounds::NONE, &p);
        let s = ordered_categorical(&node, 0, &hist, &[2, 0, 3, 1]).unwrap();
        assert_eq!(s.categories, [0, 2]);
        assert_eq!((s.left.n, s.right.n), (20, 20));
        let s = ordered_categorical(&node, 0, &hist, &[0, 1, 2, 3]).unwrap();
        assert!(s.categories == [0] || s.categories == [0, 1, 2], "{:?}", s.categories);
        // Missing values (last bin) go right, so all present categories may go left.
        let hist = [stat(5.0, 10), stat(6.0, 10), stat(-20.0, 10)];
        let node = Node::new(total(&hist), Bounds::NONE, &p);
        assert_eq!(ordered_categorical(&node, 0, &hist, &[0, 1]).unwrap().categories, [0, 1]);
    }
}
