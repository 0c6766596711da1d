//! The models a server holds, loaded from the registry by `NAME@ALIAS` (or `NAME:VERSION`), and
//! swapped in place when an alias moves.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use sluice_core::ArtifactKind;
use sluice_core::rng::mix;
use sluice_model::{ModelArtifact, Predictor};
use sluice_store::{ArtifactStore, MetadataLocation, MetadataStore, ModelSelector};

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
    /// The schema of its request batches.
    pub(crate) inputs: Arc<crate::columns::Inputs>,
    pub(crate) batcher: crate::batcher::Batcher,
    /// The registry's record of this version (its training data is the drift reference).
    pub(crate) record: Arc<sluice_store::ModelVersion>,
}

/// One served model: what the user asked for, and the version currently answering. Requests
/// take an `Arc` of the current version, so a swap never disturbs a request in flight.
pub struct Slot {
    pub reference: String,
    current: RwLock<Arc<LoadedModel>>,
    /// A challenger receiving canary traffic and/or shadow copies of this model's requests.
    pub(crate) policy: Option<Policy>,
}

/// Traffic policy of one endpoint: `canary_percent` of requests answered by the challenger,
/// and/or every primary request also scored by the challenger (shadow), answer discarded.
pub struct Policy {
    pub challenger: Arc<Slot>,
    pub canary_percent: f64,
    pub shadow: bool,
    requests: std::sync::atomic::AtomicU64,
}

/// How one request is routed.
pub(crate) struct Routed {
    pub answer: Arc<LoadedModel>,
    pub shadow: Option<Arc<LoadedModel>>,
    pub arm: &'static str,
}

/// A challenger declared on the command line: `NAME@ALIAS` with a canary share and/or shadow.
#[derive(Clone, Debug)]
pub struct PolicySpec {
    pub challenger: String,
    pub canary_percent: f64,
    pub shadow: bool,
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
    meta: Arc<dyn MetadataStore>,
    artifacts: ArtifactStore,
    batching: crate::batcher::BatchOptions,
    metrics: Arc<crate::metrics::Metrics>,
}

impl Registry {
    pub(crate) fn open(
        home: &Path,
        artifacts: ArtifactStore,
        batching: crate::batcher::BatchOptions,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Result<Self, ServeError> {
        // The metadata a run of this home writes to (SLUICE_METADATA).
        let meta = MetadataLocation::for_home(home)
            .and_then(|l| l.open())
            .map_err(|source| ServeError::Home { home: home.display().to_string(), source })?;
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
        let inputs = Arc::new(crate::columns::Inputs::of(predictor.artifact()));
        Ok(LoadedModel { name, version: version.version, predictor, inputs, batcher, record: Arc::new(version) })
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
        artifacts: ArtifactStore,
        references: &[String],
        policies: &[PolicySpec],
        registry_options: (crate::batcher::BatchOptions, Arc<crate::metrics::Metrics>),
    ) -> Result<Self, ServeError> {
        let registry = Registry::open(home, artifacts, registry_options.0, registry_options.1)?;
        let mut models = BTreeMap::new();
        for reference in references {
            let loaded = registry.load(reference).await?;
            let name = loaded.name.clone();
            let mut policy = None;
            for spec in policies.iter().filter(|p| ModelSelector::parse(&p.challenger).0 == name) {
                let challenger = registry.load(&spec.challenger).await?;
                let challenger = Slot {
                    reference: spec.challenger.clone(),
                    current: RwLock::new(Arc::new(challenger)),
                    policy: None,
                };
                policy = Some(Policy {
                    challenger: Arc::new(challenger),
                    canary_percent: spec.canary_percent,
                    shadow: spec.shadow,
                    requests: std::sync::atomic::AtomicU64::new(0),
                });
            }
            let slot = Slot { reference: reference.clone(), current: RwLock::new(Arc::new(loaded)), policy };
            if models.insert(name.clone(), Arc::new(slot)).is_some() {
                return Err(ServeError::Duplicate(name));
            }
        }
        if let Some(orphan) = policies.iter().find(|p| !models.contains_key(&ModelSelector::parse(&p.challenger).0)) {
            return Err(ServeError::Load {
                reference: orphan.challenger.clone(),
                source:
                    "a challenger needs its model served too (e.g. `serve NAME@champion --canary NAME@challenger=10`)"
                        .into(),
            });
        }
        Ok(Self { models, registry })
    }

    fn slot(&self, name: &str) -> Result<&Arc<Slot>, crate::ApiError> {
        self.models.get(name).ok_or_else(|| {
            let served: Vec<&str> = self.models.keys().map(String::as_str).collect();
            crate::ApiError::not_found(format!("model `{name}` is not served here (served: {})", served.join(", ")))
        })
    }

    pub(crate) fn get(&self, name: &str) -> Result<Arc<LoadedModel>, crate::ApiError> {
        self.slot(name).map(|s| s.current())
    }

    /// Which version answers a request for `name` (canary split), and which one shadows it.
    pub(crate) fn route(&self, name: &str) -> Result<Routed, crate::ApiError> {
        let slot = self.slot(name)?;
        let Some(policy) = &slot.policy else {
            return Ok(Routed { answer: slot.current(), shadow: None, arm: "primary" });
        };
        let n = policy.requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Request number -> well-spread bits: canary requests are interleaved, not bunched, and
        // the split is reproducible.
        if policy.canary_percent > 0.0 && ((mix(n) % 10_000) as f64) < policy.canary_percent * 100.0 {
            return Ok(Routed { answer: policy.challenger.current(), shadow: None, arm: "canary" });
        }
        let shadow = policy.shadow.then(|| policy.challenger.current());
        Ok(Routed { answer: slot.current(), shadow, arm: "primary" })
    }

    /// A specific version of `name`: the primary's or its challenger's.
    pub(crate) fn version(&self, name: &str, version: &str) -> Result<Arc<LoadedModel>, crate::ApiError> {
        let slot = self.slot(name)?;
        let primary = slot.current();
        if primary.version.to_string() == version {
            return Ok(primary);
        }
        if let Some(policy) = &slot.policy {
            let challenger = policy.challenger.current();
            if challenger.version.to_string() == version {
                return Ok(challenger);
            }
        }
        Err(crate::ApiError::not_found(format!(
            "model `{name}` version `{version}` is not served here (serving version {})",
            primary.version
        )))
    }

    /// Check every reference against the registry and swap in versions that changed (an alias
    /// moved, or a new latest version). Returns the `(name, old, new)` versions swapped.
    pub async fn reload(&self) -> Vec<(String, u32, u32)> {
        let mut swapped = Vec::new();
        let challengers = self.models.iter().filter_map(|(n, s)| s.policy.as_ref().map(|p| (n, &p.challenger)));
        for (name, slot) in self.models.iter().chain(challengers) {
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
