//! What the SQL metadata stores share: the schema's migrations, values and rows, and the
//! transaction interface the two databases implement. The store's logic ([`SqlStore`]) is
//! written once against [`Backend`]; its statements use SQLite's spelling (`?1` placeholders,
//! `rowid` for insertion order), which PostgreSQL understands after [`postgres_sql`] renames the
//! placeholders (its tables carry an explicit `rowid` column).

use sluice_core::ContentHash;

use crate::error::{Result, StoreError};

/// Schema migrations, applied in order; the store records how many have run (SQLite:
/// `PRAGMA user_version`, PostgreSQL: the `sluice_schema` table). Never edit a released
/// migration: append a new one. Written for SQLite; [`postgres_ddl`] turns each into PostgreSQL.
pub(crate) const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE runs (
    id          TEXT PRIMARY KEY,
    pipeline    TEXT NOT NULL,
    spec_path   TEXT NOT NULL,
    status      TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    error       TEXT,
    pid         INTEGER NOT NULL
);
CREATE INDEX runs_started ON runs(started_at);
CREATE TABLE params (
    run_id TEXT NOT NULL REFERENCES runs(id),
    key    TEXT NOT NULL,
    value  TEXT NOT NULL,
    PRIMARY KEY (run_id, key)
);
CREATE TABLE step_runs (
    run_id      TEXT NOT NULL REFERENCES runs(id),
    step        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    cache_key   TEXT NOT NULL,
    status      TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    duration_ms INTEGER NOT NULL,
    rows        INTEGER,
    config      TEXT NOT NULL,
    inputs      TEXT NOT NULL,
    error       TEXT,
    PRIMARY KEY (run_id, step)
);
CREATE TABLE artifacts (
    hash       TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,
    size       INTEGER NOT NULL,
    rows       INTEGER,
    schema     TEXT,
    created_at TEXT NOT NULL
);
CREATE TABLE step_outputs (
    run_id   TEXT NOT NULL,
    step     TEXT NOT NULL,
    output   TEXT NOT NULL,
    artifact TEXT NOT NULL REFERENCES artifacts(hash),
    PRIMARY KEY (run_id, step, output),
    FOREIGN KEY (run_id, step) REFERENCES step_runs(run_id, step)
);
CREATE INDEX step_outputs_artifact ON step_outputs(artifact);
CREATE TABLE cache (
    cache_key  TEXT PRIMARY KEY,
    run_id     TEXT NOT NULL,
    step       TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE lineage (
    artifact TEXT NOT NULL REFERENCES artifacts(hash),
    parent   TEXT NOT NULL,
    run_id   TEXT NOT NULL,
    step     TEXT NOT NULL,
    role     TEXT NOT NULL,
    PRIMARY KEY (artifact, parent, run_id, step, role)
);
CREATE TABLE metrics (
    run_id TEXT NOT NULL,
    step   TEXT NOT NULL,
    key    TEXT NOT NULL,
    value  REAL NOT NULL,
    PRIMARY KEY (run_id, step, key)
);
CREATE TABLE file_hashes (
    path        TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    hash        TEXT NOT NULL
);
CREATE TABLE model_versions (
    name       TEXT NOT NULL,
    version    INTEGER NOT NULL,
    artifact   TEXT NOT NULL REFERENCES artifacts(hash),
    run_id     TEXT NOT NULL,
    step       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    metrics    TEXT NOT NULL,
    PRIMARY KEY (name, version),
    UNIQUE (name, artifact)
);
CREATE TABLE model_aliases (
    name       TEXT NOT NULL,
    alias      TEXT NOT NULL,
    version    INTEGER NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (name, alias),
    FOREIGN KEY (name, version) REFERENCES model_versions(name, version)
);
"#,
    r#"
ALTER TABLE model_versions ADD COLUMN gates TEXT NOT NULL DEFAULT '[]';
ALTER TABLE model_versions ADD COLUMN evaluation TEXT;
CREATE TABLE model_tags (
    name    TEXT NOT NULL,
    version INTEGER NOT NULL,
    key     TEXT NOT NULL,
    value   TEXT NOT NULL,
    PRIMARY KEY (name, version, key),
    FOREIGN KEY (name, version) REFERENCES model_versions(name, version)
);
"#,
    r#"
CREATE TABLE studies (
    name       TEXT PRIMARY KEY,
    direction  TEXT NOT NULL,
    definition TEXT NOT NULL,
    created_at TEXT NOT NULL,
    seq        INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE trials (
    study        TEXT NOT NULL REFERENCES studies(name),
    number       INTEGER NOT NULL,
    state        TEXT NOT NULL,
    params       TEXT NOT NULL DEFAULT '{}',
    value        REAL,
    metrics      TEXT NOT NULL DEFAULT '{}',
    meta         TEXT NOT NULL DEFAULT '{}',
    host         TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    run_id       TEXT,
    started_at   TEXT NOT NULL,
    finished_at  TEXT,
    heartbeat_at TEXT NOT NULL,
    error        TEXT,
    seq          INTEGER NOT NULL,
    attempt      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (study, number)
);
CREATE INDEX trials_seq ON trials(study, seq);
CREATE TABLE trial_values (
    study  TEXT NOT NULL,
    number INTEGER NOT NULL,
    step   INTEGER NOT NULL,
    value  REAL NOT NULL,
    seq    INTEGER NOT NULL,
    PRIMARY KEY (study, number, step)
);
CREATE INDEX trial_values_seq ON trial_values(study, seq);
"#,
    r#"
CREATE TABLE alerts (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    fired_at     TEXT NOT NULL,
    source       TEXT NOT NULL,
    run_id       TEXT,
    rule         TEXT NOT NULL,
    name         TEXT NOT NULL,
    value        REAL NOT NULL,
    window_start TEXT,
    since        TEXT,
    message      TEXT NOT NULL,
    actions      TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX alerts_fired ON alerts(fired_at);
"#,
    // The host a run's process is on: with a shared (PostgreSQL) store, a run is reaped as
    // dead only by a process on its own host, which can see whether its pid is gone.
    r#"
ALTER TABLE runs ADD COLUMN host TEXT;
"#,
    // `sluice runs show` lists the trials a run executed.
    r#"
CREATE INDEX trials_run ON trials(run_id);
"#,
];

/// What PostgreSQL adds to a migration: SQLite's implicit `rowid`, as a column, on the tables
/// whose rows are listed in insertion order.
const POSTGRES_EXTRA: &[(usize, &str)] = &[(
    0,
    "ALTER TABLE runs ADD COLUMN rowid BIGSERIAL;\n\
     ALTER TABLE step_runs ADD COLUMN rowid BIGSERIAL;\n\
     ALTER TABLE step_outputs ADD COLUMN rowid BIGSERIAL;\n",
)];

/// A migration in PostgreSQL's types: 64-bit integers, doubles, byte-ordered text (SQLite
/// compares text by bytes; `COLLATE "C"` keeps listings in the same order) and an identity
/// column for `AUTOINCREMENT`.
pub(crate) fn postgres_ddl(index: usize) -> String {
    let sql = MIGRATIONS[index]
        .replace("INTEGER PRIMARY KEY AUTOINCREMENT", "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY");
    let mut out = String::with_capacity(sql.len() + 256);
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        out.push_str(match word.as_str() {
            "INTEGER" => "BIGINT",
            "REAL" => "DOUBLE PRECISION",
            "TEXT" => "TEXT COLLATE \"C\"",
            w => w,
        });
        word.clear();
    };
    for c in sql.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    for (_, extra) in POSTGRES_EXTRA.iter().filter(|(i, _)| *i == index) {
        out.push_str(extra);
    }
    out
}

/// A statement in PostgreSQL's placeholder spelling: `?1` becomes `$1`.
pub(crate) fn postgres_sql(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

/// `INSERT ... ON CONFLICT (key) DO UPDATE`: the upsert both databases speak.
pub(crate) fn upsert(table: &str, columns: &[&str], key: &[&str]) -> String {
    let placeholders = (1..=columns.len()).map(|i| format!("?{i}")).collect::<Vec<_>>().join(", ");
    let updates: Vec<String> =
        columns.iter().filter(|c| !key.contains(c)).map(|c| format!("{c} = excluded.{c}")).collect();
    let action = if updates.is_empty() { "NOTHING".to_string() } else { format!("UPDATE SET {}", updates.join(", ")) };
    format!(
        "INSERT INTO {table} ({}) VALUES ({placeholders}) ON CONFLICT ({}) DO {action}",
        columns.join(", "),
        key.join(", ")
    )
}

/// A parameter or a column value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}

impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Value::Int(v.into())
    }
}

impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Value::Int(v as i64)
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Real(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_string())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}

impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Value::Text(v.clone())
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// Statement parameters: `args![a, b, c]`.
macro_rules! args {
    ($($v:expr),* $(,)?) => { &[$($crate::sql::Value::from($v)),*][..] };
}
pub(crate) use args;

/// A result row; getters name the column position and what was expected when a value does not
/// fit (a corrupted or foreign database).
#[derive(Debug)]
pub struct Row(pub(crate) Vec<Value>);

impl Row {
    fn at(&self, i: usize) -> &Value {
        self.0.get(i).unwrap_or(&Value::Null)
    }

    pub fn is_null(&self, i: usize) -> bool {
        *self.at(i) == Value::Null
    }

    fn unexpected(&self, i: usize, wanted: &str) -> StoreError {
        StoreError::Corrupt(format!("column {i} should hold {wanted}, found {:?}", self.at(i)))
    }

    pub fn opt_text(&self, i: usize) -> Result<Option<String>> {
        match self.at(i) {
            Value::Null => Ok(None),
            Value::Text(s) => Ok(Some(s.clone())),
            _ => Err(self.unexpected(i, "text")),
        }
    }

    pub fn text(&self, i: usize) -> Result<String> {
        self.opt_text(i)?.ok_or_else(|| self.unexpected(i, "text"))
    }

    pub fn opt_int(&self, i: usize) -> Result<Option<i64>> {
        match self.at(i) {
            Value::Null => Ok(None),
            Value::Int(v) => Ok(Some(*v)),
            _ => Err(self.unexpected(i, "an integer")),
        }
    }

