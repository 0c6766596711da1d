//! HyperLogLog (Flajolet et al. 2007) with 64-bit hashes and linear counting for small
//! cardinalities (Heule et al. 2013, without the bias tables).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Register-index bits: 2^12 = 4,096 one-byte registers, standard error 1.04/64 ≈ 1.6%.
const P: u32 = 12;
const M: usize = 1 << P;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hll {
    registers: Vec<u8>,
}

impl Default for Hll {
    fn default() -> Self {
        Self { registers: vec![0; M] }
    }
}

impl Hll {
    /// Add one value by its 64-bit hash (use a well-mixed hash: the top bits pick the register).
    pub fn add_hash(&mut self, hash: u64) {
        let index = (hash >> (64 - P)) as usize;
        // The remaining bits, with a sentinel so the count of leading zeros is at most 64 - P.
        let rest = (hash << P) | (1 << (P - 1));
        let rank = rest.leading_zeros() as u8 + 1;
        if rank > self.registers[index] {
            self.registers[index] = rank;
        }
    }

    pub fn merge(&mut self, other: &Hll) {
        for (a, b) in self.registers.iter_mut().zip(&other.registers) {
            *a = (*a).max(*b);
        }
    }

    pub fn estimate(&self) -> u64 {
        let m = M as f64;
        let alpha = 0.7213 / (1.0 + 1.079 / m);
        let (mut sum, mut zeros) = (0.0, 0usize);
        for &r in &self.registers {
            sum += 1.0 / (1u64 << r) as f64;
            zeros += usize::from(r == 0);
        }
        let raw = alpha * m * m / sum;
        let estimate = if raw <= 2.5 * m && zeros > 0 { m * (m / zeros as f64).ln() } else { raw };
        estimate.round() as u64
    }
}

impl Serialize for Hll {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(&self.registers))
    }
}

impl<'de> Deserialize<'de> for Hll {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let registers = STANDARD.decode(text.as_bytes()).map_err(serde::de::Error::custom)?;
        if registers.len() != M {
            return Err(serde::de::Error::custom(format!("HyperLogLog needs {M} registers, got {}", registers.len())));
        }
        Ok(Self { registers })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::rng::mix;

    #[test]
    fn estimates_within_a_few_standard_errors_and_merges() {
        for n in [0u64, 1, 10, 1_000, 50_000, 1_000_000] {
            let mut h = Hll::default();
            for i in 0..n {
                h.add_hash(mix(i));
                h.add_hash(mix(i)); // duplicates do not count
            }
            let e = h.estimate() as f64;
            let tolerance = (n as f64 * 0.05).max(1.0);
            assert!((e - n as f64).abs() <= tolerance, "n={n} estimate={e}");
        }
        let (mut a, mut b, mut whole) = (Hll::default(), Hll::default(), Hll::default());
        for i in 0..20_000u64 {
            if i % 3 == 0 {
                a.add_hash(mix(i))
            } else {
                b.add_hash(mix(i))
            }
            whole.add_hash(mix(i));
        }
        a.merge(&b);
        assert_eq!(a, whole);
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<Hll>(&json).unwrap(), a);
    }
}
