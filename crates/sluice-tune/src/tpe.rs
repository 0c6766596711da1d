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

use std::cell::RefCell;
use std::sync::Mutex;

use sluice_core::rng::SplitMix64;
use sluice_store::{TrialRecord, TrialState};

use crate::Direction;
use crate::math;
use crate::sampler::{History, Meta, Sampler, trial_rng};
use crate::space::{Distribution, Param, Params, Space};

pub struct Tpe {
    pub seed: u64,
    pub startup: usize,
    pub candidates: usize,
    pub multivariate: bool,
    /// The finished trials as earlier samples arranged them (see [`Table`]).
    table: Mutex<Table>,
}

impl Tpe {
    pub fn new(seed: u64, startup: usize, candidates: usize, multivariate: bool) -> Self {
        Self { seed, startup, candidates, multivariate, table: Mutex::default() }
    }
}

/// The finished trials arranged as TPE reads them, kept from one sample to the next. A finished
/// trial's parameters and result do not change (when one does, or the history is not an
/// extension of the table, it is built again), so each sample only adds the trials that
/// finished since the last one (O(n) each) instead of converting, ranking and sorting all of
/// them again (O(n log n) per parameter and sample). The arrangement is the one a fresh build
/// gives, so the trials are the same either way.
#[derive(Default)]
struct Table {
    direction: Option<Direction>,
    /// The space the coordinates and normalizers are for.
    params: Vec<Param>,
    /// Trial numbers, ascending: `history.finished`'s order. A trial's place in it is its
    /// position.
    numbers: Vec<u64>,
    /// `cols[j][p]`: parameter `j`'s internal coordinate in the trial at position `p` (NaN: not
    /// active).
    cols: Vec<Vec<f64>>,
    /// `sorted[j]`: the positions where parameter `j` is active, by coordinate, then position.
    sorted: Vec<Vec<u32>>,
    /// Complete and pruned trials, best first: `(class, key, loss, position)` as integers
    /// (see [`rank_key`]).
    ranked: Vec<(u64, u64, u64, u32)>,
    /// Each position's rank key as it was added (`None`: not ranked), to notice a trial whose
    /// result changed (a trial handed out again after its worker was thought dead, finished
    /// twice).
    keys: Vec<Option<(u64, u64, u64)>>,
    /// `norms[j][p]`: the last normalizer computed for parameter `j`'s component at position `p`,
    /// with the width's bits it was computed for (see [`Known`]).
    norms: RefCell<Vec<Vec<(u64, f64)>>>,
}

/// Not a width's bits (widths are positive and finite).
const NO_WIDTH: (u64, f64) = (u64::MAX, f64::NAN);

impl Table {
    /// Bring the table up to `history.finished`.
    fn sync(&mut self, space: &Space, history: &History) {
        // In trial-number order, each number once (the last record of a number wins): what
        // `Study` passes; anything else is put in that order first.
        let ordered = history.finished.windows(2).all(|w| w[0].number < w[1].number);
        let sorted: Vec<&TrialRecord>;
        let finished: &[&TrialRecord] = if ordered {
            &history.finished
        } else {
            let mut by_number = history.finished.clone();
            by_number.reverse();
            by_number.sort_by_key(|t| t.number);
            by_number.dedup_by_key(|t| t.number);
            sorted = by_number;
            &sorted
        };
        let same = self.direction == Some(history.direction) && self.params == space.params;
        if !same || !self.add_new(space, history.direction, finished) {
            *self = Table {
                direction: Some(history.direction),
                params: space.params.clone(),
                cols: vec![Vec::new(); space.params.len()],
                sorted: vec![Vec::new(); space.params.len()],
                norms: RefCell::new(vec![Vec::new(); space.params.len()]),
                ..Table::default()
            };
            self.add_new(space, history.direction, finished);
        }
    }

    /// Add the trials of `finished` (in number order, each number once) that are not here yet;
    /// false (and part done) if the table holds a trial that is not among them or whose result
    /// changed: then it must be built again. A fresh table takes any such list.
    fn add_new(&mut self, space: &Space, direction: Direction, finished: &[&TrialRecord]) -> bool {
        if finished.len() > u32::MAX as usize {
            return false;
        }
        let mut p = 0;
        for t in finished {
            match self.numbers.get(p) {
                Some(&n) if n == t.number => {
                    if self.keys[p] != rank_key(direction, t, 0).map(|k| (k.0, k.1, k.2)) {
                        return false;
                    }
                }
                Some(&n) if n < t.number => return false,
                _ => self.insert(p, space, direction, t),
            }
            p += 1;
        }
        p == self.numbers.len()
    }

    /// Insert trial `t` at position `p`.
    fn insert(&mut self, p: usize, space: &Space, direction: Direction, t: &TrialRecord) {
        let at = p as u32;
        if p < self.numbers.len() {
            // Later positions move up by one: the orders between them stay as they were.
            for list in &mut self.sorted {
                list.iter_mut().filter(|q| **q >= at).for_each(|q| *q += 1);
            }
            self.ranked.iter_mut().filter(|r| r.3 >= at).for_each(|r| r.3 += 1);
        }
        self.numbers.insert(p, t.number);
        self.norms.get_mut().iter_mut().for_each(|n| n.insert(p, NO_WIDTH));
        let key = rank_key(direction, t, at);
        self.keys.insert(p, key.map(|k| (k.0, k.1, k.2)));
        for (j, q) in space.params.iter().enumerate() {
            let x = t.params.get(&q.name).and_then(|v| q.internal(v)).unwrap_or(f64::NAN);
            self.cols[j].insert(p, x);
            if !x.is_nan() {
                let (cols, list) = (&self.cols[j], &mut self.sorted[j]);
                let key = (order_bits(x), at);
                let i = list.partition_point(|&q| (order_bits(cols[q as usize]), q) < key);
                list.insert(i, at);
            }
        }
        if let Some(key) = key {
            let i = self.ranked.partition_point(|r| *r < key);
            self.ranked.insert(i, key);
        }
    }

