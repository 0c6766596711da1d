//! Value frequencies: exact while a column has at most 2 x `CAPACITY` distinct values, then the
//! Misra–Gries summary (mergeable; any value with more than n / CAPACITY occurrences is kept and
//! its count is low by at most `error`).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// The summary keeps at most this many values after pruning (and prunes at twice as many).
pub const CAPACITY: usize = 1024;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FrequentItems {
    /// Value → count, sorted by count (descending) then value when serialized.
    #[serde(with = "sorted")]
    counts: HashMap<String, u64>,
    /// Upper bound on how much any count is low (0 while exact).
    error: u64,
}

impl FrequentItems {
    pub fn is_exact(&self) -> bool {
        self.error == 0
    }

    pub fn error(&self) -> u64 {
        self.error
    }

    pub fn add(&mut self, value: &str) {
        self.add_count(value, 1);
    }

    /// Add `n` occurrences of a value.
    pub fn add_count(&mut self, value: &str, n: u64) {
        match self.counts.get_mut(value) {
            Some(c) => *c += n,
            None => {
                self.counts.insert(value.to_string(), n);
                if self.counts.len() > 2 * CAPACITY {
                    self.prune();
                }
            }
        }
    }

    pub fn merge(&mut self, other: &FrequentItems) {
        for (v, c) in &other.counts {
            *self.counts.entry(v.clone()).or_default() += c;
        }
        self.error += other.error;
        if self.counts.len() > 2 * CAPACITY {
            self.prune();
        }
    }

    /// Subtract the (CAPACITY+1)-th largest count from every count and drop what reaches zero.
    fn prune(&mut self) {
        let mut counts: Vec<u64> = self.counts.values().copied().collect();
        if counts.len() <= CAPACITY {
            return;
        }
        counts.sort_unstable_by(|a, b| b.cmp(a));
        let cut = counts[CAPACITY];
        self.counts.retain(|_, c| {
            *c = c.saturating_sub(cut);
            *c > 0
        });
        self.error += cut;
    }

    /// The `k` most frequent values, by count then value.
    pub fn top(&self, k: usize) -> Vec<(String, u64)> {
        let mut all: Vec<(String, u64)> = self.counts.iter().map(|(v, c)| (v.clone(), *c)).collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        all.truncate(k);
        all
    }

    /// Number of distinct values, when exact.
    pub fn distinct(&self) -> Option<u64> {
        self.is_exact().then_some(self.counts.len() as u64)
    }

    /// Count of one value (a lower bound once the summary is no longer exact).
    pub fn count(&self, value: &str) -> u64 {
        self.counts.get(value).copied().unwrap_or(0)
    }
}

/// Serialize the map as `[[value, count], ...]` in a fixed order, so profile bytes are stable.
mod sorted {
    use std::collections::HashMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(map: &HashMap<String, u64>, s: S) -> Result<S::Ok, S::Error> {
        let mut pairs: Vec<(&String, &u64)> = map.iter().collect();
        pairs.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
        pairs.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<HashMap<String, u64>, D::Error> {
        Ok(Vec::<(String, u64)>::deserialize(d)?.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_for_few_values_and_keeps_heavy_hitters_beyond() {
        let mut f = FrequentItems::default();
        for (v, n) in [("a", 5), ("b", 3), ("c", 3)] {
            (0..n).for_each(|_| f.add(v));
        }
        assert_eq!(f.top(2), vec![("a".into(), 5), ("b".into(), 3)]);
        assert_eq!(f.distinct(), Some(3));

        // 100k rows: one value is 20% of them, the rest are all distinct.
        let mut parts = [FrequentItems::default(), FrequentItems::default()];
        for i in 0..100_000u64 {
            let v = if i % 5 == 0 { "heavy".to_string() } else { format!("v{i}") };
            parts[(i % 2) as usize].add(&v);
        }
        let (mut a, b) = (parts[0].clone(), &parts[1]);
        a.merge(b);
        assert!(!a.is_exact());
        assert_eq!(a.distinct(), None);
        let (value, count) = a.top(1).remove(0);
        assert_eq!(value, "heavy");
        assert!(count <= 20_000 && count + a.error() >= 20_000, "count {count}, error {}", a.error());
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<FrequentItems>(&json).unwrap(), a);
    }
}
