//! Fitting feature engineering on the training rows: each step is fitted on the output of the
//! steps before it (as a scikit-learn `Pipeline`), then applied with `sluice_model`'s code.
//! Target encoding is the exception that makes fitting return the training table as well: the
//! training rows get out-of-fold encodings (each row's value fitted on the other folds) so the
//! model never sees a label through its own feature; the stored encoding uses all rows.

use std::collections::HashMap;

use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};
use serde::{Deserialize, Serialize};
use sluice_core::rng::SplitMix64;
use sluice_model::features::{Index, Table, apply_one, numbers, texts, tokenize};
use sluice_model::{DatePart, Feature, FeaturePipeline, Fill, Unseen};

use crate::error::{Result, TrainError};

/// How to fill missing values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Impute {
    Mean,
    Median,
    MostFrequent,
    Constant(String),
}

/// What to fit, one column at a time (a cross reads several).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum FeatureSpec {
    Impute {
        column: String,
        strategy: Impute,
    },
    Standardize {
        column: String,
    },
    MinMax {
        column: String,
    },
    Robust {
        column: String,
    },
    Log1p {
        column: String,
    },
    Clip {
        column: String,
        min: Option<f64>,
        max: Option<f64>,
    },
    /// `quantiles` equal-frequency buckets, or explicit `bins` edges.
    Bucketize {
        column: String,
        quantiles: Option<usize>,
        bins: Option<Vec<f64>>,
    },
    OneHot {
        column: String,
        max_categories: usize,
        unseen: Unseen,
    },
    Ordinal {
        column: String,
        max_categories: usize,
        unseen: Unseen,
    },
    Frequency {
        column: String,
    },
    Target {
        column: String,
        folds: usize,
        smoothing: f64,
    },
    Hash {
        column: String,
        buckets: usize,
    },
    DateParts {
        column: String,
        parts: Vec<DatePart>,
    },
    Cross {
        columns: Vec<String>,
    },
    Tokens {
        column: String,
        max_features: usize,
        idf: bool,
    },
}

/// The fitted pipeline and the training table it produced (with out-of-fold target encodings).
pub struct Fitted {
    pub pipeline: FeaturePipeline,
    pub train: RecordBatch,
}

fn invalid(column: &str, message: impl std::fmt::Display) -> TrainError {
    TrainError::Invalid(format!("feature step on `{column}`: {message}"))
}

/// numpy's default (`linear`) quantile of sorted values.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// Fit `specs` in order on `batch`; `label` is needed by target encoding.
pub fn fit_pipeline(specs: &[FeatureSpec], batch: &RecordBatch, label: &str, seed: u64) -> Result<Fitted> {
    let mut table = Table::from(batch);
    let mut steps = Vec::new();
    for spec in specs {
        let (feature, oof) = fit_one(spec, &table, label, seed)?;
        match oof {
            Some((column, values)) => {
                let array: ArrayRef = std::sync::Arc::new(
                    values.into_iter().map(|v| (!v.is_nan()).then_some(v)).collect::<arrow_array::Float64Array>(),
                );
                table.replace(&column, vec![(column.clone(), array)])?;
            }
            None => apply_one(&feature, &mut table)?,
        }
        steps.push(feature);
    }
    Ok(Fitted { pipeline: FeaturePipeline { steps }, train: table.into_batch()? })
}

/// A column's out-of-fold training values (target encoding).
type OutOfFold = Option<(String, Vec<f64>)>;

/// One step, fitted exactly on the whole table (the accumulator's exact mode); for target
/// encoding also the out-of-fold training values.
fn fit_one(spec: &FeatureSpec, t: &Table, label: &str, seed: u64) -> Result<(Feature, OutOfFold)> {
    let mut acc = Accumulator::exact(spec.clone());
    acc.update(t, label)?;
    let feature = acc.finish()?;
    let FeatureSpec::Target { column, folds, .. } = spec else { return Ok((feature, None)) };
    // Out of fold: each training row is encoded by the other folds' rows.
    let values = texts(column, t.get(column)?)?;
    let y = numbers(label, t.get(label)?)?;
    let k = (*folds).max(2);
    let mut rng = SplitMix64::new(seed ^ 0x7a46_e7ec);
    let fold: Vec<usize> = (0..y.len()).map(|_| rng.below(k)).collect();
    let mut oof = vec![f64::NAN; y.len()];
    for f in 0..k {
        let mut others = Accumulator::exact(spec.clone());
        others.add_target(&values, &y, |r| fold[r] != f);
        let Feature::Target { means, prior, .. } = others.finish()? else { unreachable!("a target spec") };
        for r in (0..y.len()).filter(|&r| fold[r] == f) {
            let v = (!values.is_null(r)).then(|| values.value(r));
            oof[r] = v.and_then(|v| means.get(v).copied()).unwrap_or(prior);
        }
    }
    Ok((feature, Some((column.clone(), oof))))
}

