//! The functions sluice adds to DataFusion. One list, registered alike on a local context, on a
//! Ballista client, on the scheduler (which plans with them) and on every executor (which runs
//! them): a function missing from any of the three fails the query there.
//!
//! `sluice_linear_pass(config, label, feature...)` is one pass of Newton's method for a linear
//! model: per partition, each batch's rows go through the model's fitted transforms (the same
//! code that scores at inference) and the loss, gradient and Hessian at the config's weights are
//! summed ([`sluice_train::accumulate`]); partitions' sums are merged into one. The config
//! (JSON: transforms, weights, objective) is passed as a dictionary-encoded literal, so each
//! batch carries it once rather than once per row.
//!
//! `sluice_moments(x1, ..., xk)` is, per argument, the count, mean and sum of squared
//! deviations of its values (as Float64; nulls and NaN skipped): Welford's update in row order
//! within a partition, as in-process fitting does, and Chan's merge across partitions.
//!
//! `sluice_profile(c1, ..., ck)` is the statistics profile of its columns (named as the
//! arguments' fields; [`sluice_profile::Profile`] as JSON bytes): each partition streams its
//! batches through a [`sluice_profile::Profiler`], partitions' profiles are merged.
//!
//! `sluice_fit(config, c1, ..., ck)` gathers what fitting a stage of feature transforms needs
//! (moments, quantile sketches, category, target and token counts; [`sluice_train::Accumulator`]),
//! after the config's already fitted stages. It returns the partitions' states unmerged, as a
//! JSON list (one entry per partition that saw rows, each a list of its specs' partials); the
//! client, which has the specs, merges them in that order.
//!
//! All four add partitions' states in one canonical order (by their bytes), not in the order
//! tasks happened to finish, so the result is the same on every run. (DataFusion's own `avg` and
//! `var_pop` merge in arrival order, which changes the last bits.)

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, RecordBatchOptions};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type, Schema};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility};
use datafusion::prelude::SessionContext;
use serde::{Deserialize, Serialize};
use sluice_model::Transform;
use sluice_train::{Objective, PassSums};

/// The name SQL and plans use for [`linear_pass`].
pub const LINEAR_PASS: &str = "sluice_linear_pass";

/// The name SQL and plans use for [`moments`].
pub const MOMENTS: &str = "sluice_moments";

/// The name SQL and plans use for [`profile`].
pub const PROFILE: &str = "sluice_profile";

/// The name SQL and plans use for [`fit`].
pub const FIT: &str = "sluice_fit";

/// One of sluice's aggregates: variadic, returning (and shipping between partitions) bytes; they
/// differ only in name, state name and accumulator.
#[derive(Debug)]
pub struct SluiceAggregate {
    name: &'static str,
    state: &'static str,
    signature: Signature,
    accumulator: fn(&AccumulatorArgs) -> Result<Box<dyn Accumulator>>,
}

// One function per name, as DataFusion identifies them.
impl PartialEq for SluiceAggregate {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for SluiceAggregate {}

impl std::hash::Hash for SluiceAggregate {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl SluiceAggregate {
    fn udf(
        name: &'static str,
        state: &'static str,
        accumulator: fn(&AccumulatorArgs) -> Result<Box<dyn Accumulator>>,
    ) -> AggregateUDF {
        AggregateUDF::from(Self { name, state, signature: Signature::variadic_any(Volatility::Immutable), accumulator })
    }
}

impl AggregateUDFImpl for SluiceAggregate {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Binary)
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        (self.accumulator)(&args)
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(format_state_name(args.name, self.state), DataType::Binary, true))])
    }
}

/// `sluice_linear_pass(config, label, feature...)`.
pub fn linear_pass() -> AggregateUDF {
    SluiceAggregate::udf(LINEAR_PASS, "sums", |_| Ok(Box::<PassAccumulator>::default()))
}

/// `sluice_moments(x...)`.
pub fn moments() -> AggregateUDF {
    SluiceAggregate::udf(MOMENTS, "moments", |args| {
        let own = vec![sluice_profile::Moments::default(); args.exprs.len()];
        Ok(Box::new(MomentsAccumulator { own, parts: Vec::new() }))
    })
}

/// `sluice_profile(column...)`.
pub fn profile() -> AggregateUDF {
    SluiceAggregate::udf(PROFILE, "profile", |args| {
        let schema = Arc::new(Schema::new(args.expr_fields.to_vec()));
        let profiler = sluice_profile::Profiler::new(schema.clone());
        Ok(Box::new(ProfileAccumulator { profiler, schema, parts: Vec::new() }))
    })
}

