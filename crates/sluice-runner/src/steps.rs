//! Executing one step of each kind.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use sluice_core::{ArtifactKind, ArtifactMeta, ContentHash};
use sluice_engine::{Engine, read_dataset_batch, write_batches, write_dataframe};
use sluice_model::{ModelArtifact, Predictor};
use sluice_spec::kinds::{
    ClassWeightSpec, ForestCategoricalSplits, ForestObjective, ForestParams, FtrlParams, GbdtMetric, GbdtObjective,
    GbdtParams, ModelKind, TrainParams,
};
use sluice_spec::{Input, Step, StepConfig};
use sluice_store::OutputRecord;
use sluice_train::gbdt::{CategorySplits, ForestOptions, GbdtOptions, Loss, Metric};
use sluice_train::{ClassWeight, FeatureOptions, GbdtRequest, LinearOptions, Objective, TrainRequest};

use crate::error::StepError;
use crate::event::{Event, Reporter};
use crate::workspace::Workspace;

/// Everything a step execution can see.
pub(crate) struct StepCtx {
    pub ws: Arc<Workspace>,
    pub engine: Engine,
    pub run_id: String,
    /// The pipeline's name.
    pub pipeline: String,
    pub step: Step,
    /// Each input with the artifact it resolved to, in the step's reference order.
    pub inputs: Vec<(Input, OutputRecord)>,
    pub reporter: Arc<dyn Reporter>,
    /// The spec's folder (relative SQLite paths).
    pub base_dir: std::path::PathBuf,
    /// What the cache key saw outside the pipeline, for the step to use exactly that.
    pub seen: Seen,
}

/// Things outside the pipeline that a step's cache key covers, kept as the key saw them so the
/// step reads the same: an object-store source's listing, a train step's `warm_start` version.
#[derive(Default)]
pub(crate) struct Seen {
    pub objects: std::sync::OnceLock<Vec<sluice_store::remote::RemoteObject>>,
    /// `None` inside: nothing was registered under the name.
    pub warm_start: std::sync::OnceLock<Option<sluice_store::ModelVersion>>,
}

/// Work to do once the step's outputs and run record are committed (acknowledging a stream's
/// messages).
pub(crate) type AfterCommit = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>;

pub(crate) struct Executed {
    pub outputs: Vec<OutputRecord>,
    pub rows: Option<u64>,
    pub metrics: Vec<(String, f64)>,
    pub after_commit: Option<AfterCommit>,
}

impl StepCtx {
    pub(crate) fn input(&self, role: &str) -> Result<&OutputRecord, StepError> {
        self.inputs
            .iter()
            .find(|(i, _)| i.role == role)
            .map(|(_, o)| o)
            .ok_or_else(|| StepError::Internal(format!("step `{}` has no `{role}` input", self.step.name)))
    }

    pub(crate) async fn path_of(&self, artifact: &ArtifactMeta) -> Result<std::path::PathBuf, StepError> {
        Ok(self.ws.artifacts.local_path(&artifact.hash, artifact.kind).await?)
    }

    async fn load_model(&self, role: &str) -> Result<(ContentHash, ModelArtifact), StepError> {
        let record = self.input(role)?;
        let bytes = self.ws.artifacts.get_bytes(&record.artifact.hash, ArtifactKind::Model).await?;
        Ok((record.artifact.hash, ModelArtifact::from_json(&bytes)?))
    }

    /// Show the person running the pipeline a multi-line message about this step.
    pub(crate) fn report(&self, text: &str) {
        self.reporter.event(&Event::StepReport { step: self.step.name.clone(), text: text.to_string() });
    }

    /// Progress callback that reports at most every 200 ms.
    pub(crate) fn progress(&self) -> impl Fn(u64) + Send + Sync + use<> {
        let reporter = self.reporter.clone();
        let step = self.step.name.clone();
        let last = Mutex::new(Instant::now() - Duration::from_secs(1));
        move |rows| {
            if let Ok(mut last) = last.lock()
                && last.elapsed() >= Duration::from_millis(200)
            {
                *last = Instant::now();
                reporter.event(&Event::StepProgress { step: step.clone(), rows });
            }
        }
    }

    async fn store_dataframe(&self, name: &str, df: datafusion::prelude::DataFrame) -> Result<OutputRecord, StepError> {
        let tmp = self.ws.artifacts.scratch_path("parquet");
        let written = write_dataframe(df, &tmp, &self.progress()).await;
        self.store_dataset(name, &tmp, written).await
    }

    async fn store_dataset_batch(&self, name: &str, batch: RecordBatch) -> Result<OutputRecord, StepError> {
        let tmp = self.ws.artifacts.scratch_path("parquet");
        let written = write_batches(std::slice::from_ref(&batch), batch.schema(), &tmp);
        self.store_dataset(name, &tmp, written).await
    }

    /// Move a written scratch file into the artifact store (or remove it if writing failed).
    pub(crate) async fn store_dataset(
        &self,
        name: &str,
        tmp: &std::path::Path,
        written: Result<sluice_engine::WrittenDataset, impl Into<StepError>>,
    ) -> Result<OutputRecord, StepError> {
        let written = written.map_err(|e| {
            let _ = std::fs::remove_file(tmp);
            e.into()
        })?;
        self.ws.artifacts.put_file(tmp, &written.hash, ArtifactKind::Dataset).await?;
        Ok(OutputRecord {
            name: name.to_string(),
            artifact: ArtifactMeta {
                hash: written.hash,
                kind: ArtifactKind::Dataset,
                size: written.size,
                rows: Some(written.rows),
                schema: Some(written.schema),
            },
        })
    }

