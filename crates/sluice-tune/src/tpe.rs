//! Tree-structured Parzen estimators, as Optuna implements them by default: after
//! `startup` random trials (complete or pruned), the trials are ranked — complete ones by value,
//! then pruned ones by how far they got and their last value — and split into the best
//! `min(ceil(0.1 n), 25)` ("good") and the rest plus running trials ("bad"). A Parzen estimator (a mixture
//! of truncated normals per numeric coordinate, smoothed frequencies per choice, plus a flat
//! prior component) is fit to each side; `candidates` draws from the good side compete on
//! `ln l(x) - ln g(x)`. Older observations weigh less once there are more than 25. Univariate
//! bandwidths are the distance to the farther neighbour, clipped to [range / min(100, 1 + n),
//! range] ("magic clip"); multivariate ones are Scott-like, `0.2 n^(-1/(d+4))` of the range.
//! Conditional parameters: each group of parameters that appear together is modelled on the
//! trials where it was active.

use sluice_core::rng::SplitMix64;
use sluice_store::TrialState;

use crate::math;
use crate::sampler::{History, Meta, Sampler, trial_rng};
use crate::space::{Distribution, Param, Params, Space};

pub struct Tpe {
    pub seed: u64,
    pub startup: usize,
    pub candidates: usize,
    pub multivariate: bool,
}

const PRIOR_WEIGHT: f64 = 1.0;

impl Sampler for Tpe {
    fn sample(&self, space: &Space, history: &History, number: u64) -> (Params, Meta) {
        let mut rng = trial_rng(self.seed, number, 0);
        let learned =
            history.finished.iter().filter(|t| matches!(t.state, TrialState::Complete | TrialState::Pruned)).count();
        if learned < self.startup {
            return (space.sample_random(&mut rng), Meta::new());
        }
        let groups: Vec<Vec<usize>> = match self.multivariate {
            true => space.groups(),
            false => (0..space.params.len()).map(|i| vec![i]).collect(),
        };
        let mut out = Params::new();
        for group in groups {
            if !space.active(group[0], &out) {
                continue;
            }
            let params: Vec<&Param> = group.iter().map(|&i| &space.params[i]).collect();
            for (p, v) in params.iter().zip(self.sample_group(&params, history, &mut rng)) {
                out.insert(p.name.clone(), v);
            }
        }
        (out, Meta::new())
    }
}

/// Optuna's default observation weights: flat for the newest 25, a ramp from 1/n before that.
fn weights(n: usize) -> Vec<f64> {
    if n < 25 {
        return vec![1.0; n];
    }
    let ramp = n - 25;
    let mut w: Vec<f64> = (0..ramp)
        .map(|i| {
            if ramp == 1 {
                1.0 / n as f64
            } else {
                1.0 / n as f64 + (1.0 - 1.0 / n as f64) * i as f64 / (ramp - 1) as f64
            }
        })
        .collect();
    w.extend(std::iter::repeat_n(1.0, 25));
    w
}

impl Tpe {
    fn sample_group(&self, params: &[&Param], history: &History, rng: &mut SplitMix64) -> Vec<serde_json::Value> {
        let coords = |p: &Params| -> Option<Vec<f64>> {
            params.iter().map(|q| p.get(&q.name).and_then(|v| q.internal(v))).collect()
        };
        // Trials where the group was active, best first: complete ones by loss, then pruned
        // ones by how far they got and their last value there (as Optuna ranks them).
        let mut complete: Vec<(u64, Vec<f64>, f64)> =
            history.complete().filter_map(|(t, loss)| coords(&t.params).map(|c| (t.number, c, loss))).collect();
        complete.sort_by(|a, b| a.2.total_cmp(&b.2).then(a.0.cmp(&b.0)));
        let mut pruned: Vec<(u64, Vec<f64>, u64, f64)> = history
            .finished
            .iter()
            .filter(|t| t.state == TrialState::Pruned)
            .filter_map(|t| {
                let (step, v) = t.intermediate.last().copied().unwrap_or((0, f64::INFINITY));
                let loss = history.direction.loss(v);
                coords(&t.params).map(|c| (t.number, c, step, if loss.is_nan() { f64::INFINITY } else { loss }))
            })
            .collect();
        pruned.sort_by(|a, b| b.2.cmp(&a.2).then(a.3.total_cmp(&b.3)).then(a.0.cmp(&b.0)));
        let ranked: Vec<(u64, Vec<f64>)> =
            complete.into_iter().map(|(n, c, _)| (n, c)).chain(pruned.into_iter().map(|(n, c, _, _)| (n, c))).collect();
        if ranked.is_empty() {
            return params.iter().map(|p| p.sample_uniform(rng)).collect();
        }
        let n_good = ranked.len().div_ceil(10).min(25);
        let mut good = ranked;
        let mut bad = good.split_off(n_good);
        bad.extend(history.pending.iter().filter_map(|p| coords(p).map(|c| (u64::MAX, c))));
        good.sort_by_key(|g| g.0);
        bad.sort_by_key(|b| b.0);
        let good = Parzen::fit(params, &good.into_iter().map(|g| g.1).collect::<Vec<_>>(), self.multivariate);
        let bad = Parzen::fit(params, &bad.into_iter().map(|b| b.1).collect::<Vec<_>>(), self.multivariate);
        let mut best: Option<(f64, Vec<f64>)> = None;
        for _ in 0..self.candidates.max(1) {
            let x = good.draw(rng);
            let score = good.ln_pdf(&x) - bad.ln_pdf(&x);
            if best.as_ref().is_none_or(|(s, _)| score > *s) {
                best = Some((score, x));
            }
        }
        let (_, x) = best.expect("at least one candidate");
        params.iter().zip(x).map(|(p, xi)| p.external(xi)).collect()
    }
}

