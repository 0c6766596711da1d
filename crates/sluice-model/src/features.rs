//! Fitted feature engineering: an ordered list of column operations, Arrow batch in, Arrow
//! batch out. Fitted at training time (`sluice-train`'s `fit_pipeline`), stored in the model
//! artifact, and applied by this code alone — in training (to validation data), batch scoring
//! and serving — so what the model sees cannot differ between them.
//!
//! Operations that rewrite a column keep its name and position (impute, scaling, `log1p`,
//! `clip`, `bucketize`, ordinal, frequency and target encoding); encoders that expand a column
//! replace it by their outputs at its position (one-hot `col=value`, hashing `col#k`, date parts
//! `col_part`, token counts / TF-IDF `col:token`); a cross adds `a_x_b` after its last input.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::{Array, ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_cast::{CastOptions, cast_with_options};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// A fitted value to fill missing entries with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Fill {
    Number(f64),
    Text(String),
}

/// What to do with a category not seen in training.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unseen {
    /// One-hot: all zeros; ordinal: -1.
    #[default]
    Ignore,
    /// Fail the batch, naming the column and the value.
    Error,
}

/// A date/time part.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DatePart {
    Year,
    Month,
    Day,
    Hour,
    Minute,
    /// Monday = 0 ... Sunday = 6.
    Dayofweek,
    /// 1 ... 366.
    Dayofyear,
}

impl DatePart {
    pub fn name(self) -> &'static str {
        match self {
            DatePart::Year => "year",
            DatePart::Month => "month",
            DatePart::Day => "day",
            DatePart::Hour => "hour",
            DatePart::Minute => "minute",
            DatePart::Dayofweek => "dayofweek",
            DatePart::Dayofyear => "dayofyear",
        }
    }
}

/// One fitted operation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Feature {
    /// Missing values (null, NaN) become `fill`.
    Impute {
        column: String,
        fill: Fill,
    },
    /// `(x - center) / scale`: standardize (mean, std), min-max (min, range), robust (median,
    /// IQR).
    Scale {
        column: String,
        center: f64,
        scale: f64,
    },
    /// `ln(1 + x)`.
    Log1p {
        column: String,
    },
    Clip {
        column: String,
        min: Option<f64>,
        max: Option<f64>,
    },
    /// The number of `edges` at or below the value (0 ... edges.len()); missing stays missing.
    Bucketize {
        column: String,
        edges: Vec<f64>,
    },
    /// One 0/1 column `column=category` per category.
    OneHot {
        column: String,
        categories: Vec<String>,
        unseen: Unseen,
    },
    /// The category's index; -1 (or an error) when unseen.
    Ordinal {
        column: String,
        categories: Vec<String>,
        unseen: Unseen,
    },
    /// The category's share of the training rows (0 when unseen).
    Frequency {
        column: String,
        shares: BTreeMap<String, f64>,
    },
    /// The smoothed mean of the label per category (`prior` when unseen or missing).
    Target {
        column: String,
        means: BTreeMap<String, f64>,
        prior: f64,
    },
    /// `buckets` 0/1 columns `column#k`: the value's FNV-1a hash picks one.
    Hash {
        column: String,
        buckets: usize,
    },
    /// Integer columns `column_<part>` (UTC).
    DateParts {
        column: String,
        parts: Vec<DatePart>,
    },
    /// A text column `a_x_b` of the inputs' values joined by `|` (missing if any is).
    Cross {
        columns: Vec<String>,
    },
    /// Lowercased alphanumeric tokens counted over `vocabulary` into `column:token` columns;
    /// with `idf`, TF-IDF weights with each row L2-normalized (scikit-learn's TfidfVectorizer).
    Tokens {
        column: String,
        vocabulary: Vec<String>,
        idf: Option<Vec<f64>>,
    },
}

