//! Gradient-boosted decision trees, histogram-based and grown leaf-wise (LightGBM's algorithm).
//!
//! One boosting round: gradients of the loss at the current scores ([`objective`]); quantile bins
//! of every feature were fitted once ([`bin`]); a tree is grown best-leaf-first, each leaf's
//! candidate splits read off per-feature gradient histograms ([`hist`], [`split`]), the larger
//! child's histogram obtained by subtraction; leaf values are shrunk by the learning rate and
//! added to the scores. Building histograms is the only pass over the data, and histograms of row
//! partitions add up, so the same split finding runs on histograms computed elsewhere.
//!
//! Deterministic: for a seed, the model does not depend on the number of threads (features are
//! processed in parallel, and each feature's histogram is summed in row order).

pub mod bin;
pub mod hist;
pub mod objective;
pub mod split;

use std::ops::ControlFlow;

use rayon::prelude::*;
use sluice_model::{DesignMatrix, GbdtModel, Tree};

use crate::error::{Result, TrainError};
use bin::{BinMapper, BinnedData};
use hist::{BinStat, GradSum, Histogram, Layout};
pub use objective::Loss;
use sluice_core::rng::SplitMix64;
use split::{Bounds, Node, SplitInfo, SplitParams};

/// Metrics for early stopping and round reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    Auc,
    Logloss,
    Rmse,
    Mae,
    /// Mean of the training loss itself (Huber, pinball, Poisson deviance, ...).
    Loss,
}

impl Metric {
    pub fn higher_is_better(self) -> bool {
        self == Metric::Auc
    }

    pub fn default_for(loss: Loss) -> Self {
        match loss {
            Loss::Binary => Metric::Logloss,
            Loss::L2 => Metric::Rmse,
            Loss::L1 => Metric::Mae,
            Loss::Multiclass { .. } => Metric::Logloss,
            _ => Metric::Loss,
        }
    }

    fn compute(self, loss: Loss, y: &[f64], w: &[f64], raw: &[f64]) -> f64 {
        if let Loss::Multiclass { .. } = loss {
            // Checked up front: only log loss (the objective itself) applies.
            return loss.mean_loss(y, w, raw);
        }
        let link = loss.link();
        let sw: f64 = w.iter().sum();
        match self {
            // The ranking of raw scores is the ranking of probabilities.
            Metric::Auc => sluice_metrics::roc_auc(y, raw).unwrap_or(f64::NAN),
            Metric::Logloss => Loss::Binary.mean_loss(y, w, raw),
            Metric::Rmse => {
                let s: f64 = y.iter().zip(raw).zip(w).map(|((y, r), w)| w * (link.apply(*r) - y).powi(2)).sum();
                (s / sw).sqrt()
            }
            Metric::Mae => y.iter().zip(raw).zip(w).map(|((y, r), w)| w * (link.apply(*r) - y).abs()).sum::<f64>() / sw,
            Metric::Loss => loss.mean_loss(y, w, raw),
        }
    }
}

#[derive(Clone, Debug)]
pub struct GbdtOptions {
    pub loss: Loss,
    pub num_rounds: u32,
    pub learning_rate: f64,
    pub num_leaves: usize,
    /// Maximum depth of a leaf; unlimited when None.
    pub max_depth: Option<u32>,
    pub split: SplitParams,
    /// Maximum value bins per numeric feature (at most 255).
    pub max_bin: usize,
    /// Rows sampled to fit the bins.
    pub bin_sample: usize,
    /// Fraction of features each tree may split on.
    pub feature_fraction: f64,
    /// Fraction of rows each tree is grown on, redrawn every `bagging_freq` rounds (0 = off).
    pub bagging_fraction: f64,
    pub bagging_freq: u32,
    pub seed: u64,
    /// Per design-matrix column: +1 the prediction may only increase with the feature, -1 only
    /// decrease, 0 free. Empty means no constraints.
    pub monotone: Vec<i8>,
    /// Stop when the validation metric has not improved for this many rounds.
    pub early_stopping_rounds: Option<u32>,
    pub metric: Metric,
    /// Worker threads; 0 uses rayon's global pool (all cores).
    pub threads: usize,
    /// Grow a random forest instead of boosting: every tree fits the labels themselves (on a
    /// bootstrap sample, choosing among a random subset of features at every split) and the
    /// model averages them. Losses: `Binary` (trees average class-1 frequencies, so predictions
    /// are probabilities) or `L2`.
    pub random_forest: Option<ForestOptions>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ForestOptions {
    /// Sample rows with replacement for each tree (else every tree sees every row).
    pub bootstrap: bool,
    /// Fraction of features considered at each split; None: sqrt(features) for classification,
    /// all for regression (scikit-learn's defaults).
    pub features_per_split: Option<f64>,
    /// Leaves of at most this many rows split numeric features between their own sorted values
    /// (scikit-learn's exact splitter) instead of at the feature's bin bounds; 0 = bins only.
    pub exact_rows: usize,
    pub categories: CategorySplits,
}

impl Default for ForestOptions {
    fn default() -> Self {
        Self {
            bootstrap: true,
            features_per_split: None,
            exact_rows: EXACT_ROWS,
            categories: CategorySplits::default(),
        }
    }
}

/// How a forest splits a categorical feature: the categories up to some point in a fixed order
/// go left (`Ordinal`, `ByLabel`), or the best subset at each node (`Partition`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CategorySplits {
    /// In their sorted order, as scikit-learn's forests see `OrdinalEncoder` codes and ranger
    /// splits factors by default.
    #[default]
    Ordinal,
    /// Ordered once by mean label over the training rows (ranger's `order`).
    ByLabel,
    /// Re-sorted by gradient at every node, as boosting does (LightGBM's): on fully grown trees
    /// this overfits many-valued features (flights RMSE 17.43 against 17.11 in order).
    Partition,
}

