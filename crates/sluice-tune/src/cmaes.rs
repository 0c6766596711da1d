//! CMA-ES (Hansen's (μ/μ_w, λ) evolution strategy, "The CMA Evolution Strategy: A Tutorial",
//! 2016, with its default constants) over the unconditional numeric parameters, each scaled to
//! [0, 1] (on the log scale when it has one). Choices and conditional parameters are drawn at
//! random. Every trial records the generation it was drawn for; the search distribution after
//! generation `g` is a function of the first λ complete trials of each generation up to `g`,
//! recomputed from history (and cached), so any worker gets the same distribution.

use std::sync::Mutex;

use sluice_store::TrialState;

use crate::math;
use crate::sampler::{History, Meta, Sampler, trial_rng};
use crate::space::{Params, Space};

pub struct Cmaes {
    seed: u64,
    population: Option<usize>,
    /// The state after the generations counted so far (state, generations applied).
    cache: Mutex<Option<(State, u64)>>,
}

impl Cmaes {
    pub fn new(seed: u64, population: Option<usize>) -> Self {
        Self { seed, population, cache: Mutex::new(None) }
    }
}

#[derive(Clone)]
struct State {
    n: usize,
    mean: Vec<f64>,
    sigma: f64,
    c: Vec<Vec<f64>>,
    p_sigma: Vec<f64>,
    p_c: Vec<f64>,
    /// Eigenvectors (columns) and square roots of eigenvalues of `c`.
    b: Vec<Vec<f64>>,
    d: Vec<f64>,
    weights: Vec<f64>,
    mu_eff: f64,
    generation: u64,
}

impl State {
    fn new(n: usize, lambda: usize) -> Self {
        let mu = lambda / 2;
        let raw: Vec<f64> = (1..=mu).map(|i| (mu as f64 + 0.5).ln() - (i as f64).ln()).collect();
        let sum: f64 = raw.iter().sum();
        let weights: Vec<f64> = raw.iter().map(|w| w / sum).collect();
        let mu_eff = 1.0 / weights.iter().map(|w| w * w).sum::<f64>();
        let identity = (0..n).map(|i| (0..n).map(|j| f64::from(u8::from(i == j))).collect()).collect::<Vec<Vec<f64>>>();
        Self {
            n,
            mean: vec![0.5; n],
            sigma: 1.0 / 6.0,
            c: identity.clone(),
            p_sigma: vec![0.0; n],
            p_c: vec![0.0; n],
            b: identity,
            d: vec![1.0; n],
            weights,
            mu_eff,
            generation: 0,
        }
    }

    /// `mean + sigma * B * (D ⊙ z)`.
    fn draw(&self, z: &[f64]) -> Vec<f64> {
        (0..self.n)
            .map(|i| self.mean[i] + self.sigma * (0..self.n).map(|j| self.b[i][j] * self.d[j] * z[j]).sum::<f64>())
            .collect()
    }

