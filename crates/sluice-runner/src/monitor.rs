//! The monitor step: drift of a dataset against a reference (a profile, or a registered model's
//! evaluation data and predictions), the model's metrics when ground truth is given, per window
//! of a time column when asked — all from one pass over the data — and alert rules with their
//! actions (log, webhook, run a pipeline), each firing recorded in the metadata store.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::json;
use sluice_core::ArtifactKind;
use sluice_engine::for_each_batch;
use sluice_model::Predictor;
use sluice_monitor::alerts::{Firing, Rule, Values, drift_values, evaluate, post_webhook};
use sluice_monitor::performance::{Performance, PerformanceJoin};
use sluice_profile::drift::{ColumnDrift, drift};
use sluice_profile::{Profile, Profiler, Window, WindowedProfiler};
use sluice_spec::alert::{AlertAction, AlertSpec};
use sluice_spec::kinds::MonitorStep;
use sluice_store::AlertRecord;

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

/// The reference profile and, for `model:`, the model (for performance) and its version's
/// metrics and evaluation threshold.
async fn reference(
    ctx: &StepCtx,
    m: &MonitorStep,
) -> Result<(Profile, Option<(Arc<Predictor>, BTreeMap<String, f64>, f64)>), StepError> {
    if let Some(name) = &m.model {
        let r = sluice_monitor::reference::for_model(ctx.ws.meta.as_ref(), &ctx.ws.artifacts, name).await?;
        let threshold = r.version.evaluation.as_ref().map_or(0.5, |e| e.threshold);
        return Ok((r.profile, Some((r.predictor, r.version.metrics.into_iter().collect(), threshold))));
    }
    let record = ctx.input("reference")?;
    let path = ctx.path_of(&record.artifact).await?;
    let bytes = tokio::fs::read(&path)
        .await
        .map_err(|e| StepError::Internal(format!("cannot read the reference profile: {e}")))?;
    let profile =
        Profile::from_json(&bytes).map_err(|e| StepError::Invalid(format!("`reference` is not a profile: {e}")))?;
    Ok((profile, None))
}

/// Read every batch of a dataset input into memory (ground truth: one row per prediction).
async fn read_all(ctx: &StepCtx, role: &str) -> Result<Vec<arrow::array::RecordBatch>, StepError> {
    let path = ctx.path_of(&ctx.input(role)?.artifact).await?;
    let df = ctx.engine.sql(&[(role.into(), path)], &format!("SELECT * FROM {role}")).await?;
    Ok(df.collect().await?)
}

