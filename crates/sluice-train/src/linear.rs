//! Regularized linear models.
//!
//! Objective: `mean(loss_i) + l2 / 2 * ||w||² + l1 * ||w||₁`, intercept not penalized.
//!
//! - **Newton** (binary logistic up to [`NEWTON_MAX_WEIGHTS`] weights): for the tens to hundreds
//!   of features a tabular model has, each step is one pass over the rows (parallel over row
//!   chunks) plus a small Cholesky solve, and it converges to machine precision in ~10 steps —
//!   the same optimum scikit-learn's solvers approach.
//! - **Proximal Newton** when `l1 > 0` (lasso, elastic net), as glmnet: each step minimizes the
//!   quadratic model plus the L1 term by coordinate descent on the pass's Hessian, then a line
//!   search on the true objective. Squared error is quadratic, so one step lands on the optimum.
//! - **L-BFGS** (argmin, More–Thuente) for more weights than Newton's dense Hessian suits, and
//!   for multinomial logistic regression ([`fit_multinomial`]).
//!
//! Every solver sees the data only through passes that return [`PassSums`], so the same code
//! trains in-process and, with the passes run as an aggregate, on a cluster.

use sluice_model::{DesignMatrix, LinearModel, sigmoid};

use crate::cholesky::solve_regularized;
use crate::error::{Result, TrainError};
use crate::lbfgs;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Objective {
    Logistic,
    SquaredError,
}

/// How the weights are found; see the module documentation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Solver {
    /// Newton (proximal with `l1`) up to [`NEWTON_MAX_WEIGHTS`] weights, else L-BFGS; ridge
    /// regression is solved exactly; multinomial models use L-BFGS.
    #[default]
    Auto,
    Newton,
    Lbfgs,
}

/// Above this many weights `Solver::Auto` picks L-BFGS: Newton's passes cost `weights²` per row.
pub const NEWTON_MAX_WEIGHTS: usize = 256;

/// The most weights `l1` (proximal Newton, with its dense Hessian) takes.
pub const L1_MAX_WEIGHTS: usize = 2048;

#[derive(Clone, Debug)]
pub struct LinearOptions {
    pub l2: f64,
    /// L1 penalty on the weights (lasso; with `l2`, elastic net).
    pub l1: f64,
    /// Newton steps or L-BFGS iterations; `None`: 100 or 1,000.
    pub max_iter: Option<u32>,
    pub tol: f64,
    pub fit_intercept: bool,
    pub solver: Solver,
}

impl Default for LinearOptions {
    fn default() -> Self {
        Self { l2: 1e-4, l1: 0.0, max_iter: None, tol: 1e-8, fit_intercept: true, solver: Solver::Auto }
    }
}

impl LinearOptions {
    /// The solver used for `weights` weights (intercept included), or why the settings conflict.
    fn resolve(&self, weights: usize) -> Result<Solver> {
        match self.solver {
            Solver::Lbfgs if self.l1 > 0.0 => Err(TrainError::Invalid(
                "`l1` needs the newton solver (proximal Newton); lbfgs fits l2 penalties only".into(),
            )),
            _ if self.l1 > 0.0 && weights > L1_MAX_WEIGHTS => Err(TrainError::Invalid(format!(
                "`l1` with {weights} weights: proximal Newton forms a {weights}x{weights} Hessian per pass, \
                 so it takes at most {L1_MAX_WEIGHTS}; use fewer features (e.g. `max_categories`) or \
                 `model: ftrl`, whose `l1` scales to any width"
            ))),
            Solver::Auto if self.l1 > 0.0 || weights <= NEWTON_MAX_WEIGHTS => Ok(Solver::Newton),
            Solver::Auto => Ok(Solver::Lbfgs),
            s => Ok(s),
        }
    }

    pub(crate) fn iterations(&self, solver: Solver) -> u32 {
        self.max_iter.unwrap_or(if solver == Solver::Lbfgs { 1000 } else { 100 })
    }
}

#[derive(Clone, Debug)]
pub struct LinearFit {
    pub model: LinearModel,
    pub iterations: u32,
    pub converged: bool,
    pub objective: f64,
}

const CHUNK: usize = 4096;

