//! Exact count, mean, variance, min and max, mergeable (Chan, Golub and LeVeque's update).

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Moments {
    pub count: u64,
    pub mean: f64,
    /// Sum of squared deviations from the mean.
    pub m2: f64,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

impl Moments {
    /// Add a slice of values (no NaN) as one block: its own mean and deviations are computed
    /// first, then merged, which is both faster and more accurate than value-by-value updates.
    pub fn add_values(&mut self, values: &[f64]) {
        if values.is_empty() {
            return;
        }
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let m2 = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>();
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for &v in values {
            lo = lo.min(v);
            hi = hi.max(v);
        }
        self.merge(&Moments { count: values.len() as u64, mean, m2, min: Some(lo), max: Some(hi) });
    }

    pub fn merge(&mut self, other: &Moments) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = other.clone();
            return;
        }
        let (na, nb) = (self.count as f64, other.count as f64);
        let n = na + nb;
        let delta = other.mean - self.mean;
        self.mean += delta * nb / n;
        self.m2 += other.m2 + delta * delta * na * nb / n;
        self.count += other.count;
        self.min = min_opt(self.min, other.min);
        self.max = max_opt(self.max, other.max);
    }

    /// Sample standard deviation (ddof = 1, as pandas' `std`); `None` below two values.
    pub fn std(&self) -> Option<f64> {
        (self.count > 1).then(|| (self.m2 / (self.count - 1) as f64).sqrt())
    }
}

fn min_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

fn max_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, y) => x.or(y),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_merge_to_the_whole() {
        let values: Vec<f64> = (0..1000).map(|i| ((i * 37) % 101) as f64 * 0.5 - 7.0).collect();
        let mut whole = Moments::default();
        whole.add_values(&values);
        let mut parts = Moments::default();
        for chunk in values.chunks(77) {
            let mut p = Moments::default();
            p.add_values(chunk);
            parts.merge(&p);
        }
        let mean = values.iter().sum::<f64>() / 1000.0;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 999.0;
        for m in [&whole, &parts] {
            assert_eq!(m.count, 1000);
            assert!((m.mean - mean).abs() < 1e-12);
            assert!((m.std().unwrap() - var.sqrt()).abs() < 1e-12);
            assert_eq!(m.min, Some(-7.0));
            assert_eq!(m.max, Some(43.0));
        }
    }
}
