//! The metadata store on PostgreSQL, for teams and clusters: every process (runs, tuning workers,
//! servers) on every machine that opens the same URL shares runs, the registry and studies.
//! Same schema and migrations as SQLite ([`crate::sql::MIGRATIONS`], in PostgreSQL's types).
//!
//! The blocking `postgres` client runs its own small runtime, which may not be entered from a
//! tokio worker thread; calls made from one run on a scoped helper thread instead.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use postgres::{Client, GenericClient, IsolationLevel, NoTls, Statement};

use crate::error::{Result, StoreError};
use crate::sql::{Backend, MIGRATIONS, Row, SqlStore, Tx, Value, postgres_ddl, postgres_sql};

/// The shared metadata store.
pub type PostgresStore = SqlStore<Postgres>;

pub struct Postgres {
    config: postgres::Config,
    /// The URL with its password masked, for messages.
    url: String,
    /// Connected on first use and again after the connection was lost.
    client: Mutex<Option<Connection>>,
}

/// A connection and the statements prepared on it (by their SQLite spelling).
struct Connection {
    client: Client,
    statements: HashMap<String, Statement>,
}

impl PostgresStore {
    /// Connect to `postgres://user[:password]@host[:port]/database[?options=-csearch_path%3Dschema]`
    /// and create or migrate the schema.
    pub fn open(url: &str) -> Result<Self> {
        let masked = mask(url);
        let mut config: postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Remote { url: masked.clone(), message: format!("not a PostgreSQL URL: {e}") })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        // Notice a dead server or network within about a minute rather than TCP's two hours.
        config.keepalives(true).keepalives_idle(Duration::from_secs(30));
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(Duration::from_secs(60));
        }
        let store = SqlStore { db: Postgres { config, url: masked, client: Mutex::new(None) } };
        store.db.migrate()?;
        Ok(store)
    }

    /// The store's URL, password masked.
    pub fn url(&self) -> &str {
        &self.db.url
    }
}

/// `postgres://ana:secret@db/x` → `postgres://ana:***@db/x`.
pub(crate) fn mask(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

impl Postgres {
    /// Run `f` with a connected client, off any tokio worker thread.
    fn with_client<T: Send>(&self, f: impl FnOnce(&mut Connection) -> Result<T> + Send) -> Result<T> {
        let run = || {
            let mut guard = self.client.lock().unwrap_or_else(|poisoned| {
                // A call panicked mid-transaction: start again on a new connection.
                let mut guard = poisoned.into_inner();
                *guard = None;
                guard
            });
            if guard.as_ref().is_none_or(|c| c.client.is_closed()) {
                *guard = Some(self.connect()?);
            }
            f(guard.as_mut().expect("connected above"))
        };
        if tokio::runtime::Handle::try_current().is_err() {
            return run();
        }
        std::thread::scope(|s| {
            s.spawn(run).join().unwrap_or_else(|_| Err(StoreError::Internal("metadata call panicked".into())))
        })
    }

    fn connect(&self) -> Result<Connection> {
        let mut client = self.config.connect(NoTls).map_err(|e| {
            let mut message = format!("cannot connect to the metadata database: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                message.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            StoreError::Remote { url: self.url.clone(), message }
        })?;
        // A commit returns once PostgreSQL has it, before its WAL reaches the disk: a crash of
        // the database server (not of sluice) can lose the last fraction of a second of
        // records, never corrupt them — the durability of the SQLite store's WAL with
        // `synchronous = NORMAL` — and a tuning trial's bookkeeping costs a fraction of the
        // 4-5 disk flushes per trial otherwise.
        client.batch_execute("SET synchronous_commit = off")?;
        // A worker that hangs or is cut off mid-transaction must not hold a study's row lock (or
        // an advisory lock) for everyone: the server ends such transactions, and a statement
        // waits for a lock at most a minute.
        client.batch_execute(
            "SET idle_in_transaction_session_timeout = '60s'; SET lock_timeout = '60s'; \
             SET statement_timeout = '300s'",
        )?;
        Ok(Connection { client, statements: HashMap::new() })
    }

    fn migrate(&self) -> Result<()> {
        let known = MIGRATIONS.len() as i64;
        let url = self.url.clone();
        self.with_client(|conn| {
            let mut tx = conn.client.transaction()?;
            // Processes starting at once take turns; the first creates, the others find it done.
            tx.execute("SELECT pg_advisory_xact_lock(hashtext('sluice:migrate'))", &[])?;
            tx.batch_execute("CREATE TABLE IF NOT EXISTS sluice_schema (version BIGINT NOT NULL)")?;
            let version: i64 = match tx.query_opt("SELECT version FROM sluice_schema", &[])? {
                Some(row) => row.get(0),
                None => {
                    tx.execute("INSERT INTO sluice_schema (version) VALUES (0)", &[])?;
                    0
                }
            };
            if version > known {
                return Err(StoreError::SchemaTooNew { location: url, found: version, known });
            }
            for index in version as usize..MIGRATIONS.len() {
                tx.batch_execute(&postgres_ddl(index))?;
            }
            tx.execute("UPDATE sluice_schema SET version = $1", &[&known])?;
            tx.commit()?;
            Ok(())
        })
    }
}

impl Drop for Postgres {
    /// Closing the client blocks on its runtime too: off any tokio worker thread.
    fn drop(&mut self) {
        let client = self.client.get_mut().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        if client.is_some() && tokio::runtime::Handle::try_current().is_ok() {
            std::thread::scope(|s| {
                s.spawn(move || drop(client));
            });
        }
    }
}

impl Backend for Postgres {
    const SHARED: bool = true;

    fn write<T: Send>(&self, f: impl FnOnce(&mut dyn Tx) -> Result<T> + Send) -> Result<T> {
        // READ COMMITTED: each statement sees what committed before it; writers that must not
        // interleave serialize on a row lock (a study's `seq`) or an advisory lock (`Tx::lock`).
        self.with_client(|conn| {
            let mut transaction = conn.client.transaction()?;
            let out = f(&mut PgTx { tx: &mut transaction, statements: &mut conn.statements, transaction: true })?;
            transaction.commit()?;
            Ok(out)
        })
    }

    fn read<T: Send>(&self, f: impl FnOnce(&mut dyn Tx) -> Result<T> + Send) -> Result<T> {
        self.with_client(|conn| {
            let tx = conn.client.build_transaction().isolation_level(IsolationLevel::RepeatableRead).read_only(true);
            let mut transaction = tx.start()?;
            let out = f(&mut PgTx { tx: &mut transaction, statements: &mut conn.statements, transaction: true })?;
            transaction.commit()?;
            Ok(out)
        })
    }

    const ATOMIC_STATEMENTS: bool = true;

    fn statements<T: Send>(&self, f: impl FnOnce(&mut dyn Tx) -> Result<T> + Send) -> Result<T> {
        // No BEGIN and COMMIT: each statement commits on its own, one round trip each.
        self.with_client(|conn| {
            f(&mut PgTx { tx: &mut conn.client, statements: &mut conn.statements, transaction: false })
        })
    }
}

/// Statements on a transaction, or on the client itself (each statement its own transaction).
struct PgTx<'a, C: GenericClient> {
    tx: &'a mut C,
    statements: &'a mut HashMap<String, Statement>,
    /// Whether `tx` is a transaction (locks need one to be held in).
    transaction: bool,
}

impl<C: GenericClient> PgTx<'_, C> {
    /// The statement prepared once per connection: one round trip per call instead of two.
    fn statement(&mut self, sql: &str) -> Result<Statement> {
        if let Some(found) = self.statements.get(sql) {
            return Ok(found.clone());
        }
        let prepared = self.tx.prepare(&postgres_sql(sql))?;
        self.statements.insert(sql.to_string(), prepared.clone());
        Ok(prepared)
    }
}

