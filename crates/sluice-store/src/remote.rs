//! Object stores by URL (`s3://`, `gs://`, `az://`, `http(s)://`, `file://`), with credentials
//! and endpoints from the usual environment variables (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT`, `AWS_ALLOW_HTTP`;
//! `GOOGLE_SERVICE_ACCOUNT`; `AZURE_STORAGE_ACCOUNT_NAME`, `AZURE_STORAGE_ACCOUNT_KEY`, ...), as
//! `object_store`'s builders read them.

use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use url::Url;

use crate::error::{Result, StoreError};

pub use sluice_core::is_url;

fn remote_error(url: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Remote { url: url.to_string(), message: e.to_string() }
}

/// The store a URL points into, the URL of its root (`s3://bucket`), and the path in it.
pub fn store_for(url: &str) -> Result<(Arc<dyn ObjectStore>, Url, ObjectPath)> {
    let parsed = Url::parse(url).map_err(|e| remote_error(url, format!("not a URL: {e}")))?;
    let path = ObjectPath::from_url_path(parsed.path()).map_err(|e| remote_error(url, e))?;
    let root =
        Url::parse(&format!("{}://{}", parsed.scheme(), parsed.authority())).map_err(|e| remote_error(url, e))?;
    let built: std::result::Result<Arc<dyn ObjectStore>, object_store::Error> = match parsed.scheme() {
        "s3" | "s3a" => object_store::aws::AmazonS3Builder::from_env().with_url(url).build().map(|s| Arc::new(s) as _),
        "gs" => {
            object_store::gcp::GoogleCloudStorageBuilder::from_env().with_url(url).build().map(|s| Arc::new(s) as _)
        }
        "az" | "azure" | "abfs" | "abfss" | "adl" => {
            object_store::azure::MicrosoftAzureBuilder::from_env().with_url(url).build().map(|s| Arc::new(s) as _)
        }
        "http" | "https" => {
            object_store::http::HttpBuilder::new().with_url(root.as_str()).build().map(|s| Arc::new(s) as _)
        }
        "file" => Ok(Arc::new(object_store::local::LocalFileSystem::new()) as _),
        other => {
            return Err(remote_error(url, format!("unsupported scheme `{other}` (use s3, gs, az, http(s) or file)")));
        }
    };
    Ok((built.map_err(|e| remote_error(url, e))?, root, path))
}

/// One object a source reads, with what identifies its version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteObject {
    /// Full URL (`s3://bucket/data/part-0.parquet`).
    pub url: String,
    pub size: u64,
    pub e_tag: Option<String>,
    pub last_modified: String,
}

impl RemoteObject {
    /// What a cache key needs to see a changed object: its URL, size, ETag and time.
    pub fn fingerprint(&self) -> String {
        format!("{}\n{}\n{}\n{}", self.url, self.size, self.e_tag.as_deref().unwrap_or(""), self.last_modified)
    }
}

/// The objects a URL names: one object, or every object matching a glob in the path
/// (`s3://bucket/data/*.parquet`, `s3://bucket/lake/**/*.parquet`), or everything under a
/// "directory" URL ending in `/` (but hidden and `_`-prefixed names). Sorted by URL.
pub async fn list(url: &str) -> Result<(Arc<dyn ObjectStore>, Url, Vec<RemoteObject>)> {
    let (store, root, path) = store_for(url)?;
    let text = path.as_ref().to_string();
    let glob_at = text.find(['*', '?', '[']);
    let directory = glob_at.is_none() && (url.ends_with('/') || text.is_empty());
    let prefix = match glob_at {
        Some(i) => text[..i].rsplit_once('/').map(|(dir, _)| dir.to_string()).unwrap_or_default(),
        None if directory => text.clone(),
        None => {
            let meta = store.head(&path).await.map_err(|e| remote_error(url, e))?;
            return Ok((store, root.clone(), vec![object(&root, meta)]));
        }
    };
    let pattern = match glob_at {
        Some(_) => Some(glob::Pattern::new(&text).map_err(|e| remote_error(url, format!("bad glob: {e}")))?),
        None => None,
    };
    let prefix = (!prefix.is_empty()).then(|| ObjectPath::from(prefix));
    let listed: Vec<object_store::ObjectMeta> =
        store.list(prefix.as_ref()).try_collect().await.map_err(|e| remote_error(url, e))?;
    let mut objects: Vec<RemoteObject> = listed
        .into_iter()
        .filter(|m| {
            let key = m.location.as_ref();
            let name = key.rsplit('/').next().unwrap_or(key);
            let marker = name.starts_with('.') || name.starts_with('_');
            match &pattern {
                Some(p) => {
                    p.matches_with(key, glob::MatchOptions { require_literal_separator: true, ..Default::default() })
                }
                None => !marker,
            }
        })
        .map(|m| object(&root, m))
        .collect();
    objects.sort_by(|a, b| a.url.cmp(&b.url));
    if objects.is_empty() {
        return Err(remote_error(url, "no objects match"));
    }
    Ok((store, root, objects))
}

fn object(root: &Url, meta: object_store::ObjectMeta) -> RemoteObject {
    RemoteObject {
        url: format!("{}/{}", root.as_str().trim_end_matches('/'), meta.location.as_ref()),
        size: meta.size,
        e_tag: meta.e_tag,
        last_modified: meta.last_modified.to_rfc3339(),
    }
}
