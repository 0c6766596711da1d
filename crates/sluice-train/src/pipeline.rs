//! Fitting feature engineering on the training rows: each step is fitted on the output of the
//! steps before it (as a scikit-learn `Pipeline`), then applied with `sluice_model`'s code.
//! Target encoding is the exception that makes fitting return the training table as well: the
//! training rows get out-of-fold encodings (each row's value fitted on the other folds) so the
//! model never sees a label through its own feature; the stored encoding uses all rows.

use std::collections::{BTreeMap, HashMap};

use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};
use sluice_core::rng::SplitMix64;
use sluice_model::features::{Index, Table, apply_one, numbers, texts, tokenize};
use sluice_model::{DatePart, Feature, FeaturePipeline, Fill, Unseen};

use crate::error::{Result, TrainError};

/// How to fill missing values.
#[derive(Clone, Debug, PartialEq)]
pub enum Impute {
    Mean,
    Median,
    MostFrequent,
    Constant(String),
}

/// What to fit, one column at a time (a cross reads several).
#[derive(Clone, Debug, PartialEq)]
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

fn present(values: &[f64]) -> Vec<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    v.sort_by(f64::total_cmp);
    v
}

/// Categories by count (most frequent first, ties by value), at most `max`; then sorted by value.
fn top_categories(values: &StringArray, max: usize) -> Vec<String> {
    let mut counts: Index<u64> = Index::default();
    for v in values.iter().flatten() {
        *counts.entry(v).or_default() += 1;
    }
    let mut ranked: Vec<(&str, u64)> = counts.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let mut keep: Vec<String> = ranked.into_iter().take(max).map(|(v, _)| v.to_string()).collect();
    keep.sort();
    keep
}