/// Forests' default [`ForestOptions::exact_rows`]. A fully grown tree has a leaf per row or two,
/// and below this size sorting a leaf's values costs less than building, subtracting and scanning
/// its histograms: 100 trees on the 48k-row flights fixture took 13.6 s with it against 38.7 s
/// over bins alone (scikit-learn: 14.1 s), at the same RMSE within noise.
pub const EXACT_ROWS: usize = 4096;

impl Default for GbdtOptions {
    /// LightGBM's defaults.
    fn default() -> Self {
        Self {
            loss: Loss::Binary,
            num_rounds: 100,
            learning_rate: 0.1,
            num_leaves: 31,
            max_depth: None,
            split: SplitParams {
                lambda_l1: 0.0,
                lambda_l2: 0.0,
                min_data_in_leaf: 20,
                min_sum_hessian_in_leaf: 1e-3,
                min_gain_to_split: 0.0,
                max_delta_step: 0.0,
                max_cat_to_onehot: 4,
                max_cat_threshold: 32,
                cat_smooth: 10.0,
                cat_l2: 10.0,
                min_data_per_group: 100,
            },
            max_bin: 255,
            bin_sample: 200_000,
            feature_fraction: 1.0,
            bagging_fraction: 1.0,
            bagging_freq: 0,
            seed: 0,
            monotone: Vec::new(),
            early_stopping_rounds: None,
            metric: Metric::Logloss,
            threads: 0,
            random_forest: None,
        }
    }
}

/// Training or validation rows: the design matrix (numeric columns raw with NaN for missing,
/// categorical columns as category indices), labels and optional row weights.
pub struct GbdtData<'a> {
    pub x: &'a DesignMatrix,
    pub y: &'a [f64],
    pub weight: Option<&'a [f64]>,
}

/// What each round reports to the caller (a tuner's pruner, a progress bar).
#[derive(Clone, Debug, PartialEq)]
pub struct RoundReport {
    /// 1-based count of rounds trained in this fit.
    pub round: u32,
    /// The validation metric after this round, when there is a validation set.
    pub valid_metric: Option<f64>,
}

#[derive(Clone, Debug)]
pub struct GbdtFit {
    pub model: GbdtModel,
    /// Rounds trained in this fit (not counting a warm start's trees).
    pub rounds: u32,
    /// Best validation metric and the round it was reached at (1-based), with a validation set.
    pub best: Option<(u32, f64)>,
    /// Validation metric per round.
    pub history: Vec<f64>,
    /// Mean training loss of the final model.
    pub train_loss: f64,
}

/// Train a GBDT. `categorical[j]` is the number of categories of column `j` (0 = numeric).
/// With `init`, boosting continues from that model (warm start): its scoring trees (up to its
/// best round) are kept and new ones fit the residuals of its predictions on `train`.
pub fn fit_gbdt(
    train: &GbdtData,
    categorical: &[usize],
    valid: Option<&GbdtData>,
    opts: &GbdtOptions,
    init: Option<&GbdtModel>,
    on_round: &mut (dyn FnMut(&RoundReport) -> ControlFlow<()> + Send),
) -> Result<GbdtFit> {
    check_options(train, categorical, opts, init)?;
    crate::on_pool(opts.threads, || Booster::new(train, categorical, valid, opts, init).run(on_round))?
}

fn check_options(train: &GbdtData, categorical: &[usize], opts: &GbdtOptions, init: Option<&GbdtModel>) -> Result<()> {
    let invalid = |m: String| Err(TrainError::Invalid(m));
    if train.x.rows == 0 {
        return Err(TrainError::Empty);
    }
    if categorical.len() != train.x.cols {
        return invalid(format!("{} categorical flags for {} features", categorical.len(), train.x.cols));
    }
    if let Some(c) = categorical.iter().find(|c| **c > 255) {
        return invalid(format!("a categorical feature has {c} categories; at most 255 are supported"));
    }
    if !(2..=255).contains(&opts.max_bin) {
        return invalid(format!("max_bin must be between 2 and 255, got {}", opts.max_bin));
    }
    if opts.num_leaves < 2 {
        return invalid(format!("num_leaves must be at least 2, got {}", opts.num_leaves));
    }
    if !opts.monotone.is_empty() && opts.monotone.len() != train.x.cols {
        return invalid(format!("{} monotone constraints for {} features", opts.monotone.len(), train.x.cols));
    }
    if opts.random_forest.is_some() {
        if !matches!(opts.loss, Loss::Binary | Loss::L2) {
            return invalid(format!("random forests fit binary or L2 labels, not {:?}", opts.loss));
        }
        if init.is_some() || opts.early_stopping_rounds.is_some() {
            return invalid("random forests have no warm start or early stopping".into());
        }
    }
    if let Loss::Multiclass { classes } = opts.loss {
        if classes < 2 {
            return invalid(format!("multiclass needs at least 2 classes, got {classes}"));
        }
        if !matches!(opts.metric, Metric::Logloss | Metric::Loss) {
            return invalid(format!("metric {:?} does not apply to multiclass; use logloss", opts.metric));
        }
        if let Some(bad) = train.y.iter().find(|v| **v < 0.0 || **v as usize >= classes || v.fract() != 0.0) {
            return invalid(format!("multiclass labels must be class indices below {classes}, found {bad}"));
        }
        if !opts.monotone.iter().all(|m| *m == 0) {
            return invalid("monotone constraints are not supported for multiclass".into());
        }
    }
    if let Some(m) = init
        && (m.link != opts.loss.link() || m.num_class != opts.loss.outputs())
    {
        return invalid(format!("cannot continue a model with {:?} link using {:?} loss", m.link, opts.loss));
    }
    Ok(())
}

