//! Content-addressed artifact bytes on `object_store`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use object_store::ObjectStoreExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload};
use sluice_core::{ArtifactKind, ContentHash};

use crate::error::{Result, StoreError};

/// Where artifact bytes live. Objects are immutable and named by their content hash, so
/// concurrent writers of the same artifact write identical bytes and either may win.
#[derive(Clone)]
pub struct ArtifactStore {
    store: Arc<dyn ObjectStore>,
    /// The local directory, when the store is a local filesystem (fast paths: rename, direct reads).
    root: Option<PathBuf>,
    /// Scratch space for files being written before they are moved into the store.
    scratch: PathBuf,
    url: String,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.to_path_buf(), source }
}

impl ArtifactStore {
    /// A store in a local directory (created if missing).
    pub fn local(root: &Path) -> Result<Self> {
        std::fs::create_dir_all(root).map_err(io(root))?;
        let root = std::fs::canonicalize(root).map_err(io(root))?;
        let scratch = root.join("tmp");
        std::fs::create_dir_all(&scratch).map_err(io(&scratch))?;
        let store = LocalFileSystem::new_with_prefix(&root)?;
        Ok(Self { store: Arc::new(store), url: format!("file://{}", root.display()), root: Some(root), scratch })
    }

    /// A store at a URL (`s3://bucket/prefix`, `gs://...`, `az://...`, `file:///...`) or, for a
    /// plain path, a local directory. Remote artifacts are read through a local cache in
    /// `scratch` (content-addressed, so a cached copy never goes stale).
    pub fn open(location: &str, scratch: &Path) -> Result<Self> {
        if !crate::remote::is_url(location) || location.starts_with("file://") {
            let local = location.strip_prefix("file://").unwrap_or(location);
            return Self::local(Path::new(local));
        }
        let (store, _, prefix) = crate::remote::store_for(location)?;
        std::fs::create_dir_all(scratch).map_err(io(scratch))?;
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::prefix::PrefixStore::new(store, prefix));
        Ok(Self { store, root: None, scratch: scratch.to_path_buf(), url: location.trim_end_matches('/').to_string() })
    }

    /// The artifact store of a sluice home: the URL in `SLUICE_ARTIFACT_STORE` when set (cached
    /// under `home/artifacts/cache/`), else `home/artifacts/`.
    pub fn for_home(home: &Path) -> Result<Self> {
        match std::env::var("SLUICE_ARTIFACT_STORE") {
            Ok(url) if !url.trim().is_empty() => Self::open(url.trim(), &home.join("artifacts/cache")),
            _ => Self::local(&home.join("artifacts")),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn object_path(hash: &ContentHash, kind: ArtifactKind) -> ObjectPath {
        let h = hash.to_string();
        ObjectPath::from(format!("objects/{}/{h}.{}", &h[..2], kind.extension()))
    }

    /// A fresh scratch file path for a writer to fill before [`ArtifactStore::put_file`].
    pub fn scratch_path(&self, ext: &str) -> PathBuf {
        self.scratch.join(format!("{}.{ext}.partial", uuid::Uuid::new_v4()))
    }

    /// Move a finished scratch file into the store under its hash. On a local store this is an
    /// atomic rename; elsewhere an upload (itself atomic in object stores) followed by removal.
    pub async fn put_file(&self, file: &Path, hash: &ContentHash, kind: ArtifactKind) -> Result<()> {
        let dest = Self::object_path(hash, kind);
        if let Some(root) = &self.root {
            let target = root.join(dest.as_ref());
            if let Some(dir) = target.parent() {
                std::fs::create_dir_all(dir).map_err(io(dir))?;
            }
            std::fs::rename(file, &target).map_err(io(&target))?;
            return Ok(());
        }
        let bytes = tokio::fs::read(file).await.map_err(io(file))?;
        self.store.put(&dest, PutPayload::from(bytes)).await?;
        let _ = tokio::fs::remove_file(file).await;
        Ok(())
    }

    /// Store bytes under a plain (not content-addressed) path, e.g. prediction logs. Atomic:
    /// `object_store` writes a staging file and renames it into place.
    pub async fn put_at(&self, path: &str, bytes: Vec<u8>) -> Result<()> {
        self.store.put(&ObjectPath::from(path), PutPayload::from(Bytes::from(bytes))).await?;
        Ok(())
    }

    /// The paths of the objects under a plain path prefix (e.g. `logs/predictions/m`), sorted.
    pub async fn list_at(&self, prefix: &str) -> Result<Vec<String>> {
        use futures::TryStreamExt;
        let prefix = ObjectPath::from(prefix);
        let mut paths: Vec<String> =
            self.store.list(Some(&prefix)).map_ok(|meta| meta.location.to_string()).try_collect().await?;
        paths.sort();
        Ok(paths)
    }

    /// The bytes stored under a plain path (see [`ArtifactStore::put_at`]); `None` if absent.
    pub async fn get_at(&self, path: &str) -> Result<Option<Bytes>> {
        match self.store.get(&ObjectPath::from(path)).await {
            Ok(result) => Ok(Some(result.bytes().await?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Store bytes, returning their hash.
    pub async fn put_bytes(&self, bytes: Vec<u8>, kind: ArtifactKind) -> Result<ContentHash> {
        let hash = ContentHash::of_bytes(&bytes);
        if !self.exists(&hash, kind).await? {
            // object_store's local `put` writes a staging file and renames it into place.
            self.store.put(&Self::object_path(&hash, kind), PutPayload::from(Bytes::from(bytes))).await?;
        }
        Ok(hash)
    }

    pub async fn exists(&self, hash: &ContentHash, kind: ArtifactKind) -> Result<bool> {
        match self.store.head(&Self::object_path(hash, kind)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn get_bytes(&self, hash: &ContentHash, kind: ArtifactKind) -> Result<Vec<u8>> {
        let result = self.store.get(&Self::object_path(hash, kind)).await;
        let result = match result {
            Err(object_store::Error::NotFound { path, .. }) => {
                return Err(StoreError::NotFound {
                    what: "artifact bytes",
                    name: path,
                    hint: "; the artifact store may have been cleaned: re-run the pipeline with `--force STEP`".into(),
                });
            }
            other => other?,
        };
        Ok(result.bytes().await?.to_vec())
    }

    /// A local file holding the artifact, for readers that want a path (Parquet, DataFusion).
    pub async fn local_path(&self, hash: &ContentHash, kind: ArtifactKind) -> Result<PathBuf> {
        if let Some(root) = &self.root {
            return Ok(root.join(Self::object_path(hash, kind).as_ref()));
        }
        let cached = self.scratch.join(format!("{hash}.{}", kind.extension()));
        if !cached.exists() {
            let bytes = self.get_bytes(hash, kind).await?;
            let partial = self.scratch_path(kind.extension());
            tokio::fs::write(&partial, bytes).await.map_err(io(&partial))?;
            tokio::fs::rename(&partial, &cached).await.map_err(io(&cached))?;
        }
        Ok(cached)
    }

    /// Remove scratch files left by killed processes (older than an hour, so that a concurrent
    /// run's files in progress are left alone).
    pub fn clean_scratch(&self) {
        let Ok(entries) = std::fs::read_dir(&self.scratch) else { return };
        let hour = std::time::Duration::from_secs(3600);
        for e in entries.flatten() {
            let old = e.metadata().and_then(|m| m.modified()).map(|t| t.elapsed().unwrap_or_default() > hour);
            if e.file_name().to_string_lossy().ends_with(".partial") && old.unwrap_or(false) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}
