//! [`StudyStore`] on any SQL [`Backend`]. Every write first bumps the study's sequence number,
//! which also makes writers of one study take turns (SQLite: one writer at a time; PostgreSQL:
//! the study's row lock), so trial numbers — the row count read after it — are never shared by
//! two workers, in any process on any machine. (PostgreSQL's one-statement path may read the
//! count before the lock; the `(study, number)` primary key refuses a number taken meanwhile,
//! see `start_new`.)

use std::collections::BTreeMap;

use crate::error::{Result, StoreError};
use crate::sql::{Backend, Row, SqlStore, Tx, args, upsert};
use crate::sql_metadata::{now, pid_alive, to_json};
use crate::studies::*;

fn no_study(study: &str) -> StoreError {
    StoreError::NotFound { what: "study", name: study.into(), hint: String::new() }
}

/// Bump and return the study's sequence number (every write takes one).
fn next_seq(tx: &mut dyn Tx, study: &str) -> Result<u64> {
    match tx.query_opt("UPDATE studies SET seq = seq + 1 WHERE name = ?1 RETURNING seq", args![study])? {
        Some(r) => Ok(r.int(0)? as u64),
        None => Err(no_study(study)),
    }
}

/// The first running trial whose worker is gone (its process, on this host; its heartbeat,
/// elsewhere), with its params, to be taken over.
fn dead_trial(tx: &mut dyn Tx, study: &str, worker: &Worker, stale_before: &str) -> Result<Option<(i64, String)>> {
    let running = tx.query(
        "SELECT number, host, pid, heartbeat_at, params FROM trials \
         WHERE study = ?1 AND state = 'running' ORDER BY number",
        args![study],
    )?;
    for r in &running {
        let (host, pid, heartbeat) = (r.text(1)?, r.int(2)? as u32, r.text(3)?);
        let mine = host == worker.host && pid == worker.pid;
        let gone = if host == worker.host { !pid_alive(pid) } else { heartbeat.as_str() < stale_before };
        if !mine && gone {
            return Ok(Some((r.int(0)?, r.text(4)?)));
        }
    }
    Ok(None)
}

/// [`StudyStore::start_trial`] in one statement, where statements are atomic: a new trial
/// numbered by the count of trials. The count is read in the statement's snapshot, which may
/// predate the study row's lock: when another worker took that number meanwhile, the primary
/// key refuses it, and the transaction in `start_trial` (whose reads follow the lock) takes the
/// next one — so contended numbers cost one refused statement, not a retry per waiter. `None`
/// also when a dead worker's trial is there to be taken over (that transaction does it).
fn start_new(
    tx: &mut dyn Tx,
    study: &str,
    worker: &Worker,
    max_trials: Option<u64>,
    stale_before: &str,
) -> Result<Option<Option<StartedTrial>>> {
    if dead_trial(tx, study, worker, stale_before)?.is_some() {
        return Ok(None);
    }
    let sql = "WITH s AS (UPDATE studies SET seq = seq + 1 WHERE name = ?1 RETURNING seq), \
               n AS (SELECT COUNT(*) AS n FROM trials WHERE study = ?1) \
               INSERT INTO trials (study, number, state, host, pid, run_id, started_at, heartbeat_at, seq) \
               SELECT ?1, n.n, 'running', ?2, ?3, ?4, ?5, ?5, s.seq FROM s, n WHERE n.n < ?6 RETURNING number";
    let max = max_trials.map_or(i64::MAX, |m| m.min(i64::MAX as u64) as i64);
    match tx.query_opt(sql, args![study, &worker.host, worker.pid, worker.run_id.as_deref(), now(), max]) {
        Ok(Some(r)) => Ok(Some(Some(StartedTrial { number: r.int(0)? as u64, resumed: None }))),
        // The budget is spent, or there is no study.
        Ok(None) => match tx.query_opt("SELECT 1 FROM studies WHERE name = ?1", args![study])? {
            Some(_) => Ok(Some(None)),
            None => Err(no_study(study)),
        },
        Err(e) if e.is_unique_violation() => Ok(None),
        Err(e) => Err(e),
    }
}

/// `change` (a data-modifying statement that may use `s.seq`) preceded by bumping the study's
/// sequence number, as one statement: the bumped number, and no row when there is no study.
fn with_seq(change: &str) -> String {
    format!(
        "WITH s AS (UPDATE studies SET seq = seq + 1 WHERE name = ?1 RETURNING seq), c AS ({change}) SELECT seq FROM s"
    )
}

/// Run a [`with_seq`] statement: an error when the study does not exist.
fn bumped(tx: &mut dyn Tx, sql: &str, args: &[crate::sql::Value], study: &str) -> Result<()> {
    match tx.query_opt(sql, args)? {
        Some(_) => Ok(()),
        None => Err(no_study(study)),
    }
}

const TRIAL_COLUMNS: &str =
    "number, state, params, value, metrics, meta, host, pid, run_id, started_at, finished_at, error, attempt";

