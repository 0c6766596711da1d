//! Monitoring alert rules: `psi(dep_delay) > 0.2 for 2 windows`, `roc_auc < 0.8`.
//!
//! A rule compares one monitored value with a number. The value is a dataset-level metric
//! (`drifted_columns`, `drift_share`, `rows`, or a performance metric such as `roc_auc` when
//! ground truth is joined) or a per-column statistic written as a call: `psi(col)`,
//! `js(col)` (Jensen–Shannon distance), `drift_score(col)` (the score of the column's drift
//! test), `drifted(col)` (1 or 0), `ks(col)`, `wasserstein(col)`, `null_fraction(col)`,
//! `mean(col)`. With `for N windows` the rule fires only when it held in each of the last `N`
//! windows in a row (like Prometheus' `for`); without it, in the last window (or the whole data
//! when the monitor has no windows).

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::gate::Op;

/// The per-column statistics a rule can name.
pub const COLUMN_FUNCTIONS: &[&str] =
    &["psi", "js", "drift_score", "drifted", "ks", "wasserstein", "null_fraction", "mean"];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    /// As written, for messages.
    pub text: String,
    /// The value's name as monitors publish it: `drift_share`, `roc_auc`, `psi(dep_delay)`.
    pub metric: String,
    pub op: Op,
    pub threshold: f64,
    /// Consecutive windows the condition must hold in (1 without `for`).
    pub windows: usize,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        && !s.starts_with(|c: char| c.is_ascii_digit())
}

impl Rule {
    /// Parse `VALUE OP NUMBER [for N window(s)]`.
    pub fn parse(text: &str) -> Result<Rule, String> {
        let expected =
            "expected `VALUE OP NUMBER [for N windows]`, e.g. `psi(dep_delay) > 0.2 for 2 windows` or `roc_auc < 0.8`";
        let (condition, windows) = match text.find(" for ") {
            Some(p) => {
                let tail: Vec<&str> = text[p + 5..].split_whitespace().collect();
                let n = match tail.as_slice() {
                    [n, w] if *w == "windows" || *w == "window" => n.parse::<usize>().ok().filter(|n| *n > 0),
                    _ => None,
                }
                .ok_or_else(|| format!("`for {}` must be `for N windows` with N ≥ 1", text[p + 5..].trim()))?;
                (&text[..p], n)
            }
            None => (text, 1),
        };
        for (typo, meant) in [("=>", "`>=`"), ("=<", "`<=`"), ("==", "`>=` or `<=`")] {
            if condition.contains(typo) {
                return Err(format!("`{typo}` is not a comparison; did you mean {meant}?"));
            }
        }
        let (pos, len, op) = [(">=", Op::Ge), ("<=", Op::Le), (">", Op::Gt), ("<", Op::Lt)]
            .iter()
            .find_map(|(sym, op)| condition.find(sym).map(|p| (p, sym.len(), *op)))
            .ok_or_else(|| format!("no comparison (>=, >, <=, <) in `{text}`; {expected}"))?;
        let value = condition[..pos].trim();
        let number = condition[pos + len..].trim();
        let threshold = number
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| format!("`{number}` is not a number; {expected}"))?;
        let metric = match value.split_once('(') {
            Some((function, rest)) => {
                let column = rest
                    .strip_suffix(')')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .ok_or_else(|| format!("`{value}` is not `FUNCTION(column)`; {expected}"))?;
                let function = function.trim();
                if !COLUMN_FUNCTIONS.contains(&function) {
                    return Err(format!(
                        "unknown per-column value `{function}(...)`; one of: {}",
                        COLUMN_FUNCTIONS.join(", ")
                    ));
                }
                format!("{function}({column})")
            }
            None if is_name(value) => value.to_string(),
            None => return Err(format!("`{value}` is not a value name; {expected}")),
        };
        Ok(Rule { text: text.trim().to_string(), metric, op, threshold, windows })
    }

    /// Whether `value` crosses the threshold.
    pub fn holds(&self, value: f64) -> bool {
        self.op.holds(value, self.threshold)
    }
}

/// What to do when an alert fires.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum AlertAction {
    /// Print the alert in the run's log (always recorded in the metadata store anyway).
    Log,
    /// POST the alert as JSON to this URL.
    Webhook(String),
    /// Run a pipeline (e.g. retraining) in the same workspace, with `--set` overrides.
    Run(RunAction),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunAction {
    /// The pipeline spec, relative to this spec's folder.
    pub pipeline: String,
    /// Overrides, as `sluice run --set KEY=VALUE` takes them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set: BTreeMap<String, String>,
}

/// A rule with a name and its actions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertSpec {
    pub name: String,
    /// The rule (see [`Rule::parse`]).
    pub when: String,
    /// What happens when it fires; `[log]` when omitted.
    #[serde(default = "default_actions")]
    pub actions: Vec<AlertAction>,
}

fn default_actions() -> Vec<AlertAction> {
    vec![AlertAction::Log]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rules_with_and_without_windows() {
        let r = Rule::parse("psi(dep_delay) > 0.2 for 2 windows").unwrap();
        assert_eq!((r.metric.as_str(), r.op, r.threshold, r.windows), ("psi(dep_delay)", Op::Gt, 0.2, 2));
        let r = Rule::parse("roc_auc<0.8").unwrap();
        assert_eq!((r.metric.as_str(), r.op, r.threshold, r.windows), ("roc_auc", Op::Lt, 0.8, 1));
        assert!(r.holds(0.79) && !r.holds(0.8));
        let r = Rule::parse("drifted_columns >= 3 for 1 window").unwrap();
        assert_eq!(r.windows, 1);
    }

    #[test]
    fn refuses_bad_rules_saying_why() {
        assert!(Rule::parse("psi(x) > high").unwrap_err().contains("`high` is not a number"));
        assert!(Rule::parse("psi(x) > 0.2 for two windows").unwrap_err().contains("for N windows"));
        assert!(Rule::parse("psi(x) > 0.2 for 0 windows").unwrap_err().contains("N ≥ 1"));
        assert!(Rule::parse("median(x) > 1").unwrap_err().contains("unknown per-column value `median"));
        assert!(Rule::parse("auc == 1").unwrap_err().contains("did you mean"));
        assert!(Rule::parse("auc").unwrap_err().contains("no comparison"));
    }
}
