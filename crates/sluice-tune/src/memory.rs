//! [`StudyStore`] in memory: the same semantics as the metadata store, for studies that need not
//! outlive the process (and to measure the sampler without storage).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use sluice_store::{
    Result, StartedTrial, StoreError, StudyChanges, StudyRecord, StudyStore, TrialRecord, TrialState, Worker, now,
};

#[derive(Default)]
pub struct MemoryStudies {
    studies: Mutex<HashMap<String, Mem>>,
}

struct Mem {
    record: StudyRecord,
    seq: u64,
    /// Each trial with the sequence number of its last change.
    trials: Vec<(TrialRecord, u64)>,
    /// (trial, step, value, seq) in the order reported.
    values: Vec<(u64, u64, f64, u64)>,
}

impl MemoryStudies {
    fn with<T>(&self, name: &str, f: impl FnOnce(&mut Mem) -> T) -> Result<T> {
        let mut map = self.studies.lock().map_err(|_| StoreError::Internal("study lock poisoned".into()))?;
        let mem = map.get_mut(name).ok_or_else(|| StoreError::NotFound {
            what: "study",
            name: name.into(),
            hint: String::new(),
        })?;
        Ok(f(mem))
    }
}

impl StudyStore for MemoryStudies {
    fn open_study(&self, study: &StudyRecord) -> Result<StudyRecord> {
        let mut map = self.studies.lock().map_err(|_| StoreError::Internal("study lock poisoned".into()))?;
        if let Some(m) = map.get(&study.name) {
            if m.record.direction != study.direction || m.record.definition != study.definition {
                return Err(StoreError::StudyMismatch {
                    name: study.name.clone(),
                    what: "definition".into(),
                    stored: m.record.definition.to_string(),
                    asked: study.definition.to_string(),
                });
            }
            return Ok(m.record.clone());
        }
        let record = StudyRecord { created_at: now(), ..study.clone() };
        map.insert(study.name.clone(), Mem { record: record.clone(), seq: 0, trials: Vec::new(), values: Vec::new() });
        Ok(record)
    }

    fn study(&self, name: &str) -> Result<Option<StudyRecord>> {
        let map = self.studies.lock().map_err(|_| StoreError::Internal("study lock poisoned".into()))?;
        Ok(map.get(name).map(|m| m.record.clone()))
    }

    fn studies(&self) -> Result<Vec<StudyRecord>> {
        let map = self.studies.lock().map_err(|_| StoreError::Internal("study lock poisoned".into()))?;
        let mut out: Vec<StudyRecord> = map.values().map(|m| m.record.clone()).collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn start_trial(&self, study: &str, worker: &Worker, max: Option<u64>, _stale: u64) -> Result<Option<StartedTrial>> {
        self.with(study, |m| {
            // In one process every worker is alive; nothing to hand out again.
            let number = m.trials.len() as u64;
            if max.is_some_and(|max| number >= max) {
                return None;
            }
            m.seq += 1;
            m.trials.push((
                TrialRecord {
                    number,
                    state: TrialState::Running,
                    params: BTreeMap::new(),
                    value: None,
                    intermediate: Vec::new(),
                    metrics: BTreeMap::new(),
                    meta: BTreeMap::new(),
                    worker: worker.id(),
                    run_id: worker.run_id.clone(),
                    started_at: now(),
                    finished_at: None,
                    error: None,
                    attempt: 0,
                },
                m.seq,
            ));
            Some(StartedTrial { number, resumed: None })
        })
    }

    fn set_params(
        &self,
        study: &str,
        number: u64,
        params: &BTreeMap<String, serde_json::Value>,
        meta: &BTreeMap<String, f64>,
    ) -> Result<()> {
        self.with(study, |m| {
            m.seq += 1;
            let (t, seq) = &mut m.trials[number as usize];
            t.params = params.clone();
            t.meta = meta.clone();
            *seq = m.seq;
        })
    }

    fn report(&self, study: &str, number: u64, step: u64, value: f64) -> Result<()> {
        self.with(study, |m| {
            m.seq += 1;
            m.values.push((number, step, value, m.seq));
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
        self.with(study, |m| {
            m.seq += 1;
            let (t, seq) = &mut m.trials[number as usize];
            t.state = state;
            t.value = value;
            t.metrics = metrics.clone();
            t.error = error.map(str::to_string);
            t.finished_at = Some(now());
            *seq = m.seq;
        })
    }

    fn changes_since(&self, study: &str, since: u64) -> Result<StudyChanges> {
        self.with(study, |m| {
            let first = m.values.partition_point(|v| v.3 <= since);
            StudyChanges {
                seq: m.seq,
                trials: m.trials.iter().filter(|(_, s)| *s > since).map(|(t, _)| t.clone()).collect(),
                intermediate: m.values[first..].iter().map(|v| (v.0, v.1, v.2)).collect(),
            }
        })
    }

    fn trials_of_run(&self, run_id: &str) -> Result<Vec<(String, TrialRecord)>> {
        let map = self.studies.lock().map_err(|_| StoreError::Internal("study lock poisoned".into()))?;
        let mut out = Vec::new();
        for (name, m) in map.iter() {
            for (trial, _) in m.trials.iter().filter(|(t, _)| t.run_id.as_deref() == Some(run_id)) {
                // The last value reported at each step, in step order.
                let steps: BTreeMap<u64, f64> =
                    m.values.iter().filter(|v| v.0 == trial.number).map(|v| (v.1, v.2)).collect();
                out.push((name.clone(), TrialRecord { intermediate: steps.into_iter().collect(), ..trial.clone() }));
            }
        }
        out.sort_by(|a, b| (&a.0, a.1.number).cmp(&(&b.0, b.1.number)));
        Ok(out)
    }
}
