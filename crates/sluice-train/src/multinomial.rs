//! Multinomial (softmax) logistic regression: one weight vector and intercept per class,
//! `mean(log-sum-exp(z) - z_y) + l2 / 2 * Σ_k ||w_k||²` (intercepts not penalized), fitted by
//! L-BFGS — as scikit-learn's `LogisticRegression` does for more than two classes.

use sluice_model::{DesignMatrix, LinearModel};

use crate::error::{Result, TrainError};
use crate::lbfgs;
use crate::linear::{LinearFit, LinearOptions, PassSums, Solver, finish, tree_sum};

/// Summed loss and gradient at `beta` (per class: `x.cols` weights, then the intercept when
/// `intercept`), over the rows of `x` with class indices `y` in `0..classes`.
pub fn multinomial_pass(
    x: &DesignMatrix,
    y: &[f64],
    classes: usize,
    beta: &[f64],
    intercept: bool,
    parallel: bool,
) -> PassSums {
    let width = x.cols + usize::from(intercept);
    tree_sum(
        x.rows,
        parallel,
        &|start, end| {
            let mut acc = PassSums::zero(beta.len(), false);
            let mut z = vec![0.0; classes];
            for (i, &yi) in y.iter().enumerate().take(end).skip(start) {
                let row = x.row(i);
                for (k, zk) in z.iter_mut().enumerate() {
                    let w = &beta[k * width..(k + 1) * width];
                    *zk = row.iter().zip(w).map(|(a, b)| a * b).sum::<f64>() + if intercept { w[x.cols] } else { 0.0 };
                }
                let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let sum: f64 = z.iter().map(|v| (v - max).exp()).sum();
                let log_sum = max + sum.ln();
                let label = yi as usize;
                acc.rows += 1.0;
                acc.loss += log_sum - z[label];
                for (k, zk) in z.iter().enumerate() {
                    let r = (zk - log_sum).exp() - if k == label { 1.0 } else { 0.0 };
                    let g = &mut acc.grad[k * width..(k + 1) * width];
                    for (gj, v) in g.iter_mut().zip(row) {
                        *gj += r * v;
                    }
                    if intercept {
                        g[x.cols] += r;
                    }
                }
            }
            acc
        },
        &|mut a, b| {
            a.merge(&b);
            a
        },
    )
}

/// Fit a multinomial model on `x` with class indices `y` (`0..classes`, every class present or
/// not). The intercepts are centred to sum to zero (softmax is unchanged by a common shift).
pub fn fit_multinomial(x: &DesignMatrix, y: &[f64], classes: usize, o: &LinearOptions) -> Result<LinearFit> {
    if x.rows == 0 {
        return Err(TrainError::Empty);
    }
    if o.l1 > 0.0 {
        return Err(TrainError::Invalid("`l1` is not supported for multinomial logistic regression; use `l2`".into()));
    }
    if o.solver == Solver::Newton {
        return Err(TrainError::Invalid(
            "multinomial logistic regression is fitted by lbfgs; the newton solver fits binary models".into(),
        ));
    }
    if let Some(bad) = y.iter().find(|v| !(v.fract() == 0.0 && **v >= 0.0 && (**v as usize) < classes)) {
        return Err(TrainError::Invalid(format!("class index {bad} outside 0..{classes}")));
    }
    let d = x.cols;
    let width = d + usize::from(o.fit_intercept);
    let mut init = vec![0.0; classes * width];
    if o.fit_intercept {
        // The intercept-only optimum: log class frequencies (a floor for absent classes).
        let mut counts = vec![0.0; classes];
        y.iter().for_each(|v| counts[*v as usize] += 1.0);
        let n = x.rows as f64;
        for (k, c) in counts.iter().enumerate() {
            init[k * width + d] = (c / n).max(1e-6).ln();
        }
    }
    let m = lbfgs::minimize(init, o.iterations(Solver::Lbfgs), o.tol, |beta| {
        let sums = multinomial_pass(x, y, classes, beta, o.fit_intercept, true);
        let p = finish(sums, beta, o.l2, &|j| j % width < d);
        Ok((p.loss, p.grad))
    })?;
    let mut weights = Vec::with_capacity(classes * d);
    let mut intercepts = Vec::with_capacity(classes);
    for block in m.param.chunks(width) {
        weights.extend_from_slice(&block[..d]);
        intercepts.push(if o.fit_intercept { block[d] } else { 0.0 });
    }
    let mean = intercepts.iter().sum::<f64>() / classes as f64;
    intercepts.iter_mut().for_each(|b| *b -= mean);
    Ok(LinearFit {
        model: LinearModel { weights, intercept: 0.0, intercepts, online: None },
        iterations: m.iterations,
        converged: m.converged,
        objective: m.value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The gradient the pass sums matches central differences of its loss.
    #[test]
    fn gradient_matches_finite_differences() {
        let x = DesignMatrix { data: vec![0.5, -1.0, 1.5, 0.2, -0.3, 0.8, 1.1, -0.7], rows: 4, cols: 2 };
        let y = [0.0, 2.0, 1.0, 2.0];
        let beta: Vec<f64> = (0..9).map(|i| (i as f64 * 0.37).sin()).collect();
        let sums = multinomial_pass(&x, &y, 3, &beta, true, false);
        for j in 0..beta.len() {
            let h = 1e-6;
            let mut up = beta.clone();
            up[j] += h;
            let mut down = beta.clone();
            down[j] -= h;
            let numeric = (multinomial_pass(&x, &y, 3, &up, true, false).loss
                - multinomial_pass(&x, &y, 3, &down, true, false).loss)
                / (2.0 * h);
            assert!((numeric - sums.grad[j]).abs() < 1e-7, "weight {j}: {numeric} vs {}", sums.grad[j]);
        }
    }

    /// Two classes: softmax with L2 on both weight vectors is binary logistic regression with
    /// the weight difference, at twice the penalty (`w₁ - w₀ = w`, and `w₀ = -w₁` at the optimum).
    #[test]
    fn two_classes_equal_binary_logistic_regression() {
        let rows = 200;
        let data: Vec<f64> = (0..rows * 2).map(|i| ((i * 7919) % 1000) as f64 / 500.0 - 1.0).collect();
        let x = DesignMatrix { data, rows, cols: 2 };
        let y: Vec<f64> = (0..rows)
            .map(|i| f64::from(x.row(i)[0] - 0.5 * x.row(i)[1] + ((i % 7) as f64 - 3.0) * 0.2 > 0.0))
            .collect();
        let o = LinearOptions { l2: 0.01, tol: 1e-10, ..Default::default() };
        let multi = fit_multinomial(&x, &y, 2, &o).expect("fits");
        let binary = crate::linear::fit_linear(
            &x,
            &y,
            crate::linear::Objective::Logistic,
            &LinearOptions { l2: 0.005, tol: 1e-12, ..Default::default() },
        )
        .expect("fits");
        let m = &multi.model;
        for j in 0..2 {
            let w = m.weights[2 + j] - m.weights[j];
            assert!((w - binary.model.weights[j]).abs() < 1e-6, "weight {j}: {w} vs {:?}", binary.model.weights);
        }
        let b = m.intercepts[1] - m.intercepts[0];
        assert!((b - binary.model.intercept).abs() < 1e-6, "intercept {b} vs {}", binary.model.intercept);
        assert!(multi.converged);
    }
}
