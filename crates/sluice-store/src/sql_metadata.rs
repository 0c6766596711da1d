//! [`MetadataStore`] on any SQL [`Backend`]: runs, steps, artifacts, lineage, cache, registry
//! and alerts, each change one transaction.

use sluice_core::{ArtifactKind, ArtifactMeta, ContentHash};

use crate::error::{Result, StoreError};
use crate::metadata::MetadataStore;
use crate::records::*;
use crate::sql::{Backend, Row, SqlStore, Tx, args, upsert};

/// The current time as stored in the metadata (RFC 3339, milliseconds, UTC).
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

const STEP_COLUMNS: &str =
    "run_id, step, kind, cache_key, status, started_at, duration_ms, rows, config, inputs, error";

fn step_row(r: &Row) -> Result<StepRecord> {
    Ok(StepRecord {
        run_id: r.text(0)?,
        step: r.text(1)?,
        kind: r.text(2)?,
        cache_key: r.hash(3)?,
        status: StepStatus::parse(&r.text(4)?),
        started_at: r.text(5)?,
        duration_ms: r.int(6)? as u64,
        rows: r.opt_int(7)?.map(|v| v as u64),
        config: r.json(8)?,
        inputs: r.json(9)?,
        error: r.opt_text(10)?,
    })
}

const ARTIFACT_COLUMNS: &str = "hash, kind, size, rows, schema";

fn artifact_row(r: &Row) -> Result<ArtifactMeta> {
    Ok(ArtifactMeta {
        hash: r.hash(0)?,
        kind: ArtifactKind::parse(&r.text(1)?).unwrap_or(ArtifactKind::Dataset),
        size: r.int(2)? as u64,
        rows: r.opt_int(3)?.map(|v| v as u64),
        schema: r.opt_json(4)?,
    })
}

const RUN_COLUMNS: &str = "id, pipeline, spec_path, status, started_at, finished_at, error, pid";

fn run_row(r: &Row) -> Result<RunRecord> {
    Ok(RunRecord {
        id: r.text(0)?,
        pipeline: r.text(1)?,
        spec_path: r.text(2)?,
        status: RunStatus::parse(&r.text(3)?),
        started_at: r.text(4)?,
        finished_at: r.opt_text(5)?,
        error: r.opt_text(6)?,
        pid: r.int(7)? as u32,
        params: Vec::new(),
    })
}

fn rows<T>(rows: Vec<Row>, f: impl Fn(&Row) -> Result<T>) -> Result<Vec<T>> {
    rows.iter().map(f).collect()
}

pub(crate) fn pid_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") { std::path::Path::new(&format!("/proc/{pid}")).exists() } else { true }
}

/// `column` starts with the parameter `?1` (a hash or id prefix).
fn has_prefix(column: &str) -> String {
    format!("substr({column}, 1, length(CAST(?1 AS TEXT))) = CAST(?1 AS TEXT)")
}

/// The outputs a step execution recorded, in the order it recorded them.
fn outputs_of(tx: &mut dyn Tx, run_id: &str, step: &str) -> Result<Vec<OutputRecord>> {
    let columns = ARTIFACT_COLUMNS.split(", ").map(|c| format!("a.{c}")).collect::<Vec<_>>().join(", ");
    let found = tx.query(
        &format!(
            "SELECT {columns}, o.output FROM step_outputs o JOIN artifacts a ON a.hash = o.artifact \
             WHERE o.run_id = ?1 AND o.step = ?2 ORDER BY o.rowid"
        ),
        args![run_id, step],
    )?;
    rows(found, |r| Ok(OutputRecord { name: r.text(5)?, artifact: artifact_row(r)? }))
}

fn insert_step(tx: &mut dyn Tx, s: &StepRecord) -> Result<()> {
    let columns: Vec<&str> = STEP_COLUMNS.split(", ").collect();
    tx.execute(
        &upsert("step_runs", &columns, &["run_id", "step"]),
        args![
            &s.run_id,
            &s.step,
            &s.kind,
            s.cache_key.to_string(),
            s.status.as_str(),
            &s.started_at,
            s.duration_ms,
            s.rows,
            to_json(&s.config),
            to_json(&s.inputs),
            s.error.as_deref(),
        ],
    )?;
    Ok(())
}