    pub fn int(&self, i: usize) -> Result<i64> {
        self.opt_int(i)?.ok_or_else(|| self.unexpected(i, "an integer"))
    }

    pub fn opt_real(&self, i: usize) -> Result<Option<f64>> {
        match self.at(i) {
            Value::Null => Ok(None),
            Value::Real(v) => Ok(Some(*v)),
            Value::Int(v) => Ok(Some(*v as f64)),
            _ => Err(self.unexpected(i, "a number")),
        }
    }

    pub fn real(&self, i: usize) -> Result<f64> {
        self.opt_real(i)?.ok_or_else(|| self.unexpected(i, "a number"))
    }

    pub fn json<T: serde::de::DeserializeOwned>(&self, i: usize) -> Result<T> {
        let text = self.text(i)?;
        serde_json::from_str(&text)
            .map_err(|e| StoreError::Corrupt(format!("column {i} is not the JSON expected: {e}")))
    }

    pub fn opt_json<T: serde::de::DeserializeOwned>(&self, i: usize) -> Result<Option<T>> {
        match self.at(i) {
            Value::Null => Ok(None),
            _ => self.json(i).map(Some),
        }
    }

    pub fn hash(&self, i: usize) -> Result<ContentHash> {
        self.text(i)?.parse().map_err(|e| StoreError::Corrupt(format!("column {i} is not a content hash: {e}")))
    }
}

/// One open transaction. Statements are in SQLite's spelling (see the module docs).
pub trait Tx {
    /// Run a statement; returns the rows it changed.
    fn execute(&mut self, sql: &str, args: &[Value]) -> Result<u64>;
    fn query(&mut self, sql: &str, args: &[Value]) -> Result<Vec<Row>>;
    /// Hold `key` until the transaction ends, so writers of the same thing take turns. SQLite's
    /// write transactions already exclude each other; PostgreSQL takes an advisory lock.
    fn lock(&mut self, key: &str) -> Result<()>;

    fn query_opt(&mut self, sql: &str, args: &[Value]) -> Result<Option<Row>> {
        Ok(self.query(sql, args)?.into_iter().next())
    }

    fn query_one(&mut self, sql: &str, args: &[Value]) -> Result<Row> {
        self.query_opt(sql, args)?.ok_or_else(|| StoreError::Internal(format!("no row from `{sql}`")))
    }
}

/// A database the metadata store runs on.
pub trait Backend: Send + Sync + 'static {
    /// Whether processes on several machines may share the database.
    const SHARED: bool;
    /// Run `f` in a transaction that will write: committed when `f` succeeds, rolled back when
    /// it fails.
    #[doc(hidden)]
    fn write<T: Send>(&self, f: impl FnOnce(&mut dyn Tx) -> Result<T> + Send) -> Result<T>;
    /// Run `f` in a read-only transaction that sees one moment of the database.
    #[doc(hidden)]
    fn read<T: Send>(&self, f: impl FnOnce(&mut dyn Tx) -> Result<T> + Send) -> Result<T>;
    /// Whether [`Backend::statements`] runs each statement as its own transaction, so that one
    /// statement may change several tables atomically (PostgreSQL's data-modifying `WITH`).
    #[doc(hidden)]
    const ATOMIC_STATEMENTS: bool = false;
    /// Run `f`'s statements each on its own, without a transaction around them (one round trip
    /// per statement on a server): for reads that need no single snapshot, and, where
    /// [`Backend::ATOMIC_STATEMENTS`], writes of one statement.
    #[doc(hidden)]
    fn statements<T: Send>(&self, f: impl FnOnce(&mut dyn Tx) -> Result<T> + Send) -> Result<T>;
}

/// The metadata store on a SQL database: [`crate::SqliteStore`] (embedded) or
/// [`crate::PostgresStore`] (shared by a team or a cluster).
pub struct SqlStore<B> {
    pub(crate) db: B,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_spelling() {
        assert_eq!(
            postgres_sql("SELECT a FROM t WHERE a = ?1 AND b = ?12 AND c = '?'"),
            "SELECT a FROM t WHERE a = $1 AND b = $12 AND c = '?'"
        );
        let ddl = postgres_ddl(3);
        assert!(ddl.contains("id           BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"), "{ddl}");
        assert!(ddl.contains("value        DOUBLE PRECISION NOT NULL"), "{ddl}");
        assert!(ddl.contains("fired_at     TEXT COLLATE \"C\" NOT NULL"), "{ddl}");
        assert!(postgres_ddl(0).ends_with("ALTER TABLE step_outputs ADD COLUMN rowid BIGSERIAL;\n"));
        assert_eq!(
            upsert("t", &["a", "b", "c"], &["a"]),
            "INSERT INTO t (a, b, c) VALUES (?1, ?2, ?3) ON CONFLICT (a) DO UPDATE SET b = excluded.b, c = excluded.c"
        );
        assert_eq!(upsert("t", &["a"], &["a"]), "INSERT INTO t (a) VALUES (?1) ON CONFLICT (a) DO NOTHING");
    }
}