/// Groups of consecutive specs that can be fitted in one pass: a spec that reads a column an
/// earlier spec of the group writes starts a new group (it must see that spec's output).
pub fn stages(specs: &[FeatureSpec]) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut written: Vec<String> = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let (reads, writes) = match spec {
            FeatureSpec::Cross { columns } => (columns.clone(), vec![columns.join("_x_")]),
            other => {
                let c = spec_column(other).to_string();
                (vec![c.clone()], vec![c])
            }
        };
        if out.is_empty() || reads.iter().any(|r| written.contains(r)) {
            out.push(Vec::new());
            written.clear();
        }
        if let Some(stage) = out.last_mut() {
            stage.push(i);
        }
        written.extend(writes);
    }
    out
}

fn spec_column(spec: &FeatureSpec) -> &str {
    match spec {
        FeatureSpec::Cross { columns } => columns.first().map_or("", String::as_str),
        FeatureSpec::Impute { column, .. }
        | FeatureSpec::Standardize { column }
        | FeatureSpec::MinMax { column }
        | FeatureSpec::Robust { column }
        | FeatureSpec::Log1p { column }
        | FeatureSpec::Clip { column, .. }
        | FeatureSpec::Bucketize { column, .. }
        | FeatureSpec::OneHot { column, .. }
        | FeatureSpec::Ordinal { column, .. }
        | FeatureSpec::Frequency { column }
        | FeatureSpec::Target { column, .. }
        | FeatureSpec::Hash { column, .. }
        | FeatureSpec::DateParts { column, .. }
        | FeatureSpec::Tokens { column, .. } => column,
    }
}

/// Values for medians and quantiles: all of them (exact, in memory) or a KLL sketch (streaming,
/// within about 1% of rank).
#[derive(Clone, Debug, Serialize, Deserialize)]
enum Quantiles {
    Exact(Vec<f64>),
    Sketch(sluice_profile::Kll),
}

impl Quantiles {
    fn merge(&mut self, other: &Quantiles) -> Result<()> {
        match (self, other) {
            (Quantiles::Exact(all), Quantiles::Exact(more)) => all.extend_from_slice(more),
            (Quantiles::Sketch(kll), Quantiles::Sketch(more)) => kll.merge(more),
            _ => return Err(TrainError::Invalid("cannot merge an exact fit with a sketched one".into())),
        }
        Ok(())
    }

    fn add(&mut self, values: &[f64]) {
        match self {
            Quantiles::Exact(all) => all.extend_from_slice(values),
            Quantiles::Sketch(kll) => kll.add_values(values),
        }
    }

    /// numpy's default (`linear`) quantile when exact; the sketch's otherwise; 0 when empty.
    fn get(&mut self, q: f64) -> f64 {
        let v = match self {
            Quantiles::Exact(all) => {
                all.sort_by(f64::total_cmp);
                quantile(all, q)
            }
            Quantiles::Sketch(kll) => kll.quantile(q).unwrap_or(f64::NAN),
        };
        if v.is_nan() { 0.0 } else { v }
    }
}

/// [`Accumulator::partial`]'s layout.
#[derive(Serialize, Deserialize)]
struct Partial {
    moments: sluice_profile::Moments,
    quantiles: Quantiles,
    counts: Vec<(String, f64)>,
    target: Vec<(String, (f64, f64))>,
    label_sum: f64,
    label_rows: f64,
    tokens: Vec<(String, (usize, usize))>,
    docs: usize,
    rows: usize,
    text: bool,
}

