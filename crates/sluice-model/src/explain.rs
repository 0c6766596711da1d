//! Explanations: exact TreeSHAP contributions for tree ensembles (Lundberg et al., "Consistent
//! Individualized Feature Attribution for Tree Ensembles", Algorithm 2), per-term contributions
//! for linear models, and split/gain importances.
//!
//! Contributions are in raw-score space (log-odds for binary classification): for every row,
//! `bias + Σ contributions == raw score`, as LightGBM's and XGBoost's `pred_contrib`.

use rayon::prelude::*;

use crate::gbdt::{GbdtModel, Tree};
use crate::linear::LinearModel;
use crate::transform::DesignMatrix;

/// One element of the path of features seen from the root to the current node.
#[derive(Clone, Copy, Debug)]
struct PathElem {
    /// Feature index, or `usize::MAX` for the root's placeholder.
    feature: usize,
    /// Fraction of "feature absent" paths (cover ratio) that flow through.
    zero: f64,
    /// 1 if the row itself flows through, else 0.
    one: f64,
    /// Permutation weight.
    weight: f64,
}

fn extend(path: &mut Vec<PathElem>, zero: f64, one: f64, feature: usize) {
    let l = path.len();
    path.push(PathElem { feature, zero, one, weight: if l == 0 { 1.0 } else { 0.0 } });
    let denom = (l + 1) as f64;
    for i in (0..l).rev() {
        path[i + 1].weight += one * path[i].weight * (i + 1) as f64 / denom;
        path[i].weight = zero * path[i].weight * (l - i) as f64 / denom;
    }
}

fn unwind(path: &mut Vec<PathElem>, i: usize) {
    let l = path.len();
    let (one, zero) = (path[i].one, path[i].zero);
    let mut n = path[l - 1].weight;
    for j in (0..l - 1).rev() {
        if one != 0.0 {
            let t = path[j].weight;
            path[j].weight = n * l as f64 / ((j + 1) as f64 * one);
            n = t - path[j].weight * zero * (l - 1 - j) as f64 / l as f64;
        } else {
            path[j].weight = path[j].weight * l as f64 / (zero * (l - 1 - j) as f64);
        }
    }
    for j in i..l - 1 {
        path[j].feature = path[j + 1].feature;
        path[j].zero = path[j + 1].zero;
        path[j].one = path[j + 1].one;
    }
    path.pop();
}

/// The total permutation weight of the path with element `i` removed.
fn unwound_sum(path: &[PathElem], i: usize) -> f64 {
    let l = path.len();
    let (one, zero) = (path[i].one, path[i].zero);
    let mut n = path[l - 1].weight;
    let mut total = 0.0;
    for j in (0..l - 1).rev() {
        if one != 0.0 {
            let t = n * l as f64 / ((j + 1) as f64 * one);
            total += t;
            n = path[j].weight - t * zero * (l - 1 - j) as f64 / l as f64;
        } else {
            total += path[j].weight / zero / ((l - 1 - j) as f64 / l as f64);
        }
    }
    total
}

fn cover(tree: &Tree, child: i32) -> f64 {
    if child < 0 { tree.leaf_count[!child as usize] as f64 } else { tree.internal_count[child as usize] as f64 }
}

/// `zero`, `one` and `feature` of the edge into `node`.
#[derive(Clone, Copy)]
struct Edge {
    zero: f64,
    one: f64,
    feature: usize,
}