/// `sluice_fit(config, column...)`.
pub fn fit() -> AggregateUDF {
    SluiceAggregate::udf(FIT, "partials", |args| {
        let fields = args.expr_fields.get(1..).unwrap_or_default().to_vec();
        Ok(Box::new(FitAccumulator { schema: Arc::new(Schema::new(fields)), own: None, parts: Vec::new() }))
    })
}

/// Every aggregate function sluice adds.
pub fn aggregate_functions() -> Vec<Arc<AggregateUDF>> {
    vec![Arc::new(fit()), Arc::new(linear_pass()), Arc::new(moments()), Arc::new(profile())]
}

/// A failure inside one of sluice's aggregates, naming it.
fn failed(function: &str, message: impl std::fmt::Display) -> DataFusionError {
    DataFusionError::Execution(format!("{function}: {message}"))
}

/// The partial states another partition shipped (the one binary state column).
fn binary_states<'a>(function: &str, states: &'a [ArrayRef]) -> Result<impl Iterator<Item = &'a [u8]>> {
    let binary = match states.first() {
        Some(s) => Some(s.as_binary_opt::<i32>().ok_or_else(|| failed(function, "state is not binary"))?),
        None => None,
    };
    Ok(binary.into_iter().flat_map(|b| b.iter().flatten()))
}

/// Add sluice's functions to a context (local, or a Ballista client after its upgrade).
pub fn register(ctx: &SessionContext) {
    for f in aggregate_functions() {
        ctx.register_udaf((*f).clone());
    }
}

/// Add sluice's functions to any registry (a scheduler's session state, an executor's
/// function registry).
pub fn register_in(registry: &mut dyn FunctionRegistry) -> Result<()> {
    for f in aggregate_functions() {
        registry.register_udaf(f)?;
    }
    Ok(())
}

/// What one pass computes: at `beta`, through `transforms`, for `objective`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PassConfig {
    pub logistic: bool,
    pub intercept: bool,
    pub hessian: bool,
    pub beta: Vec<f64>,
    pub transforms: Vec<Transform>,
    /// The feature columns, in argument order after the label.
    pub columns: Vec<String>,
}

impl PassConfig {
    /// The literal to pass as the first argument.
    pub fn literal(&self) -> Result<ScalarValue> {
        json_literal(self)
    }

    fn objective(&self) -> Objective {
        if self.logistic { Objective::Logistic } else { Objective::SquaredError }
    }
}

#[derive(Debug, Default)]
struct PassAccumulator {
    /// Read from the first batch's config argument.
    config: Option<(PassConfig, Arc<Schema>)>,
    /// This partition's rows, summed in batch order.
    sums: PassSums,
    /// Other partitions' sums, as they arrived.
    parts: Vec<PassSums>,
}

impl PassAccumulator {
    /// Every partition's sums added in one canonical order (by their bytes), not in the order
    /// tasks happened to finish: the total, and so the model, is the same on every run, and the
    /// same on a cluster as in-process when the data splits into the same partitions.
    fn total(&self) -> PassSums {
        let mut all: Vec<(Vec<u8>, &PassSums)> =
            self.parts.iter().chain([&self.sums]).map(|p| (p.to_bytes(), p)).collect();
        all.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut total = PassSums::default();
        for (_, part) in all {
            total.merge(part);
        }
        total
    }
}

/// A JSON config passed as the first argument (a literal: read from the first row).
fn read_json<T: serde::de::DeserializeOwned>(function: &str, array: &ArrayRef) -> Result<T> {
    let text = match ScalarValue::try_from_array(array, 0)? {
        ScalarValue::Dictionary(_, inner) => *inner,
        other => other,
    };
    let (ScalarValue::Utf8(Some(json)) | ScalarValue::LargeUtf8(Some(json)) | ScalarValue::Utf8View(Some(json))) = text
    else {
        return Err(failed(function, format!("the first argument must be a JSON config, got {text:?}")));
    };
    serde_json::from_str(&json).map_err(|e| failed(function, format!("config: {e}")))
}

/// A literal for a JSON config argument: dictionary-encoded, so a batch carries it once.
fn json_literal(config: &impl Serialize) -> Result<ScalarValue> {
    let json = serde_json::to_string(config).map_err(|e| DataFusionError::Internal(e.to_string()))?;
    Ok(ScalarValue::Dictionary(Box::new(DataType::Int32), Box::new(ScalarValue::Utf8(Some(json)))))
}

