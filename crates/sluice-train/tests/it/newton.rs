//! The Newton solver fed by partial sums, as a cluster feeds it: rows split into partitions,
//! each partition's pass summed on its own and merged. The model must be the one in-process
//! training fits (the same steps; only summation order differs), for logistic regression and
//! for ridge (whose in-process fit is an exact centred solve, a different route to the same
//! optimum).

use sluice_model::{DesignMatrix, Model, design_matrix};
use sluice_train::{
    FeatureOptions, LinearOptions, Objective, PassSums, accumulate, fit_linear, fit_newton, fit_transforms,
    label_values,
};

use crate::support::read_csv;

fn matrix_and_labels(csv: &str, label: &str, task: sluice_model::Task) -> (DesignMatrix, Vec<f64>) {
    let batch = read_csv(csv);
    let features: Vec<String> =
        batch.schema().fields().iter().map(|f| f.name().clone()).filter(|n| n != label).collect();
    let transforms = fit_transforms(&batch, &features, &FeatureOptions::default()).expect("valid test data");
    (
        design_matrix(&transforms, &batch).expect("valid test data"),
        label_values(&batch, label, task).expect("valid test data"),
    )
}

/// Rows `[start, end)` of `x` as a matrix of their own.
fn rows(x: &DesignMatrix, start: usize, end: usize) -> DesignMatrix {
    DesignMatrix { data: x.data[start * x.cols..end * x.cols].to_vec(), rows: end - start, cols: x.cols }
}

/// Fit through `parts` partitions whose sums travel as bytes, as between executors.
fn fit_partitioned(
    x: &DesignMatrix,
    y: &[f64],
    objective: Objective,
    o: &LinearOptions,
    parts: usize,
) -> (sluice_train::LinearFit, u32) {
    let bounds: Vec<usize> = (0..=parts).map(|p| p * x.rows / parts).collect();
    let mut passes = 0;
    let mean = y.iter().sum::<f64>() / y.len() as f64;
    let fit = fit_newton(x.cols, mean, objective, o, |beta, hessian| {
        passes += 1;
        let mut total = PassSums::default();
        for w in bounds.windows(2) {
            let part =
                accumulate(&rows(x, w[0], w[1]), &y[w[0]..w[1]], beta, objective, o.fit_intercept, hessian, true);
            total.merge(&PassSums::from_bytes(&part.to_bytes())?);
        }
        Ok(total)
    })
    .expect("valid test data");
    (fit, passes)
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max)
}

#[test]
fn logistic_regression_from_partition_sums_is_the_in_process_model() {
    let (x, y) = matrix_and_labels("breast_cancer.csv", "label", sluice_model::Task::BinaryClassification);
    let o = LinearOptions { l2: 0.01, ..Default::default() };
    let local = fit_linear(&x, &y, Objective::Logistic, &o).expect("valid test data");
    for parts in [1, 3, 7] {
        let (fit, passes) = fit_partitioned(&x, &y, Objective::Logistic, &o, parts);
        assert!(fit.converged && passes > 2, "{parts} parts: {passes} passes");
        assert_eq!(fit.iterations, local.iterations, "{parts} parts take the same Newton steps");
        let dw = max_diff(&fit.model.weights, &local.model.weights);
        assert!(dw < 1e-9, "{parts} parts: weights differ by {dw:e}");
        assert!((fit.model.intercept - local.model.intercept).abs() < 1e-9);
        assert!((fit.objective - local.objective).abs() < 1e-12);
    }
}

#[test]
fn ridge_from_partition_sums_matches_the_exact_solve() {
    let (x, y) = matrix_and_labels("diabetes.csv", "target", sluice_model::Task::Regression);
    for intercept in [true, false] {
        let o = LinearOptions { l2: 0.001, fit_intercept: intercept, ..Default::default() };
        let exact = fit_linear(&x, &y, Objective::SquaredError, &o).expect("valid test data");
        let (fit, passes) = fit_partitioned(&x, &y, Objective::SquaredError, &o, 4);
        // One Newton step solves a quadratic: a pass for it, a pass for the objective there.
        assert_eq!(fit.iterations, 1, "intercept {intercept}");
        assert!(fit.converged && passes == 2, "{passes} passes");
        let scale = exact.model.weights.iter().fold(1.0f64, |m, w| m.max(w.abs()));
        let dw = max_diff(&fit.model.weights, &exact.model.weights) / scale;
        assert!(dw < 1e-9, "intercept {intercept}: weights differ by {dw:e} (relative)");
        assert!((fit.model.intercept - exact.model.intercept).abs() < 1e-7 * scale);
        assert!((fit.objective - exact.objective).abs() < 1e-9 * exact.objective.abs());
        let _ = Model::Linear(fit.model);
    }
}

#[test]
fn pass_sums_survive_bytes_and_reject_garbage() {
    let sums = PassSums { rows: 3.0, loss: 1.5, grad: vec![1.0, -2.0], hess: vec![1.0, 0.0, 0.5, 2.0] };
    assert_eq!(PassSums::from_bytes(&sums.to_bytes()).expect("valid test data"), sums);
    // Only the lower triangle travels: 4 header values, 2 gradient terms, 3 Hessian terms.
    assert_eq!(sums.to_bytes().len(), 8 * (4 + 2 + 3));
    let no_hessian = PassSums { hess: vec![], ..sums.clone() };
    assert_eq!(PassSums::from_bytes(&no_hessian.to_bytes()).expect("valid test data"), no_hessian);
    // A partition that saw no batch sends nothing; merging it changes nothing.
    let mut merged = sums.clone();
    merged.merge(&PassSums::from_bytes(&[]).expect("valid test data"));
    merged.merge(&PassSums::from_bytes(&PassSums::default().to_bytes()).expect("valid test data"));
    assert_eq!(merged, sums);
    let mut bytes = sums.to_bytes();
    bytes.truncate(bytes.len() - 8);
    let err = PassSums::from_bytes(&bytes).expect_err("garbage is an error").to_string();
    assert!(err.contains("malformed partial sums"), "{err}");
    assert!(PassSums::from_bytes(&[0u8; 12]).is_err());
}
