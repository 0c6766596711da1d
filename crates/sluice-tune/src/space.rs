//! Search spaces. Every parameter has an *internal* coordinate the samplers work in: the value
//! itself, its logarithm for log-scaled ones, or the choice's index for categorical ones.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sluice_core::rng::SplitMix64;

use crate::TuneError;

/// Chosen values by parameter name: numbers, strings or booleans as the spec wrote them.
pub type Params = BTreeMap<String, Value>;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Distribution {
    /// A real number in `[low, high]`, uniform or log-uniform, optionally on a grid of `step`.
    Float { low: f64, high: f64, log: bool, step: Option<f64> },
    /// A whole number in `[low, high]` (every `step`), uniform or log-uniform.
    Int { low: i64, high: i64, log: bool, step: i64 },
    /// One of the choices.
    Categorical { choices: Vec<Value> },
}

/// A parameter that exists only when an earlier categorical parameter has one of `values`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Condition {
    pub param: String,
    pub values: Vec<Value>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Param {
    pub name: String,
    pub distribution: Distribution,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<Condition>,
    /// The values a grid search tries (default: every choice or whole number, or 5 points).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grid: Option<Vec<Value>>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Space {
    pub params: Vec<Param>,
}

impl Space {
    /// Check bounds, choices and conditions: a condition names an earlier categorical
    /// parameter and values among its choices.
    pub fn new(params: Vec<Param>) -> Result<Self, TuneError> {
        let bad = |p: &Param, m: String| Err(TuneError::Space(format!("`{}`: {m}", p.name)));
        for (i, p) in params.iter().enumerate() {
            if params[..i].iter().any(|q| q.name == p.name) {
                return bad(p, "appears twice".into());
            }
            match &p.distribution {
                Distribution::Float { low, high, log, step } => {
                    if !(low.is_finite() && high.is_finite() && low < high) {
                        return bad(p, format!("needs low < high, got [{low}, {high}]"));
                    }
                    if *log && *low <= 0.0 {
                        return bad(p, format!("a log scale needs low > 0, got {low}"));
                    }
                    if step.is_some_and(|s| !(s > 0.0 && s <= high - low)) {
                        return bad(p, format!("step must be in (0, high - low], got {}", step.unwrap_or(0.0)));
                    }
                    if *log && step.is_some() {
                        return bad(p, "a log scale cannot have a step".into());
                    }
                }
                Distribution::Int { low, high, log, step } => {
                    if low > high {
                        return bad(p, format!("needs low <= high, got [{low}, {high}]"));
                    }
                    if *log && *low < 1 {
                        return bad(p, format!("a log scale needs low >= 1, got {low}"));
                    }
                    if *step < 1 || (*log && *step != 1) {
                        return bad(p, format!("step must be a whole number >= 1 (1 on a log scale), got {step}"));
                    }
                }
                Distribution::Categorical { choices } => {
                    if choices.is_empty() {
                        return bad(p, "needs at least one choice".into());
                    }
                }
            }
            if let Some(c) = &p.when {
                let Some(parent) = params[..i].iter().find(|q| q.name == c.param) else {
                    return bad(p, format!("`when` names `{}`, which is not an earlier parameter", c.param));
                };
                let Distribution::Categorical { choices } = &parent.distribution else {
                    return bad(p, format!("`when` names `{}`, which is not a choice", c.param));
                };
                if let Some(v) = c.values.iter().find(|v| !choices.contains(v)) {
                    return bad(p, format!("`when` value {v} is not a choice of `{}`", c.param));
                }
            }
            if let Some(grid) = &p.grid
                && let Some(v) = grid.iter().find(|v| p.internal(v).is_none())
            {
                return bad(p, format!("grid value {v} is outside the parameter's range"));
            }
        }
        Ok(Self { params })
    }

    /// Whether parameter `i` exists given the values chosen so far.
    pub fn active(&self, i: usize, chosen: &Params) -> bool {
        match &self.params[i].when {
            None => true,
            Some(c) => chosen.get(&c.param).is_some_and(|v| c.values.contains(v)),
        }
    }