fn version_row(tx: &mut dyn Tx, name: &str, version: u32) -> Result<ModelVersion> {
    let r = tx
        .query_opt(
            "SELECT name, version, artifact, run_id, step, created_at, metrics, gates, evaluation \
             FROM model_versions WHERE name = ?1 AND version = ?2",
            args![name, version],
        )?
        .ok_or_else(|| StoreError::NotFound {
            what: "model version",
            name: format!("{name}:{version}"),
            hint: String::new(),
        })?;
    let aliases = tx.query(
        "SELECT alias FROM model_aliases WHERE name = ?1 AND version = ?2 ORDER BY alias",
        args![name, version],
    )?;
    let tags = tx.query(
        "SELECT key, value FROM model_tags WHERE name = ?1 AND version = ?2 ORDER BY key",
        args![name, version],
    )?;
    Ok(ModelVersion {
        name: r.text(0)?,
        version: r.int(1)? as u32,
        artifact: r.hash(2)?,
        run_id: r.text(3)?,
        step: r.text(4)?,
        created_at: r.text(5)?,
        metrics: r.json(6)?,
        aliases: rows(aliases, |a| a.text(0))?,
        tags: rows(tags, |t| Ok((t.text(0)?, t.text(1)?)))?,
        gates: r.json(7)?,
        evaluation: r.opt_json(8)?,
    })
}

fn set_alias_row(tx: &mut dyn Tx, name: &str, alias: &str, version: u32) -> Result<()> {
    tx.execute(
        &upsert("model_aliases", &["name", "alias", "version", "updated_at"], &["name", "alias"]),
        args![name, alias, version, now()],
    )?;
    Ok(())
}

impl<B: Backend> MetadataStore for SqlStore<B> {
    fn reap_dead_runs(&self) -> Result<usize> {
        // A shared store reaps only runs of this host: elsewhere a pid says nothing about whether
        // it is alive. A home's own SQLite file belongs to one machine whatever its hostname
        // (a container gets a new one on every restart).
        let host = if B::SHARED { Some(crate::studies::hostname()) } else { None };
        self.db.write(|tx| {
            let running = tx.query(
                "SELECT id, pid FROM runs WHERE status = 'running' AND (CAST(?1 AS TEXT) IS NULL OR host IS NULL OR host = ?1)",
                args![host.as_deref()],
            )?;
            let mut n = 0;
            for r in running {
                let (id, pid) = (r.text(0)?, r.int(1)? as u32);
                if pid != std::process::id() && !pid_alive(pid) {
                    // Still running: on PostgreSQL the run may have finished since the read.
                    n += tx.execute(
                        "UPDATE runs SET status = 'interrupted', finished_at = ?2, \
                         error = 'the process stopped before the run finished' WHERE id = ?1 AND status = 'running'",
                        args![id, now()],
                    )? as usize;
                }
            }
            Ok(n)
        })
    }

    fn begin_run(&self, run: &RunRecord) -> Result<()> {
        let host = crate::studies::hostname();
        self.db.write(|tx| {
            tx.execute(
                &format!("INSERT INTO runs ({RUN_COLUMNS}, host) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)"),
                args![
                    &run.id,
                    &run.pipeline,
                    &run.spec_path,
                    run.status.as_str(),
                    &run.started_at,
                    run.finished_at.as_deref(),
                    run.error.as_deref(),
                    run.pid,
                    host,
                ],
            )?;
            for (k, v) in &run.params {
                tx.execute(&upsert("params", &["run_id", "key", "value"], &["run_id", "key"]), args![&run.id, k, v])?;
            }
            Ok(())
        })
    }

    fn finish_run(&self, id: &str, status: RunStatus, error: Option<&str>) -> Result<()> {
        self.db.write(|tx| {
            tx.execute(
                "UPDATE runs SET status = ?2, finished_at = ?3, error = ?4 WHERE id = ?1",
                args![id, status.as_str(), now(), error],
            )?;
            Ok(())
        })
    }

