//! The profile of a dataset: per-column sketches updated batch by batch, and the summary read
//! off them.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Float64Array, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type, Int64Type, SchemaRef, TimeUnit};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sluice_core::rng::mix;

use crate::{FrequentItems, Hll, Kll, Moments};

/// Quantiles every numeric column reports.
pub const QUANTILES: [f64; 7] = [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99];
const HISTOGRAM_BINS: usize = 20;
const TOP_K: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("column `{column}`: {message}")]
    Column { column: String, message: String },
    #[error("cannot merge profiles: {0}")]
    Mismatch(String),
}

/// How a column is summarized.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnKind {
    /// Integers, floats and decimals: moments, quantiles, histogram.
    Numeric,
    /// Dates and timestamps, summarized as numbers of seconds since the Unix epoch.
    Temporal,
    /// Text: value frequencies.
    Categorical,
    /// `true` / `false` frequencies.
    Boolean,
    /// Anything else (lists, structs, binary): counts only.
    Other,
}

impl ColumnKind {
    pub fn of(t: &DataType) -> Self {
        match t {
            t if t.is_numeric() => ColumnKind::Numeric,
            DataType::Date32 | DataType::Date64 | DataType::Timestamp(_, _) => ColumnKind::Temporal,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => ColumnKind::Categorical,
            DataType::Dictionary(_, v) if matches!(**v, DataType::Utf8 | DataType::LargeUtf8) => {
                ColumnKind::Categorical
            }
            DataType::Boolean => ColumnKind::Boolean,
            _ => ColumnKind::Other,
        }
    }

    fn is_numeric(self) -> bool {
        matches!(self, ColumnKind::Numeric | ColumnKind::Temporal)
    }
}

/// The mergeable state of one column.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ColumnState {
    pub rows: u64,
    /// Nulls, and NaN and infinities in float columns.
    pub nulls: u64,
    pub hll: Hll,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moments: Option<Moments>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kll: Option<Kll>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freq: Option<FrequentItems>,
}

impl ColumnState {
    fn new(kind: ColumnKind) -> Self {
        let numeric = kind.is_numeric();
        let categorical = matches!(kind, ColumnKind::Categorical | ColumnKind::Boolean);
        Self {
            moments: numeric.then(Moments::default),
            kll: numeric.then(Kll::default),
            freq: categorical.then(FrequentItems::default),
            ..Self::default()
        }
    }

    fn merge(&mut self, other: &ColumnState) {
        self.rows += other.rows;
        self.nulls += other.nulls;
        self.hll.merge(&other.hll);
        if let (Some(a), Some(b)) = (&mut self.moments, &other.moments) {
            a.merge(b);
        }
        if let (Some(a), Some(b)) = (&mut self.kll, &other.kll) {
            a.merge(b);
        }
        if let (Some(a), Some(b)) = (&mut self.freq, &other.freq) {
            a.merge(b);
        }
    }

    fn update(&mut self, kind: ColumnKind, array: &ArrayRef) -> Result<(), String> {
        self.rows += array.len() as u64;
        match kind {
            ColumnKind::Numeric | ColumnKind::Temporal => {
                let floats = to_f64(array, kind)?;
                // NaN and infinities count as missing: moments, quantiles and the stored profile
                // (JSON, which has no infinity) stay finite.
                let values: Vec<f64> = floats.iter().flatten().filter(|v| v.is_finite()).collect();
                self.nulls += (array.len() - values.len()) as u64;
                for v in &values {
                    // -0.0 and 0.0 are one value.
                    self.hll.add_hash(mix((v + 0.0).to_bits()));
                }
                if let Some(m) = &mut self.moments {
                    m.add_values(&values);
                }
                if let Some(k) = &mut self.kll {
                    k.add_values(&values);
                }
            }
            ColumnKind::Categorical => {
                self.nulls += array.logical_null_count() as u64;
                // Count the batch's values first (borrowed keys, a fast hash), then add each
                // distinct value once: text columns usually repeat a few values many times.
                let decoded;
                let array = if matches!(array.data_type(), DataType::Dictionary(_, _)) {
                    decoded = cast(array, &DataType::Utf8).map_err(|e| e.to_string())?;
                    &decoded
                } else {
                    array
                };
                let mut local: HashMap<&str, u64, sluice_core::fnv::FnvBuild> = HashMap::default();
                for_each_str(array, |s| *local.entry(s).or_default() += 1)?;
                let mut distinct: Vec<(&str, u64)> = local.into_iter().collect();
                distinct.sort_unstable();
                let freq = self.freq.get_or_insert_with(FrequentItems::default);
                for (s, n) in distinct {
                    freq.add_count(s, n);
                    self.hll.add_hash(twox_hash::XxHash64::oneshot(0, s.as_bytes()));
                }
            }
            ColumnKind::Boolean => {
                let b: &BooleanArray = array.as_boolean();
                self.nulls += b.null_count() as u64;
                let freq = self.freq.get_or_insert_with(FrequentItems::default);
                for v in b.iter().flatten() {
                    freq.add(if v { "true" } else { "false" });
                    self.hll.add_hash(mix(u64::from(v)));
                }
            }
            ColumnKind::Other => self.nulls += array.logical_null_count() as u64,
        }
        Ok(())
    }
}

