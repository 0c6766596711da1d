use serde::{Deserialize, Serialize};

use crate::transform::DesignMatrix;

/// `score = link(intercept + weights · x)`; the link is the logistic function for binary
/// classification and the identity for regression. A multinomial (softmax) model has one margin
/// per class: `weights` holds `classes x features` (class by class) and `intercepts` one per
/// class, and the class probabilities are the softmax of the margins.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinearModel {
    pub weights: Vec<f64>,
    pub intercept: f64,
    /// Multinomial models: the per-class intercepts (`intercept` is then 0); empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub intercepts: Vec<f64>,
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
    /// A single-output model (binary or regression).
    pub fn new(weights: Vec<f64>, intercept: f64) -> Self {
        Self { weights, intercept, intercepts: Vec::new(), online: None }
    }

    /// Margins per row: one (`intercept + weights · x`) or, for a multinomial model, one per
    /// class (row-major, `rows x classes`).
    pub fn margins(&self, x: &DesignMatrix) -> Vec<f64> {
        let dot = |w: &[f64], row: &[f64]| row.iter().zip(w).map(|(a, b)| a * b).sum::<f64>();
        if self.intercepts.is_empty() {
            return (0..x.rows).map(|i| self.intercept + dot(&self.weights, x.row(i))).collect();
        }
        let mut out = Vec::with_capacity(x.rows * self.intercepts.len());
        for i in 0..x.rows {
            let row = x.row(i);
            for (k, b) in self.intercepts.iter().enumerate() {
                out.push(b + dot(&self.weights[k * x.cols..(k + 1) * x.cols], row));
            }
        }
        out
    }

    /// Margins per row: 1, or the number of classes of a multinomial model.
    pub fn outputs(&self) -> usize {
        self.intercepts.len().max(1)
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