fn recurse(tree: &Tree, row: &[f64], node: i32, mut path: Vec<PathElem>, edge: Edge, phi: &mut [f64]) {
    extend(&mut path, edge.zero, edge.one, edge.feature);
    if node < 0 {
        let value = tree.leaf_value[!node as usize];
        for i in 1..path.len() {
            let w = unwound_sum(&path, i);
            let e = path[i];
            phi[e.feature] += w * (e.one - e.zero) * value;
        }
        return;
    }
    let n = node as usize;
    let split = tree.split_feature[n] as usize;
    let (hot, cold) =
        if tree.goes_left(n, row[split]) { (tree.left[n], tree.right[n]) } else { (tree.right[n], tree.left[n]) };
    let here = tree.internal_count[n] as f64;
    let (mut iz, mut io) = (1.0, 1.0);
    if let Some(k) = path.iter().position(|e| e.feature == split) {
        iz = path[k].zero;
        io = path[k].one;
        unwind(&mut path, k);
    }
    let zero_of = |c: i32| if here > 0.0 { iz * cover(tree, c) / here } else { 0.0 };
    recurse(tree, row, hot, path.clone(), Edge { zero: zero_of(hot), one: io, feature: split }, phi);
    recurse(tree, row, cold, path, Edge { zero: zero_of(cold), one: 0.0, feature: split }, phi);
}

impl Tree {
    /// The tree's mean output over its training rows (its value when no feature is known).
    pub fn expected_value(&self) -> f64 {
        let total: u64 = self.leaf_count.iter().sum();
        if total == 0 {
            return 0.0;
        }
        self.leaf_value.iter().zip(&self.leaf_count).map(|(v, c)| v * *c as f64).sum::<f64>() / total as f64
    }

    /// Add this tree's SHAP values for `row` to `phi` (one per feature).
    pub fn shap(&self, row: &[f64], phi: &mut [f64]) {
        if self.split_feature.is_empty() {
            return;
        }
        recurse(self, row, 0, Vec::with_capacity(32), Edge { zero: 1.0, one: 1.0, feature: usize::MAX }, phi);
    }
}

impl GbdtModel {
    /// Per row, one contribution per feature followed by the bias (expected raw score): a
    /// `rows x (cols + 1)` row-major matrix whose rows sum to the raw scores. A multiclass model
    /// has such a block per class, class after class (`rows x classes * (cols + 1)`), each
    /// summing to that class's raw score — LightGBM's `pred_contrib` layout.
    pub fn contributions(&self, x: &DesignMatrix) -> DesignMatrix {
        let k = self.num_class.max(1);
        let block = x.cols + 1;
        let cols = k * block;
        let trees = self.scoring_trees();
        let bias: Vec<f64> = (0..k)
            .map(|c| {
                let base = if k > 1 { self.class_base[c] } else { self.base_score };
                base + trees.iter().skip(c).step_by(k).map(Tree::expected_value).sum::<f64>()
            })
            .collect();
        let mut data = vec![0.0; x.rows * cols];
        data.par_chunks_mut(cols).enumerate().for_each(|(r, out)| {
            for (t, tree) in trees.iter().enumerate() {
                let c = t % k;
                tree.shap(x.row(r), &mut out[c * block..c * block + x.cols]);
            }
            for (c, b) in bias.iter().enumerate() {
                out[c * block + x.cols] = *b;
            }
        });
        DesignMatrix { data, rows: x.rows, cols }
    }

    /// Per feature: how many splits use it, and the total gain of those splits.
    pub fn importance(&self, features: usize) -> (Vec<u64>, Vec<f64>) {
        let mut splits = vec![0u64; features];
        let mut gain = vec![0.0; features];
        for tree in self.scoring_trees() {
            for (f, g) in tree.split_feature.iter().zip(&tree.split_gain) {
                splits[*f as usize] += 1;
                gain[*f as usize] += g;
            }
        }
        (splits, gain)
    }
}

