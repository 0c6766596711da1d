//! Gradient-boosted decision trees: the stored form and prediction.
//!
//! Trees split on design-matrix columns produced by [`Transform::Numeric`] (raw values, `NaN` when
//! missing) and [`Transform::Categorical`] (category index, `NaN` when missing or unseen). A
//! numeric split sends `x <= threshold` left and `NaN` to its learned default side; a categorical
//! split sends the listed categories left and everything else (including missing) right.
//!
//! [`Transform::Numeric`]: crate::Transform::Numeric
//! [`Transform::Categorical`]: crate::Transform::Categorical

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};
use crate::linear::sigmoid;
use crate::transform::DesignMatrix;

/// How raw scores (sums of leaf values) become predictions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Link {
    Identity,
    /// Probability of the positive class.
    Logistic,
    /// Poisson mean (scores are log-means).
    Exp,
    /// Class probabilities from one raw score per class.
    Softmax,
}

impl Link {
    pub fn apply(self, raw: f64) -> f64 {
        match self {
            Link::Identity => raw,
            Link::Logistic => sigmoid(raw),
            Link::Exp => raw.exp(),
            // Applied to a whole row of class scores by `softmax`.
            Link::Softmax => raw,
        }
    }
}

/// Softmax of one row of class scores, in place.
pub fn softmax(row: &mut [f64]) {
    let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut sum = 0.0;
    for v in row.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    row.iter_mut().for_each(|v| *v /= sum);
}

fn one() -> usize {
    1
}

fn is_one(n: &usize) -> bool {
    *n == 1
}

/// One regression tree, stored as parallel arrays over its internal nodes (`split_*`, `left`,
/// `right`) and its leaves (`leaf_*`). A child index `c >= 0` is an internal node, `c < 0` is leaf
/// `!c`. A tree with no split has one leaf and empty node arrays.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    pub split_feature: Vec<u32>,
    /// Numeric splits: `x <= threshold` goes left. Unused (0) for categorical splits. `+inf`
    /// (every value left, only missing values right) is stored as `null`, which JSON can hold.
    #[serde(with = "infinity_as_null")]
    pub threshold: Vec<f64>,
    pub default_left: Vec<bool>,
    /// For categorical splits, the index into `cat_sets`; `-1` for numeric splits.
    pub cat_set: Vec<i32>,
    /// Category indices that go left, one sorted list per categorical split.
    pub cat_sets: Vec<Vec<u32>>,
    pub left: Vec<i32>,
    pub right: Vec<i32>,
    /// Gain of each split (for split-gain importance).
    pub split_gain: Vec<f64>,
    /// Training rows that reached each internal node (TreeSHAP's cover).
    pub internal_count: Vec<u64>,
    pub leaf_value: Vec<f64>,
    pub leaf_count: Vec<u64>,
}

impl Tree {
    pub fn num_leaves(&self) -> usize {
        self.leaf_value.len()
    }

    /// The leaf `row` lands in.
    #[inline]
    pub fn leaf(&self, row: &[f64]) -> usize {
        if self.split_feature.is_empty() {
            return 0;
        }
        let mut node = 0i32;
        loop {
            let n = node as usize;
            let x = row[self.split_feature[n] as usize];
            node = if self.goes_left(n, x) { self.left[n] } else { self.right[n] };
            if node < 0 {
                return !node as usize;
            }
        }
    }

    /// Whether value `x` of the split feature goes to the left child of internal node `n`.
    #[inline]
    pub fn goes_left(&self, n: usize, x: f64) -> bool {
        let set = self.cat_set[n];
        if set >= 0 {
            // Category indices are small non-negative integers; NaN or anything else goes right.
            x >= 0.0 && self.cat_sets[set as usize].binary_search(&(x as u32)).is_ok()
        } else if x.is_nan() {
            self.default_left[n]
        } else {
            x <= self.threshold[n]
        }
    }

    fn check(&self, features: usize) -> Result<()> {
        let nodes = self.split_feature.len();
        let bad = |what: String| Err(ModelError::Inconsistent(format!("tree: {what}")));
        for len in [
            self.threshold.len(),
            self.default_left.len(),
            self.cat_set.len(),
            self.left.len(),
            self.right.len(),
            self.split_gain.len(),
            self.internal_count.len(),
        ] {
            if len != nodes {
                return bad(format!("node arrays have different lengths ({len} vs {nodes})"));
            }
        }
        if self.leaf_value.len() != nodes + 1 || self.leaf_count.len() != nodes + 1 {
            return bad(format!("{} nodes need {} leaves, found {}", nodes, nodes + 1, self.leaf_value.len()));
        }
        if let Some(f) = self.split_feature.iter().find(|f| **f as usize >= features) {
            return bad(format!("split on feature {f} but the model has {features} features"));
        }
        for c in self.left.iter().chain(&self.right) {
            let ok = if *c >= 0 { (*c as usize) < nodes && *c > 0 } else { (!*c as usize) <= nodes };
            if !ok {
                return bad(format!("child index {c} out of range"));
            }
        }
        if let Some(s) = self.cat_set.iter().find(|s| **s >= self.cat_sets.len() as i32) {
            return bad(format!("categorical split refers to set {s} of {}", self.cat_sets.len()));
        }
        Ok(())
    }
}

