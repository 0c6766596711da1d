//! KLL quantile sketch (Karnin, Lang and Liberty 2016), deterministic: each level alternates
//! which half of its sorted items it promotes, so the same input order gives the same sketch.
//!
//! Level `h` holds items of weight 2^h. While the total fits in level 0's capacity the sketch
//! keeps every value and answers exactly.

use serde::{Deserialize, Serialize};

/// Accuracy parameter: the top level holds `K` items; rank error is about 1.7 / K... 2 / K.
pub const K: usize = 256;
/// Smallest level capacity.
const MIN_CAPACITY: usize = 8;
/// Capacity of a level `d` levels below the top: max(MIN_CAPACITY, ceil(K * (2/3)^d)).
const CAPACITY_BY_DEPTH: [usize; 64] = capacities();

const fn capacities() -> [usize; 64] {
    let mut caps = [0; 64];
    let mut f = K as f64;
    let mut d = 0;
    while d < 64 {
        let whole = f as usize;
        let ceil = if (whole as f64) < f { whole + 1 } else { whole };
        caps[d] = if ceil > MIN_CAPACITY { ceil } else { MIN_CAPACITY };
        f = f * 2.0 / 3.0;
        d += 1;
    }
    caps
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Kll {
    /// Values seen (the total weight).
    n: u64,
    levels: Vec<Vec<f64>>,
    /// Bit h: which half level h promotes next.
    parity: u64,
}

impl Default for Kll {
    fn default() -> Self {
        Self { n: 0, levels: vec![Vec::new()], parity: 0 }
    }
}

impl Kll {
    pub fn count(&self) -> u64 {
        self.n
    }

    /// Whether every value is still held (answers are exact).
    pub fn is_exact(&self) -> bool {
        self.levels.len() == 1
    }

    fn capacity(&self, level: usize) -> usize {
        CAPACITY_BY_DEPTH[(self.levels.len() - 1 - level).min(63)]
    }

    fn size(&self) -> usize {
        self.levels.iter().map(Vec::len).sum()
    }

    fn total_capacity(&self) -> usize {
        (0..self.levels.len()).map(|h| self.capacity(h)).sum()
    }

    /// Add a value; NaN is ignored (callers count it as missing).
    pub fn add(&mut self, x: f64) {
        self.add_values(&[x]);
    }

    /// Add values in order; NaN is ignored. Level 0 fills up to the room the sketch has left,
    /// then the lowest full level is compacted (lazy KLL), so most values cost one push.
    pub fn add_values(&mut self, values: &[f64]) {
        let mut rest = values;
        while !rest.is_empty() {
            let room = self.total_capacity().saturating_sub(self.size()).max(1);
            let (now, later) = rest.split_at(room.min(rest.len()));
            let before = self.levels[0].len();
            self.levels[0].extend(now.iter().copied().filter(|x| !x.is_nan()));
            self.n += (self.levels[0].len() - before) as u64;
            rest = later;
            if self.size() >= self.total_capacity() {
                self.compress();
            }
        }
    }

    pub fn merge(&mut self, other: &Kll) {
        while self.levels.len() < other.levels.len() {
            self.levels.push(Vec::new());
        }
        for (h, items) in other.levels.iter().enumerate() {
            self.levels[h].extend_from_slice(items);
        }
        self.n += other.n;
        self.compress();
    }

    /// Compact levels that are over capacity, lowest first, until the sketch fits.
    fn compress(&mut self) {
        while self.size() >= self.total_capacity() {
            let Some(h) = (0..self.levels.len()).find(|&h| self.levels[h].len() >= self.capacity(h)) else {
                break;
            };
            if h + 1 == self.levels.len() {
                self.levels.push(Vec::new());
            }
            let offset = ((self.parity >> h) & 1) as usize;
            self.parity ^= 1 << h;
            // In place: sort, promote every other item, keep an odd item out at this level (so
            // total weight is preserved); the vectors keep their allocations.
            let (lower, upper) = self.levels.split_at_mut(h + 1);
            let items = &mut lower[h];
            // A stable sort: levels above the lowest hold runs promoted already sorted, which
            // it merges rather than sorts again (equal values under `total_cmp` are the same bits,
            // so the result is the same as an unstable sort's).
            items.sort_by(f64::total_cmp);
            let odd = (items.len() % 2 == 1).then(|| items[items.len() - 1]);
            let paired = items.len() - usize::from(odd.is_some());
            upper[0].extend(items[..paired].iter().skip(offset).step_by(2));
            items.clear();
            items.extend(odd);
        }
    }

    /// Held items with their weights, sorted by value.
    /// Every held value with its weight (how many values it stands for), by value.
    pub fn items(&self) -> Vec<(f64, u64)> {
        let mut all: Vec<(f64, u64)> =
            self.levels.iter().enumerate().flat_map(|(h, items)| items.iter().map(move |&x| (x, 1u64 << h))).collect();
        all.sort_by(|a, b| a.0.total_cmp(&b.0));
        all
    }

    /// The smallest held value whose rank reaches `q` of the weight (numpy's `inverted_cdf`
    /// method when exact). `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        self.quantiles(&[q]).pop().flatten()
    }

    pub fn quantiles(&self, qs: &[f64]) -> Vec<Option<f64>> {
        let items = self.items();
        let total: u64 = items.iter().map(|(_, w)| w).sum();
        qs.iter()
            .map(|&q| {
                let target = (q.clamp(0.0, 1.0) * total as f64).ceil().max(1.0) as u64;
                let mut seen = 0;
                items
                    .iter()
                    .find(|(_, w)| {
                        seen += w;
                        seen >= target
                    })
                    .map(|(x, _)| *x)
            })
            .collect()
    }

    /// Fraction of values `<= x` for each `x`.
    pub fn cdf(&self, xs: &[f64]) -> Vec<f64> {
        let n = self.n.max(1) as f64;
        self.ranks(xs).into_iter().map(|r| r as f64 / n).collect()
    }

    /// Number of values `<= x` for each `x` (exact while the sketch is exact; the weights add
    /// up to the count, so differences of ranks are bin counts).
    pub fn ranks(&self, xs: &[f64]) -> Vec<u64> {
        self.count_up_to(xs, |v, x| v <= x)
    }

    /// Number of values `< x` for each `x`.
    pub fn ranks_below(&self, xs: &[f64]) -> Vec<u64> {
        self.count_up_to(xs, |v, x| v < x)
    }

    fn count_up_to(&self, xs: &[f64], included: impl Fn(f64, f64) -> bool) -> Vec<u64> {
        let items = self.items();
        let mut cumulative = Vec::with_capacity(items.len());
        let mut acc = 0;
        for (_, w) in &items {
            acc += w;
            cumulative.push(acc);
        }
        xs.iter()
            .map(|x| {
                let i = items.partition_point(|(v, _)| included(*v, *x));
                if i == 0 { 0 } else { cumulative[i - 1] }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::rng::SplitMix64;

    fn exact_rank(sorted: &[f64], x: f64) -> f64 {
        sorted.partition_point(|v| *v <= x) as f64 / sorted.len() as f64
    }

    #[test]
    fn exact_while_small() {
        let mut k = Kll::default();
        for x in [5.0, 1.0, 3.0, 2.0, 4.0] {
            k.add(x);
        }
        assert!(k.is_exact());
        assert_eq!(
            k.quantiles(&[0.0, 0.2, 0.5, 0.6, 1.0]),
            vec![Some(1.0), Some(1.0), Some(3.0), Some(3.0), Some(5.0)]
        );
        assert_eq!(k.cdf(&[0.5, 3.0, 9.0]), vec![0.0, 0.6, 1.0]);
        assert_eq!(Kll::default().quantile(0.5), None);
    }

    #[test]
    fn rank_error_is_small_for_a_million_values_and_merges() {
        let mut rng = SplitMix64::new(3);
        let values: Vec<f64> = (0..1_000_000).map(|_| rng.next_f64().powi(3) * 100.0).collect();
        let mut whole = Kll::default();
        whole.add_values(&values);
        let mut merged = Kll::default();
        for chunk in values.chunks(100_000) {
            let mut part = Kll::default();
            part.add_values(chunk);
            merged.merge(&part);
        }
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        for sketch in [&whole, &merged] {
            assert_eq!(sketch.count(), 1_000_000);
            assert!(sketch.size() < 1000, "sketch holds {} items", sketch.size());
            for q in [0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99] {
                let v = sketch.quantile(q).unwrap();
                let rank = exact_rank(&sorted, v);
                assert!((rank - q).abs() < 0.01, "q={q}: value {v} has rank {rank}");
            }
        }
        // Deterministic: the same input order gives the same sketch.
        let mut again = Kll::default();
        values.iter().for_each(|&v| again.add(v));
        assert_eq!(again, whole);
    }
}
