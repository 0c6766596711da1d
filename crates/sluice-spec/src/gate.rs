//! Promotion gates: `roc_auc >= 0.85`, `roc_auc >= champion.roc_auc - 0.002`.
//!
//! A gate compares one of the candidate's evaluation metrics with a constant, or with the same or
//! another metric of the model currently holding an alias, scored on the same evaluation data.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    #[serde(rename = ">=")]
    Ge,
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = "<")]
    Lt,
}

impl Op {
    pub fn holds(self, left: f64, right: f64) -> bool {
        match self {
            Op::Ge => left >= right,
            Op::Gt => left > right,
            Op::Le => left <= right,
            Op::Lt => left < right,
        }
    }

    pub fn symbol(self) -> &'static str {
        match self {
            Op::Ge => ">=",
            Op::Gt => ">",
            Op::Le => "<=",
            Op::Lt => "<",
        }
    }
}

/// The right-hand side of a gate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bound {
    Constant(f64),
    /// `alias.metric + offset` (offset may be negative or zero).
    Alias {
        alias: String,
        metric: String,
        offset: f64,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Gate {
    /// As written, for messages.
    pub text: String,
    pub metric: String,
    pub op: Op,
    pub bound: Bound,
}

impl fmt::Display for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !s.starts_with(|c: char| c.is_ascii_digit())
}

impl Gate {
    /// Parse `METRIC OP NUMBER` or `METRIC OP ALIAS.METRIC [(+|-) NUMBER]`.
    pub fn parse(text: &str) -> Result<Gate, String> {
        let expected = "expected `METRIC OP NUMBER` or `METRIC OP ALIAS.METRIC [+|- NUMBER]`, e.g. `roc_auc >= champion.roc_auc - 0.002`";
        for (typo, meant) in [("=>", "`>=`"), ("=<", "`<=`"), ("==", "`>=` or `<=`")] {
            if text.contains(typo) {
                return Err(format!("`{typo}` is not a comparison; did you mean {meant}?"));
            }
        }
        let (pos, op) = [(">=", Op::Ge), ("<=", Op::Le), (">", Op::Gt), ("<", Op::Lt)]
            .iter()
            .find_map(|(sym, op)| text.find(sym).map(|p| ((p, sym.len()), *op)))
            .ok_or_else(|| format!("no comparison (>=, >, <=, <) in `{text}`; {expected}"))?;
        let metric = text[..pos.0].trim();
        let rhs = text[pos.0 + pos.1..].trim();
        if !is_name(metric) {
            return Err(format!("`{metric}` is not a metric name; {expected}"));
        }
        let bound = if let Ok(v) = rhs.parse::<f64>() {
            Bound::Constant(v)
        } else {
            let (reference, offset) = match rhs.find(['+', '-']).filter(|&p| p > 0) {
                Some(p) => {
                    let number: String = rhs[p..].chars().filter(|c| !c.is_whitespace()).collect();
                    let offset =
                        number.parse::<f64>().map_err(|_| format!("`{}` is not a number; {expected}", &rhs[p..]))?;
                    (rhs[..p].trim(), offset)
                }
                None => (rhs, 0.0),
            };
            let (alias, other) = reference
                .split_once('.')
                .ok_or_else(|| format!("`{rhs}` is neither a number nor `ALIAS.METRIC`; {expected}"))?;
            if !is_name(alias) || !is_name(other) {
                return Err(format!("`{reference}` is not `ALIAS.METRIC`; {expected}"));
            }
            Bound::Alias { alias: alias.to_string(), metric: other.to_string(), offset }
        };
        if let Bound::Constant(v) | Bound::Alias { offset: v, .. } = &bound
            && !v.is_finite()
        {
            return Err(format!("`{rhs}` is not a finite number"));
        }
        Ok(Gate { text: text.trim().to_string(), metric: metric.to_string(), op, bound })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_constants_and_alias_comparisons() {
        let g = Gate::parse("roc_auc >= 0.85").unwrap();
        assert_eq!((g.metric.as_str(), g.op, g.bound), ("roc_auc", Op::Ge, Bound::Constant(0.85)));
        let g = Gate::parse("roc_auc>=champion.roc_auc - 0.002").unwrap();
        assert_eq!(g.bound, Bound::Alias { alias: "champion".into(), metric: "roc_auc".into(), offset: -0.002 });
        let g = Gate::parse("log_loss < champion.log_loss").unwrap();
        assert_eq!(
            (g.op, g.bound),
            (Op::Lt, Bound::Alias { alias: "champion".into(), metric: "log_loss".into(), offset: 0.0 })
        );
        let g = Gate::parse("rmse <= prod.rmse + 1e-3").unwrap();
        assert_eq!(g.bound, Bound::Alias { alias: "prod".into(), metric: "rmse".into(), offset: 0.001 });
    }

    #[test]
    fn rejects_malformed_gates() {
        for bad in
            ["roc_auc", "roc_auc = 1", ">= 0.8", "roc_auc >= champion", "roc_auc >= champion.auc - x", "roc_auc >= inf"]
        {
            assert!(Gate::parse(bad).is_err(), "{bad}");
        }
    }
}