/// Sums over rows at one point `beta`: what one pass over the data yields, here over a design
/// matrix or, on a cluster, per partition on the executors and then merged. The Newton solver
/// turns them into the mean loss, gradient and Hessian.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PassSums {
    pub rows: f64,
    /// Sum of per-row losses.
    pub loss: f64,
    /// Sum of per-row gradients over the augmented row `[x, 1]` (with an intercept).
    pub grad: Vec<f64>,
    /// Lower triangle (row-major, `dim`x`dim`) of the summed per-row Hessians; empty when the
    /// pass was asked for the loss and gradient only.
    pub hess: Vec<f64>,
}

impl PassSums {
    pub fn zero(dim: usize, hessian: bool) -> Self {
        Self { rows: 0.0, loss: 0.0, grad: vec![0.0; dim], hess: vec![0.0; if hessian { dim * dim } else { 0 }] }
    }

    /// Add another partition's sums. The empty default (a partition that saw no batch) adds
    /// nothing and takes the other's shape.
    pub fn merge(&mut self, other: &Self) {
        if other.grad.is_empty() && other.rows == 0.0 {
            return;
        }
        if self.grad.is_empty() && self.rows == 0.0 {
            *self = other.clone();
            return;
        }
        self.rows += other.rows;
        self.loss += other.loss;
        self.grad.iter_mut().zip(&other.grad).for_each(|(a, b)| *a += b);
        self.hess.iter_mut().zip(&other.hess).for_each(|(a, b)| *a += b);
    }

    /// Little-endian f64s: rows, loss, dim, Hessian flag, gradient, then the Hessian's lower
    /// triangle row by row (the upper triangle is never summed: it stays zero).
    pub fn to_bytes(&self) -> Vec<u8> {
        let dim = self.grad.len();
        let triangle = if self.hess.is_empty() { 0 } else { dim * (dim + 1) / 2 };
        let mut out = Vec::with_capacity(8 * (4 + dim + triangle));
        let header = [self.rows, self.loss, dim as f64, if self.hess.is_empty() { 0.0 } else { 1.0 }];
        let hess_rows = if self.hess.is_empty() { 0 } else { dim };
        let lower = (0..hess_rows).flat_map(|a| &self.hess[a * dim..=a * dim + a]);
        for v in header.iter().chain(&self.grad).chain(lower) {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }

    /// The inverse of [`PassSums::to_bytes`] (no bytes: no rows).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let bad = || TrainError::Invalid(format!("malformed partial sums ({} bytes)", bytes.len()));
        if bytes.is_empty() {
            return Ok(Self::default());
        }
        if !bytes.len().is_multiple_of(8) || bytes.len() < 32 {
            return Err(bad());
        }
        let values: Vec<f64> = bytes
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect();
        let dim = values[2] as usize;
        let hessian = values[3] != 0.0;
        let triangle = if hessian { dim * (dim + 1) / 2 } else { 0 };
        if values.len() != 4 + dim + triangle {
            return Err(bad());
        }
        let mut hess = vec![0.0; if hessian { dim * dim } else { 0 }];
        let mut packed = values[4 + dim..].iter();
        for a in 0..if hessian { dim } else { 0 } {
            for (h, v) in hess[a * dim..=a * dim + a].iter_mut().zip(packed.by_ref()) {
                *h = *v;
            }
        }
        Ok(Self { rows: values[0], loss: values[1], grad: values[4..4 + dim].to_vec(), hess })
    }
}

fn augmented_row(x: &DesignMatrix, i: usize, intercept: bool, buf: &mut Vec<f64>) {
    buf.clear();
    buf.extend_from_slice(x.row(i));
    if intercept {
        buf.push(1.0);
    }
}

fn margin(row: &[f64], beta: &[f64]) -> f64 {
    row.iter().zip(beta).map(|(a, b)| a * b).sum()
}

/// log(1 + exp(z)) without overflow.
pub(crate) fn softplus(z: f64) -> f64 {
    if z > 0.0 { z + (-z).exp().ln_1p() } else { z.exp().ln_1p() }
}