    /// One generation's update from its solutions, best first.
    fn tell(&mut self, best_first: &[Vec<f64>]) {
        let n = self.n as f64;
        let mu = self.weights.len();
        let c_sigma = (self.mu_eff + 2.0) / (n + self.mu_eff + 5.0);
        let d_sigma = 1.0 + 2.0 * (((self.mu_eff - 1.0) / (n + 1.0)).sqrt() - 1.0).max(0.0) + c_sigma;
        let c_c = (4.0 + self.mu_eff / n) / (n + 4.0 + 2.0 * self.mu_eff / n);
        let c_1 = 2.0 / ((n + 1.3).powi(2) + self.mu_eff);
        let c_mu = (1.0 - c_1).min(2.0 * (self.mu_eff - 2.0 + 1.0 / self.mu_eff) / ((n + 2.0).powi(2) + self.mu_eff));
        let chi_n = n.sqrt() * (1.0 - 1.0 / (4.0 * n) + 1.0 / (21.0 * n * n));
        let ys: Vec<Vec<f64>> = best_first[..mu]
            .iter()
            .map(|x| x.iter().zip(&self.mean).map(|(xi, m)| (xi - m) / self.sigma).collect())
            .collect();
        let y_w: Vec<f64> = (0..self.n).map(|i| ys.iter().zip(&self.weights).map(|(y, w)| w * y[i]).sum()).collect();
        for (m, y) in self.mean.iter_mut().zip(&y_w) {
            *m += self.sigma * y;
        }
        // C^{-1/2} y_w = B D^{-1} B^T y_w.
        let bt_y: Vec<f64> =
            (0..self.n).map(|j| (0..self.n).map(|i| self.b[i][j] * y_w[i]).sum::<f64>() / self.d[j]).collect();
        let c_inv_sqrt_y: Vec<f64> = (0..self.n).map(|i| (0..self.n).map(|j| self.b[i][j] * bt_y[j]).sum()).collect();
        let k_sigma = (c_sigma * (2.0 - c_sigma) * self.mu_eff).sqrt();
        for (p, v) in self.p_sigma.iter_mut().zip(&c_inv_sqrt_y) {
            *p = (1.0 - c_sigma) * *p + k_sigma * v;
        }
        let norm_p_sigma = self.p_sigma.iter().map(|v| v * v).sum::<f64>().sqrt();
        self.generation += 1;
        let h_sigma = norm_p_sigma / (1.0 - (1.0 - c_sigma).powi(2 * self.generation as i32)).sqrt()
            < (1.4 + 2.0 / (n + 1.0)) * chi_n;
        let h = f64::from(u8::from(h_sigma));
        let k_c = (c_c * (2.0 - c_c) * self.mu_eff).sqrt();
        for (p, y) in self.p_c.iter_mut().zip(&y_w) {
            *p = (1.0 - c_c) * *p + h * k_c * y;
        }
        let delta = (1.0 - h) * c_c * (2.0 - c_c);
        for i in 0..self.n {
            for j in 0..self.n {
                let rank_mu: f64 = ys.iter().zip(&self.weights).map(|(y, w)| w * y[i] * y[j]).sum();
                self.c[i][j] = (1.0 - c_1 - c_mu) * self.c[i][j]
                    + c_1 * (self.p_c[i] * self.p_c[j] + delta * self.c[i][j])
                    + c_mu * rank_mu;
            }
        }
        self.sigma *= ((c_sigma / d_sigma) * (norm_p_sigma / chi_n - 1.0)).exp();
        self.sigma = self.sigma.clamp(1e-12, 1.0);
        let (values, vectors) = jacobi_eigen(&self.c);
        self.d = values.iter().map(|v| v.max(1e-20).sqrt()).collect();
        self.b = vectors;
    }
}

/// Eigenvalues and eigenvectors (as columns) of a symmetric matrix, by cyclic Jacobi rotations.
fn jacobi_eigen(m: &[Vec<f64>]) -> (Vec<f64>, Vec<Vec<f64>>) {
    let n = m.len();
    let mut a = m.to_vec();
    let mut v: Vec<Vec<f64>> = (0..n).map(|i| (0..n).map(|j| f64::from(u8::from(i == j))).collect()).collect();
    for _ in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i][j].powi(2))
            .sum();
        if off < 1e-30 {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                if a[p][q].abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for row in a.iter_mut() {
                    let (akp, akq) = (row[p], row[q]);
                    row[p] = c * akp - s * akq;
                    row[q] = s * akp + c * akq;
                }
                let (row_p, row_q) = (a[p].clone(), a[q].clone());
                for (k, (apk, aqk)) in row_p.into_iter().zip(row_q).enumerate() {
                    a[p][k] = c * apk - s * aqk;
                    a[q][k] = s * apk + c * aqk;
                }
                for row in v.iter_mut() {
                    let (vkp, vkq) = (row[p], row[q]);
                    row[p] = c * vkp - s * vkq;
                    row[q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..n).map(|i| a[i][i]).collect(), v)
}

