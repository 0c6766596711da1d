//! Persistence: the metadata store (runs, steps, artifacts, lineage, cache, registry) and the
//! artifact store (content-addressed bytes).
//!
//! [`MetadataStore`] is the interface; [`SqliteStore`] is the embedded default (WAL, migrations,
//! one transaction per recorded step) and [`PostgresStore`] the shared one for teams and
//! clusters (same schema and migrations); [`MetadataLocation`] picks one from a URL. [`ArtifactStore`] keeps bytes under
//! `objects/<2 hex>/<hash>.<ext>` in any `object_store` backend (a local directory by default, or
//! a URL: [`ArtifactStore::open`]); [`remote`] opens object stores by URL for sources too;
//! every write lands under a temporary name and is renamed into place, so a killed process never
//! leaves a partial artifact under its final name.
//!
//! ```no_run
//! # async fn demo() -> sluice_store::Result<()> {
//! let dir = std::path::Path::new(".sluice");
//! let meta = sluice_store::SqliteStore::open(&dir.join("metadata.db"))?;
//! let artifacts = sluice_store::ArtifactStore::local(&dir.join("artifacts"))?;
//! # Ok(()) }
//! ```

mod artifacts;
mod error;
mod location;
mod metadata;
mod postgres;
mod records;
pub mod remote;
mod sql;
mod sql_metadata;
mod sql_studies;
mod sqlite;
mod studies;
#[doc(hidden)]
pub mod testing;

pub use artifacts::ArtifactStore;
pub use error::{Result, StoreError};
pub use location::MetadataLocation;
pub use metadata::MetadataStore;
pub use postgres::{Postgres, PostgresStore};
pub use records::*;
pub use sql::{Backend, SqlStore};
pub use sql_metadata::now;
pub use sqlite::{Sqlite, SqliteStore};
pub use studies::*;
