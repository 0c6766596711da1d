//! Split finding from histograms alone (no rows): the part of training that does not need the
//! data, so histograms may come from anywhere.

use super::bin::BinMapper;
use super::hist::BinStat;

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
    pub fn output(&self, s: &BinStat, l2_extra: f64, bounds: Bounds) -> f64 {
        let mut w = -threshold_l1(s.g, self.lambda_l1) / (s.h + self.lambda_l2 + l2_extra);
        if self.max_delta_step > 0.0 {
            w = w.clamp(-self.max_delta_step, self.max_delta_step);
        }
        w.clamp(bounds.lo, bounds.hi)
    }

    /// Loss reduction of giving a leaf with sums `g`, `h` the value `w` (vs value 0).
    pub fn gain_of(&self, s: &BinStat, l2_extra: f64, w: f64) -> f64 {
        -(2.0 * threshold_l1(s.g, self.lambda_l1) * w + (s.h + self.lambda_l2 + l2_extra) * w * w)
    }

    fn admissible(&self, left: &BinStat, right: &BinStat) -> bool {
        left.n >= self.min_data_in_leaf
            && right.n >= self.min_data_in_leaf
            && left.h >= self.min_sum_hessian_in_leaf
            && right.h >= self.min_sum_hessian_in_leaf
    }
}

/// What a candidate split is scored against.
pub struct Node<'a> {
    pub total: BinStat,
    pub bounds: Bounds,
    pub params: &'a SplitParams,
}