/// Numbers (seconds since the epoch for dates and timestamps) as f64.
pub(crate) fn to_f64(array: &ArrayRef, kind: ColumnKind) -> Result<Float64Array, String> {
    if kind == ColumnKind::Numeric {
        let f = cast(array, &DataType::Float64).map_err(|e| e.to_string())?;
        return Ok(f.as_primitive::<Float64Type>().clone());
    }
    let seconds_per_unit = match array.data_type() {
        DataType::Date32 => 86_400.0,
        DataType::Date64 => 1e-3,
        DataType::Timestamp(TimeUnit::Second, _) => 1.0,
        DataType::Timestamp(TimeUnit::Millisecond, _) => 1e-3,
        DataType::Timestamp(TimeUnit::Microsecond, _) => 1e-6,
        DataType::Timestamp(TimeUnit::Nanosecond, _) => 1e-9,
        other => return Err(format!("cannot read {other} as a time")),
    };
    let ints = cast(array, &DataType::Int64).map_err(|e| e.to_string())?;
    Ok(ints.as_primitive::<Int64Type>().unary(|v| v as f64 * seconds_per_unit))
}

/// Every non-null value of a text column (decode dictionary-encoded ones first).
fn for_each_str<'a>(array: &'a ArrayRef, f: impl FnMut(&'a str)) -> Result<(), String> {
    match array.data_type() {
        DataType::Utf8 => array.as_string::<i32>().iter().flatten().for_each(f),
        DataType::LargeUtf8 => array.as_string::<i64>().iter().flatten().for_each(f),
        DataType::Utf8View => array.as_string_view().iter().flatten().for_each(f),
        other => return Err(format!("cannot read {other} as text")),
    }
    Ok(())
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Quantile {
    pub q: f64,
    pub value: f64,
}

/// Equal-width bins between min and max (`min + (max - min) * i / 20`); bin `i` holds values in
/// `[edges[i], edges[i+1])`, the last also max (numpy's convention).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    pub edges: Vec<f64>,
    pub counts: Vec<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NumericSummary {
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    /// Sample standard deviation (ddof = 1); absent below two values.
    pub std: Option<f64>,
    pub quantiles: Vec<Quantile>,
    pub histogram: Histogram,
    /// Whether quantiles and histogram are exact (all values held) or from the KLL sketch.
    pub exact: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Frequency {
    pub value: String,
    pub count: u64,
}

/// One column: what a person reads (count .. top) and the sketches it was read from (`state`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ColumnProfile {
    pub name: String,
    pub data_type: String,
    pub kind: ColumnKind,
    /// Non-null values.
    pub count: u64,
    pub nulls: u64,
    /// Distinct non-null values: exact for text and booleans with up to 2,048 values, else a
    /// HyperLogLog estimate.
    pub distinct: u64,
    pub distinct_exact: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numeric: Option<NumericSummary>,
    /// Most frequent values (text and booleans), most frequent first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top: Option<Vec<Frequency>>,
    pub state: ColumnState,
}

impl ColumnProfile {
    fn summarize(name: String, data_type: String, kind: ColumnKind, state: ColumnState) -> Self {
        let count = state.rows - state.nulls;
        let exact_distinct = state.freq.as_ref().and_then(FrequentItems::distinct);
        let numeric = match (&state.moments, &state.kll) {
            (Some(m), Some(k)) if m.count > 0 => numeric_summary(m, k),
            _ => None,
        };
        let top = state
            .freq
            .as_ref()
            .map(|f| f.top(TOP_K).into_iter().map(|(value, count)| Frequency { value, count }).collect::<Vec<_>>());
        Self {
            name,
            data_type,
            kind,
            count,
            nulls: state.nulls,
            distinct: exact_distinct.unwrap_or_else(|| state.hll.estimate().min(count)),
            distinct_exact: exact_distinct.is_some(),
            numeric,
            top,
            state,
        }
    }

    pub fn null_fraction(&self) -> f64 {
        if self.state.rows == 0 { 0.0 } else { self.nulls as f64 / self.state.rows as f64 }
    }
}

fn numeric_summary(m: &Moments, k: &Kll) -> Option<NumericSummary> {
    let (min, max) = (m.min?, m.max?);
    let quantiles = QUANTILES.iter().zip(k.quantiles(&QUANTILES)).filter_map(|(&q, v)| Some(Quantile { q, value: v? }));
    let edges: Vec<f64> = if min == max {
        vec![min, max]
    } else {
        (0..=HISTOGRAM_BINS).map(|i| min + (max - min) * i as f64 / HISTOGRAM_BINS as f64).collect()
    };
    // The last bin is closed: it ends at max itself, so every value falls in a bin.
    let mut upper = k.ranks_below(&edges[1..]);
    if let Some(last) = upper.last_mut() {
        *last = k.count();
    }
    let mut counts = Vec::with_capacity(upper.len());
    let mut below = 0;
    for u in upper {
        counts.push(u - below.min(u));
        below = u;
    }
    Some(NumericSummary {
        min,
        max,
        mean: m.mean,
        std: m.std(),
        quantiles: quantiles.collect(),
        histogram: Histogram { edges, counts },
        exact: k.is_exact(),
    })
}

/// A dataset's profile.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub rows: u64,
    pub columns: Vec<ColumnProfile>,
}