    pub(crate) async fn store_json(
        &self,
        name: &str,
        bytes: Vec<u8>,
        kind: ArtifactKind,
    ) -> Result<OutputRecord, StepError> {
        let size = bytes.len() as u64;
        let hash = self.ws.artifacts.put_bytes(bytes, kind).await?;
        Ok(OutputRecord {
            name: name.to_string(),
            artifact: ArtifactMeta { hash, kind, size, rows: None, schema: None },
        })
    }
}

/// Run CPU-heavy work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StepError> + Send + 'static,
) -> Result<T, StepError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| StepError::Internal(format!("worker thread failed: {e}")))?
}

pub(crate) async fn execute(ctx: &StepCtx) -> Result<Executed, StepError> {
    match &ctx.step.config {
        StepConfig::Source(source) => {
            let tmp = ctx.ws.artifacts.scratch_path("parquet");
            let remote = sluice_core::is_url(source.path.as_str());
            let listed = ctx.seen.objects.get().map(Vec::as_slice);
            // A plain Parquet file (or object) is copied as it is; anything else is read and
            // written.
            let copied = if remote {
                ctx.engine.copy_remote_parquet_source(source, listed, &tmp).await
            } else {
                ctx.engine.copy_parquet_source(source, &ctx.step.files, &tmp).await
            };
            let written = match copied.transpose() {
                Some(written) => written,
                None => {
                    let df = if remote {
                        ctx.engine.read_remote_source(source, listed).await?
                    } else {
                        ctx.engine.read_source(source, &ctx.step.files).await?
                    };
                    write_dataframe(df, &tmp, &ctx.progress()).await
                }
            };
            let out = ctx.store_dataset("data", &tmp, written).await?;
            Ok(Executed { after_commit: None, rows: out.artifact.rows, outputs: vec![out], metrics: vec![] })
        }
        StepConfig::Database(db) => {
            let tmp = ctx.ws.artifacts.scratch_path("parquet");
            let progress = ctx.progress();
            let mut writer: Option<sluice_engine::DatasetWriter> = None;
            let mut sink = |chunk: sluice_engine::Chunk| -> sluice_engine::Result<()> {
                match chunk {
                    sluice_engine::Chunk::Schema(schema) => {
                        writer = Some(sluice_engine::DatasetWriter::create(&tmp, schema)?)
                    }
                    sluice_engine::Chunk::Batch(batch) => {
                        let w = writer
                            .as_mut()
                            .ok_or_else(|| sluice_engine::EngineError::Invalid("rows before a schema".into()))?;
                        w.write(batch)?;
                        progress(w.rows());
                    }
                }
                Ok(())
            };
            let read = sluice_engine::read_database(db, &ctx.base_dir, &mut sink).await;
            let written = match (read, writer) {
                (Ok(()), Some(w)) => w.finish(),
                (Ok(()), None) => Err(sluice_engine::EngineError::Invalid("the database returned no schema".into())),
                (Err(e), _) => Err(e),
            }
            .map_err(|e| sluice_engine::EngineError::Invalid(format!("source `{}`: {e}", ctx.step.name)));
            let out = ctx.store_dataset("data", &tmp, written).await?;
            Ok(Executed { after_commit: None, rows: out.artifact.rows, outputs: vec![out], metrics: vec![] })
        }
        StepConfig::Stream(st) => {
            let received = sluice_engine::read_stream(st)
                .await
                .map_err(|e| StepError::Invalid(format!("source `{}`: {e}", ctx.step.name)))?;
            let tmp = ctx.ws.artifacts.scratch_path("parquet");
            let written = write_batches(&received.batches, received.schema.clone(), &tmp);
            let messages = received.messages() as f64;
            match ctx.store_dataset("data", &tmp, written).await {
                Ok(out) => Ok(Executed {
                    rows: out.artifact.rows,
                    outputs: vec![out],
                    metrics: vec![("messages".into(), messages)],
                    after_commit: Some(Box::pin(
                        async move { received.acknowledge().await.map_err(|e| e.to_string()) },
                    )),
                }),
                Err(e) => {
                    received.give_back().await;
                    Err(e)
                }
            }
        }
        StepConfig::Sql(sql) => {
            let mut tables = Vec::new();
            for (input, record) in &ctx.inputs {
                tables.push((input.written.replace('.', "_"), ctx.path_of(&record.artifact).await?));
            }
            let df = ctx.engine.sql(&tables, &sql.query).await?;
            let out = ctx.store_dataframe("data", df).await?;
            Ok(Executed { after_commit: None, rows: out.artifact.rows, outputs: vec![out], metrics: vec![] })
        }
        StepConfig::Validate(v) => crate::validate::execute(ctx, v).await,
        StepConfig::Monitor(m) => crate::monitor::execute(ctx, m).await,
        StepConfig::FitTransform(ft) => {
            let input = ctx.path_of(&ctx.input("input")?.artifact).await?;
            let fit_path = match ctx.inputs.iter().find(|(i, _)| i.role == "fit") {
                Some((_, o)) => ctx.path_of(&o.artifact).await?,
                None => input.clone(),
            };
            // Fit in streaming passes over the columns the transforms read (one pass per group
            // of steps that do not read each other's output): memory does not grow with rows.
            let specs = feature_specs(&ft.transforms);
            let label = ft.label.clone().unwrap_or_default();
            let fit_schema = ctx.engine.sql_here(&[("fit".into(), fit_path.clone())], "SELECT * FROM fit").await?;
            let wanted: Vec<String> = fit_schema
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .filter(|n| *n == label || ft.transforms.iter().any(|t| t.columns.contains(n)))
                .collect();
            // A column no step produces and the data lacks: say so with the data's columns
            // (the fit reads only the columns the transforms name).
            let data_columns: Vec<String> = fit_schema.schema().fields().iter().map(|f| f.name().clone()).collect();
            let unknown = |e: StepError| match &e {
                StepError::Train(sluice_train::TrainError::Model(sluice_model::ModelError::FeatureColumn {
                    column,
                    ..
                })) if !data_columns.contains(column) => StepError::Invalid(format!(
                    "step `{}`: `transforms` reads column `{column}`, which `{}` does not have{}; its columns are {}",
                    ctx.step.name,
                    ft.fit.as_ref().unwrap_or(&ft.input).as_str(),
                    sluice_spec::Suggestion::closest(column, data_columns.iter().map(String::as_str)),
                    data_columns.join(", ")
                )),
                _ => e,
            };
            // Each stage's statistics are gathered where the data is (`sluice_fit`: per
            // partition, on a cluster's executors), after the stages fitted before it. First on
            // no rows here: a missing column or a wrong type fails with the in-process error.
            let fields: Vec<datafusion::arrow::datatypes::FieldRef> =
                fit_schema.schema().fields().iter().filter(|f| wanted.contains(f.name())).cloned().collect();
            let empty = RecordBatch::new_empty(Arc::new(datafusion::arrow::datatypes::Schema::new(fields)));
            let mut pipeline = sluice_model::FeaturePipeline::default();
            for stage in sluice_train::stages(&specs) {
                let stage: Vec<sluice_train::FeatureSpec> = stage.iter().map(|&i| specs[i].clone()).collect();
                let mut probes: Vec<sluice_train::Accumulator> =
                    stage.iter().cloned().map(sluice_train::Accumulator::new).collect();
                pipeline
                    .apply(&empty)
                    .map_err(sluice_train::TrainError::from)
                    .and_then(|b| {
                        let table = sluice_model::features::Table::from(&b);
                        probes.iter_mut().try_for_each(|a| a.update(&table, &label))
                    })
                    .map_err(|e| unknown(e.into()))?;
                let config = sluice_engine::functions::FitConfig {
                    specs: stage,
                    fitted: pipeline.clone(),
                    label: label.clone(),
                };
                let fitted = sluice_engine::fit_stage(&ctx.engine, &fit_path, &config, &wanted).await.map_err(|e| {
                    StepError::Invalid(format!("step `{}`: fitting `transforms` on the data: {e}", ctx.step.name))
                })?;
                for a in fitted {
                    pipeline.steps.push(a.finish().map_err(|e| unknown(e.into()))?);
                }
            }
            // ...then transform the input as it streams, here (on a cluster too: the rows come
            // here to be written, so the scan is local). Each partition transforms its own
            // batches; they are written in partition order.
            let df = ctx.engine.sql_here(&[("input".into(), input)], "SELECT * FROM input").await?;
            let input_schema = std::sync::Arc::new(df.schema().as_arrow().clone());
            let tmp = ctx.ws.artifacts.scratch_path("parquet");
            let progress = ctx.progress();
            let pipeline = std::sync::Arc::new(pipeline);
            let transform = pipeline.clone();
            let mut writer: Option<sluice_engine::DatasetWriter> = None;
            let streamed = sluice_engine::for_each_mapped(
                df,
                move |batch| transform.apply(&batch).map_err(|e| StepError::from(sluice_train::TrainError::from(e))),
                |out| {
                    if writer.is_none() {
                        writer = Some(sluice_engine::DatasetWriter::create(&tmp, out.schema())?);
                    }
                    if let Some(w) = writer.as_mut() {
                        w.write(out)?;
                        progress(w.rows());
                    }
                    Ok(())
                },
            )
            .await;
            let written = match (streamed, writer) {
                (Ok(()), Some(w)) => w.finish().map_err(StepError::from),
                (Ok(()), None) => {
                    // No rows: the output has the transformed schema of an empty batch.
                    let empty = pipeline
                        .apply(&RecordBatch::new_empty(input_schema))
                        .map_err(sluice_train::TrainError::from)?;
                    write_batches(&[], empty.schema(), &tmp).map_err(StepError::from)
                }
                (Err(e), _) => Err(e),
            };
            let out = ctx.store_dataset("data", &tmp, written).await?;
            Ok(Executed { after_commit: None, rows: out.artifact.rows, outputs: vec![out], metrics: vec![] })
        }
        StepConfig::Split(split) => {
            let path = ctx.path_of(&ctx.input("input")?.artifact).await?;
            let split = split.clone();
            let parts = blocking(move || {
                let batch = read_dataset_batch(&path)?;
                let spec = sluice_engine::SplitSpec {
                    method: split.method,
                    fractions: &split.fractions,
                    seed: split.seed,
                    by: split.by.as_deref(),
                    key: split.key.as_deref(),
                };
                Ok(sluice_engine::split(&batch, &spec)?)
            })
            .await?;
            let mut outputs = Vec::new();
            let mut rows = 0;
            for (name, batch) in parts {
                rows += batch.num_rows() as u64;
                outputs.push(ctx.store_dataset_batch(&name, batch).await?);
            }
            Ok(Executed { after_commit: None, outputs, rows: Some(rows), metrics: vec![] })
        }
        StepConfig::Train(train) => {
            let data = ctx.input("input")?.artifact.clone();
            // An empty input (a drained stream, a filter that kept nothing): say so, rather
            // than fail later on a label that an empty stream batch does not even have.
            if data.rows == Some(0) {
                let kept = train.warm_start.as_ref().map_or(String::new(), |r| format!("; `{r}` stays as it is"));
                return Err(StepError::Invalid(format!(
                    "input `{}` has no rows: nothing to train on{kept}",
                    train.input.as_str()
                )));
            }
            let path = ctx.path_of(&data).await?;
            let valid_path = match ctx.inputs.iter().find(|(i, _)| i.role == "validation") {
                Some((_, o)) => Some(ctx.path_of(&o.artifact).await?),
                None => None,
            };
            let init = match (ctx.inputs.iter().any(|(i, _)| i.role == "init_model"), &train.warm_start) {
                (true, _) => Some(ctx.load_model("init_model").await?.1),
                (false, Some(reference)) => match ctx.seen.warm_start.get() {
                    Some(Some(v)) => {
                        let bytes = ctx.ws.artifacts.get_bytes(&v.artifact, ArtifactKind::Model).await?;
                        let model = ModelArtifact::from_json(&bytes)?;
                        ctx.report(&format!(
                            "continuing {}:{} ({} rows seen, {} iterations so far)",
                            v.name, v.version, model.training.rows, model.training.iterations
                        ));
                        Some(model)
                    }
                    Some(None) => {
                        ctx.report(&format!("nothing registered as `{reference}` yet: training from scratch"));
                        None
                    }
                    None => return Err(StepError::Internal("`warm_start` was not resolved for the cache key".into())),
                },
                (false, None) => None,
            };
            let train = train.clone();
            let lineage = sluice_model::Lineage {
                training_data: data.hash.to_string(),
                config: ctx.step.config.to_json(),
                sluice_version: sluice_core::ENGINE_VERSION.to_string(),
            };
            // A study continues across runs of the same step on the same data; by default it is
            // named after the pipeline, the step and what it reads and searches.
            let study = train.tune.as_ref().map(|t| match &t.study {
                Some(name) => name.clone(),
                None => {
                    let mut h = sluice_core::Hasher::new();
                    for (_, o) in &ctx.inputs {
                        h.field(o.artifact.hash.to_string());
                    }
                    h.field(ctx.step.config.to_json().to_string());
                    format!("{}.{}.{}", ctx.pipeline, ctx.step.name, &h.finish().to_string()[..8])
                }
            });
            let (meta, run_id, reporter, step_name) =
                (ctx.ws.meta.clone(), ctx.run_id.clone(), ctx.reporter.clone(), ctx.step.name.clone());
            let (model, extra) = if train.distributed {
                let (mut model, extra) = train_on_engine(ctx, &train, &path).await?;
                model.lineage = lineage;
                (model, extra)
            } else {
                blocking(move || {
                    let batch = read_dataset_batch(&path)?;
                    let features = sluice_train::feature_columns(
                        &batch.schema(),
                        train.features.as_deref(),
                        &train.label,
                        &train.exclude,
                    );
                    let valid = valid_path.map(|p| read_dataset_batch(&p)).transpose()?;
                    if let Some(study) = study {
                        let say = |text: String| reporter.event(&Event::StepReport { step: step_name.clone(), text });
                        let data = crate::tune::TuneData { batch: &batch, valid: valid.as_ref(), features: &features };
                        let tuned = crate::tune::tune(&*meta, &study, &run_id, &train, &data, &say)?;
                        let mut model = tuned.model;
                        model.lineage = lineage;
                        return Ok((model, tuned.metrics));
                    }
                    let mut cv_metrics = Vec::new();
                    if let Some(cv) = &train.cv {
                        cv_metrics = cross_validate(&train, cv, &batch, valid.as_ref(), &features, init.as_ref())?;
                    }
                    let (mut model, mut extra) =
                        fit_with_features(&train, &batch, valid.as_ref(), &features, init.as_ref(), &mut every_round)?;
                    extra.extend(cv_metrics);
                    model.lineage = lineage;
                    Ok((model, extra))
                })
                .await?
            };
            let mut metrics = vec![
                ("train_rows".to_string(), model.training.rows as f64),
                ("iterations".to_string(), model.training.iterations as f64),
                ("objective".to_string(), model.training.objective),
            ];
            metrics.extend(extra);
            let rows = model.training.rows;
            let out = ctx.store_json("model", model.to_json(), ArtifactKind::Model).await?;
            Ok(Executed { after_commit: None, outputs: vec![out], rows: Some(rows), metrics })
        }
        StepConfig::Evaluate(eval) => {
            let (model_hash, model) = ctx.load_model("model").await?;
            let data = ctx.input("input")?.artifact.clone();
            let path = ctx.path_of(&data).await?;
            let threshold = eval.threshold;
            let slices = eval.slices.clone();
            let importance = eval.importance;
            let (metrics, scored, extra) = blocking(move || {
                let batch = read_dataset_batch(&path)?;
                let task = model.task;
                let crate::gates::Scored { mut metrics, predictor, predictions, y } =
                    crate::gates::score(model, &batch, threshold)?;
                let (by_slice, gaps) =
                    crate::slices::evaluate_slices(&batch, &slices, task, &y, &predictions, threshold)?;
                metrics.extend(gaps);
                let mut extra = serde_json::Map::new();
                if !slices.is_empty() {
                    extra.insert("slices".into(), by_slice);
                }
                if importance {
                    extra.insert("explanations".into(), crate::importance::explain(&predictor, &batch, &y, threshold, 5, 10)?);
                }
                if task == sluice_model::Task::BinaryClassification {
                    let confusion = sluice_metrics::confusion(&y, &predictions.scores, threshold);
                    extra.insert("confusion_matrix".into(), serde_json::to_value(confusion).unwrap_or_default());
                    let curve = sluice_metrics::reliability_curve(&y, &predictions.scores, 10);
                    extra.insert(
                        "reliability_curve".into(),
                        curve
                            .iter()
                            .map(|(p, f, n)| serde_json::json!({"mean_probability": p, "fraction_positive": f, "rows": n}))
                            .collect(),
                    );
                }
                Ok((metrics, Predictor::append(&batch, &predictions, threshold)?, extra))
            })
            .await?;
            let rows = scored.num_rows() as u64;
            let mut doc = serde_json::json!({
                "metrics": metrics,
                "rows": rows,
                "threshold": threshold,
                "model": model_hash.to_string(),
                "data": data.hash.to_string(),
            });
            if let Some(d) = doc.as_object_mut() {
                d.extend(extra);
            }
            let metrics_out = ctx
                .store_json("metrics", serde_json::to_vec_pretty(&doc).unwrap_or_default(), ArtifactKind::Metrics)
                .await?;
            let predictions = ctx.store_dataset_batch("predictions", scored).await?;
            Ok(Executed {
                after_commit: None,
                outputs: vec![metrics_out, predictions],
                rows: Some(rows),
                metrics: metrics.into_iter().collect(),
            })
        }
        StepConfig::Register(reg) => {
            let model = ctx.input("model")?.artifact.hash;
            let mut metrics = Vec::new();
            let mut evaluation = None;
            if let Ok(m) = ctx.input("metrics") {
                let bytes = ctx.ws.artifacts.get_bytes(&m.artifact.hash, ArtifactKind::Metrics).await?;
                let doc: serde_json::Value = serde_json::from_slice(&bytes)
                    .map_err(|e| StepError::Invalid(format!("metrics artifact is not JSON: {e}")))?;
                if let Some(map) = doc.get("metrics").and_then(|m| m.as_object()) {
                    metrics = map.iter().filter_map(|(k, v)| v.as_f64().map(|v| (k.clone(), v))).collect();
                }
                let data = doc.get("data").and_then(|d| d.as_str()).and_then(|d| d.parse().ok());
                let threshold = doc.get("threshold").and_then(|t| t.as_f64());
                if let (Some(data), Some(threshold)) = (data, threshold) {
                    evaluation = Some(sluice_store::EvaluationRef { data, threshold });
                }
            }
            let new = sluice_store::NewVersion {
                name: &reg.name,
                artifact: &model,
                run_id: &ctx.run_id,
                step: &ctx.step.name,
                metrics: &metrics,
                gates: &reg.gates,
                evaluation: evaluation.as_ref(),
            };
            if reg.gates.is_empty() {
                let version = ctx.ws.meta.register_model(&new, reg.alias.as_deref())?;
                return Ok(Executed {
                    after_commit: None,
                    outputs: vec![],
                    rows: None,
                    metrics: vec![("version".into(), version.version as f64)],
                });
            }
            // Register the version first (so a rejected model can still be inspected), then move
            // the alias only if every gate passes.
            let version = ctx.ws.meta.register_model(&new, None)?;
            let results =
                crate::gates::check_gates(&ctx.ws, &reg.name, &model, &reg.gates, &metrics, evaluation.as_ref())
                    .await?;
            let failed: Vec<String> = results.iter().filter(|r| !r.passed).map(ToString::to_string).collect();
            if !failed.is_empty() {
                let kept = match &reg.alias {
                    Some(a) => format!("`{}@{a}` left where it was", reg.name),
                    None => "no alias to move".into(),
                };
                return Err(StepError::Invalid(format!(
                    "{}:{} registered but rejected by its gates ({kept}): {}",
                    reg.name,
                    version.version,
                    failed.join("; ")
                )));
            }
            if let Some(alias) = &reg.alias {
                ctx.ws.meta.set_alias(&reg.name, alias, version.version)?;
            }
            let mut recorded = vec![("version".to_string(), version.version as f64)];
            recorded.push(("gates_passed".to_string(), results.len() as f64));
            Ok(Executed { after_commit: None, outputs: vec![], rows: None, metrics: recorded })
        }
    }
}

