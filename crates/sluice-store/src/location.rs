//! Where the metadata lives, chosen by URL: a SQLite file (the default, inside the sluice home)
//! or a PostgreSQL database shared by a team or a cluster.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Result, StoreError};
use crate::metadata::MetadataStore;
use crate::{PostgresStore, SqliteStore};

/// The environment variable naming the metadata store (`postgres://…`, `sqlite://PATH` or a path).
pub const METADATA_ENV: &str = "SLUICE_METADATA";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetadataLocation {
    Sqlite(PathBuf),
    /// The URL as given (it may hold a password; [`std::fmt::Display`] masks it).
    Postgres(String),
}

impl MetadataLocation {
    /// `SLUICE_METADATA` when set, else `home/metadata.db`.
    pub fn for_home(home: &Path) -> Result<Self> {
        match std::env::var(METADATA_ENV) {
            Ok(url) if !url.trim().is_empty() => Self::parse(url.trim()),
            _ => Ok(Self::Sqlite(home.join("metadata.db"))),
        }
    }

    pub fn parse(url: &str) -> Result<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self::Postgres(url.to_string()));
        }
        if let Some(path) = url.strip_prefix("sqlite://") {
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        if url.contains("://") {
            return Err(StoreError::Remote {
                url: crate::postgres::mask(url),
                message: format!(
                    "unknown metadata store (from {METADATA_ENV}); use postgres://USER@HOST:PORT/DATABASE, sqlite://PATH or a file path"
                ),
            });
        }
        Ok(Self::Sqlite(PathBuf::from(url)))
    }

    /// Whether there is something to open without creating it (a database server always is).
    pub fn exists(&self) -> bool {
        match self {
            Self::Sqlite(path) => path.exists(),
            Self::Postgres(_) => true,
        }
    }

    /// Open (creating and migrating when needed).
    pub fn open(&self) -> Result<Arc<dyn MetadataStore>> {
        Ok(match self {
            Self::Sqlite(path) => Arc::new(SqliteStore::open(path)?),
            Self::Postgres(url) => Arc::new(PostgresStore::open(url)?),
        })
    }
}

impl std::fmt::Display for MetadataLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "{}", path.display()),
            Self::Postgres(url) => f.write_str(&crate::postgres::mask(url)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_from_urls_and_paths() {
        assert_eq!(MetadataLocation::parse("/x/m.db").unwrap(), MetadataLocation::Sqlite("/x/m.db".into()));
        assert_eq!(MetadataLocation::parse("sqlite:///x/m.db").unwrap(), MetadataLocation::Sqlite("/x/m.db".into()));
        let pg = MetadataLocation::parse("postgres://ana:secret@db:5432/meta").unwrap();
        assert_eq!(pg.to_string(), "postgres://ana:***@db:5432/meta");
        let err = MetadataLocation::parse("mysql://root:pw@db/x").unwrap_err().to_string();
        assert!(err.contains("unknown metadata store") && err.contains("mysql://root:***@db/x"), "{err}");
    }
}
