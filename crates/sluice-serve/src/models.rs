//! The models a server holds, loaded from the registry by `NAME@ALIAS` (or `NAME:VERSION`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

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

/// A model ready to score.
pub struct LoadedModel {
    pub name: String,
    pub version: u32,
    pub predictor: Predictor,
}

/// The served models, by name.
pub struct ModelSet {
    pub models: BTreeMap<String, Arc<LoadedModel>>,
}

impl ModelSet {
    /// Load each `NAME@ALIAS`, `NAME:VERSION` or `NAME` (latest) from the home's registry.
    pub async fn load(home: &Path, references: &[String]) -> Result<Self, ServeError> {
        let home_err = |source| ServeError::Home { home: home.display().to_string(), source };
        let meta = SqliteStore::open(&home.join("metadata.db")).map_err(home_err)?;
        let artifacts = ArtifactStore::local(&home.join("artifacts")).map_err(home_err)?;
        let mut models = BTreeMap::new();
        for reference in references {
            let load = |source: Box<dyn std::error::Error + Send + Sync>| ServeError::Load {
                reference: reference.clone(),
                source,
            };
            let (name, selector) = ModelSelector::parse(reference);
            let version = meta.resolve_model(&name, &selector).map_err(|e| load(e.into()))?;
            let bytes =
                artifacts.get_bytes(&version.artifact, ArtifactKind::Model).await.map_err(|e| load(e.into()))?;
            let artifact = ModelArtifact::from_json(&bytes).map_err(|e| load(e.into()))?;
            let predictor = Predictor::new(artifact).map_err(|e| load(e.into()))?;
            let loaded = LoadedModel { name: name.clone(), version: version.version, predictor };
            if models.insert(name.clone(), Arc::new(loaded)).is_some() {
                return Err(ServeError::Duplicate(name));
            }
        }
        Ok(Self { models })
    }

    pub(crate) fn get(&self, name: &str) -> Result<&Arc<LoadedModel>, crate::ApiError> {
        self.models.get(name).ok_or_else(|| {
            let served: Vec<&str> = self.models.keys().map(String::as_str).collect();
            crate::ApiError::not_found(format!("model `{name}` is not served here (served: {})", served.join(", ")))
        })
    }
}