    fn record_step(&self, done: &StepCompletion) -> Result<()> {
        self.db.write(|tx| {
            let s = &done.step;
            insert_step(tx, s)?;
            let created = now();
            for o in &done.outputs {
                let a = &o.artifact;
                tx.execute(
                    &format!(
                        "INSERT INTO artifacts ({ARTIFACT_COLUMNS}, created_at) VALUES (?1,?2,?3,?4,?5,?6) \
                         ON CONFLICT DO NOTHING"
                    ),
                    args![
                        a.hash.to_string(),
                        a.kind.as_str(),
                        a.size,
                        a.rows,
                        a.schema.as_ref().map(to_json),
                        &created
                    ],
                )?;
                tx.execute(
                    &upsert("step_outputs", &["run_id", "step", "output", "artifact"], &["run_id", "step", "output"]),
                    args![&s.run_id, &s.step, &o.name, a.hash.to_string()],
                )?;
                for i in &s.inputs {
                    tx.execute(
                        "INSERT INTO lineage (artifact, parent, run_id, step, role) VALUES (?1,?2,?3,?4,?5) \
                         ON CONFLICT DO NOTHING",
                        args![a.hash.to_string(), i.hash.to_string(), &s.run_id, &s.step, &i.name],
                    )?;
                }
            }
            for (k, v) in &done.metrics {
                tx.execute(
                    &upsert("metrics", &["run_id", "step", "key", "value"], &["run_id", "step", "key"]),
                    args![&s.run_id, &s.step, k, *v],
                )?;
            }
            if s.status == StepStatus::Ran {
                tx.execute(
                    &upsert("cache", &["cache_key", "run_id", "step", "created_at"], &["cache_key"]),
                    args![s.cache_key.to_string(), &s.run_id, &s.step, &created],
                )?;
            }
            Ok(())
        })
    }

    fn record_incomplete(&self, step: &StepRecord) -> Result<()> {
        self.db.write(|tx| insert_step(tx, step))
    }

    fn lookup_cache(&self, key: &ContentHash) -> Result<Option<Vec<OutputRecord>>> {
        self.db.read(|tx| {
            let Some(hit) =
                tx.query_opt("SELECT run_id, step FROM cache WHERE cache_key = ?1", args![key.to_string()])?
            else {
                return Ok(None);
            };
            outputs_of(tx, &hit.text(0)?, &hit.text(1)?).map(Some)
        })
    }

    fn last_step(&self, pipeline: &str, step: &str) -> Result<Option<StepRecord>> {
        self.db.read(|tx| {
            let columns = STEP_COLUMNS.split(", ").map(|c| format!("s.{c}")).collect::<Vec<_>>().join(", ");
            tx.query_opt(
                &format!(
                    "SELECT {columns} FROM step_runs s JOIN runs r ON r.id = s.run_id \
                     WHERE r.pipeline = ?1 AND s.step = ?2 AND s.status IN ('ran', 'cached') \
                     ORDER BY s.started_at DESC LIMIT 1"
                ),
                args![pipeline, step],
            )?
            .map(|r| step_row(&r))
            .transpose()
        })
    }

    fn file_hash(&self, path: &str, fingerprint: &str) -> Result<Option<ContentHash>> {
        self.db.read(|tx| {
            let found = tx.query_opt(
                "SELECT hash FROM file_hashes WHERE path = ?1 AND fingerprint = ?2",
                args![path, fingerprint],
            )?;
            Ok(found.and_then(|r| r.hash(0).ok()))
        })
    }

    fn remember_file_hash(&self, path: &str, fingerprint: &str, hash: &ContentHash) -> Result<()> {
        self.db.write(|tx| {
            tx.execute(
                &upsert("file_hashes", &["path", "fingerprint", "hash"], &["path"]),
                args![path, fingerprint, hash.to_string()],
            )?;
            Ok(())
        })
    }