impl LinearModel {
    /// Per row, `weight x value` per design-matrix column followed by the intercept; for a
    /// multinomial model a block per class, class after class (as [`GbdtModel::contributions`]).
    pub fn contributions(&self, x: &DesignMatrix) -> DesignMatrix {
        let k = self.outputs();
        let cols = k * (x.cols + 1);
        let mut data = Vec::with_capacity(x.rows * cols);
        for r in 0..x.rows {
            for c in 0..k {
                let weights = &self.weights[c * x.cols..(c + 1) * x.cols];
                data.extend(x.row(r).iter().zip(weights).map(|(v, w)| v * w));
                data.push(if self.intercepts.is_empty() { self.intercept } else { self.intercepts[c] });
            }
        }
        DesignMatrix { data, rows: x.rows, cols }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A depth-3 tree over 3 features with uneven covers, a categorical split and a missing
    /// default, written by hand.
    fn tree() -> Tree {
        // node 0: x0 <= 0.5 ? node 1 : node 2
        // node 1: x1 in {1, 2} ? leaf 0 : leaf 1
        // node 2: x2 <= 1.0 (missing left) ? leaf 2 : node 3
        // node 3: x0 <= 2.0 ? leaf 3 : leaf 4
        Tree {
            split_feature: vec![0, 1, 2, 0],
            threshold: vec![0.5, 0.0, 1.0, 2.0],
            default_left: vec![false, false, true, true],
            cat_set: vec![-1, 0, -1, -1],
            cat_sets: vec![vec![1, 2]],
            left: vec![1, !0, !2, !3],
            right: vec![2, !1, 3, !4],
            split_gain: vec![5.0, 2.0, 3.0, 1.0],
            internal_count: vec![100, 40, 60, 35],
            leaf_value: vec![1.0, -2.0, 0.5, 3.0, -1.0],
            leaf_count: vec![10, 30, 25, 20, 15],
        }
    }

    /// E[f(x) | x_S] by the tree's covers: follow x on features in S, average otherwise.
    fn conditional(t: &Tree, row: &[f64], s: u32, node: i32) -> f64 {
        if node < 0 {
            return t.leaf_value[!node as usize];
        }
        let n = node as usize;
        let f = t.split_feature[n] as usize;
        if s & (1 << f) != 0 {
            let next = if t.goes_left(n, row[f]) { t.left[n] } else { t.right[n] };
            conditional(t, row, s, next)
        } else {
            let (l, r) = (t.left[n], t.right[n]);
            let total = t.internal_count[n] as f64;
            (cover(t, l) * conditional(t, row, s, l) + cover(t, r) * conditional(t, row, s, r)) / total
        }
    }

    fn brute_force_shapley(t: &Tree, row: &[f64], m: usize) -> Vec<f64> {
        let fact = |n: usize| (1..=n).product::<usize>() as f64;
        let mut phi = vec![0.0; m];
        for (i, p) in phi.iter_mut().enumerate() {
            for s in 0u32..(1 << m) {
                if s & (1 << i) != 0 {
                    continue;
                }
                let k = s.count_ones() as usize;
                let w = fact(k) * fact(m - k - 1) / fact(m);
                *p += w * (conditional(t, row, s | (1 << i), 0) - conditional(t, row, s, 0));
            }
        }
        phi
    }

    #[test]
    fn tree_shap_equals_brute_force_shapley_values() {
        let t = tree();
        let rows: [[f64; 3]; 6] = [
            [0.0, 1.0, 0.0],
            [0.0, 3.0, 5.0],
            [1.0, f64::NAN, f64::NAN],
            [1.0, 2.0, 2.0],
            [3.0, 0.0, 2.0],
            [f64::NAN, 1.0, 0.5],
        ];
        for row in rows {
            let mut phi = vec![0.0; 3];
            t.shap(&row, &mut phi);
            let expected = brute_force_shapley(&t, &row, 3);
            for (a, b) in phi.iter().zip(&expected) {
                assert!((a - b).abs() < 1e-12, "{row:?}: {phi:?} vs {expected:?}");
            }
            let leaf = t.leaf_value[t.leaf(&row)];
            let sum: f64 = phi.iter().sum::<f64>() + t.expected_value();
            assert!((sum - leaf).abs() < 1e-12, "{row:?}: {sum} vs {leaf}");
        }
    }
}
