//! Loss functions: gradients and hessians of the loss in the raw score, the starting score, and
//! (for L1 and quantile losses, whose hessian says nothing) leaf values refitted to residuals.

use rayon::prelude::*;
use sluice_model::Link;

use crate::linear::softplus;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Loss {
    /// Log loss on 0/1 labels; scores are log-odds.
    Binary,
    /// Squared error.
    L2,
    /// Absolute error.
    L1,
    /// Huber loss with threshold `delta`.
    Huber { delta: f64 },
    /// Pinball loss for quantile `alpha`.
    Quantile { alpha: f64 },
    /// Poisson deviance on counts; scores are log-means.
    Poisson { max_delta_step: f64 },
    /// Softmax cross-entropy over `classes` classes (labels are class indices); one raw score
    /// per class and row.
    Multiclass { classes: usize },
}

const CHUNK: usize = 8192;

impl Loss {
    pub fn link(self) -> Link {
        match self {
            Loss::Binary => Link::Logistic,
            Loss::Poisson { .. } => Link::Exp,
            Loss::Multiclass { .. } => Link::Softmax,
            _ => Link::Identity,
        }
    }

    /// Raw scores per row: the number of classes for multiclass, else 1.
    pub fn outputs(self) -> usize {
        match self {
            Loss::Multiclass { classes } => classes,
            _ => 1,
        }
    }

    /// The starting score of each output: the constant that minimizes the loss over the labels
    /// (LightGBM's `boost_from_average`); 0 for every class of a multiclass model.
    pub fn init_scores(self, y: &[f64], w: &[f64]) -> Vec<f64> {
        match self {
            // As LightGBM: softmax starts from equal scores (starting from the log class shares
            // measured slightly worse on the flights fixture: accuracy 0.8536 vs 0.8562).
            Loss::Multiclass { classes } => vec![0.0; classes],
            _ => vec![self.init_score(y, w)],
        }
    }

    /// Gradient pairs of class `class`'s scores under softmax, from `probs` (rows x classes),
    /// with LightGBM's hessian factor `classes / (classes - 1)`.
    pub fn multiclass_gradients(
        y: &[f64],
        w: &[f64],
        probs: &[f64],
        classes: usize,
        class: usize,
        gh: &mut [super::hist::GradPair],
    ) {
        let factor = classes as f64 / (classes as f64 - 1.0);
        gh.par_chunks_mut(CHUNK).enumerate().for_each(|(c, out)| {
            for (k, o) in out.iter_mut().enumerate() {
                let i = c * CHUNK + k;
                let p = probs[i * classes + class];
                let target = f64::from(y[i] as usize == class);
                *o = [((p - target) * w[i]) as f32, ((factor * p * (1.0 - p)).max(1e-16) * w[i]) as f32];
            }
        });
    }

    /// The constant that minimizes the loss over the labels (single-output losses).
    pub fn init_score(self, y: &[f64], w: &[f64]) -> f64 {
        let sw: f64 = w.iter().sum();
        let mean = y.iter().zip(w).map(|(y, w)| y * w).sum::<f64>() / sw;
        match self {
            Loss::Binary => {
                let p = mean.clamp(1e-15, 1.0 - 1e-15);
                (p / (1.0 - p)).ln()
            }
            Loss::L2 | Loss::Huber { .. } => mean,
            Loss::L1 => weighted_quantile(y.iter().copied().zip(w.iter().copied()).collect(), 0.5),
            Loss::Quantile { alpha } => weighted_quantile(y.iter().copied().zip(w.iter().copied()).collect(), alpha),
            Loss::Poisson { .. } => mean.max(1e-15).ln(),
            Loss::Multiclass { .. } => 0.0,
        }
    }

    /// Gradient and hessian pairs at `score`, weighted by `w`.
    pub fn gradients(self, y: &[f64], w: &[f64], score: &[f64], gh: &mut [super::hist::GradPair]) {
        gh.par_chunks_mut(CHUNK).enumerate().for_each(|(c, out)| {
            let base = c * CHUNK;
            for (k, o) in out.iter_mut().enumerate() {
                let i = base + k;
                let (g, h) = self.point(y[i], score[i]);
                *o = [(g * w[i]) as f32, (h * w[i]) as f32];
            }
        });
    }

    #[inline]
    fn point(self, y: f64, s: f64) -> (f64, f64) {
        match self {
            Loss::Binary => {
                let p = sluice_model::sigmoid(s);
                (p - y, (p * (1.0 - p)).max(1e-16))
            }
            Loss::L2 => (s - y, 1.0),
            Loss::L1 => ((s - y).signum() * f64::from(s != y), 1.0),
            Loss::Huber { delta } => ((s - y).clamp(-delta, delta), 1.0),
            Loss::Quantile { alpha } => (if s >= y { 1.0 - alpha } else { -alpha }, 1.0),
            Loss::Poisson { max_delta_step } => (s.exp() - y, (s + max_delta_step).exp()),
            // Multiclass gradients need the whole row: see `multiclass_gradients`.
            Loss::Multiclass { .. } => (0.0, 1.0),
        }
    }