/// One row's loss, its derivative in the margin `z`, and its second derivative.
fn row_terms(objective: Objective, z: f64, y: f64) -> (f64, f64, f64) {
    match objective {
        // loss = log(1 + e^z) - y z
        Objective::Logistic => {
            let p = sigmoid(z);
            (softplus(z) - y * z, p - y, p * (1.0 - p))
        }
        Objective::SquaredError => (0.5 * (z - y) * (z - y), z - y, 1.0),
    }
}

/// One pass over `x` at `beta` (length `x.cols`, plus one for the intercept): summed loss,
/// gradient and, with `hessian`, the Hessian's lower triangle. Row chunks are summed in a fixed
/// tree, in parallel or (`parallel: false`, for callers that are themselves one of many parallel
/// tasks, such as a DataFusion aggregate on an async worker) on the calling thread, with the same
/// result either way.
pub fn accumulate(
    x: &DesignMatrix,
    y: &[f64],
    beta: &[f64],
    objective: Objective,
    intercept: bool,
    hessian: bool,
    parallel: bool,
) -> PassSums {
    let dim = beta.len();
    tree_sum(
        x.rows,
        parallel,
        &|start, end| {
            let mut acc = PassSums::zero(dim, hessian);
            let mut row = Vec::with_capacity(dim);
            for (i, &yi) in y.iter().enumerate().take(end).skip(start) {
                augmented_row(x, i, intercept, &mut row);
                let (loss, r, w) = row_terms(objective, margin(&row, beta), yi);
                acc.rows += 1.0;
                acc.loss += loss;
                for (g, v) in acc.grad.iter_mut().zip(&row) {
                    *g += r * v;
                }
                if hessian {
                    for a in 0..dim {
                        let wa = w * row[a];
                        if wa == 0.0 {
                            continue;
                        }
                        let h = &mut acc.hess[a * dim..a * dim + a + 1];
                        for (hb, vb) in h.iter_mut().zip(&row[..=a]) {
                            *hb += wa * vb;
                        }
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

/// Sum `leaf(start, end)` over `0..rows` in chunks of [`CHUNK`] rows, in parallel, always
/// splitting at the same rows and adding in the same order: floating-point sums (and so the
/// model and its content hash) do not depend on thread timing or count. (A rayon `reduce`
/// splits where threads steal work, so its sums differ in the last bits from run to run.)
pub(crate) fn tree_sum<T: Send>(
    rows: usize,
    parallel: bool,
    leaf: &(dyn Fn(usize, usize) -> T + Sync),
    merge: &(dyn Fn(T, T) -> T + Sync),
) -> T {
    fn go<T: Send>(
        start: usize,
        end: usize,
        parallel: bool,
        leaf: &(dyn Fn(usize, usize) -> T + Sync),
        merge: &(dyn Fn(T, T) -> T + Sync),
    ) -> T {
        let chunks = (end - start).div_ceil(CHUNK);
        if chunks <= 1 {
            return leaf(start, end);
        }
        let mid = start + chunks / 2 * CHUNK;
        let (a, b) = if parallel {
            rayon::join(|| go(start, mid, true, leaf, merge), || go(mid, end, true, leaf, merge))
        } else {
            (go(start, mid, false, leaf, merge), go(mid, end, false, leaf, merge))
        };
        merge(a, b)
    }
    go(0, rows, parallel, leaf, merge)
}

/// Mean loss, gradient and (full, symmetric) Hessian with the L2 penalty added on the weights
/// `penalized(j)` says are penalized (not the intercepts).
pub(crate) struct Point {
    pub loss: f64,
    pub grad: Vec<f64>,
    hess: Vec<f64>,
}

pub(crate) fn finish(sums: PassSums, beta: &[f64], l2: f64, penalized: &dyn Fn(usize) -> bool) -> Point {
    let dim = beta.len();
    let n = sums.rows.max(1.0);
    let mut p = Point { loss: sums.loss / n, grad: sums.grad, hess: sums.hess };
    p.grad.iter_mut().for_each(|g| *g /= n);
    for (j, (g, b)) in p.grad.iter_mut().zip(beta).enumerate() {
        if penalized(j) {
            p.loss += 0.5 * l2 * b * b;
            *g += l2 * b;
        }
    }
    if !p.hess.is_empty() {
        for a in 0..dim {
            for b in 0..=a {
                let v = p.hess[a * dim + b] / n;
                p.hess[a * dim + b] = v;
                p.hess[b * dim + a] = v;
            }
        }
        for j in (0..dim).filter(|j| penalized(*j)) {
            p.hess[j * dim + j] += l2;
        }
    }
    p
}

pub fn fit_linear(x: &DesignMatrix, y: &[f64], objective: Objective, options: &LinearOptions) -> Result<LinearFit> {
    if x.rows == 0 {
        return Err(TrainError::Empty);
    }
    if objective == Objective::SquaredError && options.l1 == 0.0 && options.solver != Solver::Lbfgs {
        return fit_ridge(x, y, options);
    }
    let mean = y.iter().sum::<f64>() / x.rows as f64;
    fit_passes(x.cols, mean, objective, options, |beta, hessian| {
        Ok(accumulate(x, y, beta, objective, options.fit_intercept, hessian, true))
    })
}

/// The solver the options ask for, over `features` weights (plus an intercept when fitted),
/// seeing the data only through `pass` (see [`fit_newton`]): Newton, proximal Newton or L-BFGS.
pub fn fit_passes(
    features: usize,
    label_mean: f64,
    objective: Objective,
    o: &LinearOptions,
    mut pass: impl FnMut(&[f64], bool) -> Result<PassSums>,
) -> Result<LinearFit> {
    let dim = features + usize::from(o.fit_intercept);
    if o.resolve(dim)? == Solver::Newton {
        return fit_newton(features, label_mean, objective, o, pass);
    }
    let init = start_point(features, objective, label_mean, o.fit_intercept);
    let m = lbfgs::minimize(init, o.iterations(Solver::Lbfgs), o.tol, |beta| {
        let sums = pass(beta, false)?;
        check_sums(&sums, beta.len(), false)?;
        let p = finish(sums, beta, o.l2, &|j| j < features);
        Ok((p.loss, p.grad))
    })?;
    Ok(LinearFit {
        model: model_of(m.param, features, o.fit_intercept),
        iterations: m.iterations,
        converged: m.converged,
        objective: m.value,
    })
}

/// Every solver's starting point: zero weights and, when fitted, the intercept-only optimum for
/// a label mean of `label_mean`.
fn start_point(features: usize, objective: Objective, label_mean: f64, fit_intercept: bool) -> Vec<f64> {
    let mut beta = vec![0.0; features];
    if fit_intercept {
        beta.push(match objective {
            Objective::Logistic => {
                let mean = label_mean.clamp(1e-6, 1.0 - 1e-6);
                (mean / (1.0 - mean)).ln()
            }
            Objective::SquaredError => label_mean,
        });
    }
    beta
}

/// The model of a solution `beta`: `features` weights, then the intercept when fitted.
fn model_of(mut beta: Vec<f64>, features: usize, fit_intercept: bool) -> LinearModel {
    let intercept = if fit_intercept { beta[features] } else { 0.0 };
    beta.truncate(features);
    LinearModel::new(beta, intercept)
}

fn check_sums(sums: &PassSums, dim: usize, hessian: bool) -> Result<()> {
    if sums.rows == 0.0 {
        return Err(TrainError::Empty);
    }
    if sums.grad.len() != dim || (hessian && sums.hess.len() != dim * dim) {
        return Err(TrainError::Invalid(format!(
            "a pass over the data returned {} gradient terms for {dim} weights",
            sums.grad.len()
        )));
    }
    Ok(())
}

/// Newton's method with a backtracking line search over `features` weights (plus an intercept
/// when fitted), starting from the intercept-only optimum for a label mean of `label_mean`.
/// `pass(beta, hessian)` returns the sums of one pass over the training rows at `beta` —
/// computed here ([`fit_linear`]) or by an aggregate on a cluster's executors — so every
/// engine takes the same steps. Squared error takes one exact step (it is quadratic): two passes.
/// With `l1 > 0` each step is a proximal Newton step (coordinate descent on the pass's Hessian, then a line search).
pub fn fit_newton(
    features: usize,
    label_mean: f64,
    objective: Objective,
    o: &LinearOptions,
    mut pass: impl FnMut(&[f64], bool) -> Result<PassSums>,
) -> Result<LinearFit> {
    let d = features;
    let dim = d + usize::from(o.fit_intercept);
    let mut beta = start_point(d, objective, label_mean, o.fit_intercept);
    let mut evaluate = |beta: &[f64], hessian: bool| -> Result<Point> {
        let sums = pass(beta, hessian)?;
        check_sums(&sums, beta.len(), hessian)?;
        Ok(finish(sums, beta, o.l2, &|j| j < d))
    };
    // The L1 term, which the smooth pass sums leave out.
    let l1_norm = |beta: &[f64]| o.l1 * beta[..d].iter().map(|w| w.abs()).sum::<f64>();
    let max_iter = o.iterations(Solver::Newton);
    let mut iterations = 0;
    let mut converged = false;
    let mut acc = evaluate(&beta, true)?;
    if objective == Objective::SquaredError && o.l1 == 0.0 {
        // Quadratic: one Newton step lands on the optimum (up to rounding, which an absolute
        // gradient tolerance in label units would chase for large labels). One more pass for
        // the objective there.
        let step = solve_regularized(&acc.hess, &acc.grad, dim).ok_or(TrainError::Singular { dim })?;
        beta.iter_mut().zip(&step).for_each(|(b, s)| *b -= s);
        acc = evaluate(&beta, false)?;
        iterations = 1;
        converged = true;
    }
    while iterations < max_iter && !converged {
        if optimality_gap(&acc.grad, &beta, o.l1, d) < o.tol {
            converged = true;
            break;
        }
        iterations += 1;
        // `step` is subtracted; `decrease` is the model's predicted change (negative).
        let (step, decrease) = if o.l1 > 0.0 {
            let delta = prox_step(&acc.hess, &acc.grad, &beta, o.l1, d, o.tol);
            let moved: Vec<f64> = beta.iter().zip(&delta).map(|(b, s)| b + s).collect();
            let decrease =
                delta.iter().zip(&acc.grad).map(|(s, g)| s * g).sum::<f64>() + l1_norm(&moved) - l1_norm(&beta);
            (delta.into_iter().map(|s| -s).collect::<Vec<_>>(), decrease)
        } else {
            let step = solve_regularized(&acc.hess, &acc.grad, dim).ok_or(TrainError::Singular { dim })?;
            let slope = -step.iter().zip(&acc.grad).map(|(s, g)| s * g).sum::<f64>();
            (step, slope)
        };
        let current = acc.loss + l1_norm(&beta);
        let mut t = 1.0;
        let mut accepted = false;
        for _ in 0..40 {
            let trial: Vec<f64> = beta.iter().zip(&step).map(|(b, s)| b - t * s).collect();
            let next = evaluate(&trial, false)?.loss + l1_norm(&trial);
            if next <= current + 1e-4 * t * decrease || (current - next).abs() <= 1e-15 * current.abs() {
                beta = trial;
                accepted = true;
                break;
            }
            t *= 0.5;
        }
        if !accepted {
            // No decrease possible at this precision: we are at the optimum numerically.
            converged = true;
            break;
        }
        acc = evaluate(&beta, true)?;
    }
    if !converged {
        converged = optimality_gap(&acc.grad, &beta, o.l1, d) < o.tol;
    }
    let objective = acc.loss + l1_norm(&beta);
    Ok(LinearFit { model: model_of(beta, d, o.fit_intercept), iterations, converged, objective })
}

/// How far `beta` is from optimal for the smooth part's gradient `grad` plus `l1 * ||w||₁` on
/// the first `d` entries: the largest component of the minimum-norm subgradient (the plain
/// gradient's largest component without L1).
fn optimality_gap(grad: &[f64], beta: &[f64], l1: f64, d: usize) -> f64 {
    grad.iter()
        .zip(beta)
        .enumerate()
        .map(|(j, (g, b))| match (j < d && l1 > 0.0, *b) {
            (false, _) => g.abs(),
            (true, 0.0) => (g.abs() - l1).max(0.0),
            (true, b) => (g + l1 * b.signum()).abs(),
        })
        .fold(0.0, f64::max)
}

/// The proximal Newton direction at `beta`: the `delta` minimizing
/// `grad·δ + ½ δᵀHδ + l1 ||(β + δ)[..d]||₁`, by cyclic coordinate descent with soft
/// thresholding on the (full, symmetric) Hessian `hess` — no pass over the data. Stops when no
/// coordinate moves by more than `tol` in gradient units (or after 10,000 sweeps).
fn prox_step(hess: &[f64], grad: &[f64], beta: &[f64], l1: f64, d: usize, tol: f64) -> Vec<f64> {
    let dim = beta.len();
    let mut delta = vec![0.0; dim];
    // The quadratic model's gradient at the current delta: grad + H delta.
    let mut model_grad = grad.to_vec();
    for _ in 0..10_000 {
        let mut largest = 0.0f64;
        for j in 0..dim {
            let a = hess[j * dim + j];
            if a <= 0.0 {
                continue;
            }
            let current = beta[j] + delta[j];
            let unpenalized = current - model_grad[j] / a;
            let next = if j < d { soft_threshold(unpenalized, l1 / a) } else { unpenalized };
            let change = next - current;
            if change == 0.0 {
                continue;
            }
            delta[j] += change;
            for (m, h) in model_grad.iter_mut().zip(&hess[j * dim..(j + 1) * dim]) {
                *m += change * h;
            }
            largest = largest.max(change.abs() * a);
        }
        if largest < tol * 0.1 {
            break;
        }
    }
    delta
}

fn soft_threshold(v: f64, by: f64) -> f64 {
    if v > by {
        v - by
    } else if v < -by {
        v + by
    } else {
        0.0
    }
}

/// Ridge: centre (when fitting an intercept), then solve `(XᵀX/n + l2 I) w = Xᵀy/n` exactly.
fn fit_ridge(x: &DesignMatrix, y: &[f64], o: &LinearOptions) -> Result<LinearFit> {
    let (n, d) = (x.rows, x.cols);
    let nf = n as f64;
    let (xmean, ymean) = if o.fit_intercept {
        let mut m = vec![0.0; d];
        for i in 0..n {
            m.iter_mut().zip(x.row(i)).for_each(|(a, v)| *a += v);
        }
        m.iter_mut().for_each(|a| *a /= nf);
        (m, y.iter().sum::<f64>() / nf)
    } else {
        (vec![0.0; d], 0.0)
    };
    let (gram, rhs) = tree_sum(
        n,
        true,
        &|start, end| {
            let mut gram = vec![0.0; d * d];
            let mut rhs = vec![0.0; d];
            let mut row = vec![0.0; d];
            for (i, &y_raw) in y.iter().enumerate().take(end).skip(start) {
                row.iter_mut().zip(x.row(i)).zip(&xmean).for_each(|((r, v), m)| *r = v - m);
                let yi = y_raw - ymean;
                for a in 0..d {
                    rhs[a] += row[a] * yi;
                    let ra = row[a];
                    if ra == 0.0 {
                        continue;
                    }
                    for b in 0..=a {
                        gram[a * d + b] += ra * row[b];
                    }
                }
            }
            (gram, rhs)
        },
        &|(mut g1, mut r1): (Vec<f64>, Vec<f64>), (g2, r2)| {
            g1.iter_mut().zip(&g2).for_each(|(a, b)| *a += b);
            r1.iter_mut().zip(&r2).for_each(|(a, b)| *a += b);
            (g1, r1)
        },
    );
    let mut a = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..=i {
            let v = gram[i * d + j] / nf;
            a[i * d + j] = v;
            a[j * d + i] = v;
        }
        a[i * d + i] += o.l2;
    }
    let b: Vec<f64> = rhs.iter().map(|r| r / nf).collect();
    let w = if d == 0 { Vec::new() } else { solve_regularized(&a, &b, d).ok_or(TrainError::Singular { dim: d })? };
    let intercept = if o.fit_intercept { ymean - xmean.iter().zip(&w).map(|(m, w)| m * w).sum::<f64>() } else { 0.0 };
    let model = LinearModel::new(w, intercept);
    let pred = model.margins(x);
    let mse = pred.iter().zip(y).map(|(p, t)| (p - t) * (p - t)).sum::<f64>() / nf;
    let objective = 0.5 * mse + 0.5 * o.l2 * model.weights.iter().map(|w| w * w).sum::<f64>();
    Ok(LinearFit { model, iterations: 1, converged: true, objective })
}
