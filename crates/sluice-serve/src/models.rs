//! The models a server holds, loaded from the registry by `NAME@ALIAS` (or `NAME:VERSION`), and
//! swapped in place when an alias moves.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use sluice_core::ArtifactKind;
use sluice_model::{ModelArtifact, Predictor};
use sluice_store::{ArtifactStore, MetadataStore, ModelSelector, SqliteStore};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot open the sluice home `{home}`")]
    Home {
        home: String,
        #[source]
        source: sluice_store::StoreError,
    },
    #[error("cannot load model `{reference}`")]
    Load {
        reference: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("model `{0}` is listed twice")]
    Duplicate(String),
}

/// A model ready to score, with its micro-batching queue.
pub struct LoadedModel {
    pub name: String,
    pub version: u32,
    pub predictor: Arc<Predictor>,
    pub(crate) batcher: crate::batcher::Batcher,
}

/// One served model: what the user asked for, and the version currently answering. Requests
/// take an `Arc` of the current version, so a swap never disturbs a request in flight.
pub struct Slot {
    pub reference: String,
    current: RwLock<Arc<LoadedModel>>,
}

impl Slot {
    pub fn current(&self) -> Arc<LoadedModel> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn swap(&self, model: Arc<LoadedModel>) {
        match self.current.write() {
            Ok(mut g) => *g = model,
            Err(poisoned) => *poisoned.into_inner() = model,
        }
    }
}

/// The registry the models come from.
pub struct Registry {
    meta: SqliteStore,
    artifacts: ArtifactStore,
    batching: crate::batcher::BatchOptions,
    metrics: Arc<crate::metrics::Metrics>,
}

impl Registry {
    pub(crate) fn open(
        home: &Path,
        batching: crate::batcher::BatchOptions,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Result<Self, ServeError> {
        let home_err = |source| ServeError::Home { home: home.display().to_string(), source };
        let meta = SqliteStore::open(&home.join("metadata.db")).map_err(home_err)?;
        let artifacts = ArtifactStore::local(&home.join("artifacts")).map_err(home_err)?;
        Ok(Self { meta, artifacts, batching, metrics })
    }

    /// The version a reference names right now.
    fn resolve(&self, reference: &str) -> Result<(String, sluice_store::ModelVersion), ServeError> {
        let (name, selector) = ModelSelector::parse(reference);
        let version = self
            .meta
            .resolve_model(&name, &selector)
            .map_err(|e| ServeError::Load { reference: reference.to_string(), source: e.into() })?;
        Ok((name, version))
    }

    async fn load(&self, reference: &str) -> Result<LoadedModel, ServeError> {
        let load = |source: Box<dyn std::error::Error + Send + Sync>| ServeError::Load {
            reference: reference.to_string(),
            source,
        };
        let (name, version) = self.resolve(reference)?;
        let bytes =
            self.artifacts.get_bytes(&version.artifact, ArtifactKind::Model).await.map_err(|e| load(e.into()))?;
        let artifact = ModelArtifact::from_json(&bytes).map_err(|e| load(e.into()))?;
        let predictor = Arc::new(Predictor::new(artifact).map_err(|e| load(e.into()))?);
        let metrics = self.metrics.clone();
        let label = name.clone();
        let on_batch: crate::batcher::OnBatch = Arc::new(move |rows| metrics.scored(&label, rows));
        let batcher = crate::batcher::Batcher::start(predictor.clone(), self.batching, on_batch);
        Ok(LoadedModel { name, version: version.version, predictor, batcher })
    }
}

/// The served models, by name.
pub struct ModelSet {
    pub models: BTreeMap<String, Arc<Slot>>,
    registry: Registry,
}

impl ModelSet {
    /// Load each `NAME@ALIAS`, `NAME:VERSION` or `NAME` (latest) from the home's registry.
    pub(crate) async fn load(
        home: &Path,
        references: &[String],
        registry_options: (crate::batcher::BatchOptions, Arc<crate::metrics::Metrics>),
    ) -> Result<Self, ServeError> {
        let registry = Registry::open(home, registry_options.0, registry_options.1)?;
        let mut models = BTreeMap::new();
        for reference in references {
            let loaded = registry.load(reference).await?;
            let name = loaded.name.clone();
            let slot = Slot { reference: reference.clone(), current: RwLock::new(Arc::new(loaded)) };
            if models.insert(name.clone(), Arc::new(slot)).is_some() {
                return Err(ServeError::Duplicate(name));
            }
        }
        Ok(Self { models, registry })
    }

    pub(crate) fn get(&self, name: &str) -> Result<Arc<LoadedModel>, crate::ApiError> {
        self.models.get(name).map(|s| s.current()).ok_or_else(|| {
            let served: Vec<&str> = self.models.keys().map(String::as_str).collect();
            crate::ApiError::not_found(format!("model `{name}` is not served here (served: {})", served.join(", ")))
        })
    }

    /// Check every reference against the registry and swap in versions that changed (an alias
    /// moved, or a new latest version). Returns the `(name, old, new)` versions swapped.
    pub async fn reload(&self) -> Vec<(String, u32, u32)> {
        let mut swapped = Vec::new();
        for (name, slot) in &self.models {
            let old = slot.current().version;
            let Ok((_, version)) = self.registry.resolve(&slot.reference) else { continue };
            if version.version == old {
                continue;
            }
            // A model that fails to load keeps the old one answering.
            if let Ok(loaded) = self.registry.load(&slot.reference).await {
                let new = loaded.version;
                slot.swap(Arc::new(loaded));
                swapped.push((name.clone(), old, new));
            }
        }
        swapped
    }
}