impl Accumulator for PassAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        if values.first().is_none_or(|v| v.is_empty()) {
            return Ok(());
        }
        if self.config.is_none() {
            let config: PassConfig = read_json(LINEAR_PASS, &values[0])?;
            if values.len() != config.columns.len() + 2 {
                return Err(failed(
                    LINEAR_PASS,
                    format!(
                        "{} arguments for {} feature columns (expected config, label, features)",
                        values.len(),
                        config.columns.len()
                    ),
                ));
            }
            let fields: Vec<Field> = config
                .columns
                .iter()
                .zip(&values[2..])
                .map(|(name, array)| Field::new(name, array.data_type().clone(), true))
                .collect();
            self.config = Some((config, Arc::new(Schema::new(fields))));
        }
        let Some((config, schema)) = &self.config else { return Ok(()) };
        let rows = RecordBatchOptions::new().with_row_count(Some(values[1].len()));
        let batch = RecordBatch::try_new_with_options(schema.clone(), values[2..].to_vec(), &rows)?;
        let x = sluice_model::design_matrix(&config.transforms, &batch).map_err(|e| failed(LINEAR_PASS, e))?;
        let label = datafusion::arrow::compute::cast(&values[1], &DataType::Float64)?;
        if label.null_count() > 0 {
            return Err(failed(LINEAR_PASS, format!("{} missing labels", label.null_count())));
        }
        let y = label.as_primitive::<Float64Type>().values();
        if config.logistic
            && let Some(bad) = y.iter().find(|v| **v != 0.0 && **v != 1.0)
        {
            return Err(failed(LINEAR_PASS, format!("label value {bad} is not 0 or 1")));
        }
        // Serial: this runs on an async worker thread, one of many partitions in parallel.
        let sums =
            sluice_train::accumulate(&x, y, &config.beta, config.objective(), config.intercept, config.hessian, false);
        self.sums.merge(&sums);
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Binary(Some(self.total().to_bytes())))
    }

    fn size(&self) -> usize {
        let sums = |p: &PassSums| 8 * (p.grad.capacity() + p.hess.capacity()) + std::mem::size_of::<PassSums>();
        std::mem::size_of_val(self) + sums(&self.sums) + self.parts.iter().map(sums).sum::<usize>()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.evaluate()?])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        for bytes in binary_states(LINEAR_PASS, states)? {
            self.parts.push(PassSums::from_bytes(bytes).map_err(|e| failed(LINEAR_PASS, e))?);
        }
        Ok(())
    }
}

/// Decode a [`moments`] result: count, mean and sum of squared deviations per argument (no
/// min or max).
pub fn decode_moments(bytes: &[u8]) -> Result<Vec<sluice_profile::Moments>> {
    if !bytes.len().is_multiple_of(24) {
        return Err(failed(MOMENTS, format!("malformed state ({} bytes)", bytes.len())));
    }
    let f = |c: &[u8]| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
    Ok(bytes
        .chunks_exact(24)
        .map(|c| sluice_profile::Moments {
            count: f(&c[..8]) as u64,
            mean: f(&c[8..16]),
            m2: f(&c[16..]),
            ..Default::default()
        })
        .collect())
}

fn encode_moments(states: &[sluice_profile::Moments]) -> Vec<u8> {
    states.iter().flat_map(|m| [m.count as f64, m.mean, m.m2]).flat_map(f64::to_le_bytes).collect()
}

#[derive(Debug)]
struct MomentsAccumulator {
    own: Vec<sluice_profile::Moments>,
    parts: Vec<Vec<u8>>,
}

impl Accumulator for MomentsAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        for (state, array) in self.own.iter_mut().zip(values) {
            let array = datafusion::arrow::compute::cast(array, &DataType::Float64)?;
            // In row order, as `sluice_train::fit_transforms` does in-process.
            // (Welford's update; `Moments::merge` is Chan's for the partitions.)
            for v in array.as_primitive::<Float64Type>().iter().flatten().filter(|v| !v.is_nan()) {
                state.count += 1;
                let delta = v - state.mean;
                state.mean += delta / state.count as f64;
                state.m2 += delta * (v - state.mean);
            }
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let mut all: Vec<&[u8]> = self.parts.iter().map(Vec::as_slice).collect();
        let own = encode_moments(&self.own);
        all.push(&own);
        all.sort_unstable();
        let mut total: Vec<sluice_profile::Moments> = Vec::new();
        for bytes in all {
            let states = decode_moments(bytes)?;
            if total.len() < states.len() {
                total.resize(states.len(), sluice_profile::Moments::default());
            }
            for (t, w) in total.iter_mut().zip(states) {
                t.merge(&w);
            }
        }
        Ok(ScalarValue::Binary(Some(encode_moments(&total))))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + 24 * self.own.capacity() + self.parts.iter().map(Vec::capacity).sum::<usize>()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.evaluate()?])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.parts.extend(binary_states(MOMENTS, states)?.map(<[u8]>::to_vec));
        Ok(())
    }
}