    /// A uniform draw of every active parameter.
    pub fn sample_random(&self, rng: &mut SplitMix64) -> Params {
        let mut out = Params::new();
        for (i, p) in self.params.iter().enumerate() {
            if self.active(i, &out) {
                out.insert(p.name.clone(), p.sample_uniform(rng));
            }
        }
        out
    }

    /// The groups of parameters that are always present together (same condition), in order.
    pub fn groups(&self) -> Vec<Vec<usize>> {
        let mut groups: Vec<(Option<&Condition>, Vec<usize>)> = Vec::new();
        for (i, p) in self.params.iter().enumerate() {
            match groups.iter_mut().find(|(c, _)| *c == p.when.as_ref()) {
                Some((_, members)) => members.push(i),
                None => groups.push((p.when.as_ref(), vec![i])),
            }
        }
        groups.into_iter().map(|(_, m)| m).collect()
    }
}

impl Param {
    /// The internal coordinate's range for numeric parameters. Whole numbers (and stepped
    /// floats) widen by half a step on each side so that every value gets an equal share.
    pub fn bounds(&self) -> (f64, f64) {
        match &self.distribution {
            Distribution::Float { low, high, log: true, .. } => (low.ln(), high.ln()),
            Distribution::Float { low, high, step: Some(s), .. } => (low - s / 2.0, high + s / 2.0),
            Distribution::Float { low, high, .. } => (*low, *high),
            Distribution::Int { low, high, log: true, .. } => ((*low as f64 - 0.5).ln(), (*high as f64 + 0.5).ln()),
            Distribution::Int { low, high, step, .. } => {
                (*low as f64 - *step as f64 / 2.0, *high as f64 + *step as f64 / 2.0)
            }
            Distribution::Categorical { choices } => (0.0, choices.len() as f64),
        }
    }

    pub fn is_categorical(&self) -> bool {
        matches!(self.distribution, Distribution::Categorical { .. })
    }

    /// How many categories (categorical parameters).
    pub fn choices(&self) -> usize {
        match &self.distribution {
            Distribution::Categorical { choices } => choices.len(),
            _ => 0,
        }
    }