/// A node of the tree being grown, in bin space.
struct BinNode {
    feature: usize,
    bin: u8,
    missing: u8,
    default_left: bool,
    categorical: bool,
    cats: [u64; 4],
}

impl BinNode {
    #[inline]
    fn goes_left(&self, b: u8) -> bool {
        if self.categorical {
            self.cats[(b >> 6) as usize] & (1 << (b & 63)) != 0
        } else if b == self.missing {
            self.default_left
        } else {
            b <= self.bin
        }
    }
}

/// A tree in bin space, to route binned rows (out-of-bag and validation rows).
struct BinTree {
    nodes: Vec<BinNode>,
    left: Vec<i32>,
    right: Vec<i32>,
}

impl BinTree {
    #[inline]
    fn leaf(&self, data: &BinnedData, row: usize) -> usize {
        if self.nodes.is_empty() {
            return 0;
        }
        let mut n = 0i32;
        loop {
            let node = &self.nodes[n as usize];
            let b = data.bin(node.feature, row);
            n = if node.goes_left(b) { self.left[n as usize] } else { self.right[n as usize] };
            if n < 0 {
                return !n as usize;
            }
        }
    }
}

struct Leaf {
    start: usize,
    len: usize,
    depth: u32,
    hist: Option<Histogram>,
    total: BinStat,
    bounds: Bounds,
    output: f64,
    best: Option<SplitInfo>,
    /// The internal node pointing at this leaf, and whether as its left child.
    parent: Option<(usize, bool)>,
}

/// Time spent per phase, printed to stderr when `SLUICE_GBDT_PROFILE` is set.
#[derive(Default)]
struct Phases {
    nanos: [std::sync::atomic::AtomicU64; 6],
}

const PHASES: [&str; 6] = ["gradients", "root histogram", "child histograms", "partition", "split finding", "scores"];

impl Phases {
    fn time<T>(&self, phase: usize, f: impl FnOnce() -> T) -> T {
        let start = std::time::Instant::now();
        let out = f();
        self.nanos[phase].fetch_add(start.elapsed().as_nanos() as u64, std::sync::atomic::Ordering::Relaxed);
        out
    }

    fn report(&self) {
        if std::env::var_os("SLUICE_GBDT_PROFILE").is_some() {
            for (name, n) in PHASES.iter().zip(&self.nanos) {
                eprintln!("{name:>18}: {:8.3} s", n.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1e9);
            }
        }
    }
}

struct Booster<'a> {
    phases: Phases,
    train: &'a GbdtData<'a>,
    valid: Option<&'a GbdtData<'a>>,
    opts: &'a GbdtOptions,
    init: Option<&'a GbdtModel>,
    mappers: Vec<BinMapper>,
    layout: Layout,
    data: BinnedData,
    valid_data: Option<BinnedData>,
    weight: Vec<f64>,
    valid_weight: Vec<f64>,
    /// Per feature, for a forest's categorical features: the fixed order their categories are
    /// split in (see [`split::ordered_categorical`]); empty when boosting.
    order: Vec<Option<Vec<u32>>>,
    /// A forest's [`ForestOptions::exact_rows`]; 0 when boosting.
    exact_rows: usize,
}

impl<'a> Booster<'a> {
    fn new(
        train: &'a GbdtData<'a>,
        categorical: &[usize],
        valid: Option<&'a GbdtData<'a>>,
        opts: &'a GbdtOptions,
        init: Option<&'a GbdtModel>,
    ) -> Self {
        let mappers = bin::fit_mappers(train.x, categorical, opts.max_bin, opts.bin_sample, opts.seed);
        let layout = Layout::new(mappers.iter().map(BinMapper::num_bins));
        let data = BinnedData::new(train.x, &mappers);
        let valid_data = valid.map(|v| BinnedData::new(v.x, &mappers));
        let weight = train.weight.map_or_else(|| vec![1.0; train.x.rows], <[f64]>::to_vec);
        let valid_weight =
            valid.map_or_else(Vec::new, |v| v.weight.map_or_else(|| vec![1.0; v.x.rows], <[f64]>::to_vec));
        Self {
            phases: Phases::default(),
            train,
            valid,
            opts,
            init,
            mappers,
            layout,
            data,
            valid_data,
            weight,
            valid_weight,
            order: Vec::new(),
            exact_rows: 0,
        }
    }