impl Node<'_> {
    fn parent_gain(&self, l2_extra: f64) -> f64 {
        let w = self.params.output(&self.total, l2_extra, self.bounds);
        self.params.gain_of(&self.total, l2_extra, w)
    }

    /// Gain and outputs of a split into `left` / `right`, or None if constraints forbid it.
    fn score(&self, left: &BinStat, right: &BinStat, l2_extra: f64, monotone: i8) -> Option<(f64, f64, f64)> {
        let p = self.params;
        if !p.admissible(left, right) {
            return None;
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
    hist: &[BinStat],
    mapper: &BinMapper,
    monotone: i8,
) -> Option<SplitInfo> {
    match mapper {
        BinMapper::Numeric { .. } => numeric(node, feature, hist, mapper.missing_bin(), monotone),
        BinMapper::Categorical { .. } => categorical(node, feature, hist, mapper.missing_bin()),
    }
}

fn numeric(node: &Node, feature: usize, hist: &[BinStat], missing: usize, monotone: i8) -> Option<SplitInfo> {
    let parent = node.parent_gain(0.0);
    let miss = hist[missing];
    let mut best: Option<SplitInfo> = None;
    let mut consider = |left: BinStat, bin: usize, default_left: bool| {
        let right = node.total - left;
        if let Some((gain, wl, wr)) = node.score(&left, &right, 0.0, monotone) {
            let gain = gain - parent;
            if gain > node.params.min_gain_to_split && best.as_ref().is_none_or(|b| gain > b.gain) {
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
    let last = if miss.n > 0 { missing } else { missing.saturating_sub(1) };
    let mut acc = BinStat::default();
    for (b, s) in hist[..last].iter().enumerate() {
        acc = acc + *s;
        // With no missing values in training, unseen missing values follow the larger side.
        let default_left = miss.n == 0 && acc.n >= node.total.n - acc.n;
        consider(acc, b, default_left);
    }
    // Missing values go left.
    if miss.n > 0 {
        let mut acc = miss;
        for (b, s) in hist[..missing.saturating_sub(1)].iter().enumerate() {
            acc = acc + *s;
            consider(acc, b, true);
        }
    }
    best
}

fn categorical(node: &Node, feature: usize, hist: &[BinStat], missing: usize) -> Option<SplitInfo> {
    let p = node.params;
    let present: Vec<usize> = (0..missing).filter(|&k| hist[k].n > 0).collect();
    let mut best: Option<(f64, Vec<u32>, BinStat, f64, f64)> = None;
    let mut consider = |left: BinStat, cats: &[usize], l2_extra: f64| {
        let right = node.total - left;
        if let Some((gain, wl, wr)) = node.score(&left, &right, l2_extra, 0) {
            let gain = gain - node.parent_gain(l2_extra);
            if gain > p.min_gain_to_split && best.as_ref().is_none_or(|b| gain > b.0) {
                let mut set: Vec<u32> = cats.iter().map(|&c| c as u32).collect();
                set.sort_unstable();
                best = Some((gain, set, left, wl, wr));
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
        // for a convex loss the best binary partition is such a prefix.
        let mut order: Vec<usize> = present.iter().copied().filter(|&k| hist[k].n >= p.min_data_per_group).collect();
        let key = |k: &usize| hist[*k].g / (hist[*k].h + p.cat_smooth);
        order.sort_by(|a, b| key(a).total_cmp(&key(b)).then(a.cmp(b)));
        let limit = p.max_cat_threshold.min(order.len().saturating_sub(1).max(1));
        for direction in [false, true] {
            let seq: Vec<usize> = if direction { order.iter().rev().copied().collect() } else { order.clone() };
            let mut acc = BinStat::default();
            for i in 0..limit.min(seq.len()) {
                acc = acc + hist[seq[i]];
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
pub fn ordered_categorical(node: &Node, feature: usize, hist: &[BinStat], order: &[u32]) -> Option<SplitInfo> {
    let present: Vec<u32> = order.iter().copied().filter(|&k| hist[k as usize].n > 0).collect();
    let mut best: Option<(f64, usize, BinStat, f64, f64)> = None;
    let parent = node.parent_gain(0.0);
    // All present categories left is a split only when missing values go right.
    let all_left = usize::from(hist.last().is_some_and(|m| m.n > 0));
    let mut acc = BinStat::default();
    for (i, &k) in present.iter().enumerate().take((present.len() + all_left).saturating_sub(1)) {
        acc = acc + hist[k as usize];
        let right = node.total - acc;
        if let Some((gain, wl, wr)) = node.score(&acc, &right, 0.0, 0) {
            let gain = gain - parent;
            if gain > node.params.min_gain_to_split && best.as_ref().is_none_or(|b| gain > b.0) {
                best = Some((gain, i, acc, wl, wr));
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

    fn stat(g: f64, n: u64) -> BinStat {
        BinStat { g, h: n as f64, n }
    }

    fn total(h: &[BinStat]) -> BinStat {
        h.iter().fold(BinStat::default(), |a, b| a + *b)
    }

    #[test]
    fn numeric_split_matches_brute_force_gain() {
        // Bins 0..3 hold values; bin 3 holds missing values whose gradients look like bin 0's.
        let hist = [stat(-10.0, 10), stat(-8.0, 10), stat(9.0, 10), stat(-5.0, 5)];
        let p = params();
        let node = Node { total: total(&hist), bounds: Bounds::NONE, params: &p };
        let mapper = BinMapper::Numeric { upper: vec![1.0, 2.0, f64::INFINITY] };
        let s = best_split(&node, 0, &hist, &mapper, 0).unwrap();
        assert_eq!((s.bin, s.default_left), (1, true));
        let gain = |l: BinStat| {
            let r = node.total - l;
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
        let node = Node { total: total(&hist), bounds: Bounds::NONE, params: &p };
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
        let node = Node { total: total(&hist), bounds: Bounds::NONE, params: &p };
        let s = best_split(&node, 0, &hist, &BinMapper::Categorical { categories: 5 }, 0).unwrap();
        let set: std::collections::BTreeSet<u32> = s.categories.iter().copied().collect();
        assert!(set == [0, 2].into() || set == [1, 3, 4].into(), "{set:?}");
        assert_eq!(s.left.n + s.right.n, 50);
    }

    #[test]
    fn min_data_in_leaf_is_respected() {
        let hist = [stat(-10.0, 2), stat(10.0, 20), stat(0.0, 0)];
        let mut p = params();
        p.min_data_in_leaf = 3;
        let node = Node { total: total(&hist), bounds: Bounds::NONE, params: &p };
        let mapper = BinMapper::Numeric { upper: vec![1.0, f64::INFINITY] };
        assert!(best_split(&node, 0, &hist, &mapper, 0).is_none());
    }

    #[test]
    fn ordered_categorical_splits_at_a_prefix_of_the_order() {
        // Categories 0 and 2 push up, 1 3 push down; in the order [2, 0, 3, 1] the best split
        // sends {0, 2} left; in index order it can only cut between neighbours.
        let hist = [stat(5.0, 10), stat(-5.0, 10), stat(6.0, 10), stat(-4.0, 10), stat(0.0, 0)];
        let p = params();
        let node = Node { total: total(&hist), bounds: Bounds::NONE, params: &p };
        let s = ordered_categorical(&node, 0, &hist, &[2, 0, 3, 1]).unwrap();
        assert_eq!(s.categories, [0, 2]);
        assert_eq!((s.left.n, s.right.n), (20, 20));
        let s = ordered_categorical(&node, 0, &hist, &[0, 1, 2, 3]).unwrap();
        assert!(s.categories == [0] || s.categories == [0, 1, 2], "{:?}", s.categories);
        // Missing values (last bin) go right, so all present categories may go left.
        let hist = [stat(5.0, 10), stat(6.0, 10), stat(-20.0, 10)];
        let node = Node { total: total(&hist), bounds: Bounds::NONE, params: &p };
        assert_eq!(ordered_categorical(&node, 0, &hist, &[0, 1]).unwrap().categories, [0, 1]);
    }
}
