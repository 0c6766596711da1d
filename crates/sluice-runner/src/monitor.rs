//! The monitor step: drift of a dataset against a reference profile, from one profiling pass
//! (per window of a time column when asked).

use serde_json::json;
use sluice_core::ArtifactKind;
use sluice_engine::for_each_batch;
use sluice_profile::drift::{ColumnDrift, drift, window_drift};
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
    // One pass: per window when asked (the whole profile is then the windows merged), else whole.
    enum Pass {
        Whole(Profiler),
        Windows(WindowedProfiler),
    }
    let mut pass = match window {
        Some(w) => Pass::Windows(
            WindowedProfiler::new(schema, m.time.as_deref(), w).map_err(|e| StepError::Invalid(e.to_string()))?,
        ),
        None => Pass::Whole(Profiler::new(schema)),
    };
    let mut failed = None;
    for_each_batch(df, |batch| {
        let result = match &mut pass {
            Pass::Whole(p) => p.update(&batch),
            Pass::Windows(w) => w.update(&batch),
        };
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
    let (current, per_window) = match pass {
        Pass::Whole(p) => (p.finish(), Vec::new()),
        Pass::Windows(w) => {
            let (windows, whole) = w.finish_with_whole();
            (whole, window_drift(&reference, &windows, m.time.as_deref()))
        }
    };
    let overall = drift(&reference, &current);
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
        let windows_drifted = per_window.iter().filter(|w| !w.drifted_columns.is_empty()).count();
        metrics.push(("windows".into(), per_window.len() as f64));
        metrics.push(("windows_drifted".into(), windows_drifted as f64));
    }
    let report_out =
        ctx.store_json("report", serde_json::to_vec_pretty(&report).unwrap_or_default(), ArtifactKind::Metrics).await?;
    let profile_out = ctx.store_json("profile", current.to_json(), ArtifactKind::Profile).await?;
    Ok(Executed { after_commit: None, outputs: vec![report_out, profile_out], rows: Some(current.rows), metrics })
}