    /// Each categorical feature's fixed split order, for `CategorySplits::Ordinal` and `ByLabel`.
    /// By label: ordered by mean label over the training rows (ties by index); for L2 and binary
    /// labels the best split of a node on one categorical feature is a prefix of its own such
    /// order, and a forest uses the whole data's.
    fn category_orders(&self, splits: CategorySplits) -> Vec<Option<Vec<u32>>> {
        let y = self.train.y;
        (0..self.mappers.len())
            .into_par_iter()
            .map(|j| {
                let BinMapper::Categorical { categories } = self.mappers[j] else { return None };
                match splits {
                    CategorySplits::Partition => return None,
                    CategorySplits::Ordinal => return Some((0..categories as u32).collect()),
                    CategorySplits::ByLabel => {}
                }
                let mut sums = vec![(0.0f64, 0.0f64); categories + 1];
                for r in 0..self.data.rows {
                    let s = &mut sums[self.data.bin(j, r) as usize];
                    s.0 += self.weight[r] * y[r];
                    s.1 += self.weight[r];
                }
                let mean = |k: u32| {
                    let (wy, w) = sums[k as usize];
                    if w > 0.0 { wy / w } else { f64::INFINITY }
                };
                let mut order: Vec<u32> = (0..categories as u32).collect();
                order.sort_by(|a, b| mean(*a).total_cmp(&mean(*b)).then(a.cmp(b)));
                Some(order)
            })
            .collect()
    }

    /// The best split of feature `j` from its histogram `hist` over bins `mapper`.
    fn split_on(&self, node: &Node, j: usize, hist: &[GradSum], mapper: &BinMapper) -> Option<SplitInfo> {
        match self.order.get(j).and_then(Option::as_ref) {
            Some(order) => split::ordered_categorical(node, j, hist, order),
            None => split::best_split(node, j, hist, mapper, self.monotone(j)),
        }
    }