    /// Whether every parameter of `group` is active at position `p`.
    fn active(&self, group: &[usize], p: usize) -> bool {
        group.iter().all(|&j| !self.cols[j][p].is_nan())
    }
}

/// Where a finished trial ranks, best first: complete ones by loss, then pruned ones by how far
/// they got and their last value there (as Optuna ranks them), ties by trial number (the
/// position); `None` for failed trials and non-finite values.
fn rank_key(direction: Direction, t: &TrialRecord, position: u32) -> Option<(u64, u64, u64, u32)> {
    match t.state {
        TrialState::Complete => {
            t.value.filter(|v| v.is_finite()).map(|v| (0, 0, order_bits(direction.loss(v)), position))
        }
        TrialState::Pruned => {
            let (step, v) = t.intermediate.last().copied().unwrap_or((0, f64::INFINITY));
            let loss = direction.loss(v);
            Some((1, u64::MAX - step, order_bits(if loss.is_nan() { f64::INFINITY } else { loss }), position))
        }
        _ => None,
    }
}

/// A running trial's internal coordinate for every parameter of the space (NaN: not active).
fn coords_of(space: &Space, params: &Params) -> Vec<f64> {
    space.params.iter().map(|q| params.get(&q.name).and_then(|v| q.internal(v)).unwrap_or(f64::NAN)).collect()
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
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        table.sync(space, history);
        let pending: Vec<Vec<f64>> = history.pending.iter().map(|p| coords_of(space, p)).collect();
        let mut out = Params::new();
        for group in groups {
            if !space.active(group[0], &out) {
                continue;
            }
            let params: Vec<&Param> = group.iter().map(|&i| &space.params[i]).collect();
            for (p, v) in params.iter().zip(self.sample_group(&params, &table, &pending, &group, &mut rng)) {
                out.insert(p.name.clone(), v);
            }
        }
        (out, Meta::new())
    }
}

/// Optuna's default observation weights: flat for the newest 25, a ramp from 1/n before that.
/// (With room for the prior's weight.)
fn weights(n: usize) -> Vec<f64> {
    let mut w = Vec::with_capacity(n + 1);
    let ramp = n.saturating_sub(25);
    // A ramp of one is `1/n` alone (its step is 0).
    let (first, step) = (1.0 / n as f64, if ramp > 1 { 1.0 / (ramp - 1) as f64 } else { 0.0 });
    w.extend((0..ramp).map(|i| first + (1.0 - first) * (i as f64 * step)));
    w.resize(n, 1.0);
    w
}

impl Tpe {
    /// `group`: the parameters' indices in the space; `pending`: running trials' coordinates.
    fn sample_group(
        &self,
        params: &[&Param],
        table: &Table,
        pending: &[Vec<f64>],
        group: &[usize],
        rng: &mut SplitMix64,
    ) -> Vec<serde_json::Value> {
        let d = params.len();
        // Trials where the group was active, best first, split into the best
        // `min(ceil(0.1 n), 25)` and the rest.
        let active: Vec<usize> =
            table.ranked.iter().map(|r| r.3 as usize).filter(|&p| table.active(group, p)).collect();
        if active.is_empty() {
            return params.iter().map(|p| p.sample_uniform(rng)).collect();
        }
        let n_good = active.len().div_ceil(10).min(25);
        // Observations weigh by age: each side in trial-number order (position order); running
        // trials are newest. `local[p]`: position `p`'s index on its side.
        let mut side = vec![0u8; table.numbers.len()];
        for (k, &p) in active.iter().enumerate() {
            side[p] = if k < n_good { 1 } else { 2 };
        }
        let mut local = vec![0u32; table.numbers.len()];
        let (mut good_x, mut bad_x) = (Vec::with_capacity(n_good * d), Vec::with_capacity((active.len() - n_good) * d));
        let (mut good_at, mut bad_at) = (Vec::with_capacity(n_good), Vec::with_capacity(active.len() - n_good));
        for (p, &s) in side.iter().enumerate() {
            let (x, at) = match s {
                1 => (&mut good_x, &mut good_at),
                2 => (&mut bad_x, &mut bad_at),
                _ => continue,
            };
            local[p] = at.len() as u32;
            at.push(p as u32);
            for &j in group {
                x.push(table.cols[j][p]);
            }
        }
        let finished_bad = bad_x.len() / d;
        for p in pending {
            if group.iter().all(|&j| !p[j].is_nan()) {
                bad_x.extend(group.iter().map(|&j| p[j]));
            }
        }
        // A single parameter's observations in order of value, from the table's order (no sort),
        // both sides in one pass.
        let (good_order, bad_order) = match group {
            [j] => {
                let (mut good, mut bad) = (Vec::with_capacity(good_at.len()), Vec::with_capacity(bad_x.len()));
                for &p in &table.sorted[*j] {
                    match side[p as usize] {
                        1 => good.push(local[p as usize]),
                        2 => bad.push(local[p as usize]),
                        _ => {}
                    }
                }
                (Some(good), Some(merge_sorted(&bad_x, bad, finished_bad)))
            }
            _ => (None, None),
        };
        let known = |positions| Known { norms: &table.norms, group, positions };
        let good = Parzen::fit(params, &good_x, self.multivariate, good_order, Some(known(&good_at)));
        let bad = Parzen::fit(params, &bad_x, self.multivariate, bad_order, Some(known(&bad_at)));
        let mut best: Option<(f64, Vec<f64>)> = None;
        // Whole numbers: candidates in one cell score the same, and often repeat.
        let mut scored: Vec<((u64, u64), f64)> = Vec::new();
        for _ in 0..self.candidates.max(1) {
            let x = good.draw(rng);
            let cell = good.cell(&x);
            let known = cell.and_then(|c| scored.iter().find(|(k, _)| *k == c).map(|(_, s)| *s));
            let score = known.unwrap_or_else(|| good.ln_pdf(&x) - bad.ln_pdf(&x));
            if let (Some(c), None) = (cell, known) {
                scored.push((c, score));
            }
            if best.as_ref().is_none_or(|(s, _)| score > *s) {
                best = Some((score, x));
            }
        }
        let (_, x) = best.expect("at least one candidate");
        params.iter().zip(x).map(|(p, xi)| p.external(xi)).collect()
    }
}

