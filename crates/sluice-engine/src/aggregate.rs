//! Aggregates over one stored dataset, split into as many partitions as it has Parquet row groups
//! (DataFusion cuts the file into that many byte ranges; each reads the row groups whose middle
//! falls in it): the split depends on the file alone, so every partition's state and the merged
//! result are the same on any machine and engine.

use std::path::Path;

use datafusion::arrow::array::AsArray;
use datafusion::logical_expr::{Expr, lit};
use datafusion::prelude::{DataFrame, ParquetReadOptions, SessionContext, ident};
use sluice_profile::Profile;

use crate::functions::{FIT, FitConfig, PROFILE};
use crate::{Engine, EngineError, Result};

/// Most partitions an aggregate scan is split into. All of them run at once, each holding a row
/// group's pages: at 64, fitting 10M rows peaked at 532 MB against 198 MB for one stream.
pub(crate) const MAX_PARTITIONS: usize = 16;

/// A context of `engine` whose scans of `data` get as many partitions as row groups (at most
/// [`MAX_PARTITIONS`]), whatever the client's core count; even a modest dataset spreads over a
/// cluster's executors.
pub(crate) fn row_group_context(engine: &Engine, data: &Path) -> Result<SessionContext> {
    let ctx = engine.context()?;
    let row_groups = {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        let file = std::fs::File::open(data).map_err(|source| EngineError::Io { path: data.to_path_buf(), source })?;
        SerializedFileReader::new(file)?.metadata().num_row_groups()
    };
    {
        let state = ctx.state_ref();
        let mut state = state.write();
        let options = state.config_mut().options_mut();
        options.execution.target_partitions = row_groups.clamp(1, MAX_PARTITIONS);
        options.optimizer.repartition_file_min_size = 64 << 10;
    }
    Ok(ctx)
}

/// `data` as a table of `ctx`.
pub(crate) async fn scan(ctx: &SessionContext, data: &Path) -> Result<DataFrame> {
    let path = data.to_str().ok_or_else(|| EngineError::Path(data.to_path_buf()))?;
    Ok(ctx.read_parquet(path, ParquetReadOptions::default().file_extension("")).await?)
}

/// The one value of an aggregate of sluice's over all of `df` (they all return bytes).
pub(crate) async fn aggregate_bytes(df: DataFrame, call: Expr, function: &str) -> Result<Vec<u8>> {
    let batches = df.aggregate(vec![], vec![call.alias("value")])?.collect().await?;
    batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .and_then(|b| b.column(0).as_binary_opt::<i32>().map(|a| a.value(0).to_vec()))
        .ok_or_else(|| EngineError::Invalid(format!("`{function}` returned no value")))
}

/// The profile of the Parquet dataset at `data`, computed where the data is: on a cluster,
/// each executor profiles its row groups and the client merges the partial profiles
/// (`sluice_profile`).
pub async fn profile(engine: &Engine, data: &Path) -> Result<Profile> {
    let ctx = row_group_context(engine, data)?;
    let df = scan(&ctx, data).await?;
    let columns: Vec<String> = df.schema().fields().iter().map(|f| f.name().clone()).collect();
    let call = crate::functions::profile().call(columns.iter().map(|c| ident(c.as_str())).collect());
    let bytes = aggregate_bytes(df, call, PROFILE).await?;
    Profile::from_json(&bytes).map_err(|e| EngineError::Invalid(format!("`{PROFILE}` returned a bad profile: {e}")))
}

