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