    /// Whether leaf values are refitted to residual quantiles after the tree is grown.
    pub fn renews_leaves(self) -> Option<f64> {
        match self {
            Loss::L1 => Some(0.5),
            Loss::Quantile { alpha } => Some(alpha),
            _ => None,
        }
    }

    /// Mean loss (the training objective, for reporting); `score` has `outputs()` per row.
    pub fn mean_loss(self, y: &[f64], w: &[f64], score: &[f64]) -> f64 {
        let sw: f64 = w.iter().sum();
        if let Loss::Multiclass { classes } = self {
            let total: f64 = score
                .chunks(classes)
                .zip(y)
                .zip(w)
                .map(|((row, y), w)| {
                    let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let lse = max + row.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
                    w * (lse - row[*y as usize])
                })
                .sum();
            return total / sw;
        }
        let total: f64 = y
            .iter()
            .zip(score)
            .zip(w)
            .map(|((&y, &s), &w)| {
                w * match self {
                    Loss::Binary => softplus(s) - y * s,
                    Loss::L2 => 0.5 * (s - y) * (s - y),
                    Loss::L1 => (s - y).abs(),
                    Loss::Huber { delta } => {
                        let r = (s - y).abs();
                        if r <= delta { 0.5 * r * r } else { delta * (r - 0.5 * delta) }
                    }
                    Loss::Quantile { alpha } => {
                        let r = y - s;
                        if r >= 0.0 { alpha * r } else { (alpha - 1.0) * r }
                    }
                    Loss::Poisson { .. } => s.exp() - y * s,
                    Loss::Multiclass { .. } => 0.0,
                }
            })
            .sum();
        total / sw
    }
}

/// The weighted `alpha`-quantile of (value, weight) pairs: the smallest value whose cumulative
/// weight reaches `alpha` of the total, interpolated with the next value at exact ties.
pub fn weighted_quantile(mut vw: Vec<(f64, f64)>, alpha: f64) -> f64 {
    if vw.is_empty() {
        return 0.0;
    }
    vw.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total: f64 = vw.iter().map(|p| p.1).sum();
    let target = alpha * total;
    let mut acc = 0.0;
    for (i, (v, w)) in vw.iter().enumerate() {
        acc += w;
        if acc > target + 1e-12 * total {
            return *v;
        }
        if (acc - target).abs() <= 1e-12 * total {
            return match vw.get(i + 1) {
                Some((next, _)) => (v + next) / 2.0,
                None => *v,
            };
        }
    }
    vw[vw.len() - 1].0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles() {
        let pairs = |v: &[f64]| v.iter().map(|x| (*x, 1.0)).collect::<Vec<_>>();
        assert_eq!(weighted_quantile(pairs(&[3.0, 1.0, 2.0]), 0.5), 2.0);
        assert_eq!(weighted_quantile(pairs(&[4.0, 1.0, 2.0, 3.0]), 0.5), 2.5);
        assert_eq!(weighted_quantile(pairs(&[1.0, 2.0, 3.0, 4.0, 5.0]), 0.9), 5.0);
        assert_eq!(weighted_quantile(vec![(1.0, 1.0), (10.0, 3.0)], 0.5), 10.0);
    }

    #[test]
    fn gradients_are_derivatives_of_the_loss() {
        let y = [0.0, 1.0, 2.5, 7.0];
        let w = [1.0; 4];
        for loss in [Loss::Binary, Loss::L2, Loss::Huber { delta: 1.0 }, Loss::Poisson { max_delta_step: 0.0 }] {
            let y: Vec<f64> = if loss == Loss::Binary { vec![0.0, 1.0, 1.0, 0.0] } else { y.to_vec() };
            let s = [0.3, -0.2, 1.1, 0.9];
            let mut gh = [[0.0; 2]; 4];
            loss.gradients(&y, &w, &s, &mut gh);
            let g: Vec<f64> = gh.iter().map(|p| f64::from(p[0])).collect();
            for i in 0..4 {
                let f = |d: f64| {
                    let mut s2 = s;
                    s2[i] += d;
                    loss.mean_loss(&y, &w, &s2) * 4.0
                };
                let eps = 1e-6;
                let numeric = (f(eps) - f(-eps)) / (2.0 * eps);
                assert!((numeric - g[i]).abs() < 1e-5 * g[i].abs().max(1.0), "{loss:?} row {i}: {numeric} vs {}", g[i]);
            }
        }
    }
}