impl Feature {
    /// The input columns the operation reads.
    pub fn inputs(&self) -> Vec<&str> {
        match self {
            Feature::Cross { columns } => columns.iter().map(String::as_str).collect(),
            Feature::Impute { column, .. }
            | Feature::Scale { column, .. }
            | Feature::Log1p { column }
            | Feature::Clip { column, .. }
            | Feature::Bucketize { column, .. }
            | Feature::OneHot { column, .. }
            | Feature::Ordinal { column, .. }
            | Feature::Frequency { column, .. }
            | Feature::Target { column, .. }
            | Feature::Hash { column, .. }
            | Feature::DateParts { column, .. }
            | Feature::Tokens { column, .. } => vec![column],
        }
    }
}

/// The fitted operations, applied in order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FeaturePipeline {
    pub steps: Vec<Feature>,
}

impl FeaturePipeline {
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Apply every step in order.
    pub fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let mut table = Table::from(batch);
        for step in &self.steps {
            apply_one(step, &mut table)?;
        }
        table.into_batch()
    }
}

/// Named columns being rewritten.
pub struct Table {
    pub columns: Vec<(String, ArrayRef)>,
    pub rows: usize,
}

impl From<&RecordBatch> for Table {
    fn from(batch: &RecordBatch) -> Self {
        let columns =
            batch.schema().fields().iter().zip(batch.columns()).map(|(f, c)| (f.name().clone(), c.clone())).collect();
        Self { columns, rows: batch.num_rows() }
    }
}

impl Table {
    pub fn position(&self, name: &str) -> Result<usize> {
        self.columns.iter().position(|(n, _)| n == name).ok_or_else(|| ModelError::FeatureColumn {
            column: name.to_string(),
            available: self.columns.iter().map(|(n, _)| format!("`{n}`")).collect::<Vec<_>>().join(", "),
        })
    }

    pub fn get(&self, name: &str) -> Result<&ArrayRef> {
        Ok(&self.columns[self.position(name)?].1)
    }

    pub fn replace(&mut self, name: &str, with: Vec<(String, ArrayRef)>) -> Result<()> {
        let at = self.position(name)?;
        self.columns.splice(at..=at, with);
        Ok(())
    }

    pub fn into_batch(self) -> Result<RecordBatch> {
        let fields: Vec<Field> = self.columns.iter().map(|(n, c)| Field::new(n, c.data_type().clone(), true)).collect();
        let schema = Arc::new(Schema::new(fields));
        let arrays = self.columns.into_iter().map(|(_, c)| c).collect();
        RecordBatch::try_new_with_options(
            schema,
            arrays,
            &arrow_array::RecordBatchOptions::new().with_row_count(Some(self.rows)),
        )
        .map_err(|e| ModelError::Internal(format!("building the feature batch: {e}")))
    }
}

/// A column's values as f64, NaN when missing; text is parsed and must be numbers.
pub fn numbers(name: &str, array: &ArrayRef) -> Result<Vec<f64>> {
    let dt = array.data_type();
    let err =
        || ModelError::ColumnType { column: name.to_string(), found: dt.to_string(), expected: "a number".into() };
    let options = CastOptions { safe: false, ..Default::default() };
    let cast = match dt {
        DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64 => return Err(err()),
        _ => cast_with_options(array, &DataType::Float64, &options).map_err(|_| err())?,
    };
    let f = cast.as_primitive::<Float64Type>();
    Ok((0..f.len()).map(|i| if f.is_null(i) { f64::NAN } else { f.value(i) }).collect())
}

/// A column's values as a text array, null when missing (numbers print as Rust prints them:
/// `3`, `2.5`). Iterate it for `Option<&str>` without allocating a string per value.
pub fn texts(name: &str, array: &ArrayRef) -> Result<StringArray> {
    let err = || ModelError::ColumnType {
        column: name.to_string(),
        found: array.data_type().to_string(),
        expected: "text".into(),
    };
    if array.data_type().is_floating() {
        let f = numbers(name, array)?;
        return Ok(f.into_iter().map(|x| (!x.is_nan()).then(|| format!("{x}"))).collect());
    }
    let options = CastOptions { safe: false, ..Default::default() };
    let s = cast_with_options(array, &DataType::Utf8, &options).map_err(|_| err())?;
    Ok(s.as_string::<i32>().clone())
}

