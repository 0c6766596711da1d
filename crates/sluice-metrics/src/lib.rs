//! Evaluation metrics for binary classification and regression, matching scikit-learn's
//! definitions (`roc_auc_score`, `log_loss`, `accuracy_score`, `precision_score`, `recall_score`,
//! `f1_score`, `mean_squared_error`, `mean_absolute_error`, `r2_score`).
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
    #[error("ROC AUC needs both classes in the labels, found only {0}")]
    OneClass(f64),
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
    pub rows: u64,
    pub positives: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegressionMetrics {
    pub rmse: f64,
    pub mae: f64,
    pub r2: f64,
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
        ])
    }
}

impl RegressionMetrics {
    pub fn to_map(&self) -> BTreeMap<String, f64> {
        BTreeMap::from([("rmse".into(), self.rmse), ("mae".into(), self.mae), ("r2".into(), self.r2)])
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
    let (mut tp, mut fp, mut tn, mut fneg) = (0u64, 0u64, 0u64, 0u64);
    let mut loss = 0.0;
    // scikit-learn clips probabilities to [eps, 1 - eps] with eps = float64 machine epsilon.
    let eps = f64::EPSILON;
    for (&yi, &pi) in y.iter().zip(p) {
        let q = pi.clamp(eps, 1.0 - eps);
        loss -= if yi == 1.0 { q.ln() } else { (1.0 - q).ln() };
        match (yi == 1.0, pi >= threshold) {
            (true, true) => tp += 1,
            (false, true) => fp += 1,
            (false, false) => tn += 1,
            (true, false) => fneg += 1,
        }
    }
    let n = y.len() as f64;
    let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let precision = ratio(tp, tp + fp);
    let recall = ratio(tp, tp + fneg);
    let f1 = ratio(2 * tp, 2 * tp + fp + fneg);
    Ok(BinaryMetrics {
        roc_auc: roc_auc(y, p)?,
        log_loss: loss / n,
        accuracy: (tp + tn) as f64 / n,
        precision,
        recall,
        f1,
        rows: y.len() as u64,
        positives: tp + fneg,
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

pub fn regression(y: &[f64], yhat: &[f64]) -> Result<RegressionMetrics> {
    check(y, yhat)?;
    let n = y.len() as f64;
    let mean = y.iter().sum::<f64>() / n;
    let (mut sse, mut sae, mut sst) = (0.0, 0.0, 0.0);
    for (&a, &b) in y.iter().zip(yhat) {
        sse += (a - b) * (a - b);
        sae += (a - b).abs();
        sst += (a - mean) * (a - mean);
    }
    // scikit-learn's r2_score: 1.0 for a perfect fit of constant labels, 0.0 otherwise.
    let r2 = if sst == 0.0 { if sse == 0.0 { 1.0 } else { 0.0 } } else { 1.0 - sse / sst };
    Ok(RegressionMetrics { rmse: (sse / n).sqrt(), mae: sae / n, r2, rows: y.len() as u64 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_with_ties_matches_trapezoid() {
        // scikit-learn: roc_auc_score([0,0,1,1,1],[0.1,0.4,0.4,0.8,0.4]) == 0.8333333333333333
        let auc = roc_auc(&[0.0, 0.0, 1.0, 1.0, 1.0], &[0.1, 0.4, 0.4, 0.8, 0.4]).unwrap();
        assert!((auc - 0.8333333333333333).abs() < 1e-12, "{auc}");
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(binary(&[], &[], 0.5), Err(MetricsError::Empty));
        assert_eq!(binary(&[2.0], &[0.5], 0.5), Err(MetricsError::NotBinary(2.0)));
        assert!(roc_auc(&[1.0, 1.0], &[0.1, 0.2]).is_err());
    }
}