pub(crate) async fn execute(ctx: &StepCtx, m: &MonitorStep) -> Result<Executed, StepError> {
    let (reference, model) = reference(ctx, m).await?;
    let current = ctx.path_of(&ctx.input("current")?.artifact).await?;
    let df = ctx.engine.sql(&[("current".into(), current)], "SELECT * FROM current").await?;
    let schema = Arc::new(df.schema().as_arrow().clone());
    let window = match &m.window {
        Some(w) => Some(Window::parse(w).ok_or_else(|| StepError::Invalid(format!("`window`: cannot read `{w}`")))?),
        None => None,
    };
    let mut join = match (&m.truth, &model) {
        (Some(_), Some((predictor, _, threshold))) => {
            let truth = read_all(ctx, "truth").await?;
            let w = window.map(|w| (w, m.time.clone().unwrap_or_default()));
            Some(PerformanceJoin::new(predictor.artifact(), &truth, &m.key, None, *threshold, w)?)
        }
        _ => None,
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
    let mut failed: Option<StepError> = None;
    for_each_batch(df, |batch| {
        let result = match &mut pass {
            Pass::Whole(p) => p.update(&batch).map_err(|e| StepError::Invalid(e.to_string())),
            Pass::Windows(w) => w.update(&batch).map_err(|e| StepError::Invalid(e.to_string())),
        }
        .and_then(|()| join.as_mut().map_or(Ok(()), |j| j.update(&batch).map_err(StepError::from)));
        if let Err(e) = result {
            failed = Some(e);
            return Err(sluice_engine::EngineError::Invalid("monitoring stopped".into()));
        }
        Ok(())
    })
    .await
    .or_else(|e| if failed.is_some() { Ok(()) } else { Err(e) })?;
    if let Some(e) = failed {
        return Err(e);
    }
    let (current, windows) = match pass {
        Pass::Whole(p) => (p.finish(), Vec::new()),
        Pass::Windows(w) => {
            let (windows, whole) = w.finish_with_whole();
            (whole, windows)
        }
    };
    let performance: Option<Performance> = join.map(PerformanceJoin::finish);
    if let Some(p) = &performance
        && p.matched == 0
    {
        ctx.report(&format!(
            "no row of `current` matched the {} rows of `truth` by {}: no model metrics",
            p.truth_rows,
            m.key.join(" + ")
        ));
    }
    let overall = drift(&reference, &current);
    let drifted = overall.iter().filter(|d| d.drifted).count();
    let text = summary(&overall);
    ctx.report(&text);

    // The values rules can name, per window (or once for the whole data).
    let per_window = sluice_profile::drift::window_drift(&reference, &windows, m.time.as_deref());
    let mut series: Vec<(Option<String>, Values)> = Vec::new();
    if let Some(w) = window {
        for ((start, profile), wd) in windows.iter().zip(&per_window) {
            let mut values = drift_values(&wd.columns, Some(profile), wd.rows);
            if let Some(p) = &performance
                && let Some(pw) = p.windows.iter().find(|x| x.start == *start)
            {
                values.extend(pw.metrics.clone());
            }
            series.push((Some(sluice_monitor::window_label(*start, w, wd.rows)), values));
        }
    } else {
        let mut values = drift_values(&overall, Some(&current), current.rows);
        if let Some(p) = &performance {
            values.extend(p.overall.clone());
        }
        series.push((None, values));
    }
    let fired = fire_alerts(ctx, m, &series).await?;

    if m.fail_on_drift && drifted > 0 {
        return Err(StepError::Invalid(format!("drift against the reference: {text}")));
    }
    let report = json!({
        "reference_rows": reference.rows,
        "current_rows": current.rows,
        "drifted": drifted,
        "columns": overall,
        "windows": per_window,
        "performance": performance,
        "evaluation": model.as_ref().map(|(_, metrics, _)| metrics),
        "alerts": fired,
    });
    let mut metrics =
        vec![("drifted_columns".to_string(), drifted as f64), ("alerts_fired".into(), fired.len() as f64)];
    for d in &overall {
        metrics.push((format!("psi_{}", d.column), d.psi));
        metrics.push((format!("drift_score_{}", d.column), d.score));
    }
    if !per_window.is_empty() {
        let windows_drifted = per_window.iter().filter(|w| !w.drifted_columns.is_empty()).count();
        metrics.push(("windows".into(), per_window.len() as f64));
        metrics.push(("windows_drifted".into(), windows_drifted as f64));
    }
    if let Some(p) = &performance {
        metrics.extend(p.overall.iter().map(|(k, v)| (k.clone(), *v)));
        metrics.push(("labeled_rows".into(), p.matched as f64));
    }
    let report_out =
        ctx.store_json("report", serde_json::to_vec_pretty(&report).unwrap_or_default(), ArtifactKind::Metrics).await?;
    let profile_out = ctx.store_json("profile", current.to_json(), ArtifactKind::Profile).await?;
    Ok(Executed { after_commit: None, outputs: vec![report_out, profile_out], rows: Some(current.rows), metrics })
}

/// Evaluate every alert rule; run the actions of those that fire and record each firing.
async fn fire_alerts(
    ctx: &StepCtx,
    m: &MonitorStep,
    series: &[(Option<String>, Values)],
) -> Result<Vec<serde_json::Value>, StepError> {
    let mut out = Vec::new();
    for alert in &m.alerts {
        // Checked when the spec was read.
        let rule = Rule::parse(&alert.when).map_err(StepError::Invalid)?;
        let Some(firing) =
            evaluate(&rule, series).map_err(|e| StepError::Invalid(format!("alert `{}`: {e}", alert.name)))?
        else {
            continue;
        };
        let message = message(alert, &rule, &firing);
        let payload = json!({
            "alert": alert.name,
            "rule": rule.text,
            "value": firing.value,
            "threshold": rule.threshold,
            "window": firing.window,
            "since": firing.since,
            "windows": firing.streak,
            "pipeline": ctx.pipeline,
            "step": ctx.step.name,
            "run_id": ctx.run_id,
            "message": message,
        });
        let mut outcomes = Vec::new();
        for action in &alert.actions {
            outcomes.push(act(ctx, action, &payload, &message).await);
        }
        let record = AlertRecord {
            id: 0,
            fired_at: sluice_store::now(),
            source: format!("{}.{}", ctx.pipeline, ctx.step.name),
            run_id: Some(ctx.run_id.clone()),
            rule: rule.text.clone(),
            name: alert.name.clone(),
            value: firing.value,
            window_start: firing.window.clone(),
            since: firing.since.clone(),
            message: message.clone(),
            actions: outcomes.clone(),
        };
        ctx.ws.meta.record_alert(&record)?;
        let mut v = payload;
        v["actions"] = outcomes.into();
        out.push(v);
    }
    Ok(out)
}

fn message(alert: &AlertSpec, rule: &Rule, f: &Firing) -> String {
    let when = match (&f.since, f.streak) {
        (Some(since), n) if n > 1 => format!(" in each of the last {n} windows (since {since})"),
        (Some(w), _) => format!(" in the window of {w}"),
        (None, _) => String::new(),
    };
    format!("alert `{}` fired: {} = {:.4}{when} ({})", alert.name, rule.metric, f.value, rule.text)
}

/// Run one action; its outcome as recorded (`ok` false with the reason when it failed: a failing
/// action does not fail the step, the alert is still recorded).
async fn act(ctx: &StepCtx, action: &AlertAction, payload: &serde_json::Value, message: &str) -> serde_json::Value {
    match action {
        AlertAction::Log => {
            ctx.report(message);
            json!({"action": "log", "ok": true})
        }
        AlertAction::Webhook(url) => match post_webhook(url, payload).await {
            Ok(status) => json!({"action": "webhook", "url": url, "ok": true, "status": status}),
            Err(e) => {
                ctx.report(&format!("alert webhook failed: {e}"));
                json!({"action": "webhook", "url": url, "ok": false, "error": e})
            }
        },
        AlertAction::Run(run) => {
            let path = ctx.base_dir.join(&run.pipeline);
            let overrides: Vec<String> = run.set.iter().map(|(k, v)| format!("{k}={v}")).collect();
            match trigger(ctx, &path, &overrides).await {
                Ok(summary) => {
                    let ok = summary.failed.is_empty();
                    ctx.report(&format!(
                        "alert triggered run {} of {}: {} ({} ran, {} cached)",
                        summary.run_id,
                        run.pipeline,
                        if ok { "succeeded" } else { "failed" },
                        summary.ran.len(),
                        summary.cached.len()
                    ));
                    json!({"action": "run", "pipeline": run.pipeline, "set": run.set, "ok": ok,
                           "run_id": summary.run_id, "failed": summary.failed})
                }
                Err(e) => {
                    ctx.report(&format!("alert could not run {}: {e}", run.pipeline));
                    json!({"action": "run", "pipeline": run.pipeline, "ok": false, "error": e})
                }
            }
        }
    }
}

/// Run another pipeline in this workspace (retraining); a pipeline cannot trigger itself.
async fn trigger(ctx: &StepCtx, path: &std::path::Path, overrides: &[String]) -> Result<crate::RunSummary, String> {
    let pipeline = sluice_spec::load(path, overrides).map_err(|e| e.to_string())?;
    if pipeline.name == ctx.pipeline {
        return Err(format!(
            "`{}` is this pipeline; an alert cannot re-run the pipeline it is part of",
            path.display()
        ));
    }
    let options = crate::RunOptions { overrides: overrides.to_vec(), ..crate::RunOptions::default() };
    crate::run::run_boxed(ctx.ws.clone(), pipeline, options).await.map_err(|e| e.to_string())
}