fn params(args: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    args.iter().map(|a| a as &(dyn ToSql + Sync)).collect()
}

impl<C: GenericClient> Tx for PgTx<'_, C> {
    fn execute(&mut self, sql: &str, args: &[Value]) -> Result<u64> {
        let statement = self.statement(sql)?;
        Ok(self.tx.execute(&statement, &params(args))?)
    }

    fn query(&mut self, sql: &str, args: &[Value]) -> Result<Vec<Row>> {
        let statement = self.statement(sql)?;
        let found = self.tx.query(&statement, &params(args))?;
        let mut out = Vec::with_capacity(found.len());
        for row in found {
            let mut values = Vec::with_capacity(row.len());
            for (i, column) in row.columns().iter().enumerate() {
                let ty = column.type_();
                let value = if *ty == Type::INT8 {
                    row.try_get::<_, Option<i64>>(i)?.map(Value::Int)
                } else if *ty == Type::INT4 {
                    row.try_get::<_, Option<i32>>(i)?.map(|v| Value::Int(v.into()))
                } else if *ty == Type::INT2 {
                    row.try_get::<_, Option<i16>>(i)?.map(|v| Value::Int(v.into()))
                } else if *ty == Type::FLOAT8 {
                    row.try_get::<_, Option<f64>>(i)?.map(Value::Real)
                } else if *ty == Type::FLOAT4 {
                    row.try_get::<_, Option<f32>>(i)?.map(|v| Value::Real(v.into()))
                } else if *ty == Type::BOOL {
                    row.try_get::<_, Option<bool>>(i)?.map(|v| Value::Int(v.into()))
                } else if <&str as postgres::types::FromSql>::accepts(ty) {
                    row.try_get::<_, Option<String>>(i)?.map(Value::Text)
                } else {
                    return Err(StoreError::Corrupt(format!("column `{}` has PostgreSQL type {ty}", column.name())));
                };
                values.push(value.unwrap_or(Value::Null));
            }
            out.push(Row(values));
        }
        Ok(out)
    }

    fn lock(&mut self, key: &str) -> Result<()> {
        if !self.transaction {
            return Err(StoreError::Internal("a lock is held only inside a transaction".into()));
        }
        self.tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&key])?;
        Ok(())
    }
}

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(v) if *ty == Type::INT8 => v.to_sql(ty, out),
            Value::Int(v) if *ty == Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
            Value::Int(v) if *ty == Type::INT2 => i16::try_from(*v)?.to_sql(ty, out),
            Value::Int(v) if *ty == Type::FLOAT8 => (*v as f64).to_sql(ty, out),
            Value::Real(v) if *ty == Type::FLOAT8 => v.to_sql(ty, out),
            Value::Real(v) if *ty == Type::FLOAT4 => (*v as f32).to_sql(ty, out),
            Value::Text(s) if <&str as ToSql>::accepts(ty) => s.as_str().to_sql(ty, out),
            other => Err(format!("cannot send {other:?} as PostgreSQL type {ty}").into()),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}