fn ftrl(
    train: &sluice_spec::kinds::TrainStep,
    p: &FtrlParams,
    batch: &RecordBatch,
    features: &[String],
    init: Option<&ModelArtifact>,
) -> Result<ModelArtifact, StepError> {
    let request = TrainRequest {
        label: &train.label,
        features,
        objective: match p.objective {
            ForestObjective::Binary => Objective::Logistic,
            ForestObjective::Regression => Objective::SquaredError,
        },
        linear: LinearOptions::default(),
        preprocessing: preprocessing(train),
    };
    let options =
        sluice_train::ftrl::FtrlOptions { alpha: p.alpha, beta: p.beta, l1: p.l1, l2: p.l2, epochs: p.epochs };
    Ok(sluice_train::train_ftrl(batch, &request, &options, init)?)
}

/// The trainer's settings for `model: random_forest`: fully grown trees (no leaf limit, no
/// regularization), leaf values are the mean labels.
fn forest_request<'a>(
    p: &ForestParams,
    label: &'a str,
    features: &'a [String],
    max_categories: usize,
) -> GbdtRequest<'a> {
    let mut options = GbdtOptions {
        loss: match p.objective {
            ForestObjective::Binary => Loss::Binary,
            ForestObjective::Regression => Loss::L2,
        },
        num_rounds: p.num_trees,
        learning_rate: 1.0,
        num_leaves: usize::MAX,
        max_depth: p.max_depth,
        max_bin: p.max_bin,
        seed: p.seed,
        threads: p.threads,
        random_forest: Some(ForestOptions {
            bootstrap: p.bootstrap,
            features_per_split: p.max_features,
            categories: match p.categorical_splits {
                ForestCategoricalSplits::Ordinal => CategorySplits::Ordinal,
                ForestCategoricalSplits::Order => CategorySplits::ByLabel,
                ForestCategoricalSplits::Partition => CategorySplits::Partition,
            },
            ..Default::default()
        }),
        ..Default::default()
    };
    options.split.min_data_in_leaf = p.min_data_in_leaf;
    options.split.min_sum_hessian_in_leaf = 0.0;
    options.split.min_data_per_group = 1;
    options.split.cat_smooth = 0.0;
    options.split.cat_l2 = 0.0;
    GbdtRequest { label, features, options, max_categories, class_weight: None, monotone: vec![] }
}