fn trial_row(r: &Row) -> Result<TrialRecord> {
    Ok(TrialRecord {
        number: r.int(0)? as u64,
        state: TrialState::parse(&r.text(1)?),
        params: r.json(2)?,
        value: r.opt_real(3)?,
        intermediate: Vec::new(),
        metrics: r.json(4)?,
        meta: r.json(5)?,
        worker: format!("{}:{}", r.text(6)?, r.int(7)?),
        run_id: r.opt_text(8)?,
        started_at: r.text(9)?,
        finished_at: r.opt_text(10)?,
        error: r.opt_text(11)?,
        attempt: r.int(12)? as u32,
    })
}

const STUDY_COLUMNS: &str = "name, direction, definition, created_at";

fn study_row(r: &Row) -> Result<StudyRecord> {
    Ok(StudyRecord { name: r.text(0)?, direction: r.text(1)?, definition: r.json(2)?, created_at: r.text(3)? })
}

impl<B: Backend> StudyStore for SqlStore<B> {
    fn open_study(&self, study: &StudyRecord) -> Result<StudyRecord> {
        self.db.write(|tx| {
            tx.lock(&format!("study:{}", study.name))?;
            let existing =
                tx.query_opt(&format!("SELECT {STUDY_COLUMNS} FROM studies WHERE name = ?1"), args![&study.name])?;
            let Some(found) = existing else {
                let created = StudyRecord { created_at: now(), ..study.clone() };
                tx.execute(
                    "INSERT INTO studies (name, direction, definition, created_at) VALUES (?1, ?2, ?3, ?4)",
                    args![&created.name, &created.direction, to_json(&created.definition), &created.created_at],
                )?;
                return Ok(created);
            };
            let found = study_row(&found)?;
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
            Ok(found)
        })
    }

    fn study(&self, name: &str) -> Result<Option<StudyRecord>> {
        self.db.read(|tx| {
            tx.query_opt(&format!("SELECT {STUDY_COLUMNS} FROM studies WHERE name = ?1"), args![name])?
                .map(|r| study_row(&r))
                .transpose()
        })
    }

    fn studies(&self) -> Result<Vec<StudyRecord>> {
        self.db.read(|tx| {
            tx.query(&format!("SELECT {STUDY_COLUMNS} FROM studies ORDER BY created_at, name"), &[])?
                .iter()
                .map(study_row)
                .collect()
        })
    }

    fn start_trial(
        &self,
        study: &str,
        worker: &Worker,
        max_trials: Option<u64>,
        stale_after_secs: u64,
    ) -> Result<Option<StartedTrial>> {
        let stale_before = (chrono::Utc::now() - chrono::Duration::seconds(stale_after_secs as i64))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        if B::ATOMIC_STATEMENTS
            && let Some(started) = self.db.statements(|tx| start_new(tx, study, worker, max_trials, &stale_before))?
        {
            return Ok(started);
        }
        self.db.write(|tx| {
            // First, so that what is read next is not changed by another worker before we write.
            let seq = next_seq(tx, study)?;
            let dead = dead_trial(tx, study, worker, &stale_before)?;
            let stamp = now();
            if let Some((number, params)) = dead {
                tx.execute(
                    "UPDATE trials SET host = ?3, pid = ?4, run_id = ?5, started_at = ?6, heartbeat_at = ?6, \
                     seq = ?7, attempt = attempt + 1 WHERE study = ?1 AND number = ?2",
                    args![study, number, &worker.host, worker.pid, worker.run_id.as_deref(), &stamp, seq],
                )?;
                tx.execute("DELETE FROM trial_values WHERE study = ?1 AND number = ?2", args![study, number])?;
                let params: BTreeMap<String, serde_json::Value> = serde_json::from_str(&params).unwrap_or_default();
                return Ok(Some(StartedTrial { number: number as u64, resumed: Some(params) }));
            }
            let count = tx.query_one("SELECT COUNT(*) FROM trials WHERE study = ?1", args![study])?.int(0)?;
            if max_trials.is_some_and(|m| count as u64 >= m) {
                return Ok(None);
            }
            tx.execute(
                "INSERT INTO trials (study, number, state, host, pid, run_id, started_at, heartbeat_at, seq) \
                 VALUES (?1, ?2, 'running', ?3, ?4, ?5, ?6, ?6, ?7)",
                args![study, count, &worker.host, worker.pid, worker.run_id.as_deref(), &stamp, seq],
            )?;
            Ok(Some(StartedTrial { number: count as u64, resumed: None }))
        })
    }

    fn set_params(
        &self,
        study: &str,
        number: u64,
        params: &BTreeMap<String, serde_json::Value>,
        meta: &BTreeMap<String, f64>,
    ) -> Result<()> {
        if B::ATOMIC_STATEMENTS {
            let sql = with_seq(
                "UPDATE trials SET params = ?3, meta = ?4, seq = s.seq FROM s WHERE study = ?1 AND number = ?2",
            );
            return self
                .db
                .statements(|tx| bumped(tx, &sql, args![study, number, to_json(params), to_json(meta)], study));
        }
        self.db.write(|tx| {
            let seq = next_seq(tx, study)?;
            tx.execute(
                "UPDATE trials SET params = ?3, meta = ?4, seq = ?5 WHERE study = ?1 AND number = ?2",
                args![study, number, to_json(params), to_json(meta), seq],
            )?;
            Ok(())
        })
    }