#[derive(Debug)]
struct ProfileAccumulator {
    schema: Arc<Schema>,
    /// This partition's batches.
    profiler: sluice_profile::Profiler,
    /// Other partitions' profiles (JSON), as they arrived.
    parts: Vec<Vec<u8>>,
}

impl ProfileAccumulator {
    /// This partition's profile and every merged one, non-empty ones merged in the order of their
    /// bytes (the first is the base, so a lone profile comes out as it went in).
    fn total(&self) -> Result<Vec<u8>> {
        let own = self.profiler.clone().finish().to_json();
        let mut all: Vec<&[u8]> = self.parts.iter().map(Vec::as_slice).chain([own.as_slice()]).collect();
        all.sort_unstable();
        let mut total: Option<sluice_profile::Profile> = None;
        for bytes in all {
            let part = sluice_profile::Profile::from_json(bytes).map_err(|e| failed(PROFILE, e))?;
            match &mut total {
                None => total = Some(part),
                Some(t) if t.rows == 0 => *t = part,
                Some(t) if part.rows > 0 => t.merge(&part).map_err(|e| failed(PROFILE, e))?,
                Some(_) => {}
            }
        }
        Ok(total.map(|t| t.to_json()).unwrap_or(own))
    }
}

impl Accumulator for ProfileAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let rows = RecordBatchOptions::new().with_row_count(Some(values.first().map_or(0, |v| v.len())));
        let batch = RecordBatch::try_new_with_options(self.schema.clone(), values.to_vec(), &rows)?;
        self.profiler.update(&batch).map_err(|e| failed(PROFILE, e))
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Binary(Some(self.total()?)))
    }

    fn size(&self) -> usize {
        // The sketches are bounded (KLL, Misra-Gries at 2,048 values, 4 KiB HyperLogLog); count
        // each column at that bound rather than walking them.
        std::mem::size_of_val(self)
            + self.schema.fields().len() * 64 * 1024
            + self.parts.iter().map(Vec::capacity).sum::<usize>()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.evaluate()?])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.parts.extend(binary_states(PROFILE, states)?.map(<[u8]>::to_vec));
        Ok(())
    }
}

/// What a [`fit`] aggregate fits: `specs` (one stage), on the rows after `fitted` (the earlier
/// stages); `label` for target encoding.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FitConfig {
    pub specs: Vec<sluice_train::FeatureSpec>,
    pub fitted: sluice_model::FeaturePipeline,
    pub label: String,
}

impl FitConfig {
    /// The literal to pass as the first argument.
    pub fn literal(&self) -> Result<ScalarValue> {
        json_literal(self)
    }
}

#[derive(Debug)]
struct FitAccumulator {
    schema: Arc<Schema>,
    /// Set by the first batch: the config, and one accumulator per spec.
    own: Option<(FitConfig, Vec<sluice_train::Accumulator>)>,
    /// Other partitions' states (JSON), as they arrived.
    parts: Vec<String>,
}

impl FitAccumulator {
    /// Every partition's state (each a JSON list of its specs' partials, in spec order): the
    /// partitions that saw rows, in the order of their bytes, as a JSON list. The client merges
    /// them in that order ([`sluice_train::Accumulator::merge_partial`]), so the fit is the same
    /// on every run and engine.
    fn states(&self) -> Vec<u8> {
        let own = self.own.as_ref().map(|(_, accumulators)| {
            let partials: Vec<String> =
                accumulators.iter().map(|a| String::from_utf8_lossy(&a.partial()).into_owned()).collect();
            format!("[{}]", partials.join(","))
        });
        let mut all: Vec<&str> = self.parts.iter().map(String::as_str).chain(own.as_deref()).collect();
        all.sort_unstable();
        format!("[{}]", all.join(",")).into_bytes()
    }
}