/// A map from category to something, with the fast FNV hash.
pub type Index<'a, V> = HashMap<&'a str, V, sluice_core::fnv::FnvBuild>;

fn float_column(values: Vec<f64>) -> ArrayRef {
    Arc::new(values.into_iter().map(|v| (!v.is_nan()).then_some(v)).collect::<Float64Array>())
}

/// Lowercased runs of letters and digits (two characters or more, as scikit-learn's default
/// token pattern `(?u)\b\w\w+\b`, without the underscore).
pub fn tokenize(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric()).filter(|t| t.chars().count() >= 2).map(str::to_lowercase).collect()
}

/// (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Seconds since the epoch of a date or timestamp column (None when missing).
fn epoch_seconds(name: &str, array: &ArrayRef) -> Result<Vec<Option<i64>>> {
    let per_second: i64 = match array.data_type() {
        DataType::Date32 => {
            let d = array.as_primitive::<arrow_array::types::Date32Type>();
            return Ok(d.iter().map(|v| v.map(|days| days as i64 * 86_400)).collect());
        }
        DataType::Date64 => 1_000,
        DataType::Timestamp(TimeUnit::Second, _) => 1,
        DataType::Timestamp(TimeUnit::Millisecond, _) => 1_000,
        DataType::Timestamp(TimeUnit::Microsecond, _) => 1_000_000,
        DataType::Timestamp(TimeUnit::Nanosecond, _) => 1_000_000_000,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            // ISO-8601 text: parse as a timestamp.
            let options = CastOptions { safe: false, ..Default::default() };
            let ts =
                cast_with_options(array, &DataType::Timestamp(TimeUnit::Second, None), &options).map_err(|_| {
                    ModelError::ColumnType {
                        column: name.to_string(),
                        found: "text that is not a date/time".into(),
                        expected: "a date or timestamp".into(),
                    }
                })?;
            return epoch_seconds(name, &ts);
        }
        other => {
            return Err(ModelError::ColumnType {
                column: name.to_string(),
                found: other.to_string(),
                expected: "a date or timestamp".into(),
            });
        }
    };
    let ints = cast_with_options(array, &DataType::Int64, &CastOptions::default())
        .map_err(|e| ModelError::Internal(format!("reading `{name}` as integers: {e}")))?;
    let ints = ints.as_primitive::<arrow_array::types::Int64Type>();
    Ok(ints.iter().map(|v| v.map(|x| x.div_euclid(per_second))).collect())
}

fn date_part(seconds: i64, part: DatePart) -> i64 {
    let days = seconds.div_euclid(86_400);
    let in_day = seconds.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    match part {
        DatePart::Year => y,
        DatePart::Month => m as i64,
        DatePart::Day => d as i64,
        DatePart::Hour => in_day / 3600,
        DatePart::Minute => in_day % 3600 / 60,
        // 1970-01-01 was a Thursday (3 with Monday = 0).
        DatePart::Dayofweek => (days + 3).rem_euclid(7),
        DatePart::Dayofyear => {
            let jan1 = days - (1..m).map(|mm| days_in_month(y, mm)).sum::<i64>() - (d as i64 - 1);
            days - jan1 + 1
        }
    }
}

fn days_in_month(y: i64, m: u32) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

fn unseen_error(column: &str, value: &str) -> ModelError {
    ModelError::ColumnType {
        column: column.to_string(),
        found: format!("the value `{value}`, unseen in training"),
        expected: "one of the training categories (`unseen: ignore` accepts it)".into(),
    }
}