/// What one spec needs to see of the data, gathered batch by batch: exact moments and counts;
/// medians and quantiles exact ([`Accumulator::exact`], the train step's in-memory fit) or from a
/// KLL sketch ([`Accumulator::new`], the streaming fit of `fit_transform`).
#[derive(Debug)]
pub struct Accumulator {
    spec: FeatureSpec,
    moments: sluice_profile::Moments,
    quantiles: Quantiles,
    counts: HashMap<String, f64>,
    /// Target encoding: per category (sum of labels, rows); and over all rows.
    target: HashMap<String, (f64, f64)>,
    label_sum: f64,
    label_rows: f64,
    /// Token counts: per token (documents, occurrences); and documents.
    tokens: HashMap<String, (usize, usize)>,
    docs: usize,
    rows: usize,
    text: bool,
}

impl Accumulator {
    /// Streaming: quantiles from a KLL sketch, memory independent of the rows.
    pub fn new(spec: FeatureSpec) -> Self {
        Self::with(spec, Quantiles::Sketch(Default::default()))
    }

    /// Exact: every value is kept for quantiles.
    pub fn exact(spec: FeatureSpec) -> Self {
        Self::with(spec, Quantiles::Exact(Vec::new()))
    }

    fn with(spec: FeatureSpec, quantiles: Quantiles) -> Self {
        Self {
            spec,
            moments: Default::default(),
            quantiles,
            counts: HashMap::new(),
            target: HashMap::new(),
            label_sum: 0.0,
            label_rows: 0.0,
            tokens: HashMap::new(),
            docs: 0,
            rows: 0,
            text: false,
        }
    }

    /// Add one (already transformed by earlier stages) batch.
    pub fn update(&mut self, t: &Table, label: &str) -> Result<()> {
        let column = spec_column(&self.spec).to_string();
        self.rows += t.rows;
        // Values for moments and quantiles: NaN is missing; an infinity would make the fit
        // meaningless (a mean of inf), so it is refused, as scikit-learn does.
        let numeric = |t: &Table| -> Result<Vec<f64>> {
            let values: Vec<f64> = numbers(&column, t.get(&column)?)?.into_iter().filter(|x| !x.is_nan()).collect();
            match values.iter().find(|x| x.is_infinite()) {
                Some(x) => {
                    Err(invalid(&column, format!("has the value {x}; clip or filter infinities before fitting")))
                }
                None => Ok(values),
            }
        };
        match &self.spec {
            FeatureSpec::Impute { strategy, .. } => {
                self.text = !t.get(&column)?.data_type().is_numeric();
                match (strategy, self.text) {
                    (Impute::Mean, false) => self.moments.add_values(&numeric(t)?),
                    (Impute::Median, false) => self.quantiles.add(&numeric(t)?),
                    (Impute::MostFrequent, _) => {
                        for v in texts(&column, t.get(&column)?)?.iter().flatten() {
                            *self.counts.entry(v.to_string()).or_default() += 1.0;
                        }
                    }
                    _ => {}
                }
            }
            FeatureSpec::Standardize { .. } | FeatureSpec::MinMax { .. } => self.moments.add_values(&numeric(t)?),
            FeatureSpec::Robust { .. } | FeatureSpec::Bucketize { .. } => self.quantiles.add(&numeric(t)?),
            FeatureSpec::OneHot { .. } | FeatureSpec::Ordinal { .. } | FeatureSpec::Frequency { .. } => {
                let mut local: Index<f64> = Index::default();
                let values = texts(&column, t.get(&column)?)?;
                for v in values.iter().flatten() {
                    *local.entry(v).or_default() += 1.0;
                }
                for (k, n) in local {
                    *self.counts.entry(k.to_string()).or_default() += n;
                }
            }
            FeatureSpec::Target { .. } => {
                let values = texts(&column, t.get(&column)?)?;
                let y = t
                    .get(label)
                    .map_err(|_| invalid(&column, format!("target encoding needs the label `{label}`")))
                    .and_then(|l| {
                        numbers(label, l).map_err(|_| {
                            invalid(
                                &column,
                                format!("target encoding needs a numeric or boolean label; `{label}` is not"),
                            )
                        })
                    })?;
                self.add_target(&values, &y, |_| true);
            }
            FeatureSpec::Tokens { .. } => {
                for v in texts(&column, t.get(&column)?)?.iter() {
                    self.docs += 1;
                    let mut doc = v.map(tokenize).unwrap_or_default();
                    for w in &doc {
                        self.tokens.entry(w.clone()).or_default().1 += 1;
                    }
                    doc.sort_unstable();
                    doc.dedup();
                    for w in doc {
                        self.tokens.entry(w).or_default().0 += 1;
                    }
                }
            }
            // Nothing to learn, but the column must be readable.
            FeatureSpec::Log1p { .. } | FeatureSpec::Clip { .. } => {
                numbers(&column, t.get(&column)?)?;
            }
            FeatureSpec::Hash { .. } | FeatureSpec::DateParts { .. } | FeatureSpec::Cross { .. } => {}
        }
        Ok(())
    }