    /// The internal coordinate of a value, `None` when it is not a value of the parameter.
    pub fn internal(&self, v: &Value) -> Option<f64> {
        match &self.distribution {
            Distribution::Categorical { choices } => choices.iter().position(|c| c == v).map(|i| i as f64),
            Distribution::Float { low, high, log, .. } => {
                let x = v.as_f64()?;
                if x < *low - 1e-12 * low.abs().max(1.0) || x > *high + 1e-12 * high.abs().max(1.0) {
                    return None;
                }
                Some(if *log { x.ln() } else { x })
            }
            Distribution::Int { low, high, log, .. } => {
                let x = v.as_i64().or_else(|| v.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))?;
                if x < *low || x > *high {
                    return None;
                }
                Some(if *log { (x as f64).ln() } else { x as f64 })
            }
        }
    }

    /// The value at an internal coordinate, rounded to the parameter's grid and clipped.
    pub fn external(&self, x: f64) -> Value {
        match &self.distribution {
            Distribution::Categorical { choices } => choices[(x.max(0.0) as usize).min(choices.len() - 1)].clone(),
            Distribution::Float { low, high, log, step } => {
                let mut v = if *log { x.exp() } else { x };
                if let Some(s) = step {
                    v = low + ((v - low) / s).round() * s;
                }
                Value::from(v.clamp(*low, *high))
            }
            Distribution::Int { low, high, log, step } => {
                let v = if *log { x.exp() } else { x };
                let v = low + ((v - *low as f64) / *step as f64).round() as i64 * step;
                Value::from(v.clamp(*low, *high - (*high - *low) % step))
            }
        }
    }

    pub fn sample_uniform(&self, rng: &mut SplitMix64) -> Value {
        match &self.distribution {
            Distribution::Categorical { choices } => choices[rng.below(choices.len())].clone(),
            _ => {
                let (lo, hi) = self.bounds();
                self.external(lo + rng.next_f64() * (hi - lo))
            }
        }
    }

    /// The values a grid search tries.
    pub fn grid_values(&self) -> Vec<Value> {
        if let Some(g) = &self.grid {
            return g.clone();
        }
        match &self.distribution {
            Distribution::Categorical { choices } => choices.clone(),
            Distribution::Int { low, high, step, log: false } if (high - low) / step < 16 => {
                (0..=(high - low) / step).map(|k| Value::from(low + k * step)).collect()
            }
            Distribution::Float { low, high, step: Some(s), .. } if ((high - low) / s) < 16.0 => {
                (0..=((high - low) / s).floor() as i64).map(|k| Value::from(low + k as f64 * s)).collect()
            }
            _ => {
                // Five points spanning the range (on the log scale when it has one).
                let (lo, hi) = match &self.distribution {
                    Distribution::Float { low, high, log, .. } => {
                        if *log {
                            (low.ln(), high.ln())
                        } else {
                            (*low, *high)
                        }
                    }
                    Distribution::Int { low, high, log, .. } => {
                        let (l, h) = (*low as f64, *high as f64);
                        if *log { (l.ln(), h.ln()) } else { (l, h) }
                    }
                    Distribution::Categorical { .. } => unreachable!("handled above"),
                };
                let mut out: Vec<Value> = Vec::new();
                for k in 0..5 {
                    let v = self.external(lo + (hi - lo) * k as f64 / 4.0);
                    if !out.contains(&v) {
                        out.push(v);
                    }
                }
                out
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn float(name: &str, low: f64, high: f64, log: bool) -> Param {
        Param {
            name: name.into(),
            distribution: Distribution::Float { low, high, log, step: None },
            when: None,
            grid: None,
        }
    }

    #[test]
    fn internal_and_external_round_trip() {
        let p = float("lr", 0.001, 1.0, true);
        let x = p.internal(&json!(0.01)).unwrap();
        assert!((x - 0.01f64.ln()).abs() < 1e-12);
        assert!((p.external(x).as_f64().unwrap() - 0.01).abs() < 1e-15);
        assert_eq!(p.internal(&json!(2.0)), None);
        let i = Param {
            name: "leaves".into(),
            distribution: Distribution::Int { low: 8, high: 64, log: false, step: 8 },
            when: None,
            grid: None,
        };
        assert_eq!(i.external(30.0), json!(32));
        assert_eq!(i.external(1000.0), json!(64));
        assert_eq!(i.grid_values().len(), 8);
    }

    #[test]
    fn uniform_draws_stay_in_range_and_cover_it() {
        let mut rng = SplitMix64::new(3);
        let int = Param {
            name: "k".into(),
            distribution: Distribution::Int { low: 1, high: 4, log: false, step: 1 },
            when: None,
            grid: None,
        };
        let mut seen = [0; 5];
        for _ in 0..4000 {
            seen[int.sample_uniform(&mut rng).as_i64().unwrap() as usize] += 1;
        }
        assert_eq!(seen[0], 0);
        for s in &seen[1..] {
            assert!((900..1100).contains(s), "{seen:?}");
        }
    }

    #[test]
    fn conditions_must_name_an_earlier_choice() {
        let mut child = float("l1", 0.0, 1.0, false);
        child.when = Some(Condition { param: "booster".into(), values: vec![json!("dart")] });
        let err = Space::new(vec![child.clone()]).unwrap_err().to_string();
        assert!(err.contains("not an earlier parameter"), "{err}");
        let parent = Param {
            name: "booster".into(),
            distribution: Distribution::Categorical { choices: vec![json!("gbdt"), json!("dart")] },
            when: None,
            grid: None,
        };
        let space = Space::new(vec![parent, child]).unwrap();
        assert_eq!(space.groups(), vec![vec![0], vec![1]]);
        let mut rng = SplitMix64::new(1);
        for _ in 0..50 {
            let p = space.sample_random(&mut rng);
            assert_eq!(p.contains_key("l1"), p["booster"] == json!("dart"));
        }
    }
}
