//! Training a linear model data-parallel on the engine (`distributed: true` on a train step).
//!
//! Nothing gathers the training rows in one process. The engine runs, where the data is (a
//! cluster's executors, or in-process partitions):
//! 1. one aggregate query for the row count, the label's checks and mean, and each numeric
//!    feature's mean and population variance (standardization; `sluice_moments`);
//! 2. one grouped query per text feature for its most frequent categories (one-hot encoding);
//! 3. per Newton step, one [`LINEAR_PASS`](crate::functions::LINEAR_PASS) aggregate for the
//!    summed loss, gradient and Hessian at the current weights (plus loss-only passes while the
//!    line search backtracks); per L-BFGS iteration, one or more loss-and-gradient passes.
//!
//! The solver itself, [`sluice_train::fit_passes`] (Newton, proximal Newton with `l1`, or
//! L-BFGS), is the one in-process training uses, so the
//! model takes the same steps and differs only by floating-point summation order.

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::common::ScalarValue;
use datafusion::functions_aggregate::expr_fn::{count, min};
use datafusion::logical_expr::{Expr, cast, lit, when};
use datafusion::prelude::{DataFrame, col, ident};
use sluice_model::{ModelArtifact, Task, Transform};
use sluice_train::{FeatureOptions, LinearOptions, Objective, PassSums, TrainError, TrainRequest};

use crate::functions::{LINEAR_PASS, PassConfig, decode_moments};
use crate::{Engine, EngineError, Result};

/// A linear model to train on the engine.
pub struct LinearOnEngine<'a> {
    pub label: &'a str,
    /// Feature columns; every column but the label and `exclude` when `None`.
    pub features: Option<&'a [String]>,
    pub exclude: &'a [String],
    pub objective: Objective,
    pub linear: LinearOptions,
    pub preprocessing: FeatureOptions,
}

/// The model and how many queries and passes over the data it took.
pub struct EngineFit {
    pub model: ModelArtifact,
    /// Newton passes (gradient and Hessian, or loss only during line search).
    pub passes: u32,
    /// Queries for the feature statistics before the first pass.
    pub stat_queries: u32,
}

/// Train on the Parquet dataset at `data`; see the module documentation.
pub async fn train_linear(engine: &Engine, data: &Path, request: &LinearOnEngine<'_>) -> Result<EngineFit> {
    let ctx = crate::aggregate::row_group_context(engine, data)?;
    let df = crate::aggregate::scan(&ctx, data).await?;
    let schema: Arc<Schema> = Arc::new(df.schema().as_arrow().clone());
    let features = sluice_train::feature_columns(&schema, request.features, request.label, request.exclude);
    let task = match request.objective {
        Objective::Logistic => Task::BinaryClassification,
        Objective::SquaredError => Task::Regression,
    };
    // The in-process checks on no rows: they reject what in-process training rejects (missing
    // columns, label and feature types) with the same errors, and say which transform each
    // feature gets.
    let empty = RecordBatch::new_empty(schema.clone());
    sluice_train::label_values(&empty, request.label, task)?;
    let mut transforms = sluice_train::fit_transforms(&empty, &features, &request.preprocessing)?;

    let (rows, label_mean) = fit_statistics(&df, request, &mut transforms).await?;
    let mut stat_queries = 1;
    for t in transforms.iter_mut() {
        if let Transform::OneHot { column, categories } = t {
            *categories = top_categories(&df, column, request.preprocessing.max_categories).await?;
            stat_queries += 1;
        }
    }

    let handle = tokio::runtime::Handle::current();
    let (label, objective, options) = (request.label.to_string(), request.objective, request.linear.clone());
    let pass_transforms = transforms.clone();
    let columns = features.clone();
    let width: usize = transforms.iter().map(|t| t.feature_names().len()).sum();
    let (fit, passes) = tokio::task::spawn_blocking(move || {
        let mut passes = 0u32;
        let fit = sluice_train::fit_passes(width, label_mean, objective, &options, |beta, hessian| {
            passes += 1;
            let config = PassConfig {
                logistic: objective == Objective::Logistic,
                intercept: options.fit_intercept,
                hessian,
                beta: beta.to_vec(),
                transforms: pass_transforms.clone(),
                columns: columns.clone(),
            };
            handle
                .block_on(linear_pass(&df, &label, &config))
                .map_err(|e| TrainError::Invalid(format!("pass {passes} over the training data: {e}")))
        });
        (fit, passes)
    })
    .await
    .map_err(|e| EngineError::Invalid(format!("training stopped: {e}")))?;
    let request = TrainRequest {
        label: request.label,
        features: &features,
        objective: request.objective,
        linear: request.linear.clone(),
        preprocessing: request.preprocessing.clone(),
    };
    let model = sluice_train::linear_artifact(&schema, &request, transforms, fit?, rows)?;
    Ok(EngineFit { model, passes, stat_queries })
}