    /// The data seen so far, without the spec, as bytes in a fixed order (maps sorted by key):
    /// what one partition of a distributed fit ships to be merged.
    pub fn partial(&self) -> Vec<u8> {
        fn sorted<V: Clone>(map: &HashMap<String, V>) -> Vec<(String, V)> {
            let mut v: Vec<(String, V)> = map.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        }
        let partial = Partial {
            moments: self.moments.clone(),
            quantiles: self.quantiles.clone(),
            counts: sorted(&self.counts),
            target: sorted(&self.target),
            label_sum: self.label_sum,
            label_rows: self.label_rows,
            tokens: sorted(&self.tokens),
            docs: self.docs,
            rows: self.rows,
            text: self.text,
        };
        // Plain data: cannot fail. (Values are finite: `update` refuses infinities.)
        serde_json::to_vec(&partial).unwrap_or_default()
    }

    /// Add another partition's [`Accumulator::partial`] for the same spec. Into an accumulator
    /// that has seen no rows, the partial is taken as it is, so merging one partial gives back
    /// exactly that partition's state.
    pub fn merge_partial(&mut self, bytes: &[u8]) -> Result<()> {
        let p: Partial = serde_json::from_slice(bytes)
            .map_err(|e| invalid(spec_column(&self.spec), format!("a partition's fit state: {e}")))?;
        if std::mem::discriminant(&self.quantiles) != std::mem::discriminant(&p.quantiles) {
            return Err(invalid(spec_column(&self.spec), "cannot merge an exact fit with a sketched one"));
        }
        if self.rows == 0 {
            self.moments = p.moments;
            self.quantiles = p.quantiles;
            self.counts = p.counts.into_iter().collect();
            self.target = p.target.into_iter().collect();
            (self.label_sum, self.label_rows) = (p.label_sum, p.label_rows);
            self.tokens = p.tokens.into_iter().collect();
            (self.docs, self.rows, self.text) = (p.docs, p.rows, p.text);
            return Ok(());
        }
        if p.rows == 0 {
            return Ok(());
        }
        self.moments.merge(&p.moments);
        self.quantiles.merge(&p.quantiles)?;
        for (k, n) in p.counts {
            *self.counts.entry(k).or_default() += n;
        }
        for (k, (sum, n)) in p.target {
            let e = self.target.entry(k).or_default();
            e.0 += sum;
            e.1 += n;
        }
        self.label_sum += p.label_sum;
        self.label_rows += p.label_rows;
        for (k, (d, n)) in p.tokens {
            let e = self.tokens.entry(k).or_default();
            e.0 += d;
            e.1 += n;
        }
        self.docs += p.docs;
        self.rows += p.rows;
        self.text |= p.text;
        Ok(())
    }

    /// Label sums per category, over the rows `keep` accepts (labels that are NaN skipped).
    fn add_target(&mut self, values: &StringArray, y: &[f64], keep: impl Fn(usize) -> bool) {
        for (r, y) in y.iter().enumerate() {
            if y.is_nan() || !keep(r) {
                continue;
            }
            self.label_sum += y;
            self.label_rows += 1.0;
            if !values.is_null(r) {
                let e = self.target.entry(values.value(r).to_string()).or_default();
                e.0 += y;
                e.1 += 1.0;
            }
        }
    }

