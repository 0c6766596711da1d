//! Alert rules over monitored values. A monitor publishes, per window (or once for the whole
//! data), a map of named values: `drifted_columns`, `drift_share`, `rows`, per column
//! `psi(c)`, `js(c)`, `drift_score(c)`, `drifted(c)`, `ks(c)`, `wasserstein(c)`,
//! `null_fraction(c)`, `mean(c)`, and with ground truth the model's metrics (`roc_auc`, `rmse`,
//! ...). A [`Rule`] fires when it held in each of its last `N` windows.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use sluice_profile::Profile;
use sluice_profile::drift::ColumnDrift;
pub use sluice_spec::alert::Rule;

/// The values of one window (or of the whole data), by name.
pub type Values = BTreeMap<String, f64>;

/// The drift values a rule can name, from a window's drift and its profile.
pub fn drift_values(drift: &[ColumnDrift], current: Option<&Profile>, rows: u64) -> Values {
    let mut v = Values::new();
    let drifted = drift.iter().filter(|d| d.drifted).count();
    v.insert("drifted_columns".into(), drifted as f64);
    v.insert("drift_share".into(), if drift.is_empty() { 0.0 } else { drifted as f64 / drift.len() as f64 });
    v.insert("rows".into(), rows as f64);
    for d in drift {
        let c = &d.column;
        v.insert(format!("psi({c})"), d.psi);
        v.insert(format!("js({c})"), d.jensen_shannon);
        v.insert(format!("drift_score({c})"), d.score);
        v.insert(format!("drifted({c})"), if d.drifted { 1.0 } else { 0.0 });
        v.insert(format!("null_fraction({c})"), d.null_fraction.1);
        if let Some(ks) = d.ks {
            v.insert(format!("ks({c})"), ks);
        }
        if let Some(w) = d.wasserstein {
            v.insert(format!("wasserstein({c})"), w);
        }
    }
    for col in current.map(|p| p.columns.as_slice()).unwrap_or_default() {
        if let Some(n) = &col.numeric {
            v.insert(format!("mean({})", col.name), n.mean);
        }
    }
    v
}

/// A rule that fired.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Firing {
    /// The value in the last window.
    pub value: f64,
    /// The last window's label (`None` without windows).
    pub window: Option<String>,
    /// The label of the first window of the streak.
    pub since: Option<String>,
    /// How many windows in a row it has held (≥ the rule's `N`).
    pub streak: usize,
}

/// Evaluate a rule over windows in time order (`label`, values); a single unlabeled entry when
/// the monitor has no windows. A window without the value counts as "did not hold"; a value no
/// window has is an error naming what the monitor does compute.
pub fn evaluate(rule: &Rule, windows: &[(Option<String>, Values)]) -> Result<Option<Firing>, String> {
    if !windows.iter().any(|(_, v)| v.contains_key(&rule.metric)) {
        let mut names: Vec<&str> = windows
            .iter()
            .flat_map(|(_, v)| v.keys().map(String::as_str))
            .filter(|n| !n.contains('(') || n.starts_with("psi("))
            .collect();
        names.sort_unstable();
        names.dedup();
        let hint = if rule.metric.contains('(') {
            " (per-column values exist for the columns both the reference and the current data have)"
        } else {
            " (model metrics need `model` and `truth`)"
        };
        return Err(format!(
            "rule `{}` needs `{}`, which this monitor does not compute{hint}; it has: {}",
            rule.text,
            rule.metric,
            names.join(", ")
        ));
    }
    let mut streak = 0;
    for (_, values) in windows.iter().rev() {
        match values.get(&rule.metric) {
            Some(v) if rule.holds(*v) => streak += 1,
            _ => break,
        }
    }
    if streak < rule.windows {
        return Ok(None);
    }
    let (last_label, last) = &windows[windows.len() - 1];
    Ok(Some(Firing {
        value: last[&rule.metric],
        window: last_label.clone(),
        since: windows[windows.len() - streak].0.clone(),
        streak,
    }))
}

/// POST `payload` as JSON; the response status, or why it could not be delivered.
pub async fn post_webhook(url: &str, payload: &serde_json::Value) -> Result<u16, String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| format!("cannot make an HTTP client: {e}"))?;
    let body = serde_json::to_vec(payload).unwrap_or_default();
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| format!("POST {url}: {e}"))?;
    let status = response.status().as_u16();
    if response.status().is_success() { Ok(status) } else { Err(format!("POST {url}: HTTP {status}")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(values: &[f64]) -> Vec<(Option<String>, Values)> {
        values.iter().enumerate().map(|(i, v)| (Some(format!("w{i}")), Values::from([("psi(x)".into(), *v)]))).collect()
    }

    #[test]
    fn fires_only_after_n_windows_in_a_row() {
        let rule = Rule::parse("psi(x) > 0.2 for 2 windows").unwrap();
        assert_eq!(evaluate(&rule, &series(&[0.1, 0.3, 0.1, 0.3])).unwrap(), None);
        let f = evaluate(&rule, &series(&[0.1, 0.3, 0.4, 0.5])).unwrap().unwrap();
        assert_eq!((f.value, f.window.as_deref(), f.since.as_deref(), f.streak), (0.5, Some("w3"), Some("w1"), 3));
        // The streak must reach the last window: drift that went away does not fire.
        assert_eq!(evaluate(&rule, &series(&[0.3, 0.4, 0.1])).unwrap(), None);
    }

    #[test]
    fn a_value_nobody_computes_is_an_error() {
        let rule = Rule::parse("roc_auc < 0.8").unwrap();
        let e = evaluate(&rule, &series(&[0.1])).unwrap_err();
        assert!(e.contains("needs `roc_auc`") && e.contains("psi(x)"), "{e}");
    }
}
