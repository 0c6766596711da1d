//! The monitor step: drift of a dataset against a reference profile, from one profiling pass
//! (per window of a time column when asked).

use serde_json::json;
use sluice_core::ArtifactKind;
use sluice_engine::for_each_batch;
use sluice_profile::drift::{ColumnDrift, drift};
use sluice_profile::{Profile, Profiler, Window, WindowedProfiler};
use sluice_spec::kinds::MonitorStep;

use crate::error::StepError;
use crate::steps::{Executed, StepCtx};

fn summary(drift: &[ColumnDrift]) -> String {
    let drifted: Vec<String> = drift
        .iter()
        .filter(|d| d.drifted)
        .map(|d| format!("{} (PSI {:.3}, {:?} {:.4})", d.column, d.psi, d.method, d.score))
        .collect();
    if drifted.is_empty() {
        format!("no drift in {} columns", drift.len())
    } else {
        format!("{} of {} columns drifted: {}", drifted.len(), drift.len(), drifted.join(", "))
    }
}

pub(crate) async fn execute(ctx: &StepCtx, m: &MonitorStep) -> Result<Executed, StepError> {
    let reference_path = ctx.path_of(&ctx.input("reference")?.artifact).await?;
    let bytes = tokio::fs::read(&reference_path)
        .await
        .map_err(|e| StepError::Internal(format!("cannot read the reference profile: {e}")))?;
    let reference =
        Profile::from_json(&bytes).map_err(|e| StepError::Invalid(format!("`reference` is not a profile: {e}")))?;
    let current = ctx.path_of(&ctx.input("current")?.artifact).await?;
    let df = ctx.engine.sql(&[("current".into(), current)], "SELECT * FROM current").await?;
    let schema = std::sync::Arc::new(df.schema().as_arrow().clone());
    let window = match &m.window {
        Some(w) => Some(Window::parse(w).ok_or_else(|| StepError::Invalid(format!("`window`: cannot read `{w}`")))?),
        None => None,
    };
    let mut whole = Profiler::new(schema.clone());
    let mut windows = match window {
        Some(w) => {
            Some(WindowedProfiler::new(schema, m.time.as_deref(), w).map_err(|e| StepError::Invalid(e.to_string()))?)
        }
        None => None,
    };
    let mut failed = None;
    for_each_batch(df, |batch| {
        let result = whole.update(&batch).and_then(|_| windows.as_mut().map_or(Ok(()), |w| w.update(&batch)));
        if let Err(e) = result {
            failed = Some(e);
            return Err(sluice_engine::EngineError::Invalid("profiling stopped".into()));
        }
        Ok(())
    })
    .await
    .or_else(|e| if failed.is_some() { Ok(()) } else { Err(e) })?;
    if let Some(e) = failed {
        return Err(StepError::Invalid(e.to_string()));
    }
    let current = whole.finish();
    let overall = drift(&reference, &current);
    let mut per_window = Vec::new();
    if let Some(w) = windows {
        for (start, profile) in w.finish() {
            let mut d = drift(&reference, &profile);
            d.retain(|c| Some(c.column.as_str()) != m.time.as_deref());
            let drifted: Vec<&str> = d.iter().filter(|c| c.drifted).map(|c| c.column.as_str()).collect();
            per_window.push(json!({ "start": start, "rows": profile.rows, "drifted_columns": drifted, "columns": d }));
        }
    }
    let drifted = overall.iter().filter(|d| d.drifted).count();
    let text = summary(&overall);
    ctx.report(&text);
    if m.fail_on_drift && drifted > 0 {
        return Err(StepError::Invalid(format!("drift against the reference: {text}")));
    }
    let report = json!({
        "reference_rows": reference.rows,
        "current_rows": current.rows,
        "drifted": drifted,
        "columns": overall,
        "windows": per_window,
    });
    let mut metrics = vec![("drifted_columns".to_string(), drifted as f64)];
    for d in &overall {
        metrics.push((format!("psi_{}", d.column), d.psi));
        metrics.push((format!("drift_score_{}", d.column), d.score));
    }
    if !per_window.is_empty() {
        let windows_drifted =
            per_window.iter().filter(|w| w["drifted_columns"].as_array().is_some_and(|a| !a.is_empty()));
        metrics.push(("windows".into(), per_window.len() as f64));
        metrics.push(("windows_drifted".into(), windows_drifted.count() as f64));
    }
    let report_out =
        ctx.store_json("report", serde_json::to_vec_pretty(&report).unwrap_or_default(), ArtifactKind::Metrics).await?;
    let profile_out = ctx.store_json("profile", current.to_json(), ArtifactKind::Profile).await?;
    Ok(Executed { after_commit: None, outputs: vec![report_out, profile_out], rows: Some(current.rows), metrics })
}