mod infinity_as_null {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &[f64], s: S) -> Result<S::Ok, S::Error> {
        v.iter().map(|x| if *x == f64::INFINITY { None } else { Some(*x) }).collect::<Vec<_>>().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        Ok(Vec::<Option<f64>>::deserialize(d)?.into_iter().map(|x| x.unwrap_or(f64::INFINITY)).collect())
    }
}

/// An additive ensemble: `link(base_score + Σ tree(x))`. A multiclass model has `num_class`
/// trees per round (tree `t` adds to class `t % num_class`) and one base score per class.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GbdtModel {
    pub link: Link,
    pub base_score: f64,
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub num_class: usize,
    /// Multiclass: the starting score of each class (`base_score` is then unused).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub class_base: Vec<f64>,
    pub trees: Vec<Tree>,
    /// Number of boosting rounds used at prediction (the best round when training stopped
    /// early); trees past it are kept for warm starts but do not score.
    pub best_rounds: usize,
}

/// Rows per parallel chunk when scoring large batches.
const CHUNK: usize = 1024;

impl GbdtModel {
    pub(crate) fn check(&self, features: usize) -> Result<()> {
        let k = self.num_class.max(1);
        if !self.trees.len().is_multiple_of(k)
            || !self.best_rounds.is_multiple_of(k)
            || (k > 1 && self.class_base.len() != k)
        {
            return Err(ModelError::Inconsistent(format!(
                "{} trees, {} scoring, {} base scores for {k} classes",
                self.trees.len(),
                self.best_rounds,
                self.class_base.len()
            )));
        }
        if self.best_rounds > self.trees.len() {
            return Err(ModelError::Inconsistent(format!(
                "best_rounds {} exceeds the {} trees",
                self.best_rounds,
                self.trees.len()
            )));
        }
        self.trees.iter().try_for_each(|t| t.check(features))
    }

    /// The trees that score.
    pub fn scoring_trees(&self) -> &[Tree] {
        &self.trees[..self.best_rounds]
    }

    /// Raw scores (before the link) for every row of `x`: one per row, or `num_class` per row
    /// (row-major) for a multiclass model. Large batches are scored in parallel chunks, tree by
    /// tree within a chunk so a tree's nodes stay in cache.
    pub fn raw_scores(&self, x: &DesignMatrix) -> Vec<f64> {
        let k = self.num_class.max(1);
        let mut out = if k == 1 {
            vec![self.base_score; x.rows]
        } else {
            (0..x.rows).flat_map(|_| self.class_base.iter().copied()).collect()
        };
        let trees = self.scoring_trees();
        let score_chunk = |start: usize, chunk: &mut [f64]| {
            for (t, tree) in trees.iter().enumerate() {
                let class = t % k;
                for (r, o) in chunk.chunks_mut(k).enumerate() {
                    o[class] += tree.leaf_value[tree.leaf(x.row(start + r))];
                }
            }
        };
        if x.rows <= CHUNK {
            score_chunk(0, &mut out);
        } else {
            out.par_chunks_mut(CHUNK * k).enumerate().for_each(|(i, chunk)| score_chunk(i * CHUNK, chunk));
        }
        out
    }

    /// Predictions: one per row, or class probabilities (`num_class` per row) for multiclass.
    pub fn predict(&self, x: &DesignMatrix) -> Vec<f64> {
        let mut s = self.raw_scores(x);
        if self.link == Link::Softmax {
            s.chunks_mut(self.num_class.max(1)).for_each(softmax);
        } else {
            s.iter_mut().for_each(|v| *v = self.link.apply(*v));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stump() -> Tree {
        Tree {
            split_feature: vec![0, 1],
            threshold: vec![0.5, 0.0],
            default_left: vec![false, true],
            cat_set: vec![-1, 0],
            cat_sets: vec![vec![1, 3]],
            left: vec![!0, !1],
            right: vec![1, !2],
            split_gain: vec![1.0, 1.0],
            internal_count: vec![10, 6],
            leaf_value: vec![-1.0, 2.0, 3.0],
            leaf_count: vec![4, 3, 3],
        }
    }

    #[test]
    fn numeric_categorical_and_missing_routing() {
        let t = stump();
        t.check(2).unwrap();
        assert_eq!(t.leaf(&[0.5, 1.0]), 0); // x <= threshold goes left
        assert_eq!(t.leaf(&[f64::NAN, 1.0]), 1); // missing follows default (right), then category 1 is in the set
        assert_eq!(t.leaf(&[0.6, 3.0]), 1);
        assert_eq!(t.leaf(&[0.6, 2.0]), 2); // category not in the set
        assert_eq!(t.leaf(&[0.6, f64::NAN]), 2); // missing category goes right
        let m = GbdtModel {
            link: Link::Identity,
            base_score: 0.5,
            num_class: 1,
            class_base: vec![],
            trees: vec![t.clone(), t],
            best_rounds: 1,
        };
        let x = DesignMatrix { data: vec![0.0, 0.0, 1.0, 3.0], rows: 2, cols: 2 };
        assert_eq!(m.raw_scores(&x), vec![-0.5, 2.5]);
    }

    #[test]
    fn malformed_trees_are_rejected() {
        let mut t = stump();
        t.left[1] = 7;
        assert!(t.check(2).is_err());
        let mut t = stump();
        t.split_feature[0] = 2;
        assert!(t.check(2).is_err());
        let mut t = stump();
        t.leaf_value.pop();
        assert!(t.check(2).is_err());
    }
}