/// Row count, label checks and mean, and each standardized column's mean and scale, in one
/// query. Returns the row count and the label mean.
async fn fit_statistics(
    df: &DataFrame,
    request: &LinearOnEngine<'_>,
    transforms: &mut [Transform],
) -> Result<(u64, f64)> {
    let label = cast(ident(request.label), DataType::Float64);
    // Count and min are exact in any order; means and variances come from `sluice_moments`,
    // which merges partitions in a canonical order.
    let mut aggregates = vec![count(lit(1)).alias("rows"), count(ident(request.label)).alias("labels")];
    if request.objective == Objective::Logistic {
        let binary = label.clone().eq(lit(0.0)).or(label.clone().eq(lit(1.0)));
        let bad = when(binary, lit(ScalarValue::Float64(None))).otherwise(label.clone())?;
        aggregates.push(min(bad).alias("not_binary"));
    }
    let standardized: Vec<(usize, String)> = transforms
        .iter()
        .enumerate()
        .filter_map(|(i, t)| match t {
            Transform::Standardize { column, .. } => Some((i, column.clone())),
            _ => None,
        })
        .collect();
    let mut moment_args: Vec<Expr> = standardized.iter().map(|(_, c)| ident(c.as_str())).collect();
    moment_args.push(label);
    let moments = crate::functions::moments().call(moment_args).alias("moments");
    aggregates.push(moments);
    let batches = df.clone().aggregate(vec![], aggregates)?.collect().await?;
    let batch = batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .ok_or_else(|| EngineError::Invalid("the statistics query over the training data returned no row".into()))?;
    let column = |name: &str| {
        batch.column_by_name(name).ok_or_else(|| EngineError::Invalid(format!("no `{name}` in the statistics")))
    };
    let value = |name: &str| -> Result<Option<f64>> {
        Ok(match ScalarValue::try_from_array(column(name)?, 0)? {
            ScalarValue::Float64(v) => v,
            ScalarValue::Int64(v) => v.map(|v| v as f64),
            _ => None,
        })
    };
    let rows = value("rows")?.unwrap_or(0.0) as u64;
    if rows == 0 {
        return Err(TrainError::Empty.into());
    }
    let labels = value("labels")?.unwrap_or(0.0) as u64;
    if labels < rows {
        return Err(
            TrainError::NullLabels { column: request.label.to_string(), nulls: (rows - labels) as usize }.into()
        );
    }
    if request.objective == Objective::Logistic
        && let Some(bad) = value("not_binary")?
    {
        return Err(TrainError::Invalid(format!(
            "label `{}` has value {bad}: `distributed: true` trains binary logistic regression (boolean or 0/1 \
             labels); multinomial models train in-process",
            request.label
        ))
        .into());
    }
    let moments = match ScalarValue::try_from_array(column("moments")?, 0)? {
        ScalarValue::Binary(Some(bytes)) => decode_moments(&bytes)?,
        other => return Err(EngineError::Invalid(format!("`{}` returned {other:?}", crate::functions::MOMENTS))),
    };
    if moments.len() != standardized.len() + 1 {
        return Err(EngineError::Invalid(format!("{} moments for {} columns", moments.len(), standardized.len() + 1)));
    }
    for ((i, name), m) in standardized.iter().zip(&moments) {
        let variance = if m.count > 0 { m.m2 / m.count as f64 } else { 0.0 };
        let std = variance.max(0.0).sqrt();
        if !m.mean.is_finite() || !std.is_finite() {
            return Err(EngineError::Invalid(format!(
                "feature `{name}` has infinite values (mean {}, standard deviation {std}); filter or clip them before training",
                m.mean
            )));
        }
        if let Transform::Standardize { mean, scale, .. } = &mut transforms[*i] {
            *mean = m.mean;
            *scale = if request.preprocessing.standardize && std > 0.0 { std } else { 1.0 };
        }
    }
    Ok((rows, moments[standardized.len()].mean))
}

/// The `max` most frequent values of a text column (ties by value), sorted — as
/// `sluice_train::fit_transforms` picks them.
async fn top_categories(df: &DataFrame, column: &str, max: usize) -> Result<Vec<String>> {
    let top = df
        .clone()
        .filter(ident(column).is_not_null())?
        .aggregate(vec![cast(ident(column), DataType::Utf8).alias("value")], vec![count(lit(1)).alias("n")])?
        .sort(vec![col("n").sort(false, false), col("value").sort(true, false)])?
        .limit(0, Some(max))?
        .collect()
        .await?;
    let mut categories = Vec::new();
    for batch in &top {
        let values = datafusion::arrow::compute::cast(batch.column(0), &DataType::Utf8)?;
        categories.extend(values.as_string::<i32>().iter().flatten().map(str::to_string));
    }
    categories.sort();
    Ok(categories)
}