impl Profile {
    pub fn column(&self, name: &str) -> Option<&ColumnProfile> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Add another profile of data with the same columns (a partition, a later window).
    pub fn merge(&mut self, other: &Profile) -> Result<(), ProfileError> {
        let names = |p: &Profile| p.columns.iter().map(|c| (c.name.clone(), c.kind)).collect::<Vec<_>>();
        if names(self) != names(other) {
            return Err(ProfileError::Mismatch(format!(
                "columns {:?} vs {:?}",
                self.columns.iter().map(|c| &c.name).collect::<Vec<_>>(),
                other.columns.iter().map(|c| &c.name).collect::<Vec<_>>()
            )));
        }
        self.rows += other.rows;
        for (a, b) in self.columns.iter_mut().zip(&other.columns) {
            let mut state = std::mem::take(&mut a.state);
            state.merge(&b.state);
            *a = ColumnProfile::summarize(a.name.clone(), a.data_type.clone(), a.kind, state);
        }
        Ok(())
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Plain data with finite numbers or options: serialization cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// Builds a profile batch by batch (columns in parallel).
#[derive(Clone, Debug)]
pub struct Profiler {
    schema: SchemaRef,
    kinds: Vec<ColumnKind>,
    states: Vec<ColumnState>,
    rows: u64,
}

impl Profiler {
    pub fn new(schema: SchemaRef) -> Self {
        let kinds: Vec<ColumnKind> = schema.fields().iter().map(|f| ColumnKind::of(f.data_type())).collect();
        let states = kinds.iter().map(|k| ColumnState::new(*k)).collect();
        Self { schema, kinds, states, rows: 0 }
    }

    /// Add a batch's rows, its columns profiled in parallel.
    pub fn update(&mut self, batch: &RecordBatch) -> Result<(), ProfileError> {
        self.check(batch)?;
        let columns: Vec<&ArrayRef> = batch.columns().iter().collect();
        self.states
            .par_iter_mut()
            .zip(self.kinds.par_iter())
            .zip(columns.into_par_iter())
            .zip(self.schema.fields().par_iter())
            .try_for_each(|(((state, kind), array), field)| {
                state
                    .update(*kind, array)
                    .map_err(|message| ProfileError::Column { column: field.name().clone(), message })
            })
    }

    /// [`update`](Self::update) on the calling thread alone (the same result), for a thread that
    /// must not wake the shared rayon pool — such as a server's background thread, where the
    /// pool's idle spinning would take CPU from the requests.
    pub fn update_serial(&mut self, batch: &RecordBatch) -> Result<(), ProfileError> {
        self.check(batch)?;
        for (((state, kind), array), field) in
            self.states.iter_mut().zip(&self.kinds).zip(batch.columns()).zip(self.schema.fields())
        {
            state
                .update(*kind, array)
                .map_err(|message| ProfileError::Column { column: field.name().clone(), message })?;
        }
        Ok(())
    }

    /// The batch has the profile's columns; count its rows.
    fn check(&mut self, batch: &RecordBatch) -> Result<(), ProfileError> {
        if batch.num_columns() != self.kinds.len() {
            return Err(ProfileError::Mismatch(format!(
                "batch has {} columns, profile {}",
                batch.num_columns(),
                self.kinds.len()
            )));
        }
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    pub fn finish(self) -> Profile {
        let columns = self
            .schema
            .fields()
            .iter()
            .zip(self.kinds)
            .zip(self.states)
            .map(|((f, kind), state)| {
                ColumnProfile::summarize(f.name().clone(), f.data_type().to_string(), kind, state)
            })
            .collect();
        Profile { rows: self.rows, columns }
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }
}

/// Profile batches that are already in memory.
pub fn profile_batches(schema: SchemaRef, batches: &[RecordBatch]) -> Result<Profile, ProfileError> {
    let mut p = Profiler::new(Arc::clone(&schema));
    for b in batches {
        p.update(b)?;
    }
    Ok(p.finish())
}