/// What fitting one stage of feature transforms needs to know of the Parquet dataset at `data`
/// (its `columns`, after the stages `config.fitted`), gathered where the data is: each partition
/// (an executor's row groups on a cluster) fills accumulators for `config.specs`; their partial
/// states are merged here in a canonical order. Returns one accumulator per spec, to finish.
pub async fn fit_stage(
    engine: &Engine,
    data: &Path,
    config: &FitConfig,
    columns: &[String],
) -> Result<Vec<sluice_train::Accumulator>> {
    let ctx = row_group_context(engine, data)?;
    let df = scan(&ctx, data).await?;
    let mut args = vec![lit(config.literal()?)];
    args.extend(columns.iter().map(|c| ident(c.as_str())));
    let bytes = aggregate_bytes(df, crate::functions::fit().call(args), FIT).await?;
    let bad = |e: serde_json::Error| EngineError::Invalid(format!("`{FIT}` returned a bad state: {e}"));
    let states: Vec<Vec<serde_json::Value>> = serde_json::from_slice(&bytes).map_err(bad)?;
    let mut accumulators: Vec<sluice_train::Accumulator> =
        config.specs.iter().cloned().map(sluice_train::Accumulator::new).collect();
    for partials in states {
        if partials.len() != accumulators.len() {
            return Err(EngineError::Invalid(format!(
                "`{FIT}` returned {} partial states for {} transforms",
                partials.len(),
                accumulators.len()
            )));
        }
        for (a, p) in accumulators.iter_mut().zip(partials) {
            a.merge_partial(p.to_string().as_bytes())?;
        }
    }
    Ok(accumulators)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{ArrayRef, BooleanArray, Float64Array, RecordBatch, StringArray};
    use sluice_profile::{Profile, Profiler};

    use super::{fit_stage, profile};
    use crate::functions::FitConfig;
    use crate::{Engine, write_batches};

    fn data(rows: usize) -> RecordBatch {
        let hash = |i: usize, salt: u64| ((i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt) % 10_000;
        let x: Float64Array = (0..rows)
            .map(|i| match i % 101 {
                0 => None,
                1 => Some(f64::NAN),
                2 => Some(f64::INFINITY),
                _ => Some(hash(i, 1) as f64 / 100.0 - 20.0),
            })
            .collect();
        let city: StringArray =
            (0..rows).map(|i| (i % 37 != 3).then(|| format!("c{}", hash(i, 2) % (1 + i as u64 % 500)))).collect();
        let flag: BooleanArray = (0..rows).map(|i| Some(hash(i, 3) % 3 == 0)).collect();
        let columns: Vec<(&str, ArrayRef)> =
            vec![("x", Arc::new(x)), ("Pickup City", Arc::new(city)), ("flag", Arc::new(flag))];
        RecordBatch::try_from_iter(columns).unwrap()
    }

    fn in_process(batch: &RecordBatch) -> Profile {
        let mut p = Profiler::new(batch.schema());
        p.update(batch).unwrap();
        p.finish()
    }

    /// Profiled by partitions on the engine, a dataset of several row groups gets the same
    /// profile bytes whatever the client's cores, the exact counts, extremes and frequencies of
    /// an in-process pass, its moments to rounding and its quantiles within the sketch's error.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn partitioned_profile_matches_one_pass() {
        let dir = tempfile::tempdir().unwrap();
        let batch = data(300_000);
        let path = dir.path().join("data.parquet");
        write_batches(std::slice::from_ref(&batch), batch.schema(), &path).unwrap();
        let got = profile(&Engine::local(2), &path).await.unwrap();
        let again = profile(&Engine::local(1), &path).await.unwrap();
        assert_eq!(got.to_json(), again.to_json());
        let want = in_process(&batch);
        assert_eq!(got.rows, 300_000);
        assert_eq!(got.columns.len(), want.columns.len());
        for (g, w) in got.columns.iter().zip(&want.columns) {
            assert_eq!((&g.name, g.kind, g.count, g.nulls), (&w.name, w.kind, w.count, w.nulls));
            assert_eq!((g.distinct, g.distinct_exact), (w.distinct, w.distinct_exact), "{}", g.name);
            assert_eq!(g.top, w.top, "{}", g.name);
            if let (Some(g), Some(w)) = (&g.numeric, &w.numeric) {
                assert_eq!((g.min, g.max), (w.min, w.max));
                assert!((g.mean - w.mean).abs() < 1e-12 * w.mean.abs().max(1.0));
                let (gs, ws) = (g.std.unwrap(), w.std.unwrap());
                assert!((gs - ws).abs() < 1e-12 * ws);
                // KLL's rank error is about 1% here; a quantile of values spread over
                // [-20, 80) may move by about that share of the range.
                for (gq, wq) in g.quantiles.iter().zip(&w.quantiles) {
                    assert!((gq.value - wq.value).abs() < 2.0, "q{}: {} vs {}", gq.q, gq.value, wq.value);
                }
                assert_eq!(g.histogram.edges, w.histogram.edges);
                assert_eq!(g.histogram.counts.iter().sum::<u64>(), w.histogram.counts.iter().sum::<u64>());
            }
        }
        let x = got.column("x").unwrap();
        // Nulls, NaN and infinities are missing (the stored profile stays finite).
        assert_eq!(x.nulls, 3 * 300_000_u64.div_ceil(101));
        assert!(x.numeric.is_some() && got.column("Pickup City").unwrap().top.is_some());
    }

    /// No rows: every column is there, with zero counts.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn empty_dataset_profile_names_its_columns() {
        let dir = tempfile::tempdir().unwrap();
        let batch = data(0);
        let path = dir.path().join("empty.parquet");
        write_batches(std::slice::from_ref(&batch), batch.schema(), &path).unwrap();
        let got = profile(&Engine::local(2), &path).await.unwrap();
        assert_eq!(got.rows, 0);
        let names: Vec<&str> = got.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["x", "Pickup City", "flag"]);
        assert!(got.columns.iter().all(|c| c.count == 0 && c.numeric.is_none()));
    }

    /// Two stages of transforms fitted by partitions on the engine (the second on the first's
    /// output): the same fit whatever the client's cores, and what one in-process pass fits —
    /// categories and counts exactly, moments to rounding, the median within the sketch's error.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn partitioned_fit_matches_one_pass() {
        use sluice_model::features::Table;
        use sluice_model::{Feature, FeaturePipeline, Fill, Unseen};
        use sluice_train::{Accumulator, FeatureSpec, Impute};
        let dir = tempfile::tempdir().unwrap();
        let batch = data(300_000);
        let path = dir.path().join("data.parquet");
        write_batches(std::slice::from_ref(&batch), batch.schema(), &path).unwrap();
        let columns: Vec<String> = ["x", "Pickup City"].map(String::from).to_vec();
        // Infinities cannot be fitted: the error names the column...
        let unclipped = FitConfig {
            specs: vec![FeatureSpec::Standardize { column: "x".into() }],
            fitted: FeaturePipeline::default(),
            label: String::new(),
        };
        let err = fit_stage(&Engine::local(2), &path, &unclipped, &columns).await.err().unwrap().to_string();
        assert!(err.contains("`x`") && err.contains("inf"), "{err}");
        // ...so they are clipped first.
        let stages = [
            vec![FeatureSpec::Clip { column: "x".into(), min: Some(-1e6), max: Some(1e6) }],
            vec![
                FeatureSpec::Impute { column: "x".into(), strategy: Impute::Median },
                FeatureSpec::OneHot { column: "Pickup City".into(), max_categories: 5, unseen: Unseen::Ignore },
            ],
            vec![FeatureSpec::Standardize { column: "x".into() }],
        ];
        let mut fitted = FeaturePipeline::default();
        let input = batch.project(&[0, 1]).unwrap();
        for specs in stages {
            let config = FitConfig { specs: specs.clone(), fitted: fitted.clone(), label: String::new() };
            let got = fit_stage(&Engine::local(2), &path, &config, &columns).await.unwrap();
            let again = fit_stage(&Engine::local(1), &path, &config, &columns).await.unwrap();
            // One pass over what the engine's earlier stages make of the rows.
            let seen = fitted.apply(&input).unwrap();
            let mut stage = Vec::new();
            for ((g, a), spec) in got.into_iter().zip(again).zip(specs) {
                assert_eq!(g.partial(), a.partial());
                let mut one = Accumulator::new(spec);
                one.update(&Table::from(&seen), "").unwrap();
                let (g, w) = (g.finish().unwrap(), one.finish().unwrap());
                match (&g, &w) {
                    (Feature::Impute { fill: Fill::Number(a), .. }, Feature::Impute { fill: Fill::Number(b), .. }) => {
                        // KLL: about 1% of rank, of values spread over [-20, 80).
                        assert!((a - b).abs() < 2.0, "median {a} vs {b}")
                    }
                    (Feature::Scale { center: a, scale: b, .. }, Feature::Scale { center: c, scale: d, .. }) => {
                        assert!((a - c).abs() < 1e-12 * c.abs().max(1.0) && (b - d).abs() < 1e-12 * d, "{g:?} {w:?}")
                    }
                    _ => assert_eq!(g, w),
                }
                stage.push(g);
            }
            fitted.steps.extend(stage);
        }
        assert!(matches!(&fitted.steps[2], Feature::OneHot { categories, .. } if categories.len() == 5));
    }
}
