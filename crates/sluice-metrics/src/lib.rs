//! Evaluation metrics for binary classification and regression, matching scikit-learn's
//! definitions (`roc_auc_score`, `average_precision_score`, `log_loss`, `accuracy_score`,
//! `balanced_accuracy_score`, `precision_score`, `recall_score`, `f1_score` (binary and macro),
//! `brier_score_loss`, `mean_squared_error`, `mean_absolute_error`, `r2_score`,
//! `mean_absolute_percentage_error`, `silhouette_score`), plus the confusion matrix and a
//! reliability curve.
//!
//! ```
//! let m = sluice_metrics::binary(&[0.0, 1.0, 1.0], &[0.2, 0.7, 0.4], 0.5).unwrap();
//! assert_eq!(m.roc_auc, 1.0);
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MetricsError {
    #[error("no rows to evaluate")]
    Empty,
    #[error("{labels} labels but {scores} scores")]
    Length { labels: usize, scores: usize },
    #[error("binary labels must be 0 or 1, found {0}")]
    NotBinary(f64),
    #[error("class labels must be indices 0..classes, found {0}")]
    BadClass(f64),
    #[error("ROC AUC needs both classes in the labels, found only {0}")]
    OneClass(f64),
    #[error("the silhouette needs 2 to rows - 1 clusters, found {0}")]
    Clusters(usize),
    #[error("clustering models have no label to score against")]
    Unlabeled,
}

pub type Result<T, E = MetricsError> = std::result::Result<T, E>;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BinaryMetrics {
    pub roc_auc: f64,
    pub log_loss: f64,
    pub accuracy: f64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Mean of the F1 scores of both classes.
    pub f1_macro: f64,
    /// Area under the precision-recall curve, as average precision.
    pub pr_auc: f64,
    /// Mean of the recalls of both classes.
    pub balanced_accuracy: f64,
    /// Mean squared difference between probability and label.
    pub brier: f64,
    pub rows: u64,
    pub positives: u64,
    /// Confusion matrix at the threshold.
    pub confusion: Confusion,
}

/// Counts of a binary classifier's outcomes at a threshold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confusion {
    pub true_positives: u64,
    pub false_positives: u64,
    pub true_negatives: u64,
    pub false_negatives: u64,
}