/// One [`linear_pass`](crate::functions::linear_pass) aggregate over `df`.
async fn linear_pass(df: &DataFrame, label: &str, config: &PassConfig) -> Result<PassSums> {
    let mut args = vec![lit(config.literal()?), ident(label)];
    args.extend(config.columns.iter().map(|c| ident(c.as_str())));
    let bytes =
        crate::aggregate::aggregate_bytes(df.clone(), crate::functions::linear_pass().call(args), LINEAR_PASS).await?;
    let sums = PassSums::from_bytes(&bytes)?;
    Ok(sums)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{
        Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
    };
    use sluice_model::{Model, Transform};
    use sluice_train::{FeatureOptions, LinearOptions, Objective, TrainRequest};

    use super::{LinearOnEngine, train_linear};
    use crate::{Engine, write_batches};

    /// Numeric (with NaN and nulls), integer, boolean and two text columns (one with more
    /// categories than kept, with ties), and a noisy binary label and a numeric target.
    fn data(rows: usize) -> RecordBatch {
        let hash = |i: usize, salt: u64| ((i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt) % 1000;
        let x1: Float64Array = (0..rows)
            .map(|i| match i % 97 {
                0 => None,
                1 => Some(f64::NAN),
                _ => Some(hash(i, 1) as f64 / 100.0 - 5.0),
            })
            .collect();
        let x2: Int64Array = (0..rows).map(|i| Some((hash(i, 2) % 40) as i64)).collect();
        let flag: BooleanArray = (0..rows).map(|i| Some(hash(i, 3) % 3 == 0)).collect();
        let color: StringArray =
            (0..rows).map(|i| if i % 50 == 7 { None } else { Some(["red", "green", "blue", "tan"][i % 4]) }).collect();
        // Ten equally frequent values: which 5 are kept is decided by the tie-break (by value).
        let city: StringArray = (0..rows).map(|i| Some(format!("c{}", i % 10))).collect();
        let score = |i: usize| {
            let x = x1.value(i);
            0.8 * if x.is_nan() || x1.is_null(i) { 0.0 } else { x } + 0.05 * x2.value(i) as f64 - (i % 4) as f64 * 0.3
        };
        let label: BooleanArray = (0..rows).map(|i| Some(score(i) + (hash(i, 5) as f64 / 150.0 - 3.3) > 0.0)).collect();
        let target: Float64Array = (0..rows).map(|i| Some(score(i) * 3.0 + hash(i, 6) as f64 / 500.0)).collect();
        let columns: Vec<(&str, ArrayRef)> = vec![
            ("x1", Arc::new(x1.clone())),
            ("Trip Miles", Arc::new(x2)),
            ("flag", Arc::new(flag)),
            ("color", Arc::new(color)),
            ("city", Arc::new(city)),
            ("label", Arc::new(label)),
            ("target", Arc::new(target)),
        ];
        RecordBatch::try_from_iter(columns).unwrap()
    }

    fn write(dir: &std::path::Path, batch: &RecordBatch) -> std::path::PathBuf {
        let path = dir.join("train.parquet");
        write_batches(std::slice::from_ref(batch), batch.schema(), &path).unwrap();
        path
    }

    fn max_diff(a: &[f64], b: &[f64]) -> f64 {
        assert_eq!(a.len(), b.len());
        a.iter().zip(b).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max)
    }

    /// Trained by aggregates on the engine, the model is the in-process one: the same transforms
    /// (categories exactly; means and scales to rounding) and the same weights to rounding.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn engine_training_matches_in_process_training() {
        let dir = tempfile::tempdir().unwrap();
        let batch = data(300_000);
        let path = write(dir.path(), &batch);
        let engine = Engine::local(2);
        let features: Vec<String> = ["x1", "Trip Miles", "flag", "color", "city"].map(String::from).to_vec();
        let l2 = LinearOptions { l2: 1e-3, ..Default::default() };
        let lasso = LinearOptions { l1: 2e-3, ..l2.clone() };
        let lbfgs = LinearOptions { solver: sluice_train::Solver::Lbfgs, ..l2.clone() };
        let cases = [
            ("label", Objective::Logistic, l2.clone(), 4..=40, 1e-8),
            ("target", Objective::SquaredError, l2, 2..=2, 1e-8),
            // Proximal Newton (elastic net) and L-BFGS take the same passes on the engine.
            ("label", Objective::Logistic, lasso.clone(), 4..=60, 1e-8),
            ("target", Objective::SquaredError, lasso, 3..=20, 1e-8),
            ("label", Objective::Logistic, lbfgs, 5..=200, 1e-6),
        ];
        for (label, objective, linear, passes, tolerance) in cases {
            let preprocessing = FeatureOptions { standardize: true, max_categories: 5 };
            let exclude = vec![if label == "label" { "target".to_string() } else { "label".to_string() }];
            let request = LinearOnEngine {
                label,
                features: None,
                exclude: &exclude,
                objective,
                linear: linear.clone(),
                preprocessing: preprocessing.clone(),
            };
            let fit = train_linear(&engine, &path, &request).await.unwrap();
            let here = sluice_train::train_linear(
                &batch,
                &TrainRequest { label, features: &features, objective, linear: linear.clone(), preprocessing },
            )
            .unwrap();
            assert!(passes.contains(&fit.passes) && fit.stat_queries == 3, "{label}: {} passes", fit.passes);
            let model = &fit.model;
            assert_eq!(model.feature_names, here.feature_names, "{label}");
            assert_eq!(model.inputs, here.inputs, "{label}");
            assert_eq!(model.training.rows, 300_000);
            for (a, b) in model.transforms.iter().zip(&here.transforms) {
                match (a, b) {
                    (
                        Transform::Standardize { column, mean, scale },
                        Transform::Standardize { mean: m2, scale: s2, .. },
                    ) => {
                        assert!((mean - m2).abs() <= 1e-12 * m2.abs().max(1.0), "{column}: mean {mean} vs {m2}");
                        assert!((scale - s2).abs() <= 1e-12 * s2, "{column}: scale {scale} vs {s2}");
                    }
                    _ => assert_eq!(a, b),
                }
            }
            let (Model::Linear(a), Model::Linear(b)) = (&model.model, &here.model) else { panic!("linear models") };
            let dw = max_diff(&a.weights, &b.weights);
            let zeros = a.weights.iter().filter(|w| **w == 0.0).count();
            println!(
                "{label} ({:?}, l1 {}): {} passes, {} weights ({zeros} zero), largest difference {dw:e}",
                linear.solver,
                linear.l1,
                fit.passes,
                a.weights.len()
            );
            assert!(dw < tolerance, "{label}: weights differ by {dw:e}: {:?} vs {:?}", a.weights, b.weights);
            assert!((a.intercept - b.intercept).abs() < tolerance, "{label}: intercept");
            assert!(model.training.converged);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bad_labels_and_columns_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::local(2);
        let batch = data(1000);
        let path = write(dir.path(), &batch);
        fn train<'a>(label: &'a str, features: Option<&'a [String]>) -> LinearOnEngine<'a> {
            LinearOnEngine {
                label,
                features,
                exclude: &[],
                objective: Objective::Logistic,
                linear: LinearOptions::default(),
                preprocessing: FeatureOptions::default(),
            }
        }
        // `target` is not 0/1.
        let err = train_linear(&engine, &path, &train("target", None)).await.err().unwrap().to_string();
        assert!(err.contains("target") && err.contains("0/1"), "{err}");
        // A text label.
        let err = train_linear(&engine, &path, &train("color", None)).await.err().unwrap().to_string();
        assert!(err.contains("color"), "{err}");
        // A feature that is not there.
        let missing = vec!["nope".to_string()];
        let err = train_linear(&engine, &path, &train("label", Some(&missing))).await.err().unwrap().to_string();
        assert!(err.contains("nope"), "{err}");
        // No features: the intercept alone, at the base rate.
        let fit = train_linear(&engine, &path, &train("label", Some(&[]))).await.unwrap();
        let Model::Linear(m) = &fit.model.model else { panic!("linear") };
        let rate = (0..1000).filter(|i| batch.column(5).as_boolean().value(*i)).count() as f64 / 1000.0;
        assert!(m.weights.is_empty() && (m.intercept - (rate / (1.0 - rate)).ln()).abs() < 1e-9, "{m:?} vs {rate}");
        // Missing labels.
        let labels: BooleanArray = (0..1000).map(|i| (i != 5).then_some(true)).collect();
        let with_nulls = RecordBatch::try_from_iter([
            ("x", Arc::new(Float64Array::from(vec![1.0; 1000])) as ArrayRef),
            ("y", Arc::new(labels) as ArrayRef),
        ])
        .unwrap();
        let path = write(dir.path(), &with_nulls);
        let err = train_linear(&engine, &path, &train("y", None)).await.err().unwrap().to_string();
        assert!(err.contains("label `y` has 1 missing values"), "{err}");
    }
}