/// The trainer's settings from a spec's `params` for `model: gbdt`.
fn gbdt_request<'a>(p: &GbdtParams, label: &'a str, features: &'a [String], max_categories: usize) -> GbdtRequest<'a> {
    let loss = match p.objective {
        GbdtObjective::Binary => Loss::Binary,
        GbdtObjective::Regression => Loss::L2,
        GbdtObjective::L1 => Loss::L1,
        GbdtObjective::Huber => Loss::Huber { delta: p.alpha },
        GbdtObjective::Quantile => Loss::Quantile { alpha: p.alpha },
        GbdtObjective::Poisson => Loss::Poisson { max_delta_step: 0.7 },
        // The number of classes is read from the labels when training starts.
        GbdtObjective::Multiclass => Loss::Multiclass { classes: 0 },
    };
    let mut options = GbdtOptions {
        loss,
        num_rounds: p.num_rounds,
        learning_rate: p.learning_rate,
        num_leaves: p.num_leaves,
        max_depth: p.max_depth,
        max_bin: p.max_bin,
        feature_fraction: p.feature_fraction,
        bagging_fraction: p.bagging_fraction,
        bagging_freq: p.bagging_freq,
        seed: p.seed,
        early_stopping_rounds: p.early_stopping_rounds,
        metric: match p.metric {
            Some(GbdtMetric::Auc) => Metric::Auc,
            Some(GbdtMetric::Logloss) => Metric::Logloss,
            Some(GbdtMetric::Rmse) => Metric::Rmse,
            Some(GbdtMetric::Mae) => Metric::Mae,
            Some(GbdtMetric::Loss) => Metric::Loss,
            None => Metric::default_for(loss),
        },
        threads: p.threads,
        ..Default::default()
    };
    let s = &mut options.split;
    s.lambda_l1 = p.lambda_l1;
    s.lambda_l2 = p.lambda_l2;
    s.min_data_in_leaf = p.min_data_in_leaf;
    s.min_sum_hessian_in_leaf = p.min_sum_hessian_in_leaf;
    s.min_gain_to_split = p.min_gain_to_split;
    s.max_cat_to_onehot = p.max_cat_to_onehot;
    s.max_cat_threshold = p.max_cat_threshold;
    s.cat_smooth = p.cat_smooth;
    s.cat_l2 = p.cat_l2;
    s.min_data_per_group = p.min_data_per_group;
    GbdtRequest {
        label,
        features,
        options,
        max_categories,
        class_weight: p.class_weight.as_ref().map(|c| match c {
            ClassWeightSpec::Explicit { negative, positive } => {
                ClassWeight::Explicit { negative: *negative, positive: *positive }
            }
            ClassWeightSpec::Named(_) => ClassWeight::Balanced,
        }),
        monotone: p.monotone.iter().filter(|(_, m)| **m != 0).map(|(c, m)| (c.clone(), *m)).collect(),
    }
}

