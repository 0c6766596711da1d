use serde::{Deserialize, Serialize};

use crate::transform::DesignMatrix;

/// `score = link(intercept + weights · x)`; the link is the logistic function for binary
/// classification and the identity for regression.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinearModel {
    pub weights: Vec<f64>,
    pub intercept: f64,
    /// For online (FTRL) models: the per-coordinate state that further `partial_fit`s continue
    /// from. Prediction uses `weights` and `intercept` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online: Option<FtrlState>,
}

/// FTRL-Proximal state (McMahan et al., 2013): per coordinate (weights, then the intercept) the
/// accumulated adjusted gradient `z` and squared-gradient sum `n`, with the settings that
/// turn them into weights.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FtrlState {
    pub alpha: f64,
    pub beta: f64,
    pub l1: f64,
    pub l2: f64,
    pub z: Vec<f64>,
    pub n: Vec<f64>,
    /// Rows seen so far, over all fits.
    pub rows_seen: u64,
}

impl LinearModel {
    /// Raw margins `intercept + weights · x` for every row of `x`.
    pub fn margins(&self, x: &DesignMatrix) -> Vec<f64> {
        (0..x.rows)
            .map(|i| self.intercept + x.row(i).iter().zip(&self.weights).map(|(a, b)| a * b).sum::<f64>())
            .collect()
    }
}

/// The logistic function, written to stay accurate for large |z|.
pub fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}