    fn run(self, on_round: &mut (dyn FnMut(&RoundReport) -> ControlFlow<()> + Send)) -> Result<GbdtFit> {
        if let Some(forest) = self.opts.random_forest {
            return self.forest(forest, on_round);
        }
        let opts = self.opts;
        let n = self.train.x.rows;
        let y = self.train.y;
        // `k` raw scores per row (classes for multiclass, else 1), row-major.
        let k = opts.loss.outputs();
        let (base, mut trees, mut score, mut valid_score) = match self.init {
            Some(m) => (
                if k == 1 { vec![m.base_score] } else { m.class_base.clone() },
                m.scoring_trees().to_vec(),
                m.raw_scores(self.train.x),
                self.valid.map(|v| m.raw_scores(v.x)),
            ),
            None => {
                let base = opts.loss.init_scores(y, &self.weight);
                let rows = |r: usize| (0..r).flat_map(|_| base.iter().copied()).collect::<Vec<f64>>();
                let valid = self.valid.map(|v| rows(v.x.rows));
                (base.clone(), Vec::new(), rows(n), valid)
            }
        };
        let warm_trees = trees.len();
        let mut gh: Vec<hist::GradPair> = vec![[0.0; 2]; n];
        let mut probs: Vec<f64> = Vec::new();
        let mut rng = SplitMix64::new(opts.seed);
        let mut bag: Vec<u32> = (0..n as u32).collect();
        let mut history = Vec::new();
        let mut best: Option<(u32, f64)> = None;
        // The training scores at the best round, when early stopping will cut back to it.
        let mut best_score: Option<Vec<f64>> = None;
        let mut rounds = 0;
        let all_features: Vec<usize> = (0..self.mappers.len()).collect();
        'rounds: for round in 0..opts.num_rounds {
            if opts.bagging_freq > 0 && opts.bagging_fraction < 1.0 && round % opts.bagging_freq == 0 {
                bag = (0..n as u32).filter(|_| rng.next_f64() < opts.bagging_fraction).collect();
            }
            let features = if opts.feature_fraction < 1.0 {
                let k = ((opts.feature_fraction * all_features.len() as f64).round() as usize).max(1);
                let mut f = rng.sample_indices(all_features.len(), k);
                f.sort_unstable();
                f
            } else {
                all_features.clone()
            };
            if k > 1 {
                // Every class's tree in this round fits the same round-start probabilities.
                probs.clone_from(&score);
                probs.par_chunks_mut(k).for_each(sluice_model::softmax);
            }
            let mut round_trees = Vec::with_capacity(k);
            for class in 0..k {
                self.phases.time(0, || {
                    if k == 1 {
                        opts.loss.gradients(y, &self.weight, &score, &mut gh)
                    } else {
                        Loss::multiclass_gradients(y, &self.weight, &probs, k, class, &mut gh)
                    }
                });
                let mut indices = bag.clone();
                // Boosting makes no exact leaves, so every tree has its bin-space twin.
                let Some(Grown { mut tree, bin_tree: Some(bin_tree), segments }) =
                    self.grow(&mut indices, &gh, &features, None)
                else {
                    if k == 1 {
                        break 'rounds; // nothing left to split: further rounds would add nothing
                    }
                    // A class with nothing to split gets a constant-zero tree, keeping k per round.
                    round_trees.push(Tree {
                        leaf_value: vec![0.0],
                        leaf_count: vec![bag.len() as u64],
                        ..Tree::default()
                    });
                    continue;
                };
                if let Some(alpha) = opts.loss.renews_leaves() {
                    for (leaf, (start, len)) in segments.iter().enumerate() {
                        let pairs = indices[*start..start + len]
                            .iter()
                            .map(|&r| (y[r as usize] - score[r as usize], self.weight[r as usize]))
                            .collect();
                        tree.leaf_value[leaf] = objective::weighted_quantile(pairs, alpha);
                    }
                }
                tree.leaf_value.iter_mut().for_each(|v| *v *= opts.learning_rate);
                let scores_start = std::time::Instant::now();
                if bag.len() == n {
                    for (leaf, (start, len)) in segments.iter().enumerate() {
                        let v = tree.leaf_value[leaf];
                        indices[*start..start + len].iter().for_each(|&r| score[r as usize * k + class] += v);
                    }
                } else {
                    add_tree(&bin_tree, &tree, &self.data, &mut score, k, class);
                }
                if let (Some(vd), Some(vs)) = (&self.valid_data, valid_score.as_mut()) {
                    add_tree(&bin_tree, &tree, vd, vs, k, class);
                }
                self.phases.nanos[5]
                    .fetch_add(scores_start.elapsed().as_nanos() as u64, std::sync::atomic::Ordering::Relaxed);
                round_trees.push(tree);
            }
            trees.extend(round_trees);
            rounds += 1;
            let valid_metric = match (self.valid, &valid_score) {
                (Some(v), Some(vs)) => Some(opts.metric.compute(opts.loss, v.y, &self.valid_weight, vs)),
                _ => None,
            };
            if let Some(m) = valid_metric {
                history.push(m);
                let better = match best {
                    None => true,
                    Some((_, b)) if opts.metric.higher_is_better() => m > b,
                    Some((_, b)) => m < b,
                };
                if better {
                    best = Some((rounds, m));
                    if opts.early_stopping_rounds.is_some() {
                        best_score.get_or_insert_with(Vec::new).clone_from(&score);
                    }
                }
            }
            let report = RoundReport { round: rounds, valid_metric };
            if on_round(&report).is_break() {
                break;
            }
            if let (Some(patience), Some((best_round, _))) = (opts.early_stopping_rounds, best)
                && rounds - best_round >= patience
            {
                break;
            }
        }
        let best_rounds = match (opts.early_stopping_rounds, best) {
            (Some(_), Some((r, _))) => warm_trees + r as usize * k,
            _ => trees.len(),
        };
        let model = GbdtModel {
            link: opts.loss.link(),
            base_score: if k == 1 { base[0] } else { 0.0 },
            num_class: k,
            class_base: if k == 1 { Vec::new() } else { base },
            trees,
            best_rounds,
        };
        let final_score = match best_score {
            _ if best_rounds == model.trees.len() => score,
            Some(s) => s,
            None => model.raw_scores(self.train.x),
        };
        let train_loss = opts.loss.mean_loss(y, &self.weight, &final_score);
        self.phases.report();
        Ok(GbdtFit { model, rounds, best, history, train_loss })
    }

    /// A random forest: trees on bootstrap samples fit `y - base` under L2 loss (so each leaf
    /// holds its rows' mean label), with leaf values divided by the number of trees, so the sum
    /// of the trees plus `base` is the forest's average.
    fn forest(
        mut self,
        forest: ForestOptions,
        on_round: &mut (dyn FnMut(&RoundReport) -> ControlFlow<()> + Send),
    ) -> Result<GbdtFit> {
        let opts = self.opts;
        let n = self.train.x.rows;
        let y = self.train.y;
        self.order = self.category_orders(forest.categories);
        self.exact_rows = forest.exact_rows;
        let base = Loss::L2.init_score(y, &self.weight);
        let scores = vec![base; n];
        let mut plain: Vec<hist::GradPair> = vec![[0.0; 2]; n];
        Loss::L2.gradients(y, &self.weight, &scores, &mut plain);
        let p = self.mappers.len();
        let fraction = forest.features_per_split.unwrap_or(match opts.loss {
            Loss::Binary => (p as f64).sqrt().ceil() / p as f64,
            _ => 1.0,
        });
        let all_features: Vec<usize> = (0..p).collect();
        let mut rng = SplitMix64::new(opts.seed);
        let scale = 1.0 / opts.num_rounds as f64;
        // Each tree draws from its own seed, so trees grow in parallel and the forest does not
        // depend on the number of threads.
        let seeds: Vec<u64> = (0..opts.num_rounds).map(|_| rng.next_u64()).collect();
        let grow_tree = |seed: u64| -> Tree {
            let mut rng = SplitMix64::new(seed);
            let mut weighted;
            let (mut indices, gh): (Vec<u32>, &[hist::GradPair]) = if forest.bootstrap {
                let mut counts = vec![0u32; n];
                (0..n).for_each(|_| counts[rng.below(n)] += 1);
                weighted = plain.clone();
                weighted.iter_mut().zip(&counts).for_each(|(o, c)| *o = [o[0] * *c as f32, o[1] * *c as f32]);
                ((0..n as u32).filter(|&r| counts[r as usize] > 0).collect(), &weighted)
            } else {
                ((0..n as u32).collect(), &plain)
            };
            let node_features = (fraction < 1.0).then(|| (fraction, rng.next_u64()));
            match self.grow(&mut indices, gh, &all_features, node_features) {
                Some(grown) => {
                    let mut tree = grown.tree;
                    tree.leaf_value.iter_mut().for_each(|v| *v *= scale);
                    tree
                }
                // Nothing to split on this sample: the tree predicts the base.
                None => Tree { leaf_value: vec![0.0], leaf_count: vec![indices.len() as u64], ..Tree::default() },
            }
        };
        let mut trees = Vec::with_capacity(opts.num_rounds as usize);
        'trees: for batch in seeds.chunks(rayon::current_num_threads().max(1)) {
            let grown: Vec<Tree> = batch.par_iter().map(|&seed| grow_tree(seed)).collect();
            for tree in grown {
                trees.push(tree);
                if on_round(&RoundReport { round: trees.len() as u32, valid_metric: None }).is_break() {
                    break 'trees;
                }
            }
        }
        let rounds = trees.len() as u32;
        let best_rounds = trees.len();
        let model = GbdtModel {
            link: sluice_model::Link::Identity,
            base_score: base,
            num_class: 1,
            class_base: Vec::new(),
            trees,
            best_rounds,
        };
        let train_loss = Loss::L2.mean_loss(y, &self.weight, &model.raw_scores(self.train.x));
        self.phases.report();
        Ok(GbdtFit { model, rounds, best: None, history: Vec::new(), train_loss })
    }

    fn monotone(&self, j: usize) -> i8 {
        self.opts.monotone.get(j).copied().unwrap_or(0)
    }

    /// The best split of `leaf` (whose rows are `rows`); with `sample = (fraction, seed)`, among
    /// a random subset of the features (a random forest's per-split sampling), drawn from the
    /// seed and the leaf's rows. Over the leaf's histograms, or for an exact leaf its own values.
    fn best_split_among(
        &self,
        leaf: &Leaf,
        rows: &[u32],
        gh: &[hist::GradPair],
        features: &[usize],
        sample: Option<(f64, u64)>,
    ) -> Option<SplitInfo> {
        let subset: Vec<usize>;
        let features = match sample {
            Some((fraction, seed)) => {
                let k = ((fraction * features.len() as f64).round() as usize).clamp(1, features.len());
                let mut rng =
                    SplitMix64::new(seed ^ (leaf.start as u64).wrapping_mul(0x9E37_79B9) ^ (leaf.len as u64) << 32);
                let mut picked: Vec<usize> =
                    rng.sample_indices(features.len(), k).into_iter().map(|i| features[i]).collect();
                picked.sort_unstable();
                subset = picked;
                &subset[..]
            }
            None => features,
        };
        let node = Node::new(leaf.total, leaf.bounds, &self.opts.split);
        let candidates: Vec<Option<SplitInfo>> = if self.exact(leaf.len) {
            features.iter().map(|&j| self.exact_split(&node, j, rows, gh)).collect()
        } else {
            let hist = leaf.hist.as_ref()?;
            let find = |&j: &usize| self.split_on(&node, j, hist.feature(&self.layout, j), &self.mappers[j]);
            // Scanning a few features' 256 bins is cheaper than waking the thread pool.
            if features.len() < 64 {
                features.iter().map(find).collect()
            } else {
                features.par_iter().map(find).collect()
            }
        };
        // Highest gain; the lowest feature index on ties (candidates are in feature order).
        candidates.into_iter().flatten().fold(None, |best: Option<SplitInfo>, s| match best {
            Some(b) if b.gain >= s.gain => Some(b),
            _ => Some(s),
        })
    }

    /// The best split of feature `j` over the rows of a small leaf. A numeric feature is split
    /// between the leaf's own distinct values, as scikit-learn's exact splitter does: they become
    /// the bins of a histogram of this leaf alone, searched like any other. A categorical
    /// feature's histogram is summed from the rows.
    fn exact_split(&self, node: &Node, j: usize, rows: &[u32], gh: &[hist::GradPair]) -> Option<SplitInfo> {
        let add = |s: &mut GradSum, pair: hist::GradPair| *s = *s + GradSum::of(pair);
        let mapper = &self.mappers[j];
        if mapper.is_categorical() {
            let mut hist = vec![GradSum::default(); mapper.num_bins()];
            rows.iter().for_each(|&r| add(&mut hist[self.data.bin(j, r as usize) as usize], gh[r as usize]));
            return self.split_on(node, j, &hist, mapper);
        }
        let x = self.train.x;
        let mut missing = GradSum::default();
        let mut values: Vec<(f64, hist::GradPair)> = Vec::with_capacity(rows.len());
        for &r in rows {
            let v = x.data[r as usize * x.cols + j];
            if v.is_nan() { add(&mut missing, gh[r as usize]) } else { values.push((v, gh[r as usize])) }
        }
        if values.is_empty() {
            return None;
        }
        values.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
        let (mut hist, mut upper) = (Vec::new(), Vec::new());
        for (k, &(v, pair)) in values.iter().enumerate() {
            if k == 0 || v != values[k - 1].0 {
                if k > 0 {
                    upper.push(bin::midpoint(values[k - 1].0, v));
                }
                hist.push(GradSum::default());
            }
            if let Some(s) = hist.last_mut() {
                add(s, pair);
            }
        }
        upper.push(f64::INFINITY);
        hist.push(missing);
        let own = BinMapper::Numeric { upper };
        let mut s = self.split_on(node, j, &hist, &own)?;
        s.threshold = Some(own.threshold(s.bin));
        Some(s)
    }

    /// Whether a leaf of `len` rows splits between its own values (and so has no histogram).
    fn exact(&self, len: usize) -> bool {
        len <= self.exact_rows
    }

    fn can_split(&self, leaf: &Leaf) -> bool {
        self.opts.max_depth.is_none_or(|d| leaf.depth < d) && leaf.total.n >= 2 * self.opts.split.min_data_in_leaf
    }

    /// The rows that sums `sum` over `distinct` rows stand for in split finding. A forest without
    /// sample weights counts bootstrap draws: each row's hessian is its number of draws, so
    /// every count from hessian shares is exact, and `min_data_in_leaf` counts draws (ranger's
    /// `min.node.size`; at scikit-learn's default of 1, the same as distinct rows).
    fn rows_of(&self, sum: GradSum, distinct: usize) -> u64 {
        if self.opts.random_forest.is_some() && self.train.weight.is_none() {
            sum.h.round() as u64
        } else {
            distinct as u64
        }
    }

    /// Grow one tree on the rows in `indices`, choosing each split among a random
    /// `node_features = (fraction, seed)` subset when given, and splitting leaves of at most
    /// `self.exact_rows` rows between their own values. None if the root cannot be split.
    fn grow(
        &self,
        indices: &mut [u32],
        gh: &[hist::GradPair],
        features: &[usize],
        node_features: Option<(f64, u64)>,
    ) -> Option<Grown> {
        let opts = self.opts;
        let (root_hist, sum) = if self.exact(indices.len()) {
            (None, indices.iter().fold(GradSum::default(), |a, &r| a + GradSum::of(gh[r as usize])))
        } else {
            let hist = self.phases.time(1, || hist::build(&self.data, &self.layout, indices, gh, features));
            let sum = hist.feature(&self.layout, features[0]).iter().fold(GradSum::default(), |a, b| a + *b);
            (Some(hist), sum)
        };
        let total = BinStat::new(sum, self.rows_of(sum, indices.len()));
        let mut root = Leaf {
            start: 0,
            len: indices.len(),
            depth: 0,
            hist: root_hist,
            total,
            bounds: Bounds::NONE,
            output: opts.split.output(total.sum(), 0.0, Bounds::NONE),
            best: None,
            parent: None,
        };
        root.best = self.phases.time(4, || self.best_split_among(&root, indices, gh, features, node_features));
        root.best.as_ref()?;
        let mut leaves = vec![root];
        let mut tree = Tree::default();
        // Dropped at the first split between a leaf's own values, which bins cannot express.
        let mut bin_tree = Some(BinTree { nodes: Vec::new(), left: Vec::new(), right: Vec::new() });
        while leaves.len() < opts.num_leaves {
            let mut open = (0..leaves.len()).filter(|&i| leaves[i].best.is_some());
            // Best leaf first; with no leaf limit (forests) the order cannot change the tree, so
            // go depth-first: the newest leaf, which keeps few histograms alive.
            let pick = if opts.num_leaves == usize::MAX {
                open.next_back()
            } else {
                open.fold(None, |best: Option<usize>, i| match best {
                    Some(b) if leaves[b].best.as_ref().map(|s| s.gain) >= leaves[i].best.as_ref().map(|s| s.gain) => {
                        Some(b)
                    }
                    _ => Some(i),
                })
            };
            let Some(l) = pick else {
                break;
            };
            let Some(s) = leaves[l].best.take() else { break };
            let parent_hist = leaves[l].hist.take();
            let (start, len, depth, bounds, grandparent) =
                (leaves[l].start, leaves[l].len, leaves[l].depth + 1, leaves[l].bounds, leaves[l].parent);
            let mapper = &self.mappers[s.feature];
            let mut cats = [0u64; 4];
            for &c in &s.categories {
                cats[(c >> 6) as usize] |= 1 << (c & 63);
            }
            let bin_node = BinNode {
                feature: s.feature,
                bin: s.bin as u8,
                missing: mapper.missing_bin() as u8,
                default_left: s.default_left,
                categorical: mapper.is_categorical(),
                cats,
            };
            // Stable partition of the leaf's rows: left rows first, both in row order.
            let rows = &mut indices[start..start + len];
            let w = self.phases.time(3, || match s.threshold {
                Some(threshold) => {
                    let (x, j) = (self.train.x, s.feature);
                    partition(
                        rows,
                        |r| {
                            let v = x.data[r * x.cols + j];
                            if v.is_nan() { s.default_left } else { v <= threshold }
                        },
                        |_| {},
                    )
                }
                None => {
                    let (bins, t) = (&self.data.groups[s.feature / bin::GROUP], s.feature % bin::GROUP);
                    partition(rows, |r| bin_node.goes_left(bins[r][t]), |r| hist::prefetch(bins, r))
                }
            });

            // Record the internal node.
            let node = tree.split_feature.len();
            let new_leaf = leaves.len();
            tree.split_feature.push(s.feature as u32);
            tree.threshold.push(match s.threshold {
                _ if mapper.is_categorical() => 0.0,
                Some(threshold) => threshold,
                None => mapper.threshold(s.bin),
            });
            tree.default_left.push(s.default_left);
            tree.cat_set.push(if mapper.is_categorical() {
                tree.cat_sets.push(s.categories.clone());
                tree.cat_sets.len() as i32 - 1
            } else {
                -1
            });
            tree.left.push(!(l as i32));
            tree.right.push(!(new_leaf as i32));
            tree.split_gain.push(s.gain);
            tree.internal_count.push(len as u64);
            if s.threshold.is_some() {
                bin_tree = None;
            }
            if let Some(bt) = bin_tree.as_mut() {
                bt.nodes.push(bin_node);
                bt.left.push(!(l as i32));
                bt.right.push(!(new_leaf as i32));
            }
            if let Some((p, is_left)) = grandparent {
                let slot = if is_left { &mut tree.left[p] } else { &mut tree.right[p] };
                *slot = node as i32;
                if let Some(bt) = bin_tree.as_mut() {
                    let slot = if is_left { &mut bt.left[p] } else { &mut bt.right[p] };
                    *slot = node as i32;
                }
            }

            // Monotone constraints bound the children's outputs by the midpoint of the two.
            let (mut lb, mut rb) = (bounds, bounds);
            let m = self.monotone(s.feature);
            if m != 0 && !mapper.is_categorical() {
                let mid = (s.left_output + s.right_output) / 2.0;
                if m > 0 {
                    lb.hi = lb.hi.min(mid);
                    rb.lo = rb.lo.max(mid);
                } else {
                    lb.lo = lb.lo.max(mid);
                    rb.hi = rb.hi.min(mid);
                }
            }
            let child = |start: usize, len: usize, total: BinStat, bounds: Bounds, output: f64, is_left: bool| Leaf {
                start,
                len,
                depth,
                hist: None,
                total,
                bounds,
                output,
                best: None,
                parent: Some((node, is_left)),
            };
            // The split's row counts were estimates: the partition counted the rows (a forest's
            // draws are its hessian sums).
            let (left_total, right_total) = (
                BinStat { n: self.rows_of(s.left.sum(), w), ..s.left },
                BinStat { n: self.rows_of(s.right.sum(), len - w), ..s.right },
            );
            let mut left = child(start, w, left_total, lb, s.left_output, true);
            let mut right = child(start + w, len - w, right_total, rb, s.right_output, false);
            let (split_left, split_right) = (self.can_split(&left), self.can_split(&right));
            // Leaves that may split over bins get histograms: the smaller child's is built, the
            // larger one's is the difference (a leaf over exact_rows had a histogram).
            let (hist_left, hist_right) = (split_left && !self.exact(left.len), split_right && !self.exact(right.len));
            if (hist_left || hist_right)
                && let Some(parent_hist) = parent_hist
            {
                let left_smaller = left.len <= right.len;
                let small = if left_smaller { &left } else { &right };
                let range = small.start..small.start + small.len;
                let small_hist =
                    self.phases.time(2, || hist::build(&self.data, &self.layout, &indices[range], gh, features));
                let large_hist = small_hist.sibling_of(&parent_hist);
                let (lh, rh) = if left_smaller { (small_hist, large_hist) } else { (large_hist, small_hist) };
                left.hist = Some(lh).filter(|_| hist_left);
                right.hist = Some(rh).filter(|_| hist_right);
            }
            for (leaf, may_split) in [(&mut left, split_left), (&mut right, split_right)] {
                if may_split {
                    let rows = &indices[leaf.start..leaf.start + leaf.len];
                    leaf.best = self.phases.time(4, || self.best_split_among(leaf, rows, gh, features, node_features));
                }
                // Only leaves that may still split keep a histogram.
                if leaf.best.is_none() {
                    leaf.hist = None;
                }
            }
            leaves[l] = left;
            leaves.push(right);
        }
        tree.leaf_value = leaves.iter().map(|l| l.output).collect();
        tree.leaf_count = leaves.iter().map(|l| l.len as u64).collect();
        let segments = leaves.iter().map(|l| (l.start, l.len)).collect();
        Some(Grown { tree, bin_tree, segments })
    }
}