impl Accumulator for FitAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        if values.first().is_none_or(|v| v.is_empty()) {
            return Ok(());
        }
        if self.own.is_none() {
            let config: FitConfig = read_json(FIT, &values[0])?;
            let accumulators = config.specs.iter().cloned().map(sluice_train::Accumulator::new).collect();
            self.own = Some((config, accumulators));
        }
        let Some((config, accumulators)) = &mut self.own else { return Ok(()) };
        let rows = RecordBatchOptions::new().with_row_count(Some(values[0].len()));
        let batch = RecordBatch::try_new_with_options(self.schema.clone(), values[1..].to_vec(), &rows)?;
        let batch = config.fitted.apply(&batch).map_err(|e| failed(FIT, e))?;
        let table = sluice_model::features::Table::from(&batch);
        for a in accumulators.iter_mut() {
            a.update(&table, &config.label).map_err(|e| failed(FIT, e))?;
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Binary(Some(self.states())))
    }

    fn size(&self) -> usize {
        // Sketches are bounded; category and token counts are not, but are read only when
        // states are shipped.
        std::mem::size_of_val(self)
            + self.own.as_ref().map_or(0, |(c, _)| c.specs.len() * 64 * 1024)
            + self.parts.iter().map(String::capacity).sum::<usize>()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.evaluate()?])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        for bytes in binary_states(FIT, states)? {
            // Written by `states`; read back and written again, a state is the same bytes
            // (serde_json keeps key order and writes the floats it read exactly).
            let list: Vec<serde_json::Value> = serde_json::from_slice(bytes).map_err(|e| failed(FIT, e))?;
            self.parts.extend(list.iter().map(serde_json::Value::to_string));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{ArrayRef, BinaryArray, Float64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::logical_expr::Accumulator;

    use super::{FitAccumulator, FitConfig, ProfileAccumulator};

    fn columns(start: usize, rows: usize) -> Vec<ArrayRef> {
        let x: Float64Array = (start..start + rows).map(|i| Some((i * 7919 % 1000) as f64 / 10.0)).collect();
        let c: StringArray = (start..start + rows).map(|i| Some(format!("k{}", i % 9))).collect();
        vec![Arc::new(x), Arc::new(c)]
    }

    fn schema() -> Arc<Schema> {
        Arc::new(Schema::new(vec![Field::new("x", DataType::Float64, true), Field::new("c", DataType::Utf8, true)]))
    }

    /// The final result is the same bytes in whatever order partitions' states arrive.
    fn same_in_any_order(states: &[Vec<u8>], mut fresh: impl FnMut() -> Box<dyn Accumulator>) {
        let mut results = Vec::new();
        for order in [[0, 1, 2], [2, 0, 1], [1, 2, 0]] {
            let mut acc = fresh();
            for i in order {
                let one: ArrayRef = Arc::new(BinaryArray::from_vec(vec![states[i].as_slice()]));
                acc.merge_batch(&[one]).unwrap();
            }
            results.push(acc.evaluate().unwrap());
        }
        assert!(results.windows(2).all(|w| w[0] == w[1]));
    }

    #[test]
    fn profile_states_merge_the_same_in_any_order() {
        let fresh = || ProfileAccumulator {
            schema: schema(),
            profiler: sluice_profile::Profiler::new(schema()),
            parts: Vec::new(),
        };
        let states: Vec<Vec<u8>> = [(0, 5000), (5000, 3000), (8000, 7000)]
            .into_iter()
            .map(|(start, rows)| {
                let mut a = fresh();
                a.update_batch(&columns(start, rows)).unwrap();
                // Read twice (e.g. as a window function): the same answer.
                assert_eq!(a.evaluate().unwrap(), a.evaluate().unwrap());
                match a.state().unwrap().remove(0) {
                    datafusion::common::ScalarValue::Binary(Some(b)) => b,
                    other => panic!("{other:?}"),
                }
            })
            .collect();
        same_in_any_order(&states, || Box::new(fresh()));
    }

    #[test]
    fn fit_states_merge_the_same_in_any_order() {
        let config = FitConfig {
            specs: vec![
                sluice_train::FeatureSpec::Standardize { column: "x".into() },
                sluice_train::FeatureSpec::Frequency { column: "c".into() },
            ],
            fitted: Default::default(),
            label: String::new(),
        };
        let fresh = || FitAccumulator { schema: schema(), own: None, parts: Vec::new() };
        let states: Vec<Vec<u8>> = [(0, 5000), (5000, 3000), (8000, 7000)]
            .into_iter()
            .map(|(start, rows)| {
                let mut a = fresh();
                let mut values = vec![config.literal().unwrap().to_array_of_size(rows).unwrap()];
                values.extend(columns(start, rows));
                a.update_batch(&values).unwrap();
                match a.state().unwrap().remove(0) {
                    datafusion::common::ScalarValue::Binary(Some(b)) => b,
                    other => panic!("{other:?}"),
                }
            })
            .collect();
        same_in_any_order(&states, || Box::new(fresh()));
    }
}
