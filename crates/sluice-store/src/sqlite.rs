//! The embedded metadata store: one SQLite file in WAL mode.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, TransactionBehavior};

use crate::error::{Result, StoreError};
use crate::sql::{Backend, MIGRATIONS, Row, SqlStore, Tx, Value};

/// The embedded default metadata store.
pub type SqliteStore = SqlStore<Sqlite>;

/// One SQLite file, one connection (SQLite writes one at a time anyway; processes sharing the
/// file wait for each other through the busy timeout).
pub struct Sqlite {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl SqliteStore {
    /// Open (creating and migrating if needed) the metadata file at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Io { path: dir.to_path_buf(), source })?;
        }
        // Processes opening a new home at once race to switch it to WAL and to migrate it;
        // SQLite can answer "locked" there without waiting (switching the journal mode), so
        // the whole opening is retried for up to 30 s.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            match open_once(path) {
                Err(StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)))
                    if matches!(e.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(25));
                }
                other => return other.map(|db| SqlStore { db }),
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.db.path
    }
}

fn open_once(path: &Path) -> Result<Sqlite> {
    let mut conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    migrate(&mut conn, path)?;
    Ok(Sqlite { conn: Mutex::new(conn), path: path.to_path_buf() })
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    let known = MIGRATIONS.len() as i64;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > known {
        return Err(StoreError::SchemaTooNew { location: path.display().to_string(), found: version, known });
    }
    for m in &MIGRATIONS[version as usize..] {
        tx.execute_batch(m)?;
    }
    tx.pragma_update(None, "user_version", known)?;
    tx.commit()?;
    Ok(())
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Int(v) => ToSqlOutput::Borrowed(ValueRef::Integer(*v)),
            Value::Real(v) => ToSqlOutput::Borrowed(ValueRef::Real(*v)),
            Value::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
        })
    }
}

/// Statements on a connection: inside a transaction the caller holds, or each on its own.
struct SqliteTx<'a>(&'a rusqlite::Connection);

impl Tx for SqliteTx<'_> {
    fn execute(&mut self, sql: &str, args: &[Value]) -> Result<u64> {
        let mut stmt = self.0.prepare_cached(sql)?;
        Ok(stmt.execute(rusqlite::params_from_iter(args))? as u64)
    }

    fn query(&mut self, sql: &str, args: &[Value]) -> Result<Vec<Row>> {
        let mut stmt = self.0.prepare_cached(sql)?;
        let width = stmt.column_count();
        let mut rows = stmt.query(rusqlite::params_from_iter(args))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let mut values = Vec::with_capacity(width);
            for i in 0..width {
                values.push(match r.get_ref(i)? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(v) => Value::Int(v),
                    ValueRef::Real(v) => Value::Real(v),
                    ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Blob(_) => return Err(StoreError::Corrupt(format!("column {i} of `{sql}` is a blob"))),
                });
            }
            out.push(Row(values));
        }
        Ok(out)
    }

    fn lock(&mut self, _key: &str) -> Result<()> {
        // Write transactions already exclude each other; outside one there is nothing to hold.
        match self.0.is_autocommit() {
            true => Err(StoreError::Internal("a lock is held only inside a transaction".into())),
            false => Ok(()),
        }
    }
}

impl Sqlite {
    fn conn(&self) -> Result<std::sync::MutexGuard<'_, Connection>> {
        self.conn.lock().map_err(|_| StoreError::Internal("metadata lock poisoned".into()))
    }

    fn transaction<T>(&self, behavior: TransactionBehavior, f: impl FnOnce(&mut dyn Tx) -> Result<T>) -> Result<T> {
        let mut conn = self.conn()?;
        let transaction = conn.transaction_with_behavior(behavior)?;
        let out = f(&mut SqliteTx(&transaction))?;
        transaction.commit()?;
        Ok(out)
    }
}

impl Backend for Sqlite {
    const SHARED: bool = false;

    fn write<T: Send>(&self, f: impl FnOnce(&mut dyn Tx) -> Result<T> + Send) -> Result<T> {
        // IMMEDIATE: take the write lock up front, so concurrent writers wait for each other
        // (busy timeout) instead of failing on a read-to-write lock upgrade.
        self.transaction(TransactionBehavior::Immediate, f)
    }

    fn read<T: Send>(&self, f: impl FnOnce(&mut dyn Tx) -> Result<T> + Send) -> Result<T> {
        self.transaction(TransactionBehavior::Deferred, f)
    }

    fn statements<T: Send>(&self, f: impl FnOnce(&mut dyn Tx) -> Result<T> + Send) -> Result<T> {
        // Autocommit: each statement its own transaction (no BEGIN and COMMIT to run).
        let conn = self.conn()?;
        f(&mut SqliteTx(&conn))
    }
}