/// Train the step's model on `batch` (the train step's body, also run once per CV fold).
/// `transforms` as fitted operations, one per column (a cross reads several).
fn feature_specs(transforms: &[sluice_spec::kinds::TransformSpec]) -> Vec<sluice_train::FeatureSpec> {
    use sluice_model::{DatePart, Unseen};
    use sluice_spec::kinds::{DatePartName, ImputeStrategy, TransformOp as Op, UnseenPolicy};
    use sluice_train::{FeatureSpec as F, Impute};
    let mut out = Vec::new();
    for t in transforms {
        let unseen = match t.unseen {
            Some(UnseenPolicy::Error) => Unseen::Error,
            _ => Unseen::Ignore,
        };
        if t.op == Op::Cross {
            out.push(F::Cross { columns: t.columns.clone() });
            continue;
        }
        for c in &t.columns {
            let column = c.clone();
            out.push(match t.op {
                Op::Impute => F::Impute {
                    column,
                    strategy: match t.strategy {
                        Some(ImputeStrategy::Mean) => Impute::Mean,
                        Some(ImputeStrategy::Median) | None => Impute::Median,
                        Some(ImputeStrategy::MostFrequent) => Impute::MostFrequent,
                        Some(ImputeStrategy::Constant) => Impute::Constant(t.value.clone().unwrap_or_default()),
                    },
                },
                Op::Standardize => F::Standardize { column },
                Op::Minmax => F::MinMax { column },
                Op::Robust => F::Robust { column },
                Op::Log1p => F::Log1p { column },
                Op::Clip => F::Clip { column, min: t.min, max: t.max },
                Op::Bucketize => F::Bucketize { column, quantiles: t.quantiles, bins: t.bins.clone() },
                Op::Onehot => F::OneHot { column, max_categories: t.max_categories.unwrap_or(100), unseen },
                Op::Ordinal => F::Ordinal { column, max_categories: t.max_categories.unwrap_or(usize::MAX), unseen },
                Op::Frequency => F::Frequency { column },
                Op::Target => F::Target { column, folds: t.folds.unwrap_or(5), smoothing: t.smoothing.unwrap_or(10.0) },
                Op::Hash => F::Hash { column, buckets: t.buckets.unwrap_or(32) },
                Op::Datetime => F::DateParts {
                    column,
                    parts: t
                        .parts
                        .clone()
                        .unwrap_or_else(|| {
                            vec![
                                DatePartName::Year,
                                DatePartName::Month,
                                DatePartName::Day,
                                DatePartName::Dayofweek,
                                DatePartName::Hour,
                            ]
                        })
                        .into_iter()
                        .map(|p| match p {
                            DatePartName::Year => DatePart::Year,
                            DatePartName::Month => DatePart::Month,
                            DatePartName::Day => DatePart::Day,
                            DatePartName::Hour => DatePart::Hour,
                            DatePartName::Minute => DatePart::Minute,
                            DatePartName::Dayofweek => DatePart::Dayofweek,
                            DatePartName::Dayofyear => DatePart::Dayofyear,
                        })
                        .collect(),
                },
                Op::Counts | Op::Tfidf => {
                    F::Tokens { column, max_features: t.max_features.unwrap_or(100), idf: t.op == Op::Tfidf }
                }
                Op::Cross => unreachable!("handled above"),
            });
        }
    }
    out
}