/// The confusion matrix of labels in {0, 1} and probabilities, positive when `p >= threshold`.
pub fn confusion(y: &[f64], p: &[f64], threshold: f64) -> Confusion {
    let mut c = Confusion::default();
    for (&yi, &pi) in y.iter().zip(p) {
        match (yi == 1.0, pi >= threshold) {
            (true, true) => c.true_positives += 1,
            (false, true) => c.false_positives += 1,
            (false, false) => c.true_negatives += 1,
            (true, false) => c.false_negatives += 1,
        }
    }
    c
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegressionMetrics {
    pub rmse: f64,
    pub mae: f64,
    pub r2: f64,
    /// Mean of `|y - yhat| / max(|y|, eps)` (a fraction, not a percentage).
    pub mape: f64,
    pub rows: u64,
}

impl BinaryMetrics {
    pub fn to_map(&self) -> BTreeMap<String, f64> {
        BTreeMap::from([
            ("roc_auc".into(), self.roc_auc),
            ("log_loss".into(), self.log_loss),
            ("accuracy".into(), self.accuracy),
            ("precision".into(), self.precision),
            ("recall".into(), self.recall),
            ("f1".into(), self.f1),
            ("f1_macro".into(), self.f1_macro),
            ("pr_auc".into(), self.pr_auc),
            ("balanced_accuracy".into(), self.balanced_accuracy),
            ("brier".into(), self.brier),
        ])
    }
}

impl RegressionMetrics {
    pub fn to_map(&self) -> BTreeMap<String, f64> {
        BTreeMap::from([
            ("rmse".into(), self.rmse),
            ("mae".into(), self.mae),
            ("r2".into(), self.r2),
            ("mape".into(), self.mape),
        ])
    }
}

fn check(y: &[f64], s: &[f64]) -> Result<()> {
    if y.len() != s.len() {
        return Err(MetricsError::Length { labels: y.len(), scores: s.len() });
    }
    if y.is_empty() {
        return Err(MetricsError::Empty);
    }
    Ok(())
}

/// Metrics for labels in {0, 1} and probabilities of class 1; a row is predicted positive when its
/// probability is at least `threshold`. Precision (recall) is 0 when nothing is predicted
/// (labelled) positive, as scikit-learn's `zero_division=0`.
pub fn binary(y: &[f64], p: &[f64], threshold: f64) -> Result<BinaryMetrics> {
    check(y, p)?;
    if let Some(bad) = y.iter().find(|v| **v != 0.0 && **v != 1.0) {
        return Err(MetricsError::NotBinary(*bad));
    }
    let (mut loss, mut brier) = (0.0, 0.0);
    // scikit-learn clips probabilities to [eps, 1 - eps] with eps = float64 machine epsilon.
    let eps = f64::EPSILON;
    for (&yi, &pi) in y.iter().zip(p) {
        let q = pi.clamp(eps, 1.0 - eps);
        loss -= if yi == 1.0 { q.ln() } else { (1.0 - q).ln() };
        brier += (pi - yi) * (pi - yi);
    }
    let c = confusion(y, p, threshold);
    let (tp, fp, tn, fneg) = (c.true_positives, c.false_positives, c.true_negatives, c.false_negatives);
    let n = y.len() as f64;
    let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let precision = ratio(tp, tp + fp);
    let recall = ratio(tp, tp + fneg);
    let f1 = ratio(2 * tp, 2 * tp + fp + fneg);
    let f1_negative = ratio(2 * tn, 2 * tn + fneg + fp);
    // scikit-learn averages the recalls of the classes present.
    let recalls: Vec<f64> =
        [(tp, tp + fneg), (tn, tn + fp)].iter().filter(|c| c.1 > 0).map(|c| ratio(c.0, c.1)).collect();
    Ok(BinaryMetrics {
        roc_auc: roc_auc(y, p)?,
        log_loss: loss / n,
        accuracy: (tp + tn) as f64 / n,
        precision,
        recall,
        f1,
        f1_macro: (f1 + f1_negative) / 2.0,
        pr_auc: average_precision(y, p),
        balanced_accuracy: recalls.iter().sum::<f64>() / recalls.len() as f64,
        brier: brier / n,
        rows: y.len() as u64,
        positives: tp + fneg,
        confusion: c,
    })
}

/// Area under the ROC curve: the Mann–Whitney statistic with tied scores counted half, which is
/// exactly the trapezoidal area scikit-learn computes.
pub fn roc_auc(y: &[f64], p: &[f64]) -> Result<f64> {
    check(y, p)?;
    let mut order: Vec<usize> = (0..y.len()).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let positives = y.iter().filter(|v| **v == 1.0).count() as f64;
    let negatives = y.len() as f64 - positives;
    if positives == 0.0 || negatives == 0.0 {
        return Err(MetricsError::OneClass(y[0]));
    }
    // Sum of the (average) ranks of the positives.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && p[order[j + 1]] == p[order[i]] {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        let pos_in_tie = order[i..=j].iter().filter(|&&k| y[k] == 1.0).count() as f64;
        rank_sum += avg_rank * pos_in_tie;
        i = j + 1;
    }
    Ok((rank_sum - positives * (positives + 1.0) / 2.0) / (positives * negatives))
}

/// Average precision: `Σ (R_k - R_{k-1}) P_k` over the distinct scores from high to low (tied
/// scores form one threshold), as scikit-learn's `average_precision_score`. 0 with no positives.
pub fn average_precision(y: &[f64], p: &[f64]) -> f64 {
    let mut order: Vec<usize> = (0..y.len()).collect();
    order.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
    let positives = y.iter().filter(|v| **v == 1.0).count() as f64;
    if positives == 0.0 {
        return 0.0;
    }
    let (mut tp, mut seen, mut last_recall, mut ap) = (0.0, 0.0, 0.0, 0.0);
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j < order.len() && p[order[j]] == p[order[i]] {
            tp += y[order[j]];
            seen += 1.0;
            j += 1;
        }
        let recall = tp / positives;
        ap += (recall - last_recall) * (tp / seen);
        last_recall = recall;
        i = j;
    }
    ap
}