/// `order` (the indices below `from` of one coordinate `xs`, by value then index) with the
/// indices from `from` on (running trials: few) merged in by the same key.
fn merge_sorted(xs: &[f64], order: Vec<u32>, from: usize) -> Vec<u32> {
    if from == xs.len() {
        return order;
    }
    let key = |i: u32| (order_bits(xs[i as usize]), i);
    let mut rest: Vec<u32> = (from as u32..xs.len() as u32).collect();
    rest.sort_unstable_by_key(|&i| key(i));
    let mut out = Vec::with_capacity(xs.len());
    let mut rest = rest.into_iter().peekable();
    for i in order {
        while let Some(r) = rest.next_if(|&r| key(r) < key(i)) {
            out.push(r);
        }
        out.push(i);
    }
    out.extend(rest);
    out
}

/// Normalizers computed by earlier fits. A component's normalizer depends only on its centre and
/// width (and its parameter's range), a finished trial's centre never changes and most widths
/// stay as they were from one sample to the next (most are the clipped minimum): so a fit
/// computes only the components whose width changed, the prior's and running trials'. Each
/// is computed on its own, so a kept one is the same bits as a new one.
struct Known<'t> {
    norms: &'t RefCell<Vec<Vec<(u64, f64)>>>,
    /// The group's parameters (indices into the space).
    group: &'t [usize],
    /// Each observation's position in the table (observations past the end are not in it).
    positions: &'t [u32],
}

impl Known<'_> {
    /// [`normalizers`] of coordinate `dim` of the group, from the cache where the width is the
    /// same.
    #[allow(clippy::too_many_arguments)]
    fn normalizers(
        &self,
        dim: usize,
        mus: &[f64],
        sigmas: &[f64],
        inv: &[f64],
        low: f64,
        high: f64,
        cells: bool,
    ) -> Vec<f64> {
        let mut norms = self.norms.borrow_mut();
        let cache = &mut norms[self.group[dim]];
        let mut out = vec![0.0; mus.len()];
        let mut missing = Vec::new();
        for (k, s) in sigmas.iter().enumerate() {
            match self.positions.get(k) {
                Some(&p) if cache[p as usize].0 == s.to_bits() => out[k] = cache[p as usize].1,
                _ => missing.push(k),
            }
        }
        if missing.is_empty() {
            return out;
        }
        let (m, i): (Vec<f64>, Vec<f64>) = missing.iter().map(|&k| (mus[k], inv[k])).unzip();
        for (&k, f) in missing.iter().zip(normalizers(&m, &i, low, high, cells)) {
            out[k] = f;
            if let Some(&p) = self.positions.get(k) {
                cache[p as usize] = (sigmas[k].to_bits(), f);
            }
        }
        out
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
    /// A single real parameter: its densities in single precision (see [`Narrow`]).
    narrow: Option<Narrow>,
}

/// A one-coordinate mixture of normals for summing densities in single precision, twice the
/// lanes per vector: most of TPE's time is these sums (every candidate against every trial).
/// Its error (about 1e-6 relative, within 1e-5 where `z` is large and near the range's ends:
/// `mixture_sums_are_the_same_bits_on_any_cpu`) is far below the estimator's own: the `erfc` fit
/// behind its truncation masses is good to 1.2e-7 and its shapes are bandwidth guesses.
/// Coordinates are taken in units of the range from its middle (`x` within ±0.5) and widths are
/// between range / 100 (the clip) and the range (`1/σ` between 1 and 100 range units), so `z =
/// x / σ - m / σ` keeps `f32` precision for any range that has it in `f64`.
struct Narrow {
    mid: f64,
    range: f64,
    /// `(m - mid) / σ` per component.
    at: Vec<f32>,
    /// `range / σ` per component.
    inv: Vec<f32>,
    scale: Vec<f32>,
}

impl Narrow {
    /// `None` for a range whose widths or their inverses leave normal `f64` numbers.
    fn new(mus: &[f64], inv: &[f64], scale: &[f64], low: f64, high: f64) -> Option<Self> {
        let (mid, range) = (0.5 * (low + high), high - low);
        if !(range / 100.0).is_normal() || !(100.0 / range).is_normal() {
            return None;
        }
        Some(Self {
            mid,
            range,
            at: mus.iter().zip(inv).map(|(m, i)| ((m - mid) * i) as f32).collect(),
            inv: inv.iter().map(|&i| (i * range) as f32).collect(),
            scale: scale.iter().map(|&s| s as f32).collect(),
        })
    }

    fn sum(&self, x: f64) -> f64 {
        narrow_sum(((x - self.mid) / self.range) as f32, &self.at, &self.inv, &self.scale)
    }
}