enum Kernel {
    Numeric {
        mus: Vec<f64>,
        sigmas: Vec<f64>,
        /// `ln(Φ(b) - Φ(a))` of each component: its truncation to the range.
        norms: Vec<f64>,
        low: f64,
        high: f64,
        /// Whole numbers and stepped values: each value owns a cell and gets its mass.
        cell: Option<Cell>,
    },
    Categorical {
        /// `ln p(choice)` per component.
        ln_probs: Vec<Vec<f64>>,
    },
}

#[derive(Clone, Copy)]
enum Cell {
    /// Half-width in internal units.
    Linear(f64),
    /// Whole numbers on a log scale: the cell is [ln(v - 0.5), ln(v + 0.5)].
    LogInt,
}

/// A mixture with one component per observation plus the prior, over a group's coordinates.
struct Parzen {
    ln_weights: Vec<f64>,
    weights: Vec<f64>,
    kernels: Vec<Kernel>,
}

impl Parzen {
    fn fit(params: &[&Param], obs: &[Vec<f64>], multivariate: bool) -> Self {
        let n = obs.len();
        let mut weights = weights(n);
        weights.push(PRIOR_WEIGHT);
        let total: f64 = weights.iter().sum();
        weights.iter_mut().for_each(|w| *w /= total);
        let kernels = params
            .iter()
            .enumerate()
            .map(|(d, p)| {
                let xs: Vec<f64> = obs.iter().map(|o| o[d]).collect();
                match &p.distribution {
                    Distribution::Categorical { choices } => {
                        let c = choices.len();
                        let mut ln_probs: Vec<Vec<f64>> = xs
                            .iter()
                            .map(|&x| {
                                let mut probs = vec![PRIOR_WEIGHT / c as f64; c];
                                probs[x as usize] += 1.0;
                                let s: f64 = probs.iter().sum();
                                probs.iter().map(|p| (p / s).ln()).collect()
                            })
                            .collect();
                        ln_probs.push(vec![-(c as f64).ln(); c]);
                        Kernel::Categorical { ln_probs }
                    }
                    _ => {
                        let (low, high) = p.bounds();
                        let range = high - low;
                        let mut mus = xs.clone();
                        let mut sigmas = if multivariate {
                            vec![0.2 * (n.max(1) as f64).powf(-1.0 / (params.len() as f64 + 4.0)) * range; n]
                        } else {
                            neighbour_sigmas(&xs, low, high)
                        };
                        let min_sigma = range / (1.0 + n as f64 + 1.0).min(100.0);
                        sigmas.iter_mut().for_each(|s| *s = s.clamp(min_sigma, range));
                        mus.push(0.5 * (low + high));
                        sigmas.push(range);
                        let norms = mus
                            .iter()
                            .zip(&sigmas)
                            .map(|(m, s)| math::ln_cdf_diff((low - m) / s, (high - m) / s))
                            .collect();
                        let cell = match &p.distribution {
                            Distribution::Int { log: true, .. } => Some(Cell::LogInt),
                            Distribution::Int { step, .. } => Some(Cell::Linear(*step as f64 / 2.0)),
                            Distribution::Float { step: Some(s), .. } => Some(Cell::Linear(s / 2.0)),
                            _ => None,
                        };
                        Kernel::Numeric { mus, sigmas, norms, low, high, cell }
                    }
                }
            })
            .collect();
        Self { ln_weights: weights.iter().map(|w| w.ln()).collect(), weights, kernels }
    }