/// A grown tree: unshrunk leaf values, its bin-space twin (None when a leaf was split between
/// its own values), and each leaf's `(start, len)` range in the grown rows.
struct Grown {
    tree: Tree,
    bin_tree: Option<BinTree>,
    segments: Vec<(usize, usize)>,
}

/// Stable partition of rows by `left(row)`: returns how many go left. Each chunk is partitioned
/// in place without branching on the outcome (a split sends rows either way unpredictably),
/// calling `ahead` on the row [`hist::PREFETCH`] places ahead so its data can be prefetched;
/// large ranges partition their chunks in parallel, then gather the chunks' left and right parts.
fn partition(rows: &mut [u32], left: impl Fn(usize) -> bool + Sync, ahead: impl Fn(usize) + Sync) -> usize {
    const CHUNK: usize = 32 * 1024;
    // Every row is written to both sides; only the side it belongs to advances its cursor. Left
    // rows overwrite rows already read; right rows wait in a buffer.
    let in_place = |rows: &mut [u32]| -> usize {
        let mut right = vec![0u32; rows.len()];
        let (mut l, mut r) = (0usize, 0usize);
        for k in 0..rows.len() {
            let row = rows[k];
            if let Some(&next) = rows.get(k + hist::PREFETCH) {
                ahead(next as usize);
            }
            let go = left(row as usize) as usize;
            rows[l] = row;
            right[r] = row;
            l += go;
            r += 1 - go;
        }
        rows[l..].copy_from_slice(&right[..r]);
        l
    };
    if rows.len() <= CHUNK {
        return in_place(rows);
    }
    let lefts: Vec<usize> = rows.par_chunks_mut(CHUNK).map(in_place).collect();
    let mut gathered = Vec::with_capacity(rows.len());
    for (chunk, &l) in rows.chunks(CHUNK).zip(&lefts) {
        gathered.extend_from_slice(&chunk[..l]);
    }
    for (chunk, &l) in rows.chunks(CHUNK).zip(&lefts) {
        gathered.extend_from_slice(&chunk[l..]);
    }
    rows.copy_from_slice(&gathered);
    lefts.iter().sum()
}

/// Add the tree's leaf values to the scores of binned rows: `score` holds `k` scores per row and
/// the tree adds to score `class` of each.
fn add_tree(bin_tree: &BinTree, tree: &Tree, data: &BinnedData, score: &mut [f64], k: usize, class: usize) {
    const CHUNK: usize = 4096;
    score.par_chunks_mut(CHUNK * k).enumerate().for_each(|(c, chunk)| {
        for (r, s) in chunk.chunks_mut(k).enumerate() {
            s[class] += tree.leaf_value[bin_tree.leaf(data, c * CHUNK + r)];
        }
    });
}