/// Fit the step's feature engineering on `batch` (when it has any), train the model on the
/// result, and ship the fitted pipeline inside the model: its inputs are the raw columns.
pub(crate) fn fit_with_features(
    train: &sluice_spec::kinds::TrainStep,
    batch: &RecordBatch,
    valid: Option<&RecordBatch>,
    features: &[String],
    init: Option<&ModelArtifact>,
    on_round: OnRound,
) -> Result<(ModelArtifact, Vec<(String, f64)>), StepError> {
    if train.transforms.is_empty() {
        return fit_model(train, batch, valid, features, init, on_round);
    }
    let mut keep: Vec<usize> = Vec::new();
    for name in features.iter().chain(std::iter::once(&train.label).filter(|l| !l.is_empty())) {
        let i = batch.schema().index_of(name).map_err(|_| sluice_train::TrainError::MissingColumn(name.clone()))?;
        keep.push(i);
    }
    let raw = batch.project(&keep)?;
    let seed = match &train.params {
        TrainParams::Gbdt(p) => p.seed,
        _ => 42,
    };
    let fitted = sluice_train::fit_pipeline(&feature_specs(&train.transforms), &raw, &train.label, seed)?;
    let engineered: Vec<String> =
        fitted.train.schema().fields().iter().map(|f| f.name().clone()).filter(|n| *n != train.label).collect();
    let valid = valid.map(|v| fitted.pipeline.apply(v)).transpose().map_err(sluice_train::TrainError::from)?;
    let (mut model, extra) = fit_model(train, &fitted.train, valid.as_ref(), &engineered, init, on_round)?;
    model.inputs = features
        .iter()
        .filter_map(|f| raw.schema().field_with_name(f).ok().cloned())
        .map(|f| sluice_model::InputColumn { name: f.name().clone(), data_type: f.data_type().to_string() })
        .collect();
    model.features = fitted.pipeline;
    Ok((model, extra))
}