    fn report(&self, study: &str, number: u64, step: u64, value: f64) -> Result<()> {
        if B::ATOMIC_STATEMENTS {
            let sql = with_seq(
                "INSERT INTO trial_values (study, number, step, value, seq) SELECT ?1, ?2, ?3, ?4, seq FROM s \
                 ON CONFLICT (study, number, step) DO UPDATE SET value = excluded.value, seq = excluded.seq), \
                 h AS (UPDATE trials SET heartbeat_at = ?5 FROM s WHERE study = ?1 AND number = ?2",
            );
            return self.db.statements(|tx| bumped(tx, &sql, args![study, number, step, value, now()], study));
        }
        self.db.write(|tx| {
            let seq = next_seq(tx, study)?;
            tx.execute(
                &upsert("trial_values", &["study", "number", "step", "value", "seq"], &["study", "number", "step"]),
                args![study, number, step, value, seq],
            )?;
            tx.execute(
                "UPDATE trials SET heartbeat_at = ?3 WHERE study = ?1 AND number = ?2",
                args![study, number, now()],
            )?;
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
        if B::ATOMIC_STATEMENTS {
            let sql = with_seq(
                "UPDATE trials SET state = ?3, value = ?4, metrics = ?5, error = ?6, finished_at = ?7, \
                 heartbeat_at = ?7, seq = s.seq FROM s WHERE study = ?1 AND number = ?2",
            );
            return self.db.statements(|tx| {
                bumped(tx, &sql, args![study, number, state.as_str(), value, to_json(metrics), error, now()], study)
            });
        }
        self.db.write(|tx| {
            let seq = next_seq(tx, study)?;
            tx.execute(
                "UPDATE trials SET state = ?3, value = ?4, metrics = ?5, error = ?6, finished_at = ?7, \
                 heartbeat_at = ?7, seq = ?8 WHERE study = ?1 AND number = ?2",
                args![study, number, state.as_str(), value, to_json(metrics), error, now(), seq],
            )?;
            Ok(())
        })
    }

    fn changes_since(&self, study: &str, seq: u64) -> Result<StudyChanges> {
        // The study's sequence number first: every change up to it committed with it (a write
        // bumps it in its own transaction, under the study row's lock), so the queries after
        // it, each on its own, see at least those. What they see of later changes comes again
        // next time, and applying a change twice leaves the same view.
        self.db.statements(|tx| {
            // The number and the trials changed since `seq` in one statement (one snapshot); the
            // number after the trial's columns (no name is in both tables), no trial: NULLs.
            let rows = tx.query(
                &format!(
                    "SELECT {TRIAL_COLUMNS}, s.seq FROM studies s LEFT JOIN trials t \
                     ON t.study = s.name AND t.seq > ?2 WHERE s.name = ?1 ORDER BY t.number"
                ),
                args![study, seq],
            )?;
            let current = match rows.first() {
                Some(r) => r.int(13)? as u64,
                None => 0,
            };
            let mut changes = StudyChanges { seq: current, ..Default::default() };
            // The values come from a later snapshot than the trials: after a takeover, a new
            // attempt's values may meet the old attempt's record here; the next call brings the
            // new attempt's record (`seq` stays at `current`), which replaces it.
            for r in &rows {
                if !r.is_null(0) {
                    changes.trials.push(trial_row(r)?);
                }
            }
            if current > seq {
                let values = tx.query(
                    "SELECT number, step, value FROM trial_values WHERE study = ?1 AND seq > ?2 ORDER BY seq",
                    args![study, seq],
                )?;
                for r in values {
                    changes.intermediate.push((r.int(0)? as u64, r.int(1)? as u64, r.real(2)?));
                }
            }
            Ok(changes)
        })
    }

    fn trials_of_run(&self, run_id: &str) -> Result<Vec<(String, TrialRecord)>> {
        self.db.read(|tx| {
            let found = tx.query(
                &format!("SELECT {TRIAL_COLUMNS}, study FROM trials WHERE run_id = ?1 ORDER BY study, number"),
                args![run_id],
            )?;
            let mut out = Vec::with_capacity(found.len());
            for r in &found {
                out.push((r.text(13)?, trial_row(r)?));
            }
            // Every intermediate value of those trials in one query.
            let values = tx.query(
                "SELECT v.study, v.number, v.step, v.value FROM trial_values v \
                 JOIN trials t ON t.study = v.study AND t.number = v.number \
                 WHERE t.run_id = ?1 ORDER BY v.step",
                args![run_id],
            )?;
            let mut by_trial: std::collections::HashMap<(String, u64), Vec<(u64, f64)>> = Default::default();
            for v in &values {
                by_trial.entry((v.text(0)?, v.int(1)? as u64)).or_default().push((v.int(2)? as u64, v.real(3)?));
            }
            for (study, trial) in out.iter_mut() {
                trial.intermediate = by_trial.remove(&(study.clone(), trial.number)).unwrap_or_default();
            }
            Ok(out)
        })
    }
}
