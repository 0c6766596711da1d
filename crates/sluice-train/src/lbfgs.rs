//! L-BFGS through `argmin` (More–Thuente line search), for smooth objectives whose value and
//! gradient come from one pass over the data.
//!
//! argmin asks for the cost and the gradient separately, often at the same point; one pass yields
//! both, so the last point's pair is kept and a second request for it costs nothing.

use std::cell::RefCell;

use argmin::core::{CostFunction, Executor, Gradient, State, TerminationReason};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;

use crate::error::{Result, TrainError};

/// Correction pairs kept (scikit-learn's and SciPy's default is 10).
const HISTORY: usize = 10;

pub(crate) struct Minimum {
    pub param: Vec<f64>,
    pub value: f64,
    pub iterations: u32,
    pub converged: bool,
}

/// A point, the function's value there and its gradient.
type Evaluated = (Vec<f64>, f64, Vec<f64>);

struct Problem<F> {
    evaluate: RefCell<F>,
    /// The last point evaluated, its value and gradient.
    last: RefCell<Option<Evaluated>>,
    /// The first error a pass returned (argmin only sees that one failed).
    failure: RefCell<Option<TrainError>>,
}

impl<F: FnMut(&[f64]) -> Result<(f64, Vec<f64>)>> Problem<F> {
    fn at(&self, p: &[f64]) -> std::result::Result<(f64, Vec<f64>), argmin::core::Error> {
        if let Some((q, v, g)) = self.last.borrow().as_ref()
            && q.as_slice() == p
        {
            return Ok((*v, g.clone()));
        }
        match (self.evaluate.borrow_mut())(p) {
            Ok((v, g)) => {
                *self.last.borrow_mut() = Some((p.to_vec(), v, g.clone()));
                Ok((v, g))
            }
            Err(e) => {
                let message = e.to_string();
                self.failure.borrow_mut().get_or_insert(e);
                Err(argmin::core::Error::msg(message))
            }
        }
    }
}

/// The problem as argmin sees it, borrowed so that it outlives each slice of iterations.
struct Shared<'a, F>(&'a Problem<F>);

impl<F: FnMut(&[f64]) -> Result<(f64, Vec<f64>)>> CostFunction for Shared<'_, F> {
    type Param = Vec<f64>;
    type Output = f64;
    fn cost(&self, p: &Vec<f64>) -> std::result::Result<f64, argmin::core::Error> {
        Ok(self.0.at(p)?.0)
    }
}

impl<F: FnMut(&[f64]) -> Result<(f64, Vec<f64>)>> Gradient for Shared<'_, F> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;
    fn gradient(&self, p: &Vec<f64>) -> std::result::Result<Vec<f64>, argmin::core::Error> {
        Ok(self.0.at(p)?.1)
    }
}

/// Minimize a smooth function from `init`: `evaluate(p)` returns its value and gradient. Stops
/// when the gradient's Euclidean norm falls below `tol` (then its largest component is below
/// `tol` too, scikit-learn's lbfgs test), when the line search finds no decrease, or after
/// `max_iter` iterations. The result is the best point seen; it counts as converged if its
/// gradient's largest component is below `tol`.
pub(crate) fn minimize(
    init: Vec<f64>,
    max_iter: u32,
    tol: f64,
    evaluate: impl FnMut(&[f64]) -> Result<(f64, Vec<f64>)>,
) -> Result<Minimum> {
    let problem = Problem { evaluate: RefCell::new(evaluate), last: RefCell::new(None), failure: RefCell::new(None) };
    let (value, grad) = problem.at(&init).map_err(|e| take_failure(&problem, e))?;
    if max_abs(&grad) < tol {
        return Ok(Minimum { param: init, value, iterations: 0, converged: true });
    }
    let invalid = |e: argmin::core::Error| TrainError::Invalid(format!("L-BFGS settings: {e}"));
    let solver = LBFGS::new(MoreThuenteLineSearch::new(), HISTORY)
        .with_tolerance_grad(tol)
        .map_err(invalid)?
        .with_tolerance_cost(0.0)
        .map_err(invalid)?;
    let result = Executor::new(Shared(&problem), solver)
        .configure(|s| s.param(init).cost(value).gradient(grad).max_iters(u64::from(max_iter)))
        .run()
        .map_err(|e| take_failure(&problem, e))?;
    if let Some(e) = problem.failure.borrow_mut().take() {
        return Err(e);
    }
    let state = result.state();
    let iterations = state.get_iter() as u32;
    let param =
        state.get_best_param().cloned().ok_or_else(|| TrainError::Invalid("L-BFGS finished without a point".into()))?;
    // The best point's gradient: usually the last evaluation's, else one more pass.
    let (value, grad) = problem.at(&param).map_err(|e| take_failure(&problem, e))?;
    let converged =
        matches!(state.get_termination_reason(), Some(TerminationReason::SolverConverged)) || max_abs(&grad) < tol;
    Ok(Minimum { param, value, iterations, converged })
}

fn take_failure<F>(problem: &Problem<F>, e: argmin::core::Error) -> TrainError {
    problem.failure.borrow_mut().take().unwrap_or_else(|| TrainError::Invalid(format!("L-BFGS: {e}")))
}

pub(crate) fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(0.0f64, |m, g| m.max(g.abs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_minimum_of_a_rosenbrock_valley() {
        let f = |p: &[f64]| {
            let (x, y) = (p[0], p[1]);
            let v = (1.0 - x).powi(2) + 100.0 * (y - x * x).powi(2);
            let g = vec![-2.0 * (1.0 - x) - 400.0 * x * (y - x * x), 200.0 * (y - x * x)];
            Ok((v, g))
        };
        let m = minimize(vec![-1.2, 1.0], 1000, 1e-9, f).expect("converges");
        assert!(m.converged, "{} iterations", m.iterations);
        assert!((m.param[0] - 1.0).abs() < 1e-6 && (m.param[1] - 1.0).abs() < 1e-6, "{:?}", m.param);
    }

    #[test]
    fn a_failing_pass_is_the_error_returned() {
        let mut calls = 0;
        let f = |_: &[f64]| {
            calls += 1;
            if calls > 2 { Err(TrainError::Invalid("pass 3 failed".into())) } else { Ok((1.0, vec![1.0])) }
        };
        let e = minimize(vec![0.0], 100, 1e-9, f).err().expect("fails");
        assert!(e.to_string().contains("pass 3 failed"), "{e}");
    }
}
