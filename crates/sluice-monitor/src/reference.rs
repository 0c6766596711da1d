//! The reference a model's production traffic is compared with: the data it was trained on
//! (recorded in its lineage; the evaluation data for models without one) and its predictions
//! on them, profiled in one pass. Training data rather than the held-out test set, because a
//! time-based split leaves only the last weeks in the test set, and inputs drift against what
//! the model learned from; the in-sample predictions are a little more confident than
//! production's, which the drift thresholds tolerate. Profiles are mergeable sketches, so the
//! reference is a few hundred kilobytes whatever the data's size. It is computed once per
//! (model, data) pair and cached in the artifact store under `monitoring/reference/`.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::Schema;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use sluice_core::{ArtifactKind, ContentHash};
use sluice_model::{ModelArtifact, Predictor};
use sluice_profile::{Profile, Profiler};
use sluice_store::{ArtifactStore, MetadataStore, ModelSelector, ModelVersion};

use crate::error::{MonitorError, Result};

/// The threshold the server's logs label binary predictions with; the reference uses the same
/// so that the `prediction` column compares like with like.
pub const LOG_THRESHOLD: f64 = 0.5;

/// The columns monitoring compares: the model's inputs, then its prediction columns.
pub fn monitored_columns(artifact: &ModelArtifact) -> Vec<String> {
    let mut names: Vec<String> = artifact.inputs.iter().map(|i| i.name.clone()).collect();
    if artifact.task == sluice_model::Task::Clustering {
        // Which cluster rows fall in, and how far from its centroid.
        names.extend(["cluster".to_string(), "distance".to_string()]);
        return names;
    }
    names.push("prediction".into());
    names.push("probability".into());
    for c in &artifact.classes {
        names.push(format!("probability_{c}"));
    }
    names
}

/// `batch` restricted to `columns` (those it has), in that order.
pub fn project(batch: &RecordBatch, columns: &[String]) -> Result<RecordBatch> {
    let schema = batch.schema();
    let indices: Vec<usize> = columns.iter().filter_map(|c| schema.index_of(c).ok()).collect();
    Ok(batch.project(&indices)?)
}

/// Profiles input batches together with the model's predictions on them.
pub struct ScoredProfiler {
    predictor: Arc<Predictor>,
    columns: Vec<String>,
    profiler: Option<Profiler>,
}

impl ScoredProfiler {
    pub fn new(predictor: Arc<Predictor>) -> Self {
        let columns = monitored_columns(predictor.artifact());
        Self { predictor, columns, profiler: None }
    }

    pub fn update(&mut self, batch: &RecordBatch) -> Result<()> {
        let predictions = self.predictor.predict(batch)?;
        let scored = Predictor::append(batch, &predictions, LOG_THRESHOLD)?;
        let scored = project(&scored, &self.columns)?;
        self.profiler.get_or_insert_with(|| Profiler::new(scored.schema())).update(&scored)?;
        Ok(())
    }

    pub fn finish(self) -> Profile {
        match self.profiler {
            Some(p) => p.finish(),
            None => Profiler::new(Arc::new(Schema::empty())).finish(),
        }
    }
}

/// Every record batch of a Parquet file in memory (or a `bytes::Bytes` buffer).
pub fn parquet_batches<E: From<MonitorError>>(
    bytes: bytes::Bytes,
    what: &str,
    mut f: impl FnMut(RecordBatch) -> Result<(), E>,
) -> Result<(), E> {
    let parquet = |source| MonitorError::Parquet { context: format!("cannot read {what}"), source };
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .and_then(|b| b.with_batch_size(65_536).build())
        .map_err(parquet)?;
    for batch in reader {
        f(batch.map_err(MonitorError::from)?)?;
    }
    Ok(())
}

/// Where a reference profile is cached.
fn cache_path(model: &ContentHash, data: &ContentHash) -> String {
    format!("monitoring/reference/{}-{}.json", model, data)
}

/// A registered version, its model and its reference profile.
pub struct ModelReference {
    pub version: ModelVersion,
    pub predictor: Arc<Predictor>,
    pub profile: Profile,
}

/// `NAME@ALIAS` (or `NAME@VERSION`, `NAME`): the version it names in the registry, loaded with
/// its reference ([`model_reference`]).
pub async fn for_model(meta: &dyn MetadataStore, artifacts: &ArtifactStore, name: &str) -> Result<ModelReference> {
    let (model, selector) = ModelSelector::parse(name);
    let version = meta.resolve_model(&model, &selector)?;
    let predictor = load_predictor(artifacts, &version).await?;
    let profile = model_reference(artifacts, &version, &predictor).await?;
    Ok(ModelReference { version, predictor, profile })
}

/// A registered version's model, ready to score.
pub async fn load_predictor(artifacts: &ArtifactStore, version: &ModelVersion) -> Result<Arc<Predictor>> {
    let bytes = artifacts.get_bytes(&version.artifact, ArtifactKind::Model).await?;
    Ok(Arc::new(Predictor::new(ModelArtifact::from_json(&bytes)?)?))
}

/// The reference profile of a registered model version (computed and cached on first use);
/// `predictor` is that version's model ([`load_predictor`]).
pub async fn model_reference(
    artifacts: &ArtifactStore,
    version: &ModelVersion,
    predictor: &Arc<Predictor>,
) -> Result<Profile> {
    let data = match (predictor.artifact().lineage.training_data.parse::<ContentHash>(), &version.evaluation) {
        (Ok(training), _) => training,
        (Err(_), Some(e)) => e.data,
        (Err(_), None) => {
            return Err(MonitorError::Invalid(format!(
                "{} version {} records neither training nor evaluation data: nothing to use as a reference",
                version.name, version.version
            )));
        }
    };
    let path = cache_path(&version.artifact, &data);
    if let Some(bytes) = artifacts.get_at(&path).await?
        && let Ok(profile) = Profile::from_json(&bytes)
    {
        return Ok(profile);
    }
    let bytes = artifacts.get_bytes(&data, ArtifactKind::Dataset).await?;
    let predictor = predictor.clone();
    let profile = tokio::task::spawn_blocking(move || -> Result<Profile> {
        let mut scored = ScoredProfiler::new(predictor);
        parquet_batches(bytes.into(), "the model's training data", |b| scored.update(&b))?;
        Ok(scored.finish())
    })
    .await
    .map_err(|e| MonitorError::Invalid(format!("profiling the reference stopped: {e}")))??;
    artifacts.put_at(&path, profile.to_json()).await?;
    Ok(profile)
}
