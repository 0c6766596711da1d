//! A sluice home: the metadata store and the artifact store, opened together.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sluice_store::{ArtifactStore, MetadataStore, SqliteStore};

use crate::error::Result;

pub struct Workspace {
    pub home: PathBuf,
    pub meta: Arc<dyn MetadataStore>,
    pub artifacts: ArtifactStore,
}

impl Workspace {
    /// Open (creating if needed) `home/metadata.db` and the artifact store: `home/artifacts/`,
    /// or the URL in `SLUICE_ARTIFACT_STORE` (`s3://bucket/prefix`, `gs://...`, `az://...`),
    /// cached locally under `home/artifacts/cache/`.
    pub fn open(home: &Path) -> Result<Self> {
        let meta = SqliteStore::open(&home.join("metadata.db"))?;
        let artifacts = match std::env::var("SLUICE_ARTIFACT_STORE") {
            Ok(url) if !url.trim().is_empty() => ArtifactStore::open(url.trim(), &home.join("artifacts/cache"))?,
            _ => ArtifactStore::local(&home.join("artifacts"))?,
        };
        Ok(Self { home: home.to_path_buf(), meta: Arc::new(meta), artifacts })
    }
}
