//! [`StudyStore`] on the embedded SQLite file. Trial numbers come from the row count inside an
//! IMMEDIATE transaction, so workers in different processes never share a number.

use std::collections::BTreeMap;

use rusqlite::{OptionalExtension, Transaction, TransactionBehavior, params};

use crate::error::{Result, StoreError};
use crate::sqlite::{SqliteStore, now, pid_alive};
use crate::studies::*;

fn json<T: serde::de::DeserializeOwned>(s: String) -> rusqlite::Result<T> {
    serde_json::from_str(&s)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e)))
}

fn text<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "{}".into())
}

/// Bump and return the study's sequence number (every write takes one).
fn next_seq(tx: &Transaction, study: &str) -> Result<u64> {
    let seq: Option<i64> = tx
        .query_row("UPDATE studies SET seq = seq + 1 WHERE name = ?1 RETURNING seq", [study], |r| r.get(0))
        .optional()?;
    match seq {
        Some(s) => Ok(s as u64),
        None => Err(StoreError::NotFound { what: "study", name: study.into(), hint: String::new() }),
    }
}

const TRIAL_COLUMNS: &str =
    "number, state, params, value, metrics, meta, host, pid, run_id, started_at, finished_at, error, attempt";

fn trial_row(r: &rusqlite::Row) -> rusqlite::Result<TrialRecord> {
    Ok(TrialRecord {
        number: r.get::<_, i64>(0)? as u64,
        state: TrialState::parse(&r.get::<_, String>(1)?),
        params: json(r.get(2)?)?,
        value: r.get(3)?,
        intermediate: Vec::new(),
        metrics: json(r.get(4)?)?,
        meta: json(r.get(5)?)?,
        worker: format!("{}:{}", r.get::<_, String>(6)?, r.get::<_, i64>(7)?),
        run_id: r.get(8)?,
        started_at: r.get(9)?,
        finished_at: r.get(10)?,
        error: r.get(11)?,
        attempt: r.get::<_, i64>(12)? as u32,
    })
}

fn study_row(r: &rusqlite::Row) -> rusqlite::Result<StudyRecord> {
    Ok(StudyRecord { name: r.get(0)?, direction: r.get(1)?, definition: json(r.get(2)?)?, created_at: r.get(3)? })
}