/// Per-category smoothed label means: (sum + smoothing * prior) / (n + smoothing).
fn target_means(values: &StringArray, y: &[f64], rows: &[usize], prior: f64, smoothing: f64) -> BTreeMap<String, f64> {
    let mut acc: Index<(f64, f64)> = Index::default();
    for &r in rows {
        if !values.is_null(r) {
            let e = acc.entry(values.value(r)).or_default();
            e.0 += y[r];
            e.1 += 1.0;
        }
    }
    acc.into_iter().map(|(k, (sum, n))| (k.to_string(), (sum + smoothing * prior) / (n + smoothing))).collect()
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

/// One step: the fitted feature, and for target encoding the out-of-fold training values.
fn fit_one(spec: &FeatureSpec, t: &Table, label: &str, seed: u64) -> Result<(Feature, OutOfFold)> {
    let nums = |c: &str| -> Result<Vec<f64>> { Ok(numbers(c, t.get(c)?)?) };
    let strs = |c: &str| -> Result<StringArray> { Ok(texts(c, t.get(c)?)?) };
    let scale = |column: &String, center: f64, scale: f64| Feature::Scale {
        column: column.clone(),
        center: if center.is_finite() { center } else { 0.0 },
        scale: if scale.is_finite() && scale > 0.0 { scale } else { 1.0 },
    };
    Ok((
        match spec {
            FeatureSpec::Impute { column, strategy } => {
                let text = !matches!(t.get(column)?.data_type(), dt if dt.is_numeric());
                let fill = match strategy {
                    Impute::Mean | Impute::Median if text => {
                        return Err(invalid(
                            column,
                            "`mean`/`median` need a numeric column; use `most_frequent` or `constant`",
                        ));
                    }
                    Impute::Mean => {
                        let v = present(&nums(column)?);
                        Fill::Number(if v.is_empty() { 0.0 } else { v.iter().sum::<f64>() / v.len() as f64 })
                    }
                    Impute::Median => Fill::Number(quantile(&present(&nums(column)?), 0.5)),
                    Impute::MostFrequent if text => {
                        Fill::Text(top_categories(&strs(column)?, 1).pop().unwrap_or_default())
                    }
                    Impute::MostFrequent => {
                        // The most frequent value; ties go to the smallest.
                        let v = present(&nums(column)?);
                        let mut best = (0usize, f64::NAN);
                        let mut i = 0;
                        while i < v.len() {
                            let j = v[i..].iter().take_while(|x| **x == v[i]).count();
                            if j > best.0 {
                                best = (j, v[i]);
                            }
                            i += j;
                        }
                        Fill::Number(if best.1.is_nan() { 0.0 } else { best.1 })
                    }
                    Impute::Constant(value) if text => Fill::Text(value.clone()),
                    Impute::Constant(value) => Fill::Number(
                        value.parse().map_err(|_| invalid(column, format!("`value: {value}` is not a number")))?,
                    ),
                };
                Feature::Impute { column: column.clone(), fill }
            }
            FeatureSpec::Standardize { column } => {
                let v = present(&nums(column)?);
                let n = v.len().max(1) as f64;
                let mean = v.iter().sum::<f64>() / n;
                // Population standard deviation, as scikit-learn's StandardScaler.
                let std = (v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n).sqrt();
                scale(column, mean, std)
            }
            FeatureSpec::MinMax { column } => {
                let v = present(&nums(column)?);
                let (lo, hi) = (v.first().copied().unwrap_or(0.0), v.last().copied().unwrap_or(1.0));
                scale(column, lo, hi - lo)
            }
            FeatureSpec::Robust { column } => {
                let v = present(&nums(column)?);
                scale(column, quantile(&v, 0.5), quantile(&v, 0.75) - quantile(&v, 0.25))
            }
            FeatureSpec::Log1p { column } => {
                nums(column)?;
                Feature::Log1p { column: column.clone() }
            }
            FeatureSpec::Clip { column, min, max } => {
                nums(column)?;
                Feature::Clip { column: column.clone(), min: *min, max: *max }
            }
            FeatureSpec::Bucketize { column, quantiles, bins } => {
                let v = present(&nums(column)?);
                let mut edges = match (quantiles, bins) {
                    (_, Some(b)) => b.clone(),
                    (Some(k), None) => (1..*k).map(|i| quantile(&v, i as f64 / *k as f64)).collect(),
                    (None, None) => return Err(invalid(column, "bucketize needs `quantiles` or `bins`")),
                };
                edges.dedup();
                Feature::Bucketize { column: column.clone(), edges }
            }
            FeatureSpec::OneHot { column, max_categories, unseen } => Feature::OneHot {
                column: column.clone(),
                categories: top_categories(&strs(column)?, *max_categories),
                unseen: *unseen,
            },
            FeatureSpec::Ordinal { column, max_categories, unseen } => Feature::Ordinal {
                column: column.clone(),
                categories: top_categories(&strs(column)?, *max_categories),
                unseen: *unseen,
            },
            FeatureSpec::Frequency { column } => {
                let values = strs(column)?;
                let n = values.len().max(1) as f64;
                let mut local: Index<f64> = Index::default();
                for v in values.iter().flatten() {
                    *local.entry(v).or_default() += 1.0;
                }
                let counts: BTreeMap<String, f64> = local.into_iter().map(|(k, c)| (k.to_string(), c / n)).collect();
                Feature::Frequency { column: column.clone(), shares: counts }
            }
            FeatureSpec::Target { column, folds, smoothing } => {
                let values = strs(column)?;
                let y = numbers(
                    label,
                    t.get(label).map_err(|_| invalid(column, format!("target encoding needs the label `{label}`")))?,
                )
                .map_err(|_| {
                    invalid(column, format!("target encoding needs a numeric or boolean label; `{label}` is not"))
                })?;
                let known: Vec<usize> = (0..y.len()).filter(|&r| !y[r].is_nan()).collect();
                let prior = known.iter().map(|&r| y[r]).sum::<f64>() / known.len().max(1) as f64;
                let means = target_means(&values, &y, &known, prior, *smoothing);
                // Out of fold: each training row is encoded by the other folds' rows.
                let k = (*folds).max(2);
                let mut rng = SplitMix64::new(seed ^ 0x7a46_e7ec);
                let fold: Vec<usize> = (0..y.len()).map(|_| rng.below(k)).collect();
                let mut oof = vec![prior; y.len()];
                for f in 0..k {
                    let others: Vec<usize> = known.iter().copied().filter(|&r| fold[r] != f).collect();
                    let p = others.iter().map(|&r| y[r]).sum::<f64>() / others.len().max(1) as f64;
                    let m = target_means(&values, &y, &others, p, *smoothing);
                    for r in (0..y.len()).filter(|&r| fold[r] == f) {
                        let v = (!values.is_null(r)).then(|| values.value(r));
                        oof[r] = v.and_then(|v| m.get(v).copied()).unwrap_or(p);
                    }
                }
                return Ok((Feature::Target { column: column.clone(), means, prior }, Some((column.clone(), oof))));
            }
            FeatureSpec::Hash { column, buckets } => {
                strs(column)?;
                Feature::Hash { column: column.clone(), buckets: (*buckets).max(1) }
            }
            FeatureSpec::DateParts { column, parts } => {
                t.get(column)?;
                Feature::DateParts { column: column.clone(), parts: parts.clone() }
            }
            FeatureSpec::Cross { columns } => {
                for c in columns {
                    strs(c)?;
                }
                Feature::Cross { columns: columns.clone() }
            }
            FeatureSpec::Tokens { column, max_features, idf } => {
                let docs: Vec<Vec<String>> =
                    strs(column)?.iter().map(|v| v.map(tokenize).unwrap_or_default()).collect();
                // Document and total counts per token; the vocabulary is the `max_features` most
                // frequent tokens over all documents (scikit-learn's rule), ties by token.
                let mut counts: HashMap<&str, (usize, usize)> = HashMap::new();
                for d in &docs {
                    let mut seen: Vec<&str> = d.iter().map(String::as_str).collect();
                    for w in &seen {
                        counts.entry(w).or_default().1 += 1;
                    }
                    seen.sort_unstable();
                    seen.dedup();
                    for w in seen {
                        counts.entry(w).or_default().0 += 1;
                    }
                }
                let mut ranked: Vec<(&str, (usize, usize))> = counts.into_iter().collect();
                ranked.sort_by(|a, b| b.1.1.cmp(&a.1.1).then_with(|| a.0.cmp(b.0)));
                ranked.truncate(*max_features);
                ranked.sort_by(|a, b| a.0.cmp(b.0));
                let n = docs.len() as f64;
                // scikit-learn's smooth IDF: ln((1 + n) / (1 + df)) + 1.
                let weights =
                    idf.then(|| ranked.iter().map(|(_, (d, _))| ((1.0 + n) / (1.0 + *d as f64)).ln() + 1.0).collect());
                Feature::Tokens {
                    column: column.clone(),
                    vocabulary: ranked.into_iter().map(|(w, _)| w.to_string()).collect(),
                    idf: weights,
                }
            }
        },
        None,
    ))
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

/// What one spec needs to see of the data, gathered batch by batch: exact moments and counts,
/// and a KLL sketch for medians and quantiles (within about 1% of rank).
pub struct Accumulator {
    spec: FeatureSpec,
    moments: sluice_profile::Moments,
    kll: sluice_profile::Kll,
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
    pub fn new(spec: FeatureSpec) -> Self {
        Self {
            spec,
            moments: Default::default(),
            kll: Default::default(),
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
        let numeric = |t: &Table| -> Result<Vec<f64>> {
            Ok(numbers(&column, t.get(&column)?)?.into_iter().filter(|x| !x.is_nan()).collect())
        };
        match &self.spec {
            FeatureSpec::Impute { strategy, .. } => {
                self.text = !t.get(&column)?.data_type().is_numeric();
                match (strategy, self.text) {
                    (Impute::Mean, false) => self.moments.add_values(&numeric(t)?),
                    (Impute::Median, false) => self.kll.add_values(&numeric(t)?),
                    (Impute::MostFrequent, _) => {
                        for v in texts(&column, t.get(&column)?)?.iter().flatten() {
                            *self.counts.entry(v.to_string()).or_default() += 1.0;
                        }
                    }
                    _ => {}
                }
            }
            FeatureSpec::Standardize { .. } | FeatureSpec::MinMax { .. } => self.moments.add_values(&numeric(t)?),
            FeatureSpec::Robust { .. } | FeatureSpec::Bucketize { .. } => self.kll.add_values(&numeric(t)?),
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
                let y = numbers(label, t.get(label)?)?;
                for (r, y) in y.iter().enumerate() {
                    if y.is_nan() {
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

    /// The fitted feature.
    pub fn finish(self) -> Result<Feature> {
        let column = spec_column(&self.spec).to_string();
        let m = &self.moments;
        let scale = |center: f64, scale: f64| Feature::Scale {
            column: column.clone(),
            center: if center.is_finite() { center } else { 0.0 },
            scale: if scale.is_finite() && scale > 0.0 { scale } else { 1.0 },
        };
        let q = |p: f64| self.kll.quantile(p).unwrap_or(0.0);
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
                    (Impute::Median, false) => Fill::Number(q(0.5)),
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
            FeatureSpec::Robust { .. } => scale(q(0.5), q(0.75) - q(0.25)),
            FeatureSpec::Log1p { .. } => Feature::Log1p { column },
            FeatureSpec::Clip { min, max, .. } => Feature::Clip { column, min: *min, max: *max },
            FeatureSpec::Bucketize { quantiles, bins, .. } => {
                let mut edges = match (quantiles, bins) {
                    (_, Some(b)) => b.clone(),
                    (Some(k), None) => (1..*k).map(|i| q(i as f64 / *k as f64)).collect(),
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
