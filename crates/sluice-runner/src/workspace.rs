//! A sluice home: the metadata store and the artifact store, opened together.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sluice_store::{ArtifactStore, MetadataLocation, MetadataStore};

use crate::error::Result;

pub struct Workspace {
    pub home: PathBuf,
    pub meta: Arc<dyn MetadataStore>,
    pub artifacts: ArtifactStore,
}

impl Workspace {
    /// Open (creating if needed) the metadata store — `home/metadata.db`, or the database named
    /// by `SLUICE_METADATA` (`postgres://...`) — and the artifact store (`home/artifacts/`, or
    /// the URL in `SLUICE_ARTIFACT_STORE`: `s3://bucket/prefix`, `gs://...`, `az://...`, cached
    /// locally under `home/artifacts/cache/`).
    pub fn open(home: &Path) -> Result<Self> {
        let meta = MetadataLocation::for_home(home)?.open()?;
        let artifacts = ArtifactStore::for_home(home)?;
        Ok(Self { home: home.to_path_buf(), meta, artifacts })
    }
}