impl Parzen {
    /// `obs`: `n` observations of the group's coordinates, flattened. `order`: for a single
    /// coordinate, the observations' indices by value, then index, if the caller has it (else
    /// it is sorted here).
    /// `known`: normalizers computed before, for observations from the table.
    fn fit(params: &[&Param], obs: &[f64], multivariate: bool, order: Option<Vec<u32>>, known: Option<Known>) -> Self {
        let d = params.len();
        let n = obs.len() / d;
        let order = (d == 1).then(|| order.unwrap_or_else(|| sorted_order(obs)));
        let mut weights = weights(n);
        weights.push(PRIOR_WEIGHT);
        let total: f64 = weights.iter().sum();
        // Multiplications, not divisions (a division costs several): within a rounding of them.
        let inv_total = 1.0 / total;
        weights.iter_mut().for_each(|w| *w *= inv_total);
        // Each numeric coordinate's normalizer per component: 1 / (mass inside the range) and,
        // for densities, 1 / (σ √(2π)).
        let mut factors: Vec<Vec<f64>> = Vec::with_capacity(d);
        let dims: Vec<Dim> = params
            .iter()
            .enumerate()
            .map(|(j, p)| {
                // With room for the prior's component (no reallocation when it is pushed).
                let mut xs: Vec<f64> = Vec::with_capacity(n + 1);
                xs.extend((0..n).map(|i| obs[i * d + j]));
                match &p.distribution {
                    Distribution::Categorical { choices } => {
                        let c = choices.len();
                        // An observation of choice `x`: the prior's share of each choice plus
                        // one for `x`, normalized. The same row for every observation of `x`.
                        let rows: Vec<f64> = (0..c)
                            .flat_map(|x| {
                                let mut row = vec![PRIOR_WEIGHT / c as f64; c];
                                row[x] += 1.0;
                                let s: f64 = row.iter().sum();
                                row.iter_mut().for_each(|p| *p /= s);
                                row
                            })
                            .collect();
                        let mut probs = Vec::with_capacity((xs.len() + 1) * c);
                        for &x in &xs {
                            probs.extend_from_slice(&rows[x as usize * c..(x as usize + 1) * c]);
                        }
                        probs.extend(std::iter::repeat_n(1.0 / c as f64, c));
                        Dim::Categorical { probs, choices: c }
                    }
                    _ => {
                        let (low, high) = p.bounds();
                        let range = high - low;
                        let mut sigmas = if multivariate {
                            let mut s = Vec::with_capacity(n + 1);
                            s.resize(n, 0.2 * (n.max(1) as f64).powf(-1.0 / (d as f64 + 4.0)) * range);
                            s
                        } else {
                            neighbour_sigmas(&xs, order.as_deref().expect("one coordinate"), low, high)
                        };
                        let mut mus = xs;
                        let min_sigma = range / (1.0 + n as f64 + 1.0).min(100.0);
                        sigmas.iter_mut().for_each(|s| *s = s.clamp(min_sigma, range));
                        mus.push(0.5 * (low + high));
                        sigmas.push(range);
                        // Most widths are the clipped minimum: one division for all of them.
                        let inv_min = 1.0 / min_sigma;
                        let inv: Vec<f64> =
                            sigmas.iter().map(|&s| if s == min_sigma { inv_min } else { 1.0 / s }).collect();
                        let cell = match &p.distribution {
                            Distribution::Int { log: true, .. } => Some(Cell::LogInt),
                            Distribution::Int { step, .. } => Some(Cell::Linear(*step as f64 / 2.0)),
                            Distribution::Float { step: Some(s), .. } => Some(Cell::Linear(s / 2.0)),
                            _ => None,
                        };
                        factors.push(match &known {
                            Some(known) => known.normalizers(j, &mus, &sigmas, &inv, low, high, cell.is_some()),
                            None => normalizers(&mus, &inv, low, high, cell.is_some()),
                        });
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
            merge_equal(mus, sigmas, inv, &mut scale, &mut weights, order.as_deref().expect("one coordinate"));
        }
        let mixture = match dims.as_slice() {
            [Dim::Categorical { probs, choices }] => Some(
                (0..*choices)
                    .map(|c| probs.chunks_exact(*choices).zip(&weights).map(|(p, w)| w * p[c]).sum())
                    .collect(),
            ),
            _ => None,
        };
        let narrow = match dims.as_slice() {
            [Dim::Continuous { mus, inv, low, high, .. }] => Narrow::new(mus, inv, &scale, *low, *high),
            _ => None,
        };
        Self { weights, dims, scale, shift, mixture, narrow }
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
                    truncated_normal(rng, mus[k], sigmas[k], *low, *high)
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

    /// For a single whole-number (or stepped) coordinate, the cell `x` falls in, as bits: the
    /// density is the same everywhere in it.
    fn cell(&self, x: &[f64]) -> Option<(u64, u64)> {
        match self.dims.as_slice() {
            [Dim::Cells { low, high, cell, .. }] => {
                let (a, b) = cell_bounds(x[0], *low, *high, *cell);
                Some((a.to_bits(), b.to_bits()))
            }
            _ => None,
        }
    }

    fn ln_pdf(&self, x: &[f64]) -> f64 {
        if let Some(m) = &self.mixture {
            return m[x[0] as usize].ln();
        }
        let total = match self.dims.as_slice() {
            // The common case (independent TPE, one real parameter): one tight loop.
            [Dim::Continuous { mus, inv, .. }] => match &self.narrow {
                Some(narrow) => narrow.sum(x[0]),
                None => mixture_sum(Kernel::Density(x[0]), mus, inv, &self.scale),
            },
            [Dim::Cells { mus, inv, low, high, cell, .. }] => {
                let (a, b) = cell_bounds(x[0], *low, *high, *cell);
                mixture_sum(Kernel::Mass(a, b), mus, inv, &self.scale)
            }
            dims => {
                let mut terms = self.scale.clone();
                for (dim, &xi) in dims.iter().zip(x) {
                    match dim {
                        Dim::Continuous { mus, inv, .. } => times_density(&mut terms, mus, inv, xi),
                        Dim::Cells { mus, inv, low, high, cell, .. } => {
                            let (a, b) = cell_bounds(xi, *low, *high, *cell);
                            times_mass(&mut terms, mus, inv, a, b);
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

simd::dispatched! {
    /// `Σ scale[k] kernel_k` over a one-coordinate mixture's components: most of TPE's time
    /// (every candidate against every observation).
    fn mixture_sum(kernel: Kernel, mus: &[f64], inv: &[f64], scale: &[f64]) -> f64 {
        match kernel {
            Kernel::Density(x) => mixture_sum_lanes_with(mus, inv, scale, DensityAt(x)),
            Kernel::Mass(a, b) => mixture_sum_lanes_with(mus, inv, scale, MassIn(a, b)),
        }
    }
}

/// A component's kernel, as a function of its centre and 1/σ. A trait with an always-inlined
/// method rather than a closure: a closure as big as [`mass`] may be compiled apart from the
/// dispatched function, without its vector extensions.
trait Shape {
    fn at(&self, m: f64, i: f64) -> f64;
}

struct DensityAt(f64);

impl Shape for DensityAt {
    #[inline(always)]
    fn at(&self, m: f64, i: f64) -> f64 {
        density(self.0, m, i)
    }
}

struct MassIn(f64, f64);

impl Shape for MassIn {
    #[inline(always)]
    fn at(&self, m: f64, i: f64) -> f64 {
        mass(self.0, self.1, m, i)
    }
}

simd::dispatched! {
    /// [`math::truncated_normal`], dispatched: its CDF is made of `exp_fast`'s fused operations.
    fn truncated_normal(rng: &mut SplitMix64, mu: f64, sigma: f64, low: f64, high: f64) -> f64 {
        math::truncated_normal(rng, mu, sigma, low, high)
    }
}

simd::dispatched! {
    /// `Σ scale[k] exp(-z²/2)` with `z = x inv[k] - at[k]`, in `f32` (see [`Narrow`]), summed
    /// in sixteen lanes (one AVX-512 vector).
    fn narrow_sum(x: f32, at: &[f32], inv: &[f32], scale: &[f32]) -> f64 {
        narrow_sum_lanes(x, at, inv, scale)
    }
}

#[inline(always)]
fn narrow_sum_lanes(x: f32, at: &[f32], inv: &[f32], scale: &[f32]) -> f64 {
    const LANES: usize = 16;
    let mut acc = [0.0f32; LANES];
    let (a16, i16, s16) = (at.chunks_exact(LANES), inv.chunks_exact(LANES), scale.chunks_exact(LANES));
    let (ar, ir, sr) = (a16.remainder(), i16.remainder(), s16.remainder());
    let mut rest = 0.0f32;
    for k in 0..ar.len().min(ir.len()).min(sr.len()) {
        let z = x.mul_add(ir[k], -ar[k]);
        rest = sr[k].mul_add(math::exp_neg_f32(0.5 * z * z), rest);
    }
    for ((a, i), s) in a16.zip(i16).zip(s16) {
        for l in 0..LANES {
            let z = x.mul_add(i[l], -a[l]);
            acc[l] = s[l].mul_add(math::exp_neg_f32(0.5 * z * z), acc[l]);
        }
    }
    acc.iter().map(|&a| f64::from(a)).sum::<f64>() + f64::from(rest)
}

simd::dispatched! {
    /// Multiply each component's term by its density at `x` (one coordinate of a joint mixture).
    fn times_density(terms: &mut [f64], mus: &[f64], inv: &[f64], x: f64) -> () {
        for k in 0..terms.len().min(mus.len()).min(inv.len()) {
            terms[k] *= density(x, mus[k], inv[k]);
        }
    }
}

simd::dispatched! {
    /// Multiply each component's term by its mass in `[a, b]`.
    fn times_mass(terms: &mut [f64], mus: &[f64], inv: &[f64], a: f64, b: f64) -> () {
        for k in 0..terms.len().min(mus.len()).min(inv.len()) {
            terms[k] *= mass(a, b, mus[k], inv[k]);
        }
    }
}

simd::dispatched! {
    /// Each component's normalizers: 1 / (its mass inside `[low, high]`), times 1 / (σ √(2π))
    /// for densities (`cells` false).
    fn normalizers(mus: &[f64], inv: &[f64], low: f64, high: f64, cells: bool) -> Vec<f64> {
        let n = mus.len().min(inv.len());
        let mut out = vec![0.0; n];
        for k in 0..n {
            out[k] = normalizer(mus[k], inv[k], low, high, cells);
        }
        out
    }
}

/// 1 / (σ √(2π)) for a density, 1 for a cell's mass.
#[inline(always)]
fn density_factor(inv: f64, cells: bool) -> f64 {
    if cells { 1.0 } else { inv * math::INV_SQRT_2PI }
}

/// A component's normalizers (see [`normalizers`]).
#[inline(always)]
fn normalizer(m: f64, i: f64, low: f64, high: f64, cells: bool) -> f64 {
    let (a, b) = ((low - m) * i, (high - m) * i);
    // Both ends' tails, then a choice (no branch around the evaluations, so that a loop
    // vectorizes). The truncation is exactly 1 in f64 once both ends are 8.5 widths out (their
    // erfc are below 2^-55); with one end that far out, it is the other end's tail alone.
    let (ea, eb) = (math::tail(a), math::tail(b));
    let z = match (a <= -8.5, b >= 8.5) {
        (true, true) => 1.0,
        (false, true) => math::phi_above_tail(a, ea),
        (true, false) => math::phi_above_tail(-b, eb),
        (false, false) => math::phi_between_tails(a, b, ea, eb),
    };
    density_factor(i, cells) / z.max(1e-300)
}

/// Hot loops compiled for the widest vectors the CPU has (AVX-512 or AVX2, with FMA). The
/// loops are indexed, not iterator adapters (an adapter's closure may be compiled apart from the
/// dispatched function, without its extensions, and `mul_add` then becomes a library call). They
/// are plain safe Rust with the same operations in the same order on every path: fused
/// multiply-adds are explicit `mul_add` (rounded once everywhere), and Rust contracts nothing
/// else. So the results are the same bits on any CPU (`mixture_sums_are_the_same_bits_on_any_cpu`);
/// only the speed differs. FMA, a degree-9 `exp` and eight lanes took the 1,000-trial TPE
/// benchmark from 0.39 to 0.31 ms per trial (bench/README).
mod simd {
    /// Defines `fn name(args) -> R` that runs `body` compiled for AVX-512 + FMA or AVX2 + FMA
    /// when the CPU has them, else for the baseline CPU. (Tests compare with the baseline by
    /// calling the `#[inline(always)]` function the body calls, from test code.)
    macro_rules! dispatched {
        ($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty $body:block) => {
            $(#[$doc])*
            fn $name($($arg: $ty),*) -> $ret {
                #[inline(always)]
                fn body($($arg: $ty),*) -> $ret $body
                #[cfg(target_arch = "x86_64")]
                {
                    #[target_feature(enable = "avx512f,fma")]
                    fn avx512($($arg: $ty),*) -> $ret {
                        body($($arg),*)
                    }
                    #[target_feature(enable = "avx2,fma")]
                    fn avx2($($arg: $ty),*) -> $ret {
                        body($($arg),*)
                    }
                    use std::arch::is_x86_feature_detected as has;
                    if has!("fma") && has!("avx512f") {
                        // SAFETY: the CPU was just checked to have what `avx512` is compiled for.
                        #[allow(unsafe_code)]
                        return unsafe { avx512($($arg),*) };
                    }
                    if has!("fma") && has!("avx2") {
                        // SAFETY: as above, for `avx2`.
                        #[allow(unsafe_code)]
                        return unsafe { avx2($($arg),*) };
                    }
                }
                body($($arg),*)
            }
        };
    }
    pub(super) use dispatched;
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

/// Eight independent sums, so that the evaluations overlap and vectorize (one AVX-512 vector,
/// two AVX2 ones).
#[inline(always)]
fn mixture_sum_lanes_with(mus: &[f64], inv: &[f64], scale: &[f64], f: impl Shape) -> f64 {
    const LANES: usize = 8;
    let mut acc = [0.0f64; LANES];
    let (m8, i8, s8) = (mus.chunks_exact(LANES), inv.chunks_exact(LANES), scale.chunks_exact(LANES));
    let (mr, ir, sr) = (m8.remainder(), i8.remainder(), s8.remainder());
    let mut rest = 0.0;
    for k in 0..mr.len() {
        rest = sr[k].mul_add(f.at(mr[k], ir[k]), rest);
    }
    for ((m, i), s) in m8.zip(i8).zip(s8) {
        for l in 0..LANES {
            acc[l] = s[l].mul_add(f.at(m[l], i[l]), acc[l]);
        }
    }
    acc.iter().sum::<f64>() + rest
}

/// Each component's weight times its normalizers, relative to the largest, and the log of the
/// largest. In linear arithmetic (one logarithm instead of several per component); in log
/// space only if a product leaves the range of doubles (many coordinates with extreme widths).
fn scales(weights: &[f64], factors: &[Vec<f64>]) -> (Vec<f64>, f64) {
    let mut raw = weights.to_vec();
    for f in factors {
        raw.iter_mut().zip(f).for_each(|(r, f)| *r *= f);
    }
    let max = raw.iter().copied().fold(0.0, f64::max);
    if max.is_finite() && raw.iter().all(|r| r.is_normal()) {
        let inv_max = 1.0 / max;
        raw.iter_mut().for_each(|r| *r *= inv_max);
        return (raw, max.ln());
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
/// function), adding their scales and weights: the same mixture, fewer terms. `order`: the
/// observations (all components but the last, the prior) by centre, then index.
fn merge_equal(
    mus: &mut Vec<f64>,
    sigmas: &mut Vec<f64>,
    inv: &mut Vec<f64>,
    scale: &mut Vec<f64>,
    weights: &mut Vec<f64>,
    order: &[u32],
) {
    // By centre, then width, then index (a stable sort's order): runs of one centre come in
    // order already, each is sorted by width (as integers).
    let prior = mus.len() - 1;
    let all = with_prior(mus, order, prior);
    let k = all.len();
    let (mut m, mut s, mut i, mut c, mut w) = (
        Vec::with_capacity(k),
        Vec::with_capacity(k),
        Vec::with_capacity(k),
        Vec::with_capacity(k),
        Vec::with_capacity(k),
    );
    let mut run: Vec<(u64, usize)> = Vec::new();
    let mut at = 0;
    while at < all.len() {
        let centre = mus[all[at]];
        run.clear();
        while at < all.len() && mus[all[at]].to_bits() == centre.to_bits() {
            run.push((order_bits(sigmas[all[at]]), all[at]));
            at += 1;
        }
        if run.len() > 1 {
            run.sort_unstable();
        }
        for &(_, k) in &run {
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
    }
    (*mus, *sigmas, *inv, *scale, *weights) = (m, s, i, c, w);
}

/// The indices of `xs`, by value, then index (what a stable sort leaves), as integers.
fn sorted_order(xs: &[f64]) -> Vec<u32> {
    let mut keys: Vec<u128> =
        xs.iter().enumerate().map(|(i, &x)| (u128::from(order_bits(x)) << 64) | i as u128).collect();
    keys.sort_unstable();
    keys.into_iter().map(|k| k as u32).collect()
}

/// `order` (indices of `xs` by value, then index) with `extra`, whose value is `xs[extra]` and
/// whose index is above all of them, in its place.
fn with_prior(xs: &[f64], order: &[u32], extra: usize) -> Vec<usize> {
    let key = order_bits(xs[extra]);
    let at = order.partition_point(|&i| order_bits(xs[i as usize]) <= key);
    let mut all = Vec::with_capacity(order.len() + 1);
    all.extend(order[..at].iter().map(|&i| i as usize));
    all.push(extra);
    all.extend(order[at..].iter().map(|&i| i as usize));
    all
}

/// `x`'s bits as an unsigned integer in the order of `f64::total_cmp`.
fn order_bits(x: f64) -> u64 {
    let bits = x.to_bits();
    if bits >> 63 == 1 { !bits } else { bits | 1 << 63 }
}

/// Each observation's bandwidth: the larger gap to its neighbours, with the prior's centre among
/// the points and the range's ends as outer neighbours (Optuna's univariate rule). `order`: the
/// observations by value, then index (equal values in index order, as a stable sort leaves
/// them: their gaps differ); the prior's centre goes after equal values.
fn neighbour_sigmas(xs: &[f64], order: &[u32], low: f64, high: f64) -> Vec<f64> {
    let mid = 0.5 * (low + high);
    let at = order.partition_point(|&i| order_bits(xs[i as usize]) <= order_bits(mid));
    let points: Vec<(f64, usize)> = order[..at]
        .iter()
        .map(|&i| (xs[i as usize], i as usize))
        .chain(std::iter::once((mid, usize::MAX)))
        .chain(order[at..].iter().map(|&i| (xs[i as usize], i as usize)))
        .collect();
    // With room for the prior's width.
    let mut out = Vec::with_capacity(xs.len() + 1);
    out.resize(xs.len(), 0.0);
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
    use serde_json::json;

    use super::*;

    /// The vectorized sums are the portable ones to the bit (so trials do not depend on the CPU).
    #[test]
    fn mixture_sums_are_the_same_bits_on_any_cpu() {
        let mut rng = SplitMix64::new(3);
        for n in [1usize, 3, 4, 7, 8, 9, 64, 501] {
            let mus: Vec<f64> = (0..n).map(|_| rng.next_f64() * 20.0 - 10.0).collect();
            let inv: Vec<f64> = (0..n).map(|_| 1.0 / (0.05 + rng.next_f64() * 5.0)).collect();
            let scale: Vec<f64> = (0..n).map(|_| rng.next_f64()).collect();
            for kernel in [Kernel::Density(0.3), Kernel::Density(-9.9), Kernel::Mass(-0.5, 0.5), Kernel::Mass(2.0, 3.0)]
            {
                let dispatched = mixture_sum(kernel, &mus, &inv, &scale);
                let portable = match kernel {
                    Kernel::Density(x) => mixture_sum_lanes_with(&mus, &inv, &scale, DensityAt(x)),
                    Kernel::Mass(a, b) => mixture_sum_lanes_with(&mus, &inv, &scale, MassIn(a, b)),
                };
                assert_eq!(dispatched.to_bits(), portable.to_bits(), "n = {n}");
                assert!(portable > 0.0);
            }
            // Single precision, on ranges from tiny to huge (widths within the clip, as TPE's
            // are): the same bits everywhere, and within 1e-5 of the double sum.
            for (low, high) in [(0.0, 1e-20), (1e30, 3e30), (-1e200, 1e200), (5.0, 6.0)] {
                let r = high - low;
                let m: Vec<f64> = mus.iter().map(|m| low + (m + 10.0) / 20.0 * r).collect();
                let i: Vec<f64> = inv.iter().map(|i| i.clamp(1.0, 100.0) / r).collect();
                let narrow = Narrow::new(&m, &i, &scale, low, high).expect("a range f64 can take");
                for x in [low + 0.1 * r, low + 0.5 * r, high] {
                    let wide = mixture_sum(Kernel::Density(x), &m, &i, &scale);
                    let got = narrow.sum(x);
                    assert!(((got - wide) / wide).abs() < 1e-5, "[{low}, {high}], x = {x}: {got} vs {wide}");
                }
            }
            assert!(Narrow::new(&mus, &inv, &scale, 0.0, 1e-310).is_none());
            let narrow = Narrow::new(&mus, &inv, &scale, -10.0, 10.0).expect("a range f32 can take");
            for x in [0.3, -9.9, 4.0] {
                let (at, inv32, scale32) = (&narrow.at, &narrow.inv, &narrow.scale);
                let portable = narrow_sum_lanes(((x - narrow.mid) / narrow.range) as f32, at, inv32, scale32);
                let dispatched = narrow.sum(x);
                assert_eq!(dispatched.to_bits(), portable.to_bits(), "n = {n}");
                let wide = mixture_sum(Kernel::Density(x), &mus, &inv, &scale);
                assert!(((portable - wide) / wide).abs() < 1e-5, "n = {n}, x = {x}: {portable} vs {wide}");
            }
        }
    }

    /// A space with every kind of coordinate and a conditional pair.
    fn mixed_space() -> Space {
        let p = |name: &str, distribution| Param { name: name.into(), distribution, when: None, grid: None };
        let mut space = vec![
            p("x", Distribution::Float { low: -10.0, high: 10.0, log: false, step: None }),
            p("lr", Distribution::Float { low: 1e-4, high: 1.0, log: true, step: None }),
            p("k", Distribution::Int { low: 1, high: 20, log: false, step: 1 }),
            p("leaves", Distribution::Int { low: 2, high: 256, log: true, step: 1 }),
            p("c", Distribution::Categorical { choices: vec![json!("a"), json!("b"), json!("c")] }),
        ];
        let mut drop = p("drop", Distribution::Float { low: 0.0, high: 0.5, log: false, step: Some(0.05) });
        drop.when = Some(crate::space::Condition { param: "c".into(), values: vec![json!("b")] });
        space.push(drop);
        Space::new(space).expect("a valid space")
    }

    fn record(number: u64, state: TrialState, params: Params, value: f64) -> TrialRecord {
        TrialRecord {
            params,
            value: (state == TrialState::Complete).then_some(value),
            intermediate: if state == TrialState::Pruned { vec![(number % 3 + 1, value)] } else { Vec::new() },
            ..crate::testing::record(number, state)
        }
    }

    /// The table kept between samples arranges the trials as a fresh one does, whatever order
    /// they finish in: a sampler that has seen earlier histories proposes exactly what a new
    /// sampler proposes for the same history.
    #[test]
    fn a_kept_table_gives_the_same_trials_as_a_fresh_one() {
        let space = mixed_space();
        for multivariate in [false, true] {
            let kept = Tpe::new(7, 5, 24, multivariate);
            let mut rng = SplitMix64::new(11);
            let mut trials: Vec<TrialRecord> = Vec::new();
            for number in 0..120u64 {
                let mut params = space.sample_random(&mut rng);
                if number % 17 == 3 {
                    // A value outside the space: not active for the sampler.
                    params.insert("x".into(), json!(99.0));
                }
                let state = match number % 11 {
                    4 => TrialState::Pruned,
                    7 => TrialState::Failed,
                    _ => TrialState::Complete,
                };
                // Repeated values (ties in the ranking and equal centres).
                let value = if number % 5 == 0 { 1.0 } else { rng.next_f64() };
                trials.push(record(number, state, params, value));
            }
            // Trials finish out of order: every third one shows up three samples late.
            let mut shown: Vec<u64> = Vec::new();
            for step in 0..trials.len() + 3 {
                if step < trials.len() && step % 3 != 1 {
                    shown.push(step as u64);
                }
                if step >= 3 && (step - 3) % 3 == 1 && step - 3 < trials.len() {
                    shown.push((step - 3) as u64);
                }
                shown.sort_unstable();
                let finished: Vec<&TrialRecord> = shown.iter().map(|&n| &trials[n as usize]).collect();
                let pending_params: Vec<Params> = trials.iter().take(2).map(|t| t.params.clone()).collect();
                let pending: Vec<&Params> = pending_params.iter().take(step % 3).collect();
                let history = History { direction: crate::Direction::Minimize, finished, pending };
                let number = 1000 + step as u64;
                let fresh = Tpe::new(7, 5, 24, multivariate);
                assert_eq!(
                    kept.sample(&space, &history, number).0,
                    fresh.sample(&space, &history, number).0,
                    "multivariate {multivariate}, step {step}"
                );
            }
            // Built again, or put in order, where the table cannot simply be extended: a history
            // that lost trials the table holds (another study), one where a trial's result
            // changed (finished twice after being handed out again), one out of number order
            // with a trial twice (the last record counts), and another direction.
            let odd: Vec<&TrialRecord> = trials.iter().step_by(2).collect();
            let mut changed: Vec<TrialRecord> = trials.clone();
            // Trial 40 failed (40 % 11 == 7) and trial 44 completed.
            changed[40].state = TrialState::Complete;
            changed[40].value = Some(-5.0);
            changed[44].value = Some(-7.0);
            let mut shuffled: Vec<&TrialRecord> = trials.iter().rev().collect();
            shuffled.push(&changed[40]);
            let in_order: Vec<&TrialRecord> = {
                let mut t: Vec<&TrialRecord> = trials.iter().collect();
                t[40] = &changed[40];
                t
            };
            let cases = [
                (crate::Direction::Minimize, odd.clone(), odd),
                (crate::Direction::Minimize, changed.iter().collect(), changed.iter().collect()),
                (crate::Direction::Minimize, shuffled, in_order),
                (crate::Direction::Maximize, trials.iter().collect(), trials.iter().collect()),
            ];
            for (case, (direction, given, expected)) in cases.into_iter().enumerate() {
                let history = History { direction, finished: given, pending: Vec::new() };
                let same = History { direction, finished: expected, pending: Vec::new() };
                let fresh = Tpe::new(7, 5, 24, multivariate).sample(&space, &same, 5000 + case as u64).0;
                assert_eq!(kept.sample(&space, &history, 5000 + case as u64).0, fresh, "case {case}");
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
        let parzen = Parzen::fit(&[&p], &[0.1, 0.4, 2.5], false, None, None);
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
        let parzen = Parzen::fit(&[&q], &[2.0, 5.0], false, None, None);
        let total: f64 = (1..=6).map(|v| parzen.ln_pdf(&[v as f64]).exp()).sum();
        assert!((total - 1.0).abs() < 1e-6, "{total}");
    }
}