    fn draw(&self, rng: &mut SplitMix64) -> Vec<f64> {
        let u = rng.next_f64();
        let mut acc = 0.0;
        let mut k = self.weights.len() - 1;
        for (i, w) in self.weights.iter().enumerate() {
            acc += w;
            if u < acc {
                k = i;
                break;
            }
        }
        self.kernels
            .iter()
            .map(|kernel| match kernel {
                Kernel::Numeric { mus, sigmas, low, high, .. } => {
                    math::truncated_normal(rng, mus[k], sigmas[k], *low, *high)
                }
                Kernel::Categorical { ln_probs } => {
                    let u = rng.next_f64();
                    let mut acc = 0.0;
                    let probs = &ln_probs[k];
                    for (c, lp) in probs.iter().enumerate() {
                        acc += lp.exp();
                        if u < acc {
                            return c as f64;
                        }
                    }
                    (probs.len() - 1) as f64
                }
            })
            .collect()
    }

    fn ln_pdf(&self, x: &[f64]) -> f64 {
        let mut terms = self.ln_weights.clone();
        for (kernel, &xi) in self.kernels.iter().zip(x) {
            match kernel {
                Kernel::Numeric { mus, sigmas, norms, low, high, cell } => {
                    // Snap to the value's cell for discrete parameters.
                    let cell_bounds = cell.map(|c| match c {
                        Cell::Linear(h) => {
                            let centre = low + h + ((xi - low - h) / (2.0 * h)).round() * 2.0 * h;
                            (centre - h, centre + h)
                        }
                        Cell::LogInt => {
                            let v = xi.exp().round();
                            ((v - 0.5).ln(), (v + 0.5).ln())
                        }
                    });
                    for (k, t) in terms.iter_mut().enumerate() {
                        let (m, s) = (mus[k], sigmas[k]);
                        *t += match cell_bounds {
                            Some((a, b)) => math::ln_cdf_diff((a.max(*low) - m) / s, (b.min(*high) - m) / s) - norms[k],
                            None => {
                                let z = (xi - m) / s;
                                -0.5 * z * z - math::LN_SQRT_2PI - s.ln() - norms[k]
                            }
                        };
                    }
                }
                Kernel::Categorical { ln_probs } => {
                    for (k, t) in terms.iter_mut().enumerate() {
                        *t += ln_probs[k][xi as usize];
                    }
                }
            }
        }
        math::ln_sum_exp(&terms)
    }
}

/// Each observation's bandwidth: the larger gap to its neighbours, with the prior's centre among
/// the points and the range's ends as outer neighbours (Optuna's univariate rule).
fn neighbour_sigmas(xs: &[f64], low: f64, high: f64) -> Vec<f64> {
    let mut points: Vec<(f64, usize)> = xs.iter().copied().zip(0..).collect();
    points.push((0.5 * (low + high), usize::MAX));
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut out = vec![0.0; xs.len()];
    let m = points.len();
    for (j, &(x, i)) in points.iter().enumerate() {
        if i == usize::MAX {
            continue;
        }
        let left = if j == 0 { x - low } else { x - points[j - 1].0 };
        let right = if j + 1 == m { high - x } else { points[j + 1].0 - x };
        // The ends do not count as neighbours when there are other points on that side.
        let left = if j == 0 && m > 2 { right } else { left };
        let right = if j + 1 == m && m > 2 { left } else { right };
        out[i] = left.max(right);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_ramp_after_25() {
        assert_eq!(weights(3), vec![1.0; 3]);
        let w = weights(30);
        assert_eq!(w.len(), 30);
        assert!((w[0] - 1.0 / 30.0).abs() < 1e-12);
        assert!(w[..5].windows(2).all(|p| p[0] < p[1]));
        assert_eq!(w[29], 1.0);
    }

    #[test]
    fn mixture_density_integrates_to_one() {
        let p = Param {
            name: "x".into(),
            distribution: Distribution::Float { low: -2.0, high: 3.0, log: false, step: None },
            when: None,
            grid: None,
        };
        let parzen = Parzen::fit(&[&p], &[vec![0.1], vec![0.4], vec![2.5]], false);
        let steps = 20_000;
        let h = 5.0 / steps as f64;
        let total: f64 = (0..steps).map(|i| parzen.ln_pdf(&[-2.0 + (i as f64 + 0.5) * h]).exp() * h).sum();
        assert!((total - 1.0).abs() < 1e-3, "{total}");
        let q = Param {
            name: "k".into(),
            distribution: Distribution::Int { low: 1, high: 6, log: false, step: 1 },
            when: None,
            grid: None,
        };
        let parzen = Parzen::fit(&[&q], &[vec![2.0], vec![5.0]], false);
        let total: f64 = (1..=6).map(|v| parzen.ln_pdf(&[v as f64]).exp()).sum();
        assert!((total - 1.0).abs() < 1e-6, "{total}");
    }
}