impl StudyStore for SqliteStore {
    fn open_study(&self, study: &StudyRecord) -> Result<StudyRecord> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let existing = tx
                .query_row(
                    "SELECT name, direction, definition, created_at FROM studies WHERE name = ?1",
                    [&study.name],
                    study_row,
                )
                .optional()?;
            let out = match existing {
                Some(found) => {
                    if found.direction != study.direction {
                        return Err(StoreError::StudyMismatch {
                            name: study.name.clone(),
                            what: "direction".into(),
                            stored: found.direction,
                            asked: study.direction.clone(),
                        });
                    }
                    if found.definition != study.definition {
                        return Err(StoreError::StudyMismatch {
                            name: study.name.clone(),
                            what: "definition".into(),
                            stored: found.definition.to_string(),
                            asked: study.definition.to_string(),
                        });
                    }
                    found
                }
                None => {
                    let created = StudyRecord { created_at: now(), ..study.clone() };
                    tx.execute(
                        "INSERT INTO studies (name, direction, definition, created_at) VALUES (?1, ?2, ?3, ?4)",
                        params![created.name, created.direction, text(&created.definition), created.created_at],
                    )?;
                    created
                }
            };
            tx.commit()?;
            Ok(out)
        })
    }

    fn study(&self, name: &str) -> Result<Option<StudyRecord>> {
        self.with(|c| {
            Ok(c.query_row(
                "SELECT name, direction, definition, created_at FROM studies WHERE name = ?1",
                [name],
                study_row,
            )
            .optional()?)
        })
    }

    fn studies(&self) -> Result<Vec<StudyRecord>> {
        self.with(|c| {
            let mut stmt =
                c.prepare("SELECT name, direction, definition, created_at FROM studies ORDER BY created_at, name")?;
            Ok(stmt.query_map([], study_row)?.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    fn start_trial(
        &self,
        study: &str,
        worker: &Worker,
        max_trials: Option<u64>,
        stale_after_secs: u64,
    ) -> Result<Option<StartedTrial>> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let stale_before = (chrono::Utc::now() - chrono::Duration::seconds(stale_after_secs as i64))
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            let running: Vec<(u64, String, u32, String, String)> = {
                let mut stmt = tx.prepare_cached(
                    "SELECT number, host, pid, heartbeat_at, params FROM trials \
                     WHERE study = ?1 AND state = 'running' ORDER BY number",
                )?;
                stmt.query_map([study], |r| {
                    Ok((r.get::<_, i64>(0)? as u64, r.get(1)?, r.get::<_, i64>(2)? as u32, r.get(3)?, r.get(4)?))
                })?
                .collect::<rusqlite::Result<_>>()?
            };
            let dead = running.into_iter().find(|(_, host, pid, heartbeat, _)| {
                let mine = *host == worker.host && *pid == worker.pid;
                !mine && if *host == worker.host { !pid_alive(*pid) } else { *heartbeat < stale_before }
            });
            let seq = next_seq(&tx, study)?;
            let stamp = now();
            let started = if let Some((number, _, _, _, params)) = dead {
                tx.execute(
                    "UPDATE trials SET host = ?3, pid = ?4, run_id = ?5, started_at = ?6, heartbeat_at = ?6, \
                     seq = ?7, attempt = attempt + 1 WHERE study = ?1 AND number = ?2",
                    params![study, number as i64, worker.host, worker.pid, worker.run_id, stamp, seq as i64],
                )?;
                tx.execute("DELETE FROM trial_values WHERE study = ?1 AND number = ?2", params![study, number as i64])?;
                let params: BTreeMap<String, serde_json::Value> = serde_json::from_str(&params).unwrap_or_default();
                Some(StartedTrial { number, resumed: Some(params) })
            } else {
                let count: i64 = tx.query_row("SELECT COUNT(*) FROM trials WHERE study = ?1", [study], |r| r.get(0))?;
                if max_trials.is_some_and(|m| count as u64 >= m) {
                    None
                } else {
                    tx.execute(
                        "INSERT INTO trials (study, number, state, host, pid, run_id, started_at, heartbeat_at, seq) \
                         VALUES (?1, ?2, 'running', ?3, ?4, ?5, ?6, ?6, ?7)",
                        params![study, count, worker.host, worker.pid, worker.run_id, stamp, seq as i64],
                    )?;
                    Some(StartedTrial { number: count as u64, resumed: None })
                }
            };
            tx.commit()?;
            Ok(started)
        })
    }

    fn set_params(
        &self,
        study: &str,
        number: u64,
        params: &BTreeMap<String, serde_json::Value>,
        meta: &BTreeMap<String, f64>,
    ) -> Result<()> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let seq = next_seq(&tx, study)?;
            tx.execute(
                "UPDATE trials SET params = ?3, meta = ?4, seq = ?5 WHERE study = ?1 AND number = ?2",
                params![study, number as i64, text(params), text(meta), seq as i64],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    fn report(&self, study: &str, number: u64, step: u64, value: f64) -> Result<()> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let seq = next_seq(&tx, study)?;
            tx.execute(
                "INSERT OR REPLACE INTO trial_values (study, number, step, value, seq) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![study, number as i64, step as i64, value, seq as i64],
            )?;
            tx.execute(
                "UPDATE trials SET heartbeat_at = ?3 WHERE study = ?1 AND number = ?2",
                params![study, number as i64, now()],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    fn finish_trial(
        &self,
        study: &str,
        number: u64,
        state: TrialState,
        value: Option<f64>,
        metrics: &BTreeMap<String, f64>,
        error: Option<&str>,
    ) -> Result<()> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let seq = next_seq(&tx, study)?;
            let stamp = now();
            tx.execute(
                "UPDATE trials SET state = ?3, value = ?4, metrics = ?5, error = ?6, finished_at = ?7, \
                 heartbeat_at = ?7, seq = ?8 WHERE study = ?1 AND number = ?2",
                params![study, number as i64, state.as_str(), value, text(metrics), error, stamp, seq as i64],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    fn changes_since(&self, study: &str, seq: u64) -> Result<StudyChanges> {
        self.with(|c| {
            // One read transaction, so the three queries see the same moment.
            let tx = c.transaction_with_behavior(TransactionBehavior::Deferred)?;
            let current: i64 =
                tx.query_row("SELECT seq FROM studies WHERE name = ?1", [study], |r| r.get(0)).optional()?.unwrap_or(0);
            let mut changes = StudyChanges { seq: current as u64, ..Default::default() };
            if current as u64 > seq {
                let mut stmt = tx.prepare_cached(&format!(
                    "SELECT {TRIAL_COLUMNS} FROM trials WHERE study = ?1 AND seq > ?2 ORDER BY number"
                ))?;
                for trial in stmt.query_map(params![study, seq as i64], trial_row)? {
                    changes.trials.push(trial?);
                }
                let mut stmt = tx.prepare_cached(
                    "SELECT number, step, value FROM trial_values WHERE study = ?1 AND seq > ?2 ORDER BY seq",
                )?;
                let values = stmt.query_map(params![study, seq as i64], |r| {
                    Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64, r.get::<_, f64>(2)?))
                })?;
                for v in values {
                    changes.intermediate.push(v?);
                }
            }
            tx.commit()?;
            Ok(changes)
        })
    }
}