impl Cmaes {
    /// The numeric, unconditional parameters CMA-ES searches, by index.
    fn dims(space: &Space) -> Vec<usize> {
        space
            .params
            .iter()
            .enumerate()
            .filter(|(_, p)| !p.is_categorical() && p.when.is_none())
            .map(|(i, _)| i)
            .collect()
    }

    fn state_for(&self, space: &Space, dims: &[usize], history: &History) -> State {
        let lambda = self.population.unwrap_or(4 + (3.0 * (dims.len() as f64).ln()).floor() as usize).max(2);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let (mut state, _) = cache.take().unwrap_or_else(|| (State::new(dims.len(), lambda), 0));
        loop {
            let g = state.generation as f64;
            let mut members: Vec<(u64, f64, Vec<f64>)> = history
                .complete()
                .filter(|(t, _)| t.state == TrialState::Complete && t.meta.get("generation") == Some(&g))
                .filter_map(|(t, loss)| {
                    let x: Option<Vec<f64>> = dims
                        .iter()
                        .map(|&i| {
                            let p = &space.params[i];
                            let (lo, hi) = p.bounds();
                            t.params.get(&p.name).and_then(|v| p.internal(v)).map(|v| (v - lo) / (hi - lo))
                        })
                        .collect();
                    x.map(|x| (t.number, loss, x))
                })
                .collect();
            if members.len() < lambda {
                break;
            }
            members.sort_by_key(|m| m.0);
            members.truncate(lambda);
            members.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
            let xs: Vec<Vec<f64>> = members.into_iter().map(|m| m.2).collect();
            state.tell(&xs);
        }
        *cache = Some((state.clone(), state.generation));
        state
    }
}

impl Sampler for Cmaes {
    fn sample(&self, space: &Space, history: &History, number: u64) -> (Params, Meta) {
        let mut rng = trial_rng(self.seed, number, 0);
        let mut out = space.sample_random(&mut rng);
        let dims = Self::dims(space);
        if dims.is_empty() {
            return (out, Meta::new());
        }
        let state = self.state_for(space, &dims, history);
        // Redraw a few times when outside the unit box, then clip.
        let mut x = Vec::new();
        for _ in 0..10 {
            let z: Vec<f64> = (0..dims.len()).map(|_| math::normal(&mut rng)).collect();
            x = state.draw(&z);
            if x.iter().all(|v| (0.0..=1.0).contains(v)) {
                break;
            }
        }
        for (&i, xi) in dims.iter().zip(&x) {
            let p = &space.params[i];
            let (lo, hi) = p.bounds();
            out.insert(p.name.clone(), p.external(lo + xi.clamp(0.0, 1.0) * (hi - lo)));
        }
        (out, Meta::from([("generation".to_string(), state.generation as f64)]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jacobi_diagonalizes() {
        let m = vec![vec![4.0, 1.0, 0.5], vec![1.0, 3.0, 0.2], vec![0.5, 0.2, 1.0]];
        let (vals, vecs) = jacobi_eigen(&m);
        for k in 0..3 {
            for i in 0..3 {
                let mv: f64 = (0..3).map(|j| m[i][j] * vecs[j][k]).sum();
                assert!((mv - vals[k] * vecs[i][k]).abs() < 1e-9);
            }
        }
    }

    #[test]
    fn state_moves_towards_the_optimum() {
        // Minimize the distance to (0.8, 0.2) with the raw strategy.
        let mut s = State::new(2, 6);
        let mut rng = sluice_core::rng::SplitMix64::new(5);
        for _ in 0..60 {
            let mut pop: Vec<Vec<f64>> =
                (0..6).map(|_| s.draw(&[math::normal(&mut rng), math::normal(&mut rng)])).collect();
            let f = |x: &Vec<f64>| (x[0] - 0.8).powi(2) + (x[1] - 0.2).powi(2);
            pop.sort_by(|a, b| f(a).total_cmp(&f(b)));
            s.tell(&pop);
        }
        assert!((s.mean[0] - 0.8).abs() < 1e-3 && (s.mean[1] - 0.2).abs() < 1e-3, "{:?}", s.mean);
    }
}
