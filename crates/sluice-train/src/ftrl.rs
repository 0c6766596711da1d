//! Online linear models: FTRL-Proximal (McMahan et al., "Ad Click Prediction: a View from the
//! Trenches", 2013) for logistic or squared loss, updated row by row over record batches. A fit
//! continues from the state stored in the model, so feeding data in batches gives exactly the
//! model one pass over all of it would.

use sluice_model::{DesignMatrix, FtrlState, LinearModel, sigmoid};

use crate::linear::Objective;

#[derive(Clone, Debug)]
pub struct FtrlOptions {
    pub alpha: f64,
    pub beta: f64,
    pub l1: f64,
    pub l2: f64,
    /// Passes over the rows given (in order).
    pub epochs: u32,
}

impl Default for FtrlOptions {
    fn default() -> Self {
        Self { alpha: 0.1, beta: 1.0, l1: 0.0, l2: 0.0, epochs: 1 }
    }
}

fn weight(s: &FtrlState, i: usize) -> f64 {
    let z = s.z[i];
    if z.abs() <= s.l1 { 0.0 } else { -(z - z.signum() * s.l1) / ((s.beta + s.n[i].sqrt()) / s.alpha + s.l2) }
}

/// Update `state` (or a fresh one with `options`) on the rows of `x`; returns the model with
/// weights from the final state. Sequential by nature: each row's update depends on the last.
pub fn partial_fit(
    x: &DesignMatrix,
    y: &[f64],
    objective: Objective,
    options: &FtrlOptions,
    state: Option<FtrlState>,
) -> LinearModel {
    let dim = x.cols + 1;
    let mut s = state.unwrap_or_else(|| FtrlState {
        alpha: options.alpha,
        beta: options.beta,
        l1: options.l1,
        l2: options.l2,
        z: vec![0.0; dim],
        n: vec![0.0; dim],
        rows_seen: 0,
    });
    let mut w = vec![0.0; dim];
    for _ in 0..options.epochs.max(1) {
        for (r, &label) in y.iter().enumerate() {
            let row = x.row(r);
            for (i, wi) in w.iter_mut().enumerate() {
                *wi = if i < x.cols && row[i] == 0.0 { 0.0 } else { weight(&s, i) };
            }
            let margin = row.iter().zip(&w).map(|(a, b)| a * b).sum::<f64>() + w[x.cols];
            let prediction = match objective {
                Objective::Logistic => sigmoid(margin),
                Objective::SquaredError => margin,
            };
            let residual = prediction - label;
            for i in 0..dim {
                let xi = if i < x.cols { row[i] } else { 1.0 };
                if xi == 0.0 {
                    continue;
                }
                let g = residual * xi;
                let sigma = ((s.n[i] + g * g).sqrt() - s.n[i].sqrt()) / s.alpha;
                s.z[i] += g - sigma * w[i];
                s.n[i] += g * g;
            }
            s.rows_seen += 1;
        }
    }
    let weights: Vec<f64> = (0..x.cols).map(|i| weight(&s, i)).collect();
    let intercept = weight(&s, x.cols);
    LinearModel { online: Some(s), ..LinearModel::new(weights, intercept) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize) -> (DesignMatrix, Vec<f64>) {
        let mut data = Vec::new();
        let mut y = Vec::new();
        for i in 0..n {
            let a = ((i * 37) % 100) as f64 / 50.0 - 1.0;
            let b = ((i * 91) % 100) as f64 / 50.0 - 1.0;
            data.extend([a, b]);
            y.push(f64::from(2.0 * a - b + 0.3 > 0.0));
        }
        (DesignMatrix { data, rows: n, cols: 2 }, y)
    }

    #[test]
    fn batches_give_the_same_model_as_one_pass() {
        let (x, y) = data(1000);
        let opts = FtrlOptions::default();
        let whole = partial_fit(&x, &y, Objective::Logistic, &opts, None);
        let mut state = None;
        let mut model = None;
        for start in (0..1000).step_by(128) {
            let end = (start + 128).min(1000);
            let part = DesignMatrix { data: x.data[start * 2..end * 2].to_vec(), rows: end - start, cols: 2 };
            let m = partial_fit(&part, &y[start..end], Objective::Logistic, &opts, state.take());
            state = m.online.clone();
            model = Some(m);
        }
        assert_eq!(model.unwrap(), whole);
        // It learned the boundary 2a - b + 0.3 > 0.
        assert!(whole.weights[0] > 0.5 && whole.weights[1] < -0.2, "{whole:?}");
        assert_eq!(whole.online.as_ref().unwrap().rows_seen, 1000);
    }

    #[test]
    fn l1_zeroes_useless_weights() {
        let (mut x, y) = data(2000);
        // A third, pure-noise column.
        let mut wide = Vec::new();
        for r in 0..x.rows {
            wide.extend(x.row(r));
            wide.push(((r * 13) % 7) as f64 / 7.0 - 0.5);
        }
        x = DesignMatrix { data: wide, rows: 2000, cols: 3 };
        let m = partial_fit(&x, &y, Objective::Logistic, &FtrlOptions { l1: 5.0, ..Default::default() }, None);
        assert_eq!(m.weights[2], 0.0, "{m:?}");
        assert!(m.weights[0] != 0.0);
    }
}