/// The reliability (calibration) curve: `bins` equal-width probability bins; per non-empty bin,
/// the mean predicted probability, the fraction of positives and the row count — as
/// scikit-learn's `calibration_curve(strategy="uniform")` plus counts.
pub fn reliability_curve(y: &[f64], p: &[f64], bins: usize) -> Vec<(f64, f64, u64)> {
    let mut sums = vec![(0.0, 0.0, 0u64); bins];
    for (&yi, &pi) in y.iter().zip(p) {
        let b = ((pi * bins as f64) as usize).min(bins - 1);
        sums[b].0 += pi;
        sums[b].1 += yi;
        sums[b].2 += 1;
    }
    sums.into_iter().filter(|s| s.2 > 0).map(|(ps, ys, n)| (ps / n as f64, ys / n as f64, n)).collect()
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MulticlassMetrics {
    pub log_loss: f64,
    pub accuracy: f64,
    pub balanced_accuracy: f64,
    pub precision_macro: f64,
    pub recall_macro: f64,
    pub f1_macro: f64,
    pub rows: u64,
}

impl MulticlassMetrics {
    pub fn to_map(&self) -> BTreeMap<String, f64> {
        BTreeMap::from([
            ("log_loss".into(), self.log_loss),
            ("accuracy".into(), self.accuracy),
            ("balanced_accuracy".into(), self.balanced_accuracy),
            ("precision_macro".into(), self.precision_macro),
            ("recall_macro".into(), self.recall_macro),
            ("f1_macro".into(), self.f1_macro),
        ])
    }
}

/// Metrics for class indices `y` (as f64) and `rows x classes` probabilities `p`; the predicted
/// class is the likeliest (the first on ties). Macro averages run over the classes that occur
/// in the labels or the predictions, balanced accuracy over those in the labels, as
/// scikit-learn does.
pub fn multiclass(y: &[f64], p: &[f64], classes: usize) -> Result<MulticlassMetrics> {
    if classes == 0 || p.len() != y.len() * classes {
        return Err(MetricsError::Length { labels: y.len(), scores: p.len() });
    }
    if y.is_empty() {
        return Err(MetricsError::Empty);
    }
    let (mut tp, mut pred_n, mut true_n) = (vec![0u64; classes], vec![0u64; classes], vec![0u64; classes]);
    let mut loss = 0.0;
    for (i, &yi) in y.iter().enumerate() {
        let c = yi as usize;
        if yi < 0.0 || c >= classes || yi.fract() != 0.0 {
            return Err(MetricsError::BadClass(yi));
        }
        let row = &p[i * classes..(i + 1) * classes];
        let sum: f64 = row.iter().sum();
        let q = (row[c] / sum).clamp(f64::EPSILON, 1.0 - f64::EPSILON);
        loss -= q.ln();
        let predicted = row.iter().enumerate().fold(0, |best, (k, v)| if *v > row[best] { k } else { best });
        pred_n[predicted] += 1;
        true_n[c] += 1;
        if predicted == c {
            tp[c] += 1;
        }
    }
    let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let present: Vec<usize> = (0..classes).filter(|&k| pred_n[k] + true_n[k] > 0).collect();
    let mean = |f: &dyn Fn(usize) -> f64, over: &[usize]| over.iter().map(|&k| f(k)).sum::<f64>() / over.len() as f64;
    let labelled: Vec<usize> = (0..classes).filter(|&k| true_n[k] > 0).collect();
    let n = y.len() as f64;
    Ok(MulticlassMetrics {
        log_loss: loss / n,
        accuracy: tp.iter().sum::<u64>() as f64 / n,
        balanced_accuracy: mean(&|k| ratio(tp[k], true_n[k]), &labelled),
        precision_macro: mean(&|k| ratio(tp[k], pred_n[k]), &present),
        recall_macro: mean(&|k| ratio(tp[k], true_n[k]), &present),
        f1_macro: mean(&|k| ratio(2 * tp[k], pred_n[k] + true_n[k]), &present),
        rows: y.len() as u64,
    })
}

pub fn regression(y: &[f64], yhat: &[f64]) -> Result<RegressionMetrics> {
    check(y, yhat)?;
    let n = y.len() as f64;
    let mean = y.iter().sum::<f64>() / n;
    let (mut sse, mut sae, mut sst, mut sape) = (0.0, 0.0, 0.0, 0.0);
    for (&a, &b) in y.iter().zip(yhat) {
        sse += (a - b) * (a - b);
        sae += (a - b).abs();
        sape += (a - b).abs() / a.abs().max(f64::EPSILON);
        sst += (a - mean) * (a - mean);
    }
    // scikit-learn's r2_score: 1.0 for a perfect fit of constant labels, 0.0 otherwise.
    let r2 = if sst == 0.0 { if sse == 0.0 { 1.0 } else { 0.0 } } else { 1.0 - sse / sst };
    Ok(RegressionMetrics { rmse: (sse / n).sqrt(), mae: sae / n, r2, mape: sape / n, rows: y.len() as u64 })
}

/// The mean silhouette coefficient (scikit-learn's `silhouette_score`, Euclidean): per row,
/// `(b - a) / max(a, b)` with `a` its mean distance to the other rows of its cluster and `b` the
/// lowest mean distance to another cluster's rows; 0 for a row alone in its cluster. `x` holds
/// `labels.len()` rows of `cols` values. Quadratic in the rows: callers sample large sets.
pub fn silhouette(x: &[f64], cols: usize, labels: &[usize]) -> Result<f64> {
    let n = labels.len();
    if n == 0 {
        return Err(MetricsError::Empty);
    }
    if x.len() != n * cols {
        return Err(MetricsError::Length { labels: n, scores: x.len() / cols.max(1) });
    }
    let k = labels.iter().max().map_or(0, |m| m + 1);
    let mut sizes = vec![0usize; k];
    labels.iter().for_each(|l| sizes[*l] += 1);
    let present = sizes.iter().filter(|s| **s > 0).count();
    if present < 2 || present >= n {
        return Err(MetricsError::Clusters(present));
    }
    let row = |i: usize| &x[i * cols..(i + 1) * cols];
    let mut total = 0.0;
    let mut sums = vec![0.0; k];
    for i in 0..n {
        sums.iter_mut().for_each(|s| *s = 0.0);
        for j in 0..n {
            if i != j {
                let d = row(i).iter().zip(row(j)).map(|(a, b)| (a - b) * (a - b)).sum::<f64>().sqrt();
                sums[labels[j]] += d;
            }
        }
        let own = labels[i];
        if sizes[own] == 1 {
            continue;
        }
        let a = sums[own] / (sizes[own] - 1) as f64;
        let b = (0..k)
            .filter(|c| *c != own && sizes[*c] > 0)
            .map(|c| sums[c] / sizes[c] as f64)
            .fold(f64::INFINITY, f64::min);
        // Duplicate rows in two clusters make a = b = 0: scikit-learn counts that row as 0.
        if a.max(b) > 0.0 {
            total += (b - a) / a.max(b);
        }
    }
    Ok(total / n as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silhouette_of_coincident_rows_is_zero_not_nan() {
        // Rows 0-3 coincide across clusters 0 and 1 (a = b = 0: scikit-learn counts 0); rows 4
        // and 5 have a = 0, b = 3: silhouette 1. Mean: 2 / 6.
        let s = silhouette(&[0.0, 0.0, 0.0, 0.0, 3.0, 3.0], 1, &[0, 0, 1, 1, 2, 2]).expect("defined");
        assert!((s - 1.0 / 3.0).abs() < 1e-15, "{s}");
        assert_eq!(silhouette(&[1.0, 2.0], 1, &[0, 0]), Err(MetricsError::Clusters(1)));
    }

    #[test]
    fn auc_with_ties_matches_trapezoid() {
        // scikit-learn: roc_auc_score([0,0,1,1,1],[0.1,0.4,0.4,0.8,0.4]) == 0.8333333333333333
        let auc = roc_auc(&[0.0, 0.0, 1.0, 1.0, 1.0], &[0.1, 0.4, 0.4, 0.8, 0.4]).unwrap();
        assert!((auc - 0.8333333333333333).abs() < 1e-12, "{auc}");
    }

    #[test]
    fn reliability_curve_bins_probabilities() {
        let c = reliability_curve(&[0.0, 1.0, 1.0, 0.0, 1.0], &[0.05, 0.08, 0.55, 0.6, 0.95], 10);
        // Bins [0, 0.1), [0.5, 0.6), [0.6, 0.7), [0.9, 1.0]; empty bins are left out.
        assert_eq!(c.len(), 4);
        assert!((c[0].0 - 0.065).abs() < 1e-12 && c[0].1 == 0.5 && c[0].2 == 2);
        assert_eq!(c[3], (0.95, 1.0, 1));
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(binary(&[], &[], 0.5), Err(MetricsError::Empty));
        assert_eq!(binary(&[2.0], &[0.5], 0.5), Err(MetricsError::NotBinary(2.0)));
        assert!(roc_auc(&[1.0, 1.0], &[0.1, 0.2]).is_err());
    }
}
