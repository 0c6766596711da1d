//! The embedded metadata store: one SQLite file in WAL mode.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use sluice_core::{ArtifactKind, ArtifactMeta, ContentHash};

use crate::error::{Result, StoreError};
use crate::metadata::MetadataStore;
use crate::records::*;

/// Schema migrations, applied in order; `PRAGMA user_version` records how many have run.
/// Never edit a released migration: append a new one.
const MIGRATIONS: &[&str] = &[
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
];

pub struct SqliteStore {
    conn: Mutex<Connection>,
    path: PathBuf,
}

/// The current time as stored in the metadata (RFC 3339, milliseconds, UTC).
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn hash_col(s: String) -> rusqlite::Result<ContentHash> {
    s.parse().map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e)))
}

fn json_col<T: serde::de::DeserializeOwned>(s: String) -> rusqlite::Result<T> {
    serde_json::from_str(&s)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e)))
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

const STEP_COLUMNS: &str =
    "run_id, step, kind, cache_key, status, started_at, duration_ms, rows, config, inputs, error";

fn step_row(r: &rusqlite::Row) -> rusqlite::Result<StepRecord> {
    Ok(StepRecord {
        run_id: r.get(0)?,
        step: r.get(1)?,
        kind: r.get(2)?,
        cache_key: hash_col(r.get(3)?)?,
        status: StepStatus::parse(&r.get::<_, String>(4)?),
        started_at: r.get(5)?,
        duration_ms: r.get::<_, i64>(6)? as u64,
        rows: r.get::<_, Option<i64>>(7)?.map(|v| v as u64),
        config: json_col(r.get(8)?)?,
        inputs: json_col(r.get(9)?)?,
        error: r.get(10)?,
    })
}

const ARTIFACT_COLUMNS: &str = "hash, kind, size, rows, schema";

fn artifact_row(r: &rusqlite::Row) -> rusqlite::Result<ArtifactMeta> {
    let kind: String = r.get(1)?;
    Ok(ArtifactMeta {
        hash: hash_col(r.get(0)?)?,
        kind: ArtifactKind::parse(&kind).unwrap_or(ArtifactKind::Dataset),
        size: r.get::<_, i64>(2)? as u64,
        rows: r.get::<_, Option<i64>>(3)?.map(|v| v as u64),
        schema: match r.get::<_, Option<String>>(4)? {
            Some(s) => Some(json_col(s)?),
            None => None,
        },
    })
}

fn run_row(r: &rusqlite::Row) -> rusqlite::Result<RunRecord> {
    Ok(RunRecord {
        id: r.get(0)?,
        pipeline: r.get(1)?,
        spec_path: r.get(2)?,
        status: RunStatus::parse(&r.get::<_, String>(3)?),
        started_at: r.get(4)?,
        finished_at: r.get(5)?,
        error: r.get(6)?,
        pid: r.get::<_, i64>(7)? as u32,
        params: Vec::new(),
    })
}

const RUN_COLUMNS: &str = "id, pipeline, spec_path, status, started_at, finished_at, error, pid";

pub(crate) fn pid_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") { Path::new(&format!("/proc/{pid}")).exists() } else { true }
}

/// The outputs a step execution recorded, in the order it recorded them.
fn outputs_of(c: &Connection, run_id: &str, step: &str) -> rusqlite::Result<Vec<OutputRecord>> {
    let columns = ARTIFACT_COLUMNS.split(", ").map(|c| format!("a.{c}")).collect::<Vec<_>>().join(", ");
    let mut stmt = c.prepare(&format!(
        "SELECT {columns}, o.output FROM step_outputs o JOIN artifacts a ON a.hash = o.artifact \
         WHERE o.run_id = ?1 AND o.step = ?2 ORDER BY o.rowid"
    ))?;
    stmt.query_map(params![run_id, step], |r| Ok(OutputRecord { name: r.get(5)?, artifact: artifact_row(r)? }))?
        .collect()
}