/// Called after each boosting round (GBDT); `Break` stops training there.
pub(crate) type OnRound<'a> = &'a mut (dyn FnMut(&sluice_train::gbdt::RoundReport) -> std::ops::ControlFlow<()> + Send);

/// A round callback that never stops training.
pub(crate) fn every_round(_: &sluice_train::gbdt::RoundReport) -> std::ops::ControlFlow<()> {
    std::ops::ControlFlow::Continue(())
}

/// The built-in preprocessing (standardization, one-hot) of a train step.
fn preprocessing(train: &sluice_spec::kinds::TrainStep) -> FeatureOptions {
    FeatureOptions { standardize: train.preprocessing.standardize, max_categories: train.preprocessing.max_categories }
}

/// The objective and settings of a linear model step.
fn linear_settings(
    train: &sluice_spec::kinds::TrainStep,
    p: &sluice_spec::kinds::LinearParams,
) -> (Objective, LinearOptions, FeatureOptions) {
    let objective = match train.model {
        ModelKind::LinearRegression => Objective::SquaredError,
        _ => Objective::Logistic,
    };
    let solver = match p.solver {
        sluice_spec::kinds::LinearSolver::Auto => sluice_train::Solver::Auto,
        sluice_spec::kinds::LinearSolver::Newton => sluice_train::Solver::Newton,
        sluice_spec::kinds::LinearSolver::Lbfgs => sluice_train::Solver::Lbfgs,
    };
    let linear =
        LinearOptions { l2: p.l2, l1: p.l1, max_iter: p.max_iter, tol: p.tol, fit_intercept: p.fit_intercept, solver };
    (objective, linear, preprocessing(train))
}

