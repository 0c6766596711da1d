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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

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
    /// Finished trials' internal coordinates, one per parameter (`None`: inactive), by trial
    /// number. A finished trial's parameters never change, so each is converted once per study
    /// instead of once per sample (which cost a map lookup and a conversion per trial, group
    /// and sample).
    coordinates: Mutex<HashMap<u64, Coords>>,
}

impl Tpe {
    pub fn new(seed: u64, startup: usize, candidates: usize, multivariate: bool) -> Self {
        Self { seed, startup, candidates, multivariate, coordinates: Mutex::default() }
    }

    /// The internal coordinates of each finished trial, in `history.finished`'s order.
    fn coordinates(&self, space: &Space, history: &History) -> Vec<Coords> {
        let Ok(mut cache) = self.coordinates.lock() else {
            return history.finished.iter().map(|t| coords_of(space, &t.params)).collect();
        };
        history
            .finished
            .iter()
            .map(|t| cache.entry(t.number).or_insert_with(|| coords_of(space, &t.params)).clone())
            .collect()
    }
}

/// A trial's internal coordinate for every parameter of the space (`None`: not active).
type Coords = Arc<[Option<f64>]>;

fn coords_of(space: &Space, params: &Params) -> Coords {
    space.params.iter().map(|q| params.get(&q.name).and_then(|v| q.internal(v))).collect()
}

/// Append the coordinates of `group` (indices into the space) to `out`, if all are active.
fn group_coords(coords: &[Option<f64>], group: &[usize], out: &mut Vec<f64>) -> bool {
    let at = out.len();
    for &j in group {
        match coords[j] {
            Some(x) => out.push(x),
            None => {
                out.truncate(at);
                return false;
            }
        }
    }
    true
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
        let coords = self.coordinates(space, history);
        let pending: Vec<Coords> = history.pending.iter().map(|p| coords_of(space, p)).collect();
        let ranked = rank(history);
        let mut out = Params::new();
        for group in groups {
            if !space.active(group[0], &out) {
                continue;
            }
            let params: Vec<&Param> = group.iter().map(|&i| &space.params[i]).collect();
            let seen = Seen { history, coords: &coords, pending: &pending, ranked: &ranked, group: &group };
            for (p, v) in params.iter().zip(self.sample_group(&params, &seen, &mut rng)) {
                out.insert(p.name.clone(), v);
            }
        }
        (out, Meta::new())
    }
}

/// Complete and pruned trials (indices into `history.finished`), best first: complete ones by
/// loss, then pruned ones by how far they got and their last value there (as Optuna ranks
/// them), ties by trial number. The same order serves every group: a group's trials are the
/// ones where it was active, in this order.
fn rank(history: &History) -> Vec<usize> {
    // (class: 0 complete / 1 pruned, key, loss's order bits, index): sorted as integers.
    let mut ranked: Vec<(u64, u64, u64, usize)> = history
        .finished
        .iter()
        .enumerate()
        .filter_map(|(i, t)| match t.state {
            TrialState::Complete => {
                t.value.filter(|v| v.is_finite()).map(|v| (0, 0, order_bits(history.direction.loss(v)), i))
            }
            TrialState::Pruned => {
                let (step, v) = t.intermediate.last().copied().unwrap_or((0, f64::INFINITY));
                let loss = history.direction.loss(v);
                Some((1, u64::MAX - step, order_bits(if loss.is_nan() { f64::INFINITY } else { loss }), i))
            }
            _ => None,
        })
        .collect();
    // `finished` is in trial-number order, so the index breaks ties by number.
    ranked.sort_unstable();
    ranked.into_iter().map(|r| r.3).collect()
}

/// What a group's estimators are fitted on.
struct Seen<'h> {
    history: &'h History<'h>,
    /// Each finished trial's coordinates.
    coords: &'h [Coords],
    /// Each running trial's coordinates.
    pending: &'h [Coords],
    ranked: &'h [usize],
    /// The group's parameters, as indices into the space.
    group: &'h [usize],
}

