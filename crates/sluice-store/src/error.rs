use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("metadata database error")]
    Sqlite(#[from] rusqlite::Error),
    #[error("metadata database error")]
    Postgres(#[from] postgres::Error),
    #[error("the metadata database holds something unexpected ({0}); was it written by another program?")]
    Corrupt(String),
    #[error("artifact store error")]
    ObjectStore(#[from] object_store::Error),
    #[error("cannot access `{path}`")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "metadata database `{location}` was written by a newer sluice (schema {found}, this one knows {known}); upgrade sluice"
    )]
    SchemaTooNew { location: String, found: i64, known: i64 },
    #[error("{what} `{name}` not found{hint}")]
    NotFound { what: &'static str, name: String, hint: String },
    #[error("`{0}` is ambiguous: it matches more than one {1}; give more characters")]
    Ambiguous(String, &'static str),
    #[error("`{url}`: {message}")]
    Remote { url: String, message: String },
    #[error(
        "study `{name}` exists with a different {what}: stored {stored}, asked {asked}; name a new study (`tune.study`) to search a different space"
    )]
    StudyMismatch { name: String, what: String, stored: String, asked: String },
    #[error("internal error: {0}; this is a bug")]
    Internal(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl StoreError {
    /// A PostgreSQL write refused because a row with its key exists (another writer was
    /// first). Only PostgreSQL's one-statement path can meet one: SQLite writes take turns.
    pub(crate) fn is_unique_violation(&self) -> bool {
        matches!(self, StoreError::Postgres(e) if e.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION))
    }
}