/// `distributed: true`: a linear model trained by aggregates the engine runs where the data is
/// (see `sluice_engine::train_linear`); the rows never come to this process.
async fn train_on_engine(
    ctx: &StepCtx,
    train: &sluice_spec::kinds::TrainStep,
    path: &std::path::Path,
) -> Result<(ModelArtifact, Vec<(String, f64)>), StepError> {
    let TrainParams::Linear(p) = &train.params else {
        return Err(StepError::Invalid("`distributed: true` trains linear models only".into()));
    };
    let (objective, linear, preprocessing) = linear_settings(train, p);
    let request = sluice_engine::LinearOnEngine {
        label: &train.label,
        features: train.features.as_deref(),
        exclude: &train.exclude,
        objective,
        linear,
        preprocessing,
    };
    let started = std::time::Instant::now();
    let fit = sluice_engine::train_linear(&ctx.engine, path, &request).await?;
    ctx.report(&format!(
        "trained data-parallel on the engine: {} statistics queries and {} passes over {} rows in {:.1} s",
        fit.stat_queries,
        fit.passes,
        fit.model.training.rows,
        started.elapsed().as_secs_f64()
    ));
    Ok((fit.model, vec![("passes".to_string(), fit.passes as f64)]))
}

fn fit_model(
    train: &sluice_spec::kinds::TrainStep,
    batch: &RecordBatch,
    valid: Option<&RecordBatch>,
    features: &[String],
    init: Option<&ModelArtifact>,
    on_round: OnRound,
) -> Result<(ModelArtifact, Vec<(String, f64)>), StepError> {
    Ok(match &train.params {
        TrainParams::Linear(p) => {
            let (objective, linear, preprocessing) = linear_settings(train, p);
            let request = TrainRequest { label: &train.label, features, objective, linear, preprocessing };
            (sluice_train::train_linear(batch, &request)?, vec![])
        }
        TrainParams::Ftrl(p) => (ftrl(train, p, batch, features, init)?, vec![]),
        TrainParams::Kmeans(p) => {
            let options = sluice_train::kmeans::KmeansOptions {
                clusters: p.clusters,
                max_iter: p.max_iter,
                tol: p.tol,
                n_init: p.n_init,
                seed: p.seed,
            };
            let model = sluice_train::train_kmeans(batch, features, &preprocessing(train), &options)?;
            let inertia = model.training.objective * model.training.rows as f64;
            (model, vec![("inertia".to_string(), inertia)])
        }
        TrainParams::Forest(p) => {
            let request = forest_request(p, &train.label, features, train.preprocessing.max_categories);
            let model = sluice_train::train_gbdt(batch, None, &request, None, on_round)?;
            let trees = model.training.iterations as f64;
            (model, vec![("trees".to_string(), trees)])
        }
        TrainParams::Gbdt(p) => {
            let request = gbdt_request(p, &train.label, features, train.preprocessing.max_categories);
            let mut history = Vec::new();
            let model = sluice_train::train_gbdt(batch, valid, &request, init, &mut |r| {
                history.extend(r.valid_metric);
                on_round(r)
            })?;
            let metric = format!("{:?}", request.options.metric).to_lowercase();
            let mut extra = vec![("trees".to_string(), model.training.iterations as f64)];
            if let Some(best) = match request.options.metric {
                Metric::Auc => history.iter().copied().reduce(f64::max),
                _ => history.iter().copied().reduce(f64::min),
            } {
                extra.push((format!("validation_{metric}"), best));
            }
            (model, extra)
        }
    })
}

/// K-fold cross-validation of the step's model: per fold, train on the other folds and score
/// the fold; returns `cv_<metric>_mean` and `cv_<metric>_std` over folds.
pub(crate) fn cross_validate(
    train: &sluice_spec::kinds::TrainStep,
    cv: &sluice_spec::kinds::CrossValidation,
    batch: &RecordBatch,
    valid: Option<&RecordBatch>,
    features: &[String],
    init: Option<&ModelArtifact>,
) -> Result<Vec<(String, f64)>, StepError> {
    use datafusion::arrow::compute::take_record_batch;
    use sluice_spec::kinds::CvMethod;
    let spec = sluice_train::CvSpec {
        folds: cv.folds,
        method: match cv.method {
            CvMethod::Kfold => sluice_train::CvMethod::KFold,
            CvMethod::Stratified => sluice_train::CvMethod::Stratified,
            CvMethod::Group => sluice_train::CvMethod::Group,
            CvMethod::Time => sluice_train::CvMethod::Time,
        },
        by: cv.by.clone(),
        seed: cv.seed,
    };
    let folds = sluice_train::cv_folds(batch, &train.label, &spec)?;
    let mut per_metric: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
    for (train_rows, test_rows) in folds {
        let pick = |rows: &[u32]| {
            take_record_batch(batch, &datafusion::arrow::array::UInt32Array::from(rows.to_vec()))
                .map_err(|e| StepError::Internal(format!("selecting fold rows: {e}")))
        };
        let (fold_train, fold_test) = (pick(&train_rows)?, pick(&test_rows)?);
        let (model, _) = fit_with_features(train, &fold_train, valid, features, init, &mut every_round)?;
        for (k, v) in crate::gates::score(model, &fold_test, 0.5)?.metrics {
            per_metric.entry(k).or_default().push(v);
        }
    }
    let mut out = Vec::new();
    for (k, v) in per_metric {
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        let std = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
        out.push((format!("cv_{k}_mean"), mean));
        out.push((format!("cv_{k}_std"), std));
    }
    Ok(out)
}