impl Seen<'_> {
    /// Finished trial `i`'s coordinates for the group, if it was active in all of them.
    fn coords(&self, i: usize, out: &mut Vec<f64>) -> bool {
        group_coords(&self.coords[i], self.group, out)
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
    fn sample_group(&self, params: &[&Param], seen: &Seen, rng: &mut SplitMix64) -> Vec<serde_json::Value> {
        let d = params.len();
        let finished = &seen.history.finished;
        // Trials where the group was active, best first, split into the best
        // `min(ceil(0.1 n), 25)` and the rest.
        let mut scratch = Vec::with_capacity(d);
        let active: Vec<usize> = seen
            .ranked
            .iter()
            .copied()
            .filter(|&i| {
                scratch.clear();
                seen.coords(i, &mut scratch)
            })
            .collect();
        if active.is_empty() {
            return params.iter().map(|p| p.sample_uniform(rng)).collect();
        }
        let n_good = active.len().div_ceil(10).min(25);
        // Observations weigh by age: each side in trial-number order (the order of `finished`);
        // running trials are newest.
        let mut side = vec![0u8; finished.len()];
        for (k, &i) in active.iter().enumerate() {
            side[i] = if k < n_good { 1 } else { 2 };
        }
        let (mut good_x, mut bad_x) = (Vec::with_capacity(n_good * d), Vec::with_capacity((active.len() - n_good) * d));
        for (i, s) in side.iter().enumerate() {
            match s {
                1 => seen.coords(i, &mut good_x),
                2 => seen.coords(i, &mut bad_x),
                _ => false,
            };
        }
        for p in seen.pending {
            group_coords(p, seen.group, &mut bad_x);
        }
        let good = Parzen::fit(params, &good_x, self.multivariate);
        let bad = Parzen::fit(params, &bad_x, self.multivariate);
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

/// One coordinate of every component.
enum Dim {
    /// Truncated normals; `inv` = 1/σ.
    Continuous { mus: Vec<f64>, sigmas: Vec<f64>, inv: Vec<f64>, low: f64, high: f64 },
    /// Whole numbers and stepped values: each value owns a cell and gets the component's mass
    /// there.
    Cells { mus: Vec<f64>, sigmas: Vec<f64>, inv: Vec<f64>, low: f64, high: f64, cell: Cell },
    /// `probs[k * choices + c]`: component `k`'s probability of choice `c`.
    Categorical { probs: Vec<f64>, choices: usize },
}

#[derive(Clone, Copy)]
enum Cell {
    /// Half-width in internal units.
    Linear(f64),
    /// Whole numbers on a log scale: the cell is [ln(v - 0.5), ln(v + 0.5)].
    LogInt,
}

/// A mixture with one component per observation plus the prior, over a group's coordinates.
/// Densities are computed in linear space: component `k` contributes `scale[k]` (its weight over
/// its normalizers, times `exp(-shift)`) times its kernels' shapes at `x`.
struct Parzen {
    weights: Vec<f64>,
    dims: Vec<Dim>,
    scale: Vec<f64>,
    shift: f64,
    /// A single choice parameter: the mixture's probability of each choice.
    mixture: Option<Vec<f64>>,
}

impl Parzen {
    /// `obs`: `n` observations of the group's coordinates, flattened.
    fn fit(params: &[&Param], obs: &[f64], multivariate: bool) -> Self {
        let d = params.len();
        let n = obs.len() / d;
        let mut weights = weights(n);
        weights.push(PRIOR_WEIGHT);
        let total: f64 = weights.iter().sum();
        weights.iter_mut().for_each(|w| *w /= total);
        // Each numeric coordinate's normalizer per component: 1 / (mass inside the range) and,
        // for densities, 1 / (σ √(2π)).
        let mut factors: Vec<Vec<f64>> = Vec::with_capacity(d);
        let dims: Vec<Dim> = params
            .iter()
            .enumerate()
            .map(|(j, p)| {
                let xs: Vec<f64> = (0..n).map(|i| obs[i * d + j]).collect();
                match &p.distribution {
                    Distribution::Categorical { choices } => {
                        let c = choices.len();
                        let mut probs = Vec::with_capacity((xs.len() + 1) * c);
                        for &x in &xs {
                            let at = probs.len();
                            probs.extend(std::iter::repeat_n(PRIOR_WEIGHT / c as f64, c));
                            probs[at + x as usize] += 1.0;
                            let s: f64 = probs[at..].iter().sum();
                            probs[at..].iter_mut().for_each(|p| *p /= s);
                        }
                        probs.extend(std::iter::repeat_n(1.0 / c as f64, c));
                        Dim::Categorical { probs, choices: c }
                    }
                    _ => {
                        let (low, high) = p.bounds();
                        let range = high - low;
                        let mut mus = xs.clone();
                        let mut sigmas = if multivariate {
                            vec![0.2 * (n.max(1) as f64).powf(-1.0 / (d as f64 + 4.0)) * range; n]
                        } else {
                            neighbour_sigmas(&xs, low, high)
                        };
                        let min_sigma = range / (1.0 + n as f64 + 1.0).min(100.0);
                        sigmas.iter_mut().for_each(|s| *s = s.clamp(min_sigma, range));
                        mus.push(0.5 * (low + high));
                        sigmas.push(range);
                        let inv: Vec<f64> = sigmas.iter().map(|s| 1.0 / s).collect();
                        let cell = match &p.distribution {
                            Distribution::Int { log: true, .. } => Some(Cell::LogInt),
                            Distribution::Int { step, .. } => Some(Cell::Linear(*step as f64 / 2.0)),
                            Distribution::Float { step: Some(s), .. } => Some(Cell::Linear(s / 2.0)),
                            _ => None,
                        };
                        let factor = (0..mus.len())
                            .map(|k| {
                                // The truncation to the range: exactly 1 in f64 once both ends are
                                // 8.5 widths out (the tails' erfc are below 2^-55), so not computed.
                                let (a, b) = ((low - mus[k]) * inv[k], (high - mus[k]) * inv[k]);
                                // One end that far out: the other end's tail alone (one `erfc`).
                                let z = match (a <= -8.5, b >= 8.5) {
                                    (true, true) => 1.0,
                                    (false, true) => math::phi_above(a),
                                    (true, false) => math::phi_below(b),
                                    (false, false) => math::phi_between(a, b),
                                };
                                let density = if cell.is_none() { inv[k] * math::INV_SQRT_2PI } else { 1.0 };
                                density / z.max(1e-300)
                            })
                            .collect();
                        factors.push(factor);
                        match cell {
                            None => Dim::Continuous { mus, sigmas, inv, low, high },
                            Some(cell) => Dim::Cells { mus, sigmas, inv, low, high, cell },
                        }
                    }
                }
            })
            .collect();
        let (mut scale, shift) = scales(&weights, &factors);
        let mut dims = dims;
        if let [Dim::Cells { mus, sigmas, inv, .. }] = dims.as_mut_slice() {
            // Whole numbers repeat: components with the same centre and width add up.
            merge_equal(mus, sigmas, inv, &mut scale, &mut weights);
        }
        let mixture = match dims.as_slice() {
            [Dim::Categorical { probs, choices }] => Some(
                (0..*choices)
                    .map(|c| probs.chunks_exact(*choices).zip(&weights).map(|(p, w)| w * p[c]).sum())
                    .collect(),
            ),
            _ => None,
        };
        Self { weights, dims, scale, shift, mixture }
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
        self.dims
            .iter()
            .map(|dim| match dim {
                Dim::Continuous { mus, sigmas, low, high, .. } | Dim::Cells { mus, sigmas, low, high, .. } => {
                    math::truncated_normal(rng, mus[k], sigmas[k], *low, *high)
                }
                Dim::Categorical { probs, choices } => {
                    let u = rng.next_f64();
                    let mut acc = 0.0;
                    for (c, p) in probs[k * choices..(k + 1) * choices].iter().enumerate() {
                        acc += p;
                        if u < acc {
                            return c as f64;
                        }
                    }
                    (choices - 1) as f64
                }
            })
            .collect()
    }

    fn ln_pdf(&self, x: &[f64]) -> f64 {
        if let Some(m) = &self.mixture {
            return m[x[0] as usize].ln();
        }
        let total = match self.dims.as_slice() {
            // The common case (independent TPE, one real parameter): one tight loop.
            [Dim::Continuous { mus, inv, .. }] => mixture_sum(Kernel::Density(x[0]), mus, inv, &self.scale),
            [Dim::Cells { mus, inv, low, high, cell, .. }] => {
                let (a, b) = cell_bounds(x[0], *low, *high, *cell);
                mixture_sum(Kernel::Mass(a, b), mus, inv, &self.scale)
            }
            dims => {
                let mut terms = self.scale.clone();
                for (dim, &xi) in dims.iter().zip(x) {
                    match dim {
                        Dim::Continuous { mus, inv, .. } => {
                            for ((t, m), i) in terms.iter_mut().zip(mus).zip(inv) {
                                let z = (xi - m) * i;
                                *t *= math::exp_neg(0.5 * z * z);
                            }
                        }
                        Dim::Cells { mus, inv, low, high, cell, .. } => {
                            let (a, b) = cell_bounds(xi, *low, *high, *cell);
                            for ((t, m), i) in terms.iter_mut().zip(mus).zip(inv) {
                                *t *= math::phi_between((a - m) * i, (b - m) * i);
                            }
                        }
                        Dim::Categorical { probs, choices } => {
                            for (t, p) in terms.iter_mut().zip(probs.chunks_exact(*choices)) {
                                *t *= p[xi as usize];
                            }
                        }
                    }
                }
                terms.iter().sum()
            }
        };
        total.ln() + self.shift
    }
}

/// What a one-coordinate mixture's components are summed at.
#[derive(Clone, Copy)]
enum Kernel {
    /// Their densities at a point.
    Density(f64),
    /// Their masses in a cell `[a, b]`.
    Mass(f64, f64),
}

/// `Σ scale[k] kernel_k` over a one-coordinate mixture's components: most of TPE's time
/// (every candidate against every observation).
fn mixture_sum(kernel: Kernel, mus: &[f64], inv: &[f64], scale: &[f64]) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: `mixture_sum_avx2` requires AVX2 and nothing else; the CPU was just checked
        // to have it. Its body is `mixture_sum_lanes`, plain safe Rust: the same operations in
        // the same order (no FMA contraction), so the sum is the same bits on any CPU. Twice
        // the vector width took 1,000-trial TPE from 0.64 to 0.44 ms per trial (bench/README).
        #[allow(unsafe_code)]
        return unsafe { mixture_sum_avx2(kernel, mus, inv, scale) };
    }
    mixture_sum_lanes(kernel, mus, inv, scale)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn mixture_sum_avx2(kernel: Kernel, mus: &[f64], inv: &[f64], scale: &[f64]) -> f64 {
    match kernel {
        Kernel::Density(x) => mixture_sum_lanes_with(mus, inv, scale, |m, i| density(x, m, i)),
        Kernel::Mass(a, b) => mixture_sum_lanes_with(mus, inv, scale, |m, i| mass(a, b, m, i)),
    }
}

fn mixture_sum_lanes(kernel: Kernel, mus: &[f64], inv: &[f64], scale: &[f64]) -> f64 {
    match kernel {
        Kernel::Density(x) => mixture_sum_lanes_with(mus, inv, scale, |m, i| density(x, m, i)),
        Kernel::Mass(a, b) => mixture_sum_lanes_with(mus, inv, scale, |m, i| mass(a, b, m, i)),
    }
}

/// A component's density shape at `x` (its normalizer is in its scale).
#[inline(always)]
fn density(x: f64, m: f64, i: f64) -> f64 {
    let z = (x - m) * i;
    math::exp_neg(0.5 * z * z)
}

/// A component's mass in `[a, b]`.
#[inline(always)]
fn mass(a: f64, b: f64, m: f64, i: f64) -> f64 {
    math::phi_between((a - m) * i, (b - m) * i)
}

/// Four independent sums, so that the evaluations overlap and vectorize.
#[inline(always)]
fn mixture_sum_lanes_with(mus: &[f64], inv: &[f64], scale: &[f64], f: impl Fn(f64, f64) -> f64) -> f64 {
    let mut acc = [0.0f64; 4];
    let (m4, i4, s4) = (mus.chunks_exact(4), inv.chunks_exact(4), scale.chunks_exact(4));
    let rest: f64 =
        m4.remainder().iter().zip(i4.remainder()).zip(s4.remainder()).map(|((m, i), s)| s * f(*m, *i)).sum();
    for ((m, i), s) in m4.zip(i4).zip(s4) {
        for l in 0..4 {
            acc[l] += s[l] * f(m[l], i[l]);
        }
    }
    acc.iter().sum::<f64>() + rest
}

/// Each component's weight times its normalizers, relative to the largest, and the log of the
/// largest. In linear arithmetic (one logarithm instead of several per component); in log
/// space only if a product leaves the range of doubles (many coordinates with extreme widths).
fn scales(weights: &[f64], factors: &[Vec<f64>]) -> (Vec<f64>, f64) {
    let raw: Vec<f64> = (0..weights.len()).map(|k| factors.iter().fold(weights[k], |p, f| p * f[k])).collect();
    let max = raw.iter().copied().fold(0.0, f64::max);
    if max.is_finite() && raw.iter().all(|r| r.is_normal()) {
        return (raw.iter().map(|r| r / max).collect(), max.ln());
    }
    let ln: Vec<f64> = (0..weights.len()).map(|k| factors.iter().fold(weights[k].ln(), |p, f| p + f[k].ln())).collect();
    let shift = ln.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (ln.iter().map(|l| (l - shift).exp()).collect(), shift)
}

/// The cell of whole numbers (or steps) that internal coordinate `x` falls in, within the range.
fn cell_bounds(x: f64, low: f64, high: f64, cell: Cell) -> (f64, f64) {
    let (a, b) = match cell {
        Cell::Linear(h) => {
            let centre = low + h + ((x - low - h) / (2.0 * h)).round() * 2.0 * h;
            (centre - h, centre + h)
        }
        Cell::LogInt => {
            let v = x.exp().round();
            ((v - 0.5).ln(), (v + 0.5).ln())
        }
    };
    (a.max(low), b.min(high))
}

/// Merge components of a one-coordinate mixture that have the same centre and width (the same
/// function), adding their scales and weights: the same mixture, fewer terms.
fn merge_equal(
    mus: &mut Vec<f64>,
    sigmas: &mut Vec<f64>,
    inv: &mut Vec<f64>,
    scale: &mut Vec<f64>,
    weights: &mut Vec<f64>,
) {
    // By centre, then width, then index (a stable sort's order), as integers.
    let mut order: Vec<(u64, u64, usize)> =
        (0..mus.len()).map(|k| (order_bits(mus[k]), order_bits(sigmas[k]), k)).collect();
    order.sort_unstable();
    let (mut m, mut s, mut i, mut c, mut w) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::<f64>::new(), Vec::<f64>::new());
    for (_, _, k) in order {
        if m.last() == Some(&mus[k]) && s.last() == Some(&sigmas[k]) {
            *c.last_mut().expect("non-empty with m") += scale[k];
            *w.last_mut().expect("non-empty with m") += weights[k];
        } else {
            m.push(mus[k]);
            s.push(sigmas[k]);
            i.push(inv[k]);
            c.push(scale[k]);
            w.push(weights[k]);
        }
    }
    (*mus, *sigmas, *inv, *scale, *weights) = (m, s, i, c, w);
}