    /// The fitted feature.
    pub fn finish(mut self) -> Result<Feature> {
        let column = spec_column(&self.spec).to_string();
        let m = &self.moments;
        let scale = |center: f64, scale: f64| Feature::Scale {
            column: column.clone(),
            center: if center.is_finite() { center } else { 0.0 },
            scale: if scale.is_finite() && scale > 0.0 { scale } else { 1.0 },
        };
        let ranked = |max: usize| {
            let mut r: Vec<(&String, &f64)> = self.counts.iter().collect();
            r.sort_by(|a, b| b.1.total_cmp(a.1).then_with(|| a.0.cmp(b.0)));
            let mut keep: Vec<String> = r.into_iter().take(max).map(|(k, _)| k.clone()).collect();
            keep.sort();
            keep
        };
        Ok(match &self.spec {
            FeatureSpec::Impute { strategy, .. } => Feature::Impute {
                column: column.clone(),
                fill: match (strategy, self.text) {
                    (Impute::Mean, false) => Fill::Number(if m.count == 0 { 0.0 } else { m.mean }),
                    (Impute::Median, false) => Fill::Number(self.quantiles.get(0.5)),
                    (Impute::MostFrequent, true) => Fill::Text(ranked(1).pop().unwrap_or_default()),
                    (Impute::MostFrequent, false) => {
                        Fill::Number(ranked(1).pop().and_then(|v| v.parse().ok()).unwrap_or(0.0))
                    }
                    (Impute::Constant(v), true) => Fill::Text(v.clone()),
                    (Impute::Constant(v), false) => {
                        Fill::Number(v.parse().map_err(|_| invalid(&column, format!("`value: {v}` is not a number")))?)
                    }
                    (Impute::Mean | Impute::Median, true) => {
                        return Err(invalid(&column, "`mean`/`median` need a numeric column"));
                    }
                },
            },
            FeatureSpec::Standardize { .. } => scale(m.mean, (m.m2 / m.count.max(1) as f64).sqrt()),
            FeatureSpec::MinMax { .. } => {
                let (lo, hi) = (m.min.unwrap_or(0.0), m.max.unwrap_or(1.0));
                scale(lo, hi - lo)
            }
            FeatureSpec::Robust { .. } => {
                let (q1, q2, q3) = (self.quantiles.get(0.25), self.quantiles.get(0.5), self.quantiles.get(0.75));
                scale(q2, q3 - q1)
            }
            FeatureSpec::Log1p { .. } => Feature::Log1p { column },
            FeatureSpec::Clip { min, max, .. } => Feature::Clip { column, min: *min, max: *max },
            FeatureSpec::Bucketize { quantiles, bins, .. } => {
                let mut edges = match (quantiles, bins) {
                    (_, Some(b)) => b.clone(),
                    (Some(k), None) => (1..*k).map(|i| self.quantiles.get(i as f64 / *k as f64)).collect(),
                    (None, None) => return Err(invalid(&column, "bucketize needs `quantiles` or `bins`")),
                };
                edges.dedup();
                Feature::Bucketize { column, edges }
            }
            FeatureSpec::OneHot { max_categories, unseen, .. } => {
                Feature::OneHot { column: column.clone(), categories: ranked(*max_categories), unseen: *unseen }
            }
            FeatureSpec::Ordinal { max_categories, unseen, .. } => {
                Feature::Ordinal { column: column.clone(), categories: ranked(*max_categories), unseen: *unseen }
            }
            FeatureSpec::Frequency { .. } => {
                let n = self.rows.max(1) as f64;
                Feature::Frequency { column, shares: self.counts.iter().map(|(k, c)| (k.clone(), c / n)).collect() }
            }
            FeatureSpec::Target { smoothing, .. } => {
                let prior = self.label_sum / self.label_rows.max(1.0);
                let means = self
                    .target
                    .iter()
                    .map(|(k, (sum, n))| (k.clone(), (sum + smoothing * prior) / (n + smoothing)))
                    .collect();
                Feature::Target { column, means, prior }
            }
            FeatureSpec::Hash { buckets, .. } => Feature::Hash { column, buckets: (*buckets).max(1) },
            FeatureSpec::DateParts { parts, .. } => Feature::DateParts { column, parts: parts.clone() },
            FeatureSpec::Cross { columns } => Feature::Cross { columns: columns.clone() },
            FeatureSpec::Tokens { max_features, idf, .. } => {
                let mut ranked: Vec<(&String, &(usize, usize))> = self.tokens.iter().collect();
                ranked.sort_by(|a, b| b.1.1.cmp(&a.1.1).then_with(|| a.0.cmp(b.0)));
                ranked.truncate(*max_features);
                ranked.sort_by(|a, b| a.0.cmp(b.0));
                let n = self.docs as f64;
                let weights =
                    idf.then(|| ranked.iter().map(|(_, (d, _))| ((1.0 + n) / (1.0 + *d as f64)).ln() + 1.0).collect());
                Feature::Tokens {
                    column,
                    vocabulary: ranked.into_iter().map(|(w, _)| w.clone()).collect(),
                    idf: weights,
                }
            }
        })
    }
}