    fn list_runs(&self, limit: usize) -> Result<Vec<RunRecord>> {
        self.db.read(|tx| {
            let found = tx.query(
                &format!("SELECT {RUN_COLUMNS} FROM runs ORDER BY started_at DESC, rowid DESC LIMIT ?1"),
                args![limit as u64],
            )?;
            rows(found, run_row)
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
        self.db.read(|tx| {
            let found =
                tx.query(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE {} LIMIT 2", has_prefix("id")), args![id])?;
            let mut runs = rows(found, run_row)?;
            if runs.len() > 1 {
                return Err(StoreError::Ambiguous(id.to_string(), "run"));
            }
            let mut run = runs.pop().ok_or_else(|| StoreError::NotFound {
                what: "run",
                name: id.to_string(),
                hint: "; `sluice runs list` shows the runs".into(),
            })?;
            let params = tx.query("SELECT key, value FROM params WHERE run_id = ?1 ORDER BY key", args![&run.id])?;
            run.params = rows(params, |r| Ok((r.text(0)?, r.text(1)?)))?;
            let found = tx.query(
                &format!("SELECT {STEP_COLUMNS} FROM step_runs WHERE run_id = ?1 ORDER BY started_at, rowid"),
                args![&run.id],
            )?;
            let mut steps = Vec::new();
            for s in rows(found, step_row)? {
                let outputs = outputs_of(tx, &run.id, &s.step)?;
                steps.push((s, outputs));
            }
            let metrics =
                tx.query("SELECT step, key, value FROM metrics WHERE run_id = ?1 ORDER BY step, key", args![&run.id])?;
            let metrics = rows(metrics, |r| Ok((r.text(0)?, r.text(1)?, r.real(2)?)))?;
            Ok(RunDetails { run, steps, metrics })
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
        self.db.read(|tx| {
            let found = tx.query(
                &format!("SELECT {ARTIFACT_COLUMNS} FROM artifacts WHERE {} LIMIT 2", has_prefix("hash")),
                args![prefix.to_ascii_lowercase()],
            )?;
            let mut found = rows(found, artifact_row)?;
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
        self.db.read(|tx| {
            let found = tx.query_opt(
                "SELECT o.run_id, o.step, o.output, r.pipeline FROM step_outputs o \
                 JOIN step_runs s ON s.run_id = o.run_id AND s.step = o.step JOIN runs r ON r.id = o.run_id \
                 WHERE o.artifact = ?1 AND s.status = 'ran' ORDER BY s.started_at LIMIT 1",
                args![hash.to_string()],
            )?;
            let Some(found) = found else {
                return Ok(Provenance { artifact, produced_by: None, output: None, pipeline: None });
            };
            let produced_by = tx
                .query_opt(
                    &format!("SELECT {STEP_COLUMNS} FROM step_runs WHERE run_id = ?1 AND step = ?2"),
                    args![found.text(0)?, found.text(1)?],
                )?
                .map(|r| step_row(&r))
                .transpose()?;
            Ok(Provenance { artifact, produced_by, output: Some(found.text(2)?), pipeline: Some(found.text(3)?) })
        })
    }

    fn register_model(&self, new: &NewVersion, alias: Option<&str>) -> Result<ModelVersion> {
        let NewVersion { name, artifact, run_id, step, metrics, gates, evaluation } = *new;
        self.db.write(|tx| {
            // Registrations of one name take turns: the next version number is read, then used.
            tx.lock(&format!("model:{name}"))?;
            let existing = tx.query_opt(
                "SELECT version FROM model_versions WHERE name = ?1 AND artifact = ?2",
                args![name, artifact.to_string()],
            )?;
            let version = match existing {
                Some(r) => {
                    let v = r.int(0)? as u32;
                    if !metrics.is_empty() {
                        // The same model evaluated again (e.g. another threshold): keep the latest.
                        tx.execute(
                            "UPDATE model_versions SET metrics = ?3, gates = ?4, evaluation = ?5 \
                             WHERE name = ?1 AND version = ?2",
                            args![name, v, to_json(&metrics), to_json(&gates), evaluation.map(to_json)],
                        )?;
                    }
                    v
                }
                None => {
                    let next = tx
                        .query_one(
                            "SELECT COALESCE(MAX(version), 0) + 1 FROM model_versions WHERE name = ?1",
                            args![name],
                        )?
                        .int(0)? as u32;
                    tx.execute(
                        "INSERT INTO model_versions \
                         (name, version, artifact, run_id, step, created_at, metrics, gates, evaluation) \
                         VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)",
                        args![
                            name,
                            next,
                            artifact.to_string(),
                            run_id,
                            step,
                            now(),
                            to_json(&metrics),
                            to_json(&gates),
                            evaluation.map(to_json)
                        ],
                    )?;
                    next
                }
            };
            if let Some(alias) = alias {
                set_alias_row(tx, name, alias, version)?;
            }
            version_row(tx, name, version)
        })
    }

    fn set_alias(&self, name: &str, alias: &str, version: u32) -> Result<()> {
        self.db.write(|tx| {
            version_row(tx, name, version)?;
            set_alias_row(tx, name, alias, version)
        })
    }

    fn set_tag(&self, name: &str, version: u32, key: &str, value: &str) -> Result<()> {
        self.db.write(|tx| {
            version_row(tx, name, version)?;
            tx.execute(
                &upsert("model_tags", &["name", "version", "key", "value"], &["name", "version", "key"]),
                args![name, version, key, value],
            )?;
            Ok(())
        })
    }

    fn resolve_model(&self, name: &str, selector: &ModelSelector) -> Result<ModelVersion> {
        self.db.read(|tx| {
            let version = match selector {
                ModelSelector::Latest => {
                    tx.query_one("SELECT MAX(version) FROM model_versions WHERE name = ?1", args![name])?.opt_int(0)?
                }
                ModelSelector::Version(v) => tx
                    .query_opt("SELECT version FROM model_versions WHERE name = ?1 AND version = ?2", args![name, *v])?
                    .map(|r| r.int(0))
                    .transpose()?,
                ModelSelector::Alias(a) => tx
                    .query_opt("SELECT version FROM model_aliases WHERE name = ?1 AND alias = ?2", args![name, a])?
                    .map(|r| r.int(0))
                    .transpose()?,
            };
            if let Some(version) = version {
                return version_row(tx, name, version as u32);
            }
            let names = rows(tx.query("SELECT DISTINCT name FROM model_versions ORDER BY name", &[])?, |r| r.text(0))?;
            let hint = if names.is_empty() {
                "; no models are registered yet (run a pipeline with a `register` step)".into()
            } else {
                format!("; registered models: {}", names.join(", "))
            };
            let (what, name) = match selector {
                ModelSelector::Latest => ("model", name.to_string()),
                ModelSelector::Version(v) => ("model version", format!("{name}:{v}")),
                ModelSelector::Alias(a) => ("model alias", format!("{name}@{a}")),
            };
            Err(StoreError::NotFound { what, name, hint })
        })
    }

    fn list_models(&self) -> Result<Vec<ModelSummary>> {
        self.db.read(|tx| {
            let found = tx.query(
                "SELECT name, MAX(version), COUNT(*), MAX(created_at) FROM model_versions GROUP BY name ORDER BY name",
                &[],
            )?;
            let mut models = rows(found, |r| {
                Ok(ModelSummary {
                    name: r.text(0)?,
                    latest_version: r.int(1)? as u32,
                    versions: r.int(2)? as u32,
                    updated_at: r.text(3)?,
                    aliases: Vec::new(),
                })
            })?;
            for m in &mut models {
                let aliases = tx
                    .query("SELECT alias, version FROM model_aliases WHERE name = ?1 ORDER BY alias", args![&m.name])?;
                m.aliases = rows(aliases, |r| Ok((r.text(0)?, r.int(1)? as u32)))?;
            }
            Ok(models)
        })
    }

    fn record_alert(&self, alert: &AlertRecord) -> Result<i64> {
        self.db.write(|tx| {
            tx.query_one(
                "INSERT INTO alerts (fired_at, source, run_id, rule, name, value, window_start, since, message, actions) \
                 VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10) RETURNING id",
                args![
                    &alert.fired_at,
                    &alert.source,
                    alert.run_id.as_deref(),
                    &alert.rule,
                    &alert.name,
                    alert.value,
                    alert.window_start.as_deref(),
                    alert.since.as_deref(),
                    &alert.message,
                    serde_json::to_string(&alert.actions).unwrap_or_else(|_| "[]".into()),
                ],
            )?
            .int(0)
        })
    }

    fn list_alerts(&self, limit: usize) -> Result<Vec<AlertRecord>> {
        self.db.read(|tx| {
            let found = tx.query(
                "SELECT id, fired_at, source, run_id, rule, name, value, window_start, since, message, actions \
                 FROM alerts ORDER BY id DESC LIMIT ?1",
                args![limit as u64],
            )?;
            rows(found, |r| {
                Ok(AlertRecord {
                    id: r.int(0)?,
                    fired_at: r.text(1)?,
                    source: r.text(2)?,
                    run_id: r.opt_text(3)?,
                    rule: r.text(4)?,
                    name: r.text(5)?,
                    value: r.real(6)?,
                    window_start: r.opt_text(7)?,
                    since: r.opt_text(8)?,
                    message: r.text(9)?,
                    actions: r.json(10)?,
                })
            })
        })
    }

    fn model_versions(&self, name: &str) -> Result<Vec<ModelVersion>> {
        self.db.read(|tx| {
            let versions = rows(
                tx.query("SELECT version FROM model_versions WHERE name = ?1 ORDER BY version", args![name])?,
                |r| r.int(0),
            )?;
            if versions.is_empty() {
                return Err(StoreError::NotFound {
                    what: "model",
                    name: name.to_string(),
                    hint: "; `sluice models list` shows them".into(),
                });
            }
            versions.into_iter().map(|v| version_row(tx, name, v as u32)).collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use rusqlite::Connection;

    use super::*;
    use crate::SqliteStore;

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
    fn parses_model_references() {
        assert_eq!(ModelSelector::parse("m@champion"), ("m".into(), ModelSelector::Alias("champion".into())));
        assert_eq!(ModelSelector::parse("m:3"), ("m".into(), ModelSelector::Version(3)));
        assert_eq!(ModelSelector::parse("m"), ("m".into(), ModelSelector::Latest));
    }
}