/// `x`'s bits as an unsigned integer in the order of `f64::total_cmp`.
fn order_bits(x: f64) -> u64 {
    let bits = x.to_bits();
    if bits >> 63 == 1 { !bits } else { bits | 1 << 63 }
}

/// Each observation's bandwidth: the larger gap to its neighbours, with the prior's centre among
/// the points and the range's ends as outer neighbours (Optuna's univariate rule).
fn neighbour_sigmas(xs: &[f64], low: f64, high: f64) -> Vec<f64> {
    let mid = 0.5 * (low + high);
    // Sorted by value then index (equal values in index order, as a stable sort would leave
    // them: their gaps differ), as integers: the value's order bits above the index.
    let mut keys: Vec<u128> =
        xs.iter().enumerate().map(|(i, &x)| (u128::from(order_bits(x)) << 64) | i as u128).collect();
    keys.push((u128::from(order_bits(mid)) << 64) | u128::from(u64::MAX));
    keys.sort_unstable();
    let points: Vec<(f64, usize)> = keys
        .iter()
        .map(|&k| match k as u64 {
            u64::MAX => (mid, usize::MAX),
            i => (xs[i as usize], i as usize),
        })
        .collect();
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

    /// The vectorized sums are the portable ones to the bit (so trials do not depend on the CPU).
    #[test]
    fn mixture_sums_are_the_same_bits_on_any_cpu() {
        let mut rng = SplitMix64::new(3);
        for n in [1usize, 3, 4, 7, 64, 501] {
            let mus: Vec<f64> = (0..n).map(|_| rng.next_f64() * 20.0 - 10.0).collect();
            let inv: Vec<f64> = (0..n).map(|_| 1.0 / (0.05 + rng.next_f64() * 5.0)).collect();
            let scale: Vec<f64> = (0..n).map(|_| rng.next_f64()).collect();
            for kernel in [Kernel::Density(0.3), Kernel::Density(-9.9), Kernel::Mass(-0.5, 0.5), Kernel::Mass(2.0, 3.0)]
            {
                let dispatched = mixture_sum(kernel, &mus, &inv, &scale);
                let portable = mixture_sum_lanes(kernel, &mus, &inv, &scale);
                assert_eq!(dispatched.to_bits(), portable.to_bits(), "n = {n}");
                assert!(portable > 0.0);
            }
        }
    }

    #[test]
    fn order_bits_sort_as_total_cmp() {
        let mut xs = vec![3.5, -0.0, 0.0, -7.25, f64::INFINITY, 1e-300, -1e-300, f64::NEG_INFINITY, 2.0, -2.0];
        let mut by_bits = xs.clone();
        by_bits.sort_by_key(|x| order_bits(*x));
        xs.sort_by(f64::total_cmp);
        assert_eq!(
            xs.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            by_bits.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
        );
    }

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
        let parzen = Parzen::fit(&[&p], &[0.1, 0.4, 2.5], false);
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
        let parzen = Parzen::fit(&[&q], &[2.0, 5.0], false);
        let total: f64 = (1..=6).map(|v| parzen.ln_pdf(&[v as f64]).exp()).sum();
        assert!((total - 1.0).abs() < 1e-6, "{total}");
    }
}