impl SqliteStore {
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Io { path: dir.to_path_buf(), source })?;
        }
        // Processes opening a new home at once race to switch it to WAL and to migrate it;
        // SQLite can answer "locked" there without waiting (switching the journal mode), so
        // the whole opening is retried for up to 30 s.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            match Self::open_once(path) {
                Err(StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)))
                    if matches!(e.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(25));
                }
                other => return other,
            }
        }
    }

    fn open_once(path: &Path) -> Result<Self> {
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        Self::migrate(&mut conn, path)?;
        Ok(Self { conn: Mutex::new(conn), path: path.to_path_buf() })
    }

    fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
        let known = MIGRATIONS.len() as i64;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > known {
            return Err(StoreError::SchemaTooNew { path: path.to_path_buf(), found: version, known });
        }
        for m in &MIGRATIONS[version as usize..] {
            tx.execute_batch(m)?;
        }
        tx.pragma_update(None, "user_version", known)?;
        tx.commit()?;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn with<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        let mut conn = self.conn.lock().map_err(|_| StoreError::Internal("metadata lock poisoned".into()))?;
        f(&mut conn)
    }

    fn insert_step(tx: &Transaction, s: &StepRecord) -> Result<()> {
        tx.execute(
            &format!("INSERT OR REPLACE INTO step_runs ({STEP_COLUMNS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11)"),
            params![
                s.run_id,
                s.step,
                s.kind,
                s.cache_key.to_string(),
                s.status.as_str(),
                s.started_at,
                s.duration_ms as i64,
                s.rows.map(|v| v as i64),
                to_json(&s.config),
                to_json(&s.inputs),
                s.error,
            ],
        )?;
        Ok(())
    }

    fn version_row(conn: &Connection, name: &str, version: u32) -> Result<ModelVersion> {
        let mut v = conn
            .query_row(
                "SELECT name, version, artifact, run_id, step, created_at, metrics, gates, evaluation FROM model_versions WHERE name = ?1 AND version = ?2",
                params![name, version],
                |r| {
                    Ok(ModelVersion {
                        name: r.get(0)?,
                        version: r.get(1)?,
                        artifact: hash_col(r.get(2)?)?,
                        run_id: r.get(3)?,
                        step: r.get(4)?,
                        created_at: r.get(5)?,
                        metrics: json_col(r.get(6)?)?,
                        aliases: Vec::new(),
                        tags: Vec::new(),
                        gates: json_col(r.get(7)?)?,
                        evaluation: match r.get::<_, Option<String>>(8)? {
                            Some(e) => Some(json_col(e)?),
                            None => None,
                        },
                    })
                },
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound { what: "model version", name: format!("{name}:{version}"), hint: String::new() })?;
        let mut stmt =
            conn.prepare("SELECT alias FROM model_aliases WHERE name = ?1 AND version = ?2 ORDER BY alias")?;
        v.aliases = stmt.query_map(params![name, version], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
        let mut stmt =
            conn.prepare("SELECT key, value FROM model_tags WHERE name = ?1 AND version = ?2 ORDER BY key")?;
        v.tags =
            stmt.query_map(params![name, version], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()?;
        Ok(v)
    }
}

impl MetadataStore for SqliteStore {
    fn reap_dead_runs(&self) -> Result<usize> {
        self.with(|c| {
            let running: Vec<(String, i64)> = c
                .prepare("SELECT id, pid FROM runs WHERE status = 'running'")?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            let mut n = 0;
            for (id, pid) in running {
                if pid as u32 != std::process::id() && !pid_alive(pid as u32) {
                    c.execute(
                        "UPDATE runs SET status = 'interrupted', finished_at = ?2, error = 'the process stopped before the run finished' WHERE id = ?1",
                        params![id, now()],
                    )?;
                    n += 1;
                }
            }
            Ok(n)
        })
    }

    fn begin_run(&self, run: &RunRecord) -> Result<()> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(
                &format!("INSERT INTO runs ({RUN_COLUMNS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8)"),
                params![
                    run.id,
                    run.pipeline,
                    run.spec_path,
                    run.status.as_str(),
                    run.started_at,
                    run.finished_at,
                    run.error,
                    run.pid
                ],
            )?;
            for (k, v) in &run.params {
                tx.execute(
                    "INSERT OR REPLACE INTO params (run_id, key, value) VALUES (?1, ?2, ?3)",
                    params![run.id, k, v],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
    }

    fn finish_run(&self, id: &str, status: RunStatus, error: Option<&str>) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE runs SET status = ?2, finished_at = ?3, error = ?4 WHERE id = ?1",
                params![id, status.as_str(), now(), error],
            )?;
            Ok(())
        })
    }

    fn record_step(&self, done: &StepCompletion) -> Result<()> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let s = &done.step;
            Self::insert_step(&tx, s)?;
            let created = now();
            for o in &done.outputs {
                let a = &o.artifact;
                tx.execute(
                    &format!(
                        "INSERT OR IGNORE INTO artifacts ({ARTIFACT_COLUMNS}, created_at) VALUES (?1,?2,?3,?4,?5,?6)"
                    ),
                    params![
                        a.hash.to_string(),
                        a.kind.as_str(),
                        a.size as i64,
                        a.rows.map(|v| v as i64),
                        a.schema.as_ref().map(to_json),
                        created
                    ],
                )?;
                tx.execute(
                    "INSERT OR REPLACE INTO step_outputs (run_id, step, output, artifact) VALUES (?1,?2,?3,?4)",
                    params![s.run_id, s.step, o.name, a.hash.to_string()],
                )?;
                for i in &s.inputs {
                    tx.execute(
                        "INSERT OR IGNORE INTO lineage (artifact, parent, run_id, step, role) VALUES (?1,?2,?3,?4,?5)",
                        params![a.hash.to_string(), i.hash.to_string(), s.run_id, s.step, i.name],
                    )?;
                }
            }
            for (k, v) in &done.metrics {
                tx.execute(
                    "INSERT OR REPLACE INTO metrics (run_id, step, key, value) VALUES (?1,?2,?3,?4)",
                    params![s.run_id, s.step, k, v],
                )?;
            }
            if s.status == StepStatus::Ran {
                tx.execute(
                    "INSERT OR REPLACE INTO cache (cache_key, run_id, step, created_at) VALUES (?1,?2,?3,?4)",
                    params![s.cache_key.to_string(), s.run_id, s.step, created],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
    }

    fn record_incomplete(&self, step: &StepRecord) -> Result<()> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            Self::insert_step(&tx, step)?;
            tx.commit()?;
            Ok(())
        })
    }

    fn lookup_cache(&self, key: &ContentHash) -> Result<Option<Vec<OutputRecord>>> {
        self.with(|c| {
            let Some((run_id, step)): Option<(String, String)> = c
                .query_row("SELECT run_id, step FROM cache WHERE cache_key = ?1", [key.to_string()], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()?
            else {
                return Ok(None);
            };
            let outputs = outputs_of(c, &run_id, &step)?;
            Ok(Some(outputs))
        })
    }

    fn last_step(&self, pipeline: &str, step: &str) -> Result<Option<StepRecord>> {
        self.with(|c| {
            Ok(c.query_row(
                &format!(
                    "SELECT {} FROM step_runs s JOIN runs r ON r.id = s.run_id WHERE r.pipeline = ?1 AND s.step = ?2 AND s.status IN ('ran', 'cached') ORDER BY s.started_at DESC LIMIT 1",
                    STEP_COLUMNS.split(", ").map(|c| format!("s.{c}")).collect::<Vec<_>>().join(", ")
                ),
                params![pipeline, step],
                step_row,
            )
            .optional()?)
        })
    }

    fn file_hash(&self, path: &str, fingerprint: &str) -> Result<Option<ContentHash>> {
        self.with(|c| {
            let h: Option<String> = c
                .query_row(
                    "SELECT hash FROM file_hashes WHERE path = ?1 AND fingerprint = ?2",
                    params![path, fingerprint],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(h.and_then(|h| h.parse().ok()))
        })
    }

    fn remember_file_hash(&self, path: &str, fingerprint: &str, hash: &ContentHash) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT OR REPLACE INTO file_hashes (path, fingerprint, hash) VALUES (?1,?2,?3)",
                params![path, fingerprint, hash.to_string()],
            )?;
            Ok(())
        })
    }

    fn list_runs(&self, limit: usize) -> Result<Vec<RunRecord>> {
        self.with(|c| {
            let mut stmt =
                c.prepare(&format!("SELECT {RUN_COLUMNS} FROM runs ORDER BY started_at DESC, rowid DESC LIMIT ?1"))?;
            Ok(stmt.query_map([limit as i64], run_row)?.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn get_run(&self, id: &str) -> Result<RunDetails> {
        if id.is_empty() {
            return Err(StoreError::NotFound {
                what: "run",
                name: String::new(),
                hint: "; give a run id or prefix".into(),
            });
        }
        self.with(|c| {
            let mut stmt =
                c.prepare(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE substr(id, 1, length(?1)) = ?1 LIMIT 2"))?;
            let mut runs: Vec<RunRecord> = stmt.query_map([id], run_row)?.collect::<rusqlite::Result<_>>()?;
            if runs.len() > 1 {
                return Err(StoreError::Ambiguous(id.to_string(), "run"));
            }
            let mut run = runs.pop().ok_or_else(|| StoreError::NotFound {
                what: "run",
                name: id.to_string(),
                hint: "; `sluice runs list` shows the runs".into(),
            })?;
            run.params = c
                .prepare("SELECT key, value FROM params WHERE run_id = ?1 ORDER BY key")?
                .query_map([&run.id], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            let steps: Vec<StepRecord> = c
                .prepare(&format!("SELECT {STEP_COLUMNS} FROM step_runs WHERE run_id = ?1 ORDER BY started_at, rowid"))?
                .query_map([&run.id], step_row)?
                .collect::<rusqlite::Result<_>>()?;
            let mut out = Vec::new();
            for s in steps {
                let outputs = outputs_of(c, &run.id, &s.step)?;
                out.push((s, outputs));
            }
            let metrics = c
                .prepare("SELECT step, key, value FROM metrics WHERE run_id = ?1 ORDER BY step, key")?
                .query_map([&run.id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<rusqlite::Result<_>>()?;
            Ok(RunDetails { run, steps: out, metrics })
        })
    }

    fn get_artifact(&self, prefix: &str) -> Result<ArtifactMeta> {
        if prefix.is_empty() {
            return Err(StoreError::NotFound {
                what: "artifact",
                name: String::new(),
                hint: "; give a hash or prefix".into(),
            });
        }
        self.with(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {ARTIFACT_COLUMNS} FROM artifacts WHERE substr(hash, 1, length(?1)) = ?1 LIMIT 2"
            ))?;
            let mut found: Vec<ArtifactMeta> =
                stmt.query_map([prefix.to_ascii_lowercase()], artifact_row)?.collect::<rusqlite::Result<_>>()?;
            if found.len() > 1 {
                return Err(StoreError::Ambiguous(prefix.to_string(), "artifact"));
            }
            found.pop().ok_or_else(|| StoreError::NotFound {
                what: "artifact",
                name: prefix.to_string(),
                hint: String::new(),
            })
        })
    }

    fn provenance(&self, hash: &ContentHash) -> Result<Provenance> {
        let artifact = self.get_artifact(&hash.to_string())?;
        self.with(|c| {
            let found: Option<(String, String, String, String)> = c
                .query_row(
                    "SELECT o.run_id, o.step, o.output, r.pipeline FROM step_outputs o JOIN step_runs s ON s.run_id = o.run_id AND s.step = o.step JOIN runs r ON r.id = o.run_id WHERE o.artifact = ?1 AND s.status = 'ran' ORDER BY s.started_at LIMIT 1",
                    [hash.to_string()],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .optional()?;
            let Some((run_id, step, output, pipeline)) = found else {
                return Ok(Provenance { artifact, produced_by: None, output: None, pipeline: None });
            };
            let produced_by = c
                .query_row(
                    &format!("SELECT {STEP_COLUMNS} FROM step_runs WHERE run_id = ?1 AND step = ?2"),
                    params![run_id, step],
                    step_row,
                )
                .optional()?;
            Ok(Provenance { artifact, produced_by, output: Some(output), pipeline: Some(pipeline) })
        })
    }

    fn register_model(&self, new: &NewVersion, alias: Option<&str>) -> Result<ModelVersion> {
        let NewVersion { name, artifact, run_id, step, metrics, gates, evaluation } = *new;
        self.with(|c| {
            // IMMEDIATE: take the write lock up front, so concurrent registrations wait for each
            // other (busy timeout) instead of failing on a read-to-write lock upgrade.
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let existing: Option<u32> = tx
                .query_row(
                    "SELECT version FROM model_versions WHERE name = ?1 AND artifact = ?2",
                    params![name, artifact.to_string()],
                    |r| r.get(0),
                )
                .optional()?;
            let version = match existing {
                Some(v) => {
                    if !metrics.is_empty() {
                        // The same model evaluated again (e.g. another threshold): keep the latest.
                        tx.execute(
                            "UPDATE model_versions SET metrics = ?3, gates = ?4, evaluation = ?5 WHERE name = ?1 AND version = ?2",
                            params![name, v, to_json(&metrics), to_json(&gates), evaluation.map(to_json)],
                        )?;
                    }
                    v
                }
                None => {
                    let next: u32 = tx.query_row(
                        "SELECT COALESCE(MAX(version), 0) + 1 FROM model_versions WHERE name = ?1",
                        [name],
                        |r| r.get(0),
                    )?;
                    tx.execute(
                        "INSERT INTO model_versions (name, version, artifact, run_id, step, created_at, metrics, gates, evaluation) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)",
                        params![name, next, artifact.to_string(), run_id, step, now(), to_json(&metrics), to_json(&gates), evaluation.map(to_json)],
                    )?;
                    next
                }
            };
            if let Some(alias) = alias {
                tx.execute(
                    "INSERT OR REPLACE INTO model_aliases (name, alias, version, updated_at) VALUES (?1,?2,?3,?4)",
                    params![name, alias, version, now()],
                )?;
            }
            let v = Self::version_row(&tx, name, version)?;
            tx.commit()?;
            Ok(v)
        })
    }

    fn set_alias(&self, name: &str, alias: &str, version: u32) -> Result<()> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            Self::version_row(&tx, name, version)?;
            tx.execute(
                "INSERT OR REPLACE INTO model_aliases (name, alias, version, updated_at) VALUES (?1,?2,?3,?4)",
                params![name, alias, version, now()],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    fn set_tag(&self, name: &str, version: u32, key: &str, value: &str) -> Result<()> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            Self::version_row(&tx, name, version)?;
            tx.execute(
                "INSERT OR REPLACE INTO model_tags (name, version, key, value) VALUES (?1,?2,?3,?4)",
                params![name, version, key, value],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    fn resolve_model(&self, name: &str, selector: &ModelSelector) -> Result<ModelVersion> {
        self.with(|c| {
            let missing = |what: &'static str, n: String| {
                let names: Vec<String> = c
                    .prepare("SELECT DISTINCT name FROM model_versions ORDER BY name")
                    .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
                    .unwrap_or_default();
                StoreError::NotFound {
                    what,
                    name: n,
                    hint: if names.is_empty() {
                        "; no models are registered yet (run a pipeline with a `register` step)".into()
                    } else {
                        format!("; registered models: {}", names.join(", "))
                    },
                }
            };
            let version: Option<u32> = match selector {
                ModelSelector::Latest => {
                    c.query_row("SELECT MAX(version) FROM model_versions WHERE name = ?1", [name], |r| r.get(0))?
                }
                ModelSelector::Version(v) => c
                    .query_row(
                        "SELECT version FROM model_versions WHERE name = ?1 AND version = ?2",
                        params![name, v],
                        |r| r.get(0),
                    )
                    .optional()?,
                ModelSelector::Alias(a) => c
                    .query_row(
                        "SELECT version FROM model_aliases WHERE name = ?1 AND alias = ?2",
                        params![name, a],
                        |r| r.get(0),
                    )
                    .optional()?,
            };
            let Some(version) = version else {
                return Err(match selector {
                    ModelSelector::Latest => missing("model", name.to_string()),
                    ModelSelector::Version(v) => missing("model version", format!("{name}:{v}")),
                    ModelSelector::Alias(a) => missing("model alias", format!("{name}@{a}")),
                });
            };
            Self::version_row(c, name, version)
        })
    }

    fn list_models(&self) -> Result<Vec<ModelSummary>> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT name, MAX(version), COUNT(*), MAX(created_at) FROM model_versions GROUP BY name ORDER BY name",
            )?;
            let mut models: Vec<ModelSummary> = stmt
                .query_map([], |r| {
                    Ok(ModelSummary {
                        name: r.get(0)?,
                        latest_version: r.get(1)?,
                        versions: r.get(2)?,
                        updated_at: r.get(3)?,
                        aliases: Vec::new(),
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            for m in &mut models {
                m.aliases = c
                    .prepare("SELECT alias, version FROM model_aliases WHERE name = ?1 ORDER BY alias")?
                    .query_map([&m.name], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<_>>()?;
            }
            Ok(models)
        })
    }

    fn record_alert(&self, alert: &AlertRecord) -> Result<i64> {
        self.with(|c| {
            c.execute(
                "INSERT INTO alerts (fired_at, source, run_id, rule, name, value, window_start, since, message, actions) \
                 VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)",
                params![
                    alert.fired_at,
                    alert.source,
                    alert.run_id,
                    alert.rule,
                    alert.name,
                    alert.value,
                    alert.window_start,
                    alert.since,
                    alert.message,
                    serde_json::to_string(&alert.actions).unwrap_or_else(|_| "[]".into()),
                ],
            )?;
            Ok(c.last_insert_rowid())
        })
    }

    fn list_alerts(&self, limit: usize) -> Result<Vec<AlertRecord>> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT id, fired_at, source, run_id, rule, name, value, window_start, since, message, actions \
                 FROM alerts ORDER BY id DESC LIMIT ?1",
            )?;
            let rows = stmt.query_map([limit as i64], |r| {
                Ok(AlertRecord {
                    id: r.get(0)?,
                    fired_at: r.get(1)?,
                    source: r.get(2)?,
                    run_id: r.get(3)?,
                    rule: r.get(4)?,
                    name: r.get(5)?,
                    value: r.get(6)?,
                    window_start: r.get(7)?,
                    since: r.get(8)?,
                    message: r.get(9)?,
                    actions: json_col(r.get(10)?)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn model_versions(&self, name: &str) -> Result<Vec<ModelVersion>> {
        let versions: Vec<u32> = self.with(|c| {
            Ok(c.prepare("SELECT version FROM model_versions WHERE name = ?1 ORDER BY version")?
                .query_map([name], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?)
        })?;
        if versions.is_empty() {
            return Err(StoreError::NotFound {
                what: "model",
                name: name.to_string(),
                hint: "; `sluice models list` shows them".into(),
            });
        }
        self.with(|c| versions.iter().map(|v| Self::version_row(c, name, *v)).collect())
    }
}

#[cfg(test)]
mod tests {
    use sluice_core::{ArtifactKind, ArtifactMeta, ContentHash};

    use super::*;

    fn model(store: &SqliteStore, bytes: &[u8]) -> ContentHash {
        let hash = ContentHash::of_bytes(bytes);
        let step = StepRecord {
            run_id: "r1".into(),
            step: "train".into(),
            kind: "train".into(),
            cache_key: ContentHash::of_bytes(b"key"),
            status: StepStatus::Ran,
            started_at: now(),
            duration_ms: 1,
            rows: None,
            config: serde_json::json!({}),
            inputs: vec![],
            error: None,
        };
        let artifact =
            ArtifactMeta { hash, kind: ArtifactKind::Model, size: bytes.len() as u64, rows: None, schema: None };
        store
            .record_step(&StepCompletion {
                step: StepRecord { step: format!("train-{hash}"), ..step },
                outputs: vec![OutputRecord { name: "model".into(), artifact }],
                metrics: vec![],
            })
            .unwrap();
        hash
    }

    fn store(dir: &Path) -> SqliteStore {
        let s = SqliteStore::open(&dir.join("m.db")).unwrap();
        s.begin_run(&RunRecord {
            id: "r1".into(),
            pipeline: "p".into(),
            spec_path: "p.yaml".into(),
            status: RunStatus::Running,
            started_at: now(),
            finished_at: None,
            params: vec![],
            error: None,
            pid: std::process::id(),
        })
        .unwrap();
        s
    }

    #[test]
    fn migrations_are_idempotent_and_newer_schemas_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(store(dir.path()));
        // Reopening applies nothing twice and keeps the data.
        let again = SqliteStore::open(&dir.path().join("m.db")).unwrap();
        assert_eq!(again.list_runs(10).unwrap().len(), 1);
        drop(again);
        let conn = Connection::open(dir.path().join("m.db")).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let err = SqliteStore::open(&dir.path().join("m.db")).err().unwrap();
        assert!(matches!(err, StoreError::SchemaTooNew { found: 99, .. }), "{err}");
    }

    #[test]
    fn registering_is_idempotent_per_artifact_and_aliases_move() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let a = model(&s, b"model a");
        let b = model(&s, b"model b");
        let (m08, m09) = ([("auc".to_string(), 0.8)], [("auc".to_string(), 0.9)]);
        let new = |artifact, metrics| NewVersion {
            name: "m",
            artifact,
            run_id: "r1",
            step: "train",
            metrics,
            gates: &[],
            evaluation: None,
        };
        let v1 = s.register_model(&new(&a, &m08), None).unwrap();
        let again = s.register_model(&new(&a, &m09), None).unwrap();
        let v2 = s.register_model(&new(&b, &[]), Some("challenger")).unwrap();
        assert_eq!((v1.version, again.version, v2.version), (1, 1, 2));
        assert_eq!(v2.aliases, ["challenger"]);
        s.set_alias("m", "champion", 1).unwrap();
        assert_eq!(s.resolve_model("m", &ModelSelector::Alias("champion".into())).unwrap().artifact, a);
        s.set_alias("m", "champion", 2).unwrap();
        assert_eq!(s.resolve_model("m", &ModelSelector::Alias("champion".into())).unwrap().version, 2);
        assert_eq!(s.resolve_model("m", &ModelSelector::Latest).unwrap().version, 2);
        assert!(s.set_alias("m", "champion", 7).is_err(), "an alias cannot point at a missing version");
        let missing = s.resolve_model("nope", &ModelSelector::Latest).unwrap_err().to_string();
        assert!(missing.contains("`nope`") && missing.contains("registered models: m"), "{missing}");
        assert_eq!(s.model_versions("m").unwrap()[0].metrics, vec![("auc".to_string(), 0.9)]);
        s.set_tag("m", 2, "owner", "ana").unwrap();
        assert_eq!(s.resolve_model("m", &ModelSelector::Version(2)).unwrap().tags, [("owner".into(), "ana".into())]);
        assert!(s.set_tag("m", 9, "owner", "ana").is_err());
    }

    #[test]
    fn parses_model_references() {
        assert_eq!(ModelSelector::parse("m@champion"), ("m".into(), ModelSelector::Alias("champion".into())));
        assert_eq!(ModelSelector::parse("m:3"), ("m".into(), ModelSelector::Version(3)));
        assert_eq!(ModelSelector::parse("m"), ("m".into(), ModelSelector::Latest));
    }
}