/// Apply one step to the table.
pub fn apply_one(step: &Feature, t: &mut Table) -> Result<()> {
    match step {
        Feature::Impute { column, fill } => {
            let array = t.get(column)?.clone();
            let out: ArrayRef = match fill {
                Fill::Number(v) => float_column(
                    numbers(column, &array)?.into_iter().map(|x| if x.is_nan() { *v } else { x }).collect(),
                ),
                Fill::Text(v) => {
                    Arc::new(texts(column, &array)?.iter().map(|x| Some(x.unwrap_or(v))).collect::<StringArray>())
                }
            };
            t.replace(column, vec![(column.clone(), out)])
        }
        Feature::Scale { column, center, scale } => {
            let x = numbers(column, t.get(column)?)?;
            t.replace(
                column,
                vec![(column.clone(), float_column(x.into_iter().map(|v| (v - center) / scale).collect()))],
            )
        }
        Feature::Log1p { column } => {
            let x = numbers(column, t.get(column)?)?;
            t.replace(column, vec![(column.clone(), float_column(x.into_iter().map(f64::ln_1p).collect()))])
        }
        Feature::Clip { column, min, max } => {
            let x = numbers(column, t.get(column)?)?;
            let clip = |v: f64| {
                let v = min.map_or(v, |m| if v < m { m } else { v });
                max.map_or(v, |m| if v > m { m } else { v })
            };
            t.replace(column, vec![(column.clone(), float_column(x.into_iter().map(clip).collect()))])
        }
        Feature::Bucketize { column, edges } => {
            let x = numbers(column, t.get(column)?)?;
            let b: Int64Array =
                x.into_iter().map(|v| (!v.is_nan()).then(|| edges.partition_point(|e| *e <= v) as i64)).collect();
            t.replace(column, vec![(column.clone(), Arc::new(b) as ArrayRef)])
        }
        Feature::OneHot { column, categories, unseen } => {
            let values = texts(column, t.get(column)?)?;
            let index: Index<usize> = categories.iter().enumerate().map(|(i, c)| (c.as_str(), i)).collect();
            let mut cols = vec![vec![0.0; values.len()]; categories.len()];
            for (r, v) in values.iter().enumerate() {
                match v.map(|s| (s, index.get(s))) {
                    Some((_, Some(&i))) => cols[i][r] = 1.0,
                    Some((s, None)) if *unseen == Unseen::Error => return Err(unseen_error(column, s)),
                    _ => {}
                }
            }
            let outs = categories
                .iter()
                .zip(cols)
                .map(|(c, v)| (format!("{column}={c}"), Arc::new(Float64Array::from(v)) as ArrayRef))
                .collect();
            t.replace(column, outs)
        }
        Feature::Ordinal { column, categories, unseen } => {
            let values = texts(column, t.get(column)?)?;
            let index: Index<i64> = categories.iter().enumerate().map(|(i, c)| (c.as_str(), i as i64)).collect();
            let mut out = Vec::with_capacity(values.len());
            for v in values.iter() {
                out.push(match v {
                    None => None,
                    Some(s) => match (index.get(s), unseen) {
                        (Some(i), _) => Some(*i),
                        (None, Unseen::Error) => return Err(unseen_error(column, s)),
                        (None, Unseen::Ignore) => Some(-1),
                    },
                });
            }
            t.replace(column, vec![(column.clone(), Arc::new(Int64Array::from(out)) as ArrayRef)])
        }
        Feature::Frequency { column, shares } => {
            let values = texts(column, t.get(column)?)?;
            let out = values.iter().map(|v| v.map_or(0.0, |s| shares.get(s).copied().unwrap_or(0.0))).collect();
            t.replace(column, vec![(column.clone(), float_column(out))])
        }
        Feature::Target { column, means, prior } => {
            let values = texts(column, t.get(column)?)?;
            let out = values.iter().map(|v| v.and_then(|s| means.get(s).copied()).unwrap_or(*prior)).collect();
            t.replace(column, vec![(column.clone(), float_column(out))])
        }
        Feature::Hash { column, buckets } => {
            let values = texts(column, t.get(column)?)?;
            let mut cols = vec![vec![0.0; values.len()]; *buckets];
            for (r, v) in values.iter().enumerate() {
                if let Some(s) = v {
                    cols[(sluice_core::fnv::fnv1a(s.as_bytes()) % *buckets as u64) as usize][r] = 1.0;
                }
            }
            let outs = cols
                .into_iter()
                .enumerate()
                .map(|(k, v)| (format!("{column}#{k}"), Arc::new(Float64Array::from(v)) as ArrayRef))
                .collect();
            t.replace(column, outs)
        }
        Feature::DateParts { column, parts } => {
            let seconds = epoch_seconds(column, t.get(column)?)?;
            let outs = parts
                .iter()
                .map(|p| {
                    let v: Int64Array = seconds.iter().map(|s| s.map(|s| date_part(s, *p))).collect();
                    (format!("{column}_{}", p.name()), Arc::new(v) as ArrayRef)
                })
                .collect();
            t.replace(column, outs)
        }
        Feature::Cross { columns } => {
            let mut parts = Vec::new();
            for c in columns {
                parts.push(texts(c, t.get(c)?)?);
            }
            let out: StringArray = (0..t.rows)
                .map(|r| {
                    parts
                        .iter()
                        .map(|p| (!p.is_null(r)).then(|| p.value(r)))
                        .collect::<Option<Vec<&str>>>()
                        .map(|v| v.join("|"))
                })
                .collect();
            let last =
                columns.iter().map(|c| t.position(c)).collect::<Result<Vec<_>>>()?.into_iter().max().unwrap_or(0);
            t.columns.insert(last + 1, (columns.join("_x_"), Arc::new(out) as ArrayRef));
            Ok(())
        }
        Feature::Tokens { column, vocabulary, idf } => {
            let values = texts(column, t.get(column)?)?;
            let index: Index<usize> = vocabulary.iter().enumerate().map(|(i, w)| (w.as_str(), i)).collect();
            let mut cols = vec![vec![0.0; values.len()]; vocabulary.len()];
            for (r, v) in values.iter().enumerate() {
                for token in v.map(tokenize).unwrap_or_default() {
                    if let Some(&i) = index.get(token.as_str()) {
                        cols[i][r] += 1.0;
                    }
                }
                if let Some(idf) = idf {
                    let mut norm = 0.0;
                    for (i, w) in idf.iter().enumerate() {
                        cols[i][r] *= w;
                        norm += cols[i][r] * cols[i][r];
                    }
                    if norm > 0.0 {
                        let norm = norm.sqrt();
                        cols.iter_mut().for_each(|c| c[r] /= norm);
                    }
                }
            }
            let outs = vocabulary
                .iter()
                .zip(cols)
                .map(|(w, v)| (format!("{column}:{w}"), Arc::new(Float64Array::from(v)) as ArrayRef))
                .collect();
            t.replace(column, outs)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_parts_match_known_dates() {
        // 2013-01-01 00:00 UTC was a Tuesday; 2024-12-31 is day 366 of a leap year.
        let s = 1_356_998_400;
        assert_eq!(date_part(s, DatePart::Year), 2013);
        assert_eq!(date_part(s, DatePart::Dayofweek), 1);
        let end = 1_735_603_200 + 13 * 3600 + 25 * 60;
        assert_eq!(
            [DatePart::Year, DatePart::Month, DatePart::Day, DatePart::Hour, DatePart::Minute, DatePart::Dayofyear]
                .map(|p| date_part(end, p)),
            [2024, 12, 31, 13, 25, 366]
        );
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(tokenize("Hello, wide-World a 42"), vec!["hello", "wide", "world", "42"]);
    }
}
