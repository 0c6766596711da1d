//! The normal distribution's CDF (in log space, accurate in the tails), its inverse, and the
//! truncated normal the Parzen estimators are made of.

use sluice_core::rng::SplitMix64;

/// 1 / √(2π), the standard normal density's peak.
pub const INV_SQRT_2PI: f64 = 0.398_942_280_401_432_7;

/// Numerical Recipes' Chebyshev fit of erfc for `z >= 0` (fractional error < 1.2e-7):
/// `erfc(z) = t exp(poly - z²)`; returns `(t, poly)`.
#[inline(always)]
fn erfc_fit(z: f64) -> (f64, f64) {
    const C: [f64; 10] = [
        -1.265_512_23,
        1.000_023_68,
        0.374_091_96,
        0.096_784_18,
        -0.186_288_06,
        0.278_868_07,
        -1.135_203_98,
        1.488_515_87,
        -0.822_152_23,
        0.170_872_77,
    ];
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = C.iter().rev().fold(0.0, |acc, c| acc * t + c);
    (t, poly)
}

/// `ln erfc(z)` for `z >= 0`, in log space so that it does not underflow far in the tail.
#[cfg(test)]
fn ln_erfc_pos(z: f64) -> f64 {
    let (t, poly) = erfc_fit(z);
    t.ln() + poly - z * z
}

/// `ln Φ(x)`, the log of the standard normal CDF (checks the fast version).
#[cfg(test)]
fn ln_cdf(x: f64) -> f64 {
    let z = -x / std::f64::consts::SQRT_2;
    if z >= 0.0 {
        // Φ(x) = erfc(z) / 2 with z >= 0: the lower tail, computed in logs.
        ln_erfc_pos(z) - std::f64::consts::LN_2
    } else {
        // Φ(x) = 1 - erfc(-z) / 2.
        (-0.5 * ln_erfc_pos(-z).exp()).ln_1p()
    }
}

/// `Φ(x)`, the standard normal CDF: `1 - Φ(-x)` from the tail at `|x|`.
#[inline(always)]
pub fn cdf(x: f64) -> f64 {
    phi_above_tail(-x, tail(x))
}

/// `ln(Φ(b) - Φ(a))` for `a < b`, accurate when both are far in one tail (checks the fast
/// version).
#[cfg(test)]
fn ln_cdf_diff(a: f64, b: f64) -> f64 {
    // Work in the lower tail, where Φ has relative precision.
    let (lo, hi) = if a > 0.0 { (-b, -a) } else { (a, b) };
    let (la, lb) = (ln_cdf(lo), ln_cdf(hi));
    lb + (-(la - lb).exp()).ln_1p()
}

/// The standard normal quantile function (Acklam's algorithm, relative error < 1.2e-9).
pub fn inverse_cdf(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] =
        [7.784_695_709_041_462e-3, 3.224_671_290_700_398e-1, 2.445_134_137_142_996, 3.754_408_661_907_416];
    let p = p.clamp(1e-300, 1.0 - 1e-16);
    let low = 0.024_25;
    if p < low {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - low {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -inverse_cdf(1.0 - p)
    }
}

/// A standard normal draw (Box–Muller).
pub fn normal(rng: &mut SplitMix64) -> f64 {
    let u = 1.0 - rng.next_f64();
    let v = rng.next_f64();
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// A draw of N(mu, sigma²) truncated to `[low, high]`, by inverting the CDF.
#[inline(always)]
pub fn truncated_normal(rng: &mut SplitMix64, mu: f64, sigma: f64, low: f64, high: f64) -> f64 {
    let (a, b) = ((low - mu) / sigma, (high - mu) / sigma);
    // In the upper tail, sample the mirror image from the lower tail, where Φ is precise.
    let (flip, a, b) = if a > 0.0 { (true, -b, -a) } else { (false, a, b) };
    let (pa, pb) = (cdf(a), cdf(b));
    let z = inverse_cdf(pa + rng.next_f64() * (pb - pa)).clamp(a, b);
    let z = if flip { -z } else { z };
    (mu + sigma * z).clamp(low, high)
}

/// 1/k! for k = 0..=9.
const INV_FACTORIAL: [f64; 10] = [
    1.0,
    1.0,
    1.0 / 2.0,
    1.0 / 6.0,
    1.0 / 24.0,
    1.0 / 120.0,
    1.0 / 720.0,
    1.0 / 5040.0,
    1.0 / 40_320.0,
    1.0 / 362_880.0,
];

/// `e^y` for `y <= 700`, branch-free (the Parzen estimators evaluate tens of thousands per
/// trial): range reduction by powers of two, then a Taylor polynomial to degree 9 (relative error
/// below 2e-11, where the densities need about 1e-7: the erfc fit's precision).
///
/// In fused multiply-adds, which round once and so give the same bits on every CPU: the hot
/// loops are compiled with FMA where the CPU has it (see `tpe::simd`); elsewhere `mul_add` is a
/// library call with the same result.
#[inline(always)]
pub fn exp_fast(y: f64) -> f64 {
    const MAGIC: f64 = 6_755_399_441_055_744.0; // 1.5 * 2^52: adding it rounds to an integer.
    const LN2_HI: f64 = 6.931_471_803_691_238e-1;
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    let y = y.clamp(-708.0, 700.0);
    let t = y.mul_add(std::f64::consts::LOG2_E, MAGIC);
    let k = t - MAGIC;
    let r = k.mul_add(-LN2_LO, k.mul_add(-LN2_HI, y));
    // Horner's rule as a plain loop: a closure (`fold`) may be compiled apart from a dispatched
    // caller, without FMA, and call a library `fma` per step.
    let mut p = INV_FACTORIAL[9];
    for c in INV_FACTORIAL[..9].iter().rev() {
        p = p.mul_add(r, *c);
    }
    let k_int = t.to_bits().wrapping_sub(MAGIC.to_bits()) as i64;
    p * f64::from_bits(((k_int + 1023) as u64) << 52)
}

/// `e^{-x}`.
#[inline(always)]
pub fn exp_neg(x: f64) -> f64 {
    exp_fast(-x)
}

/// `e^{-x}` for `x >= 0` in `f32` (relative error below 4e-7), held at about `e^-87` (1.6e-38)
/// beyond that and for NaN: the same range reduction as [`exp_fast`] and a Taylor polynomial to
/// degree 6.
#[inline(always)]
pub fn exp_neg_f32(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer.
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    const C: [f32; 7] = [1.0, 1.0, 1.0 / 2.0, 1.0 / 6.0, 1.0 / 24.0, 1.0 / 120.0, 1.0 / 720.0];
    let y = (-x).max(-87.0);
    let t = y.mul_add(std::f32::consts::LOG2_E, MAGIC);
    let k = t - MAGIC;
    let r = k.mul_add(-LN2_LO, k.mul_add(-LN2_HI, y));
    let mut p = C[6];
    for c in C[..6].iter().rev() {
        p = p.mul_add(r, *c);
    }
    let k_int = t.to_bits().wrapping_sub(MAGIC.to_bits()) as i32;
    p * f32::from_bits(((k_int + 127) as u32) << 23)
}

/// `erfc(z)` for `z >= 0`.
#[inline(always)]
fn erfc_pos(z: f64) -> f64 {
    let (t, poly) = erfc_fit(z);
    t * exp_fast(z.mul_add(-z, poly))
}

/// `Φ(b) - Φ(a)` for `a <= b`, with relative precision when both are in one tail.
#[inline(always)]
pub fn phi_between(a: f64, b: f64) -> f64 {
    let s = std::f64::consts::FRAC_1_SQRT_2;
    // Both tails from erfc of |a| and |b|, then a choice of formula: no branch around the
    // evaluations, so a loop over components vectorizes.
    let (ea, eb) = (erfc_pos(a.abs() * s), erfc_pos(b.abs() * s));
    phi_between_tails(a, b, ea, eb)
}

/// `erfc(|x| / √2)`: the tail [`phi_between`], [`phi_above`] and [`phi_below`] are made of.
#[inline(always)]
pub fn tail(x: f64) -> f64 {
    erfc_pos(x.abs() * std::f64::consts::FRAC_1_SQRT_2)
}

/// [`phi_between`] from its ends' tails `ea = tail(a)`, `eb = tail(b)`.
#[inline(always)]
pub fn phi_between_tails(a: f64, b: f64, ea: f64, eb: f64) -> f64 {
    let upper = 0.5 * (ea - eb);
    let lower = 0.5 * (eb - ea);
    let across = 1.0 - 0.5 * (eb + ea);
    if a >= 0.0 {
        upper
    } else if b <= 0.0 {
        lower
    } else {
        across
    }
}

/// `1 - Φ(a)`: [`phi_between`] with no upper end, one `erfc` instead of two.
#[cfg(test)]
fn phi_above(a: f64) -> f64 {
    phi_above_tail(a, tail(a))
}

/// [`phi_above`] from `e = tail(a)`.
#[inline(always)]
pub fn phi_above_tail(a: f64, e: f64) -> f64 {
    if a >= 0.0 { 0.5 * e } else { 1.0 - 0.5 * e }
}

/// `Φ(b)`: [`phi_between`] with no lower end.
#[cfg(test)]
fn phi_below(b: f64) -> f64 {
    phi_above(-b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cdf_matches_known_values() {
        // Python: 0.5 * math.erfc(-x / sqrt(2)) and its log.
        for (x, want) in
            [(0.0, 0.5), (1.0, 0.841_344_746_068_543), (-1.96, 0.024_997_895_148_220_435), (3.0, 0.998_650_101_968_37)]
        {
            assert!((cdf(x) - want).abs() < 2e-7, "{x}: {} vs {want}", cdf(x));
        }
        assert!((ln_cdf(-20.0) - -203.917_155_371_097_2).abs() < 1e-5, "{}", ln_cdf(-20.0));
        assert!((ln_cdf_diff(8.0, 9.0) - ln_cdf_diff(-9.0, -8.0)).abs() < 1e-12);
        assert!((ln_cdf_diff(8.0, 9.0) - -35.013_618_593_437_14).abs() < 1e-5, "{}", ln_cdf_diff(8.0, 9.0));
    }

    #[test]
    fn fast_functions_match_the_library() {
        for y in [-700.0, -300.5, -20.0, -1.0, -0.3, 0.0, 1e-8, 0.7, 5.0, 300.0] {
            let (fast, exact) = (exp_fast(y), f64::exp(y));
            assert!(((fast - exact) / exact).abs() < 2e-11, "{y}: {fast} vs {exact}");
        }
        for x in [0.0f32, 1e-6, 0.3, 1.0, 7.5, 20.0, 50.0, 86.0] {
            let (fast, exact) = (exp_neg_f32(x), f64::exp(-f64::from(x)));
            assert!(((f64::from(fast) - exact) / exact).abs() < 4e-7, "{x}: {fast} vs {exact}");
        }
        for (a, b) in [(-1.0, 1.0), (-30.0, 30.0), (8.0, 9.0), (-9.0, -8.0), (0.0, 0.5), (-0.2, 0.0), (2.0, 2.5)] {
            let (fast, exact) = (phi_between(a, b), ln_cdf_diff(a, b).exp());
            assert!(((fast - exact) / exact).abs() < 1e-6, "({a}, {b}): {fast} vs {exact}");
        }
    }

    #[test]
    fn one_ended_masses_match_the_two_ended_one() {
        for x in [-12.0, -8.4, -3.0, -0.7, 0.0, 0.3, 2.0, 8.0, 12.0] {
            for (one, two) in [(phi_above(x), phi_between(x, 40.0)), (phi_below(x), phi_between(-40.0, x))] {
                assert!((one - two).abs() <= 1e-15 * two.max(1e-300) || one == two, "{x}: {one} vs {two}");
            }
        }
        assert!((phi_above(1.0) - 0.158_655_253_931_457_05).abs() < 2e-7);
        assert!((phi_below(-1.96) - 0.024_997_895_148_220_435).abs() < 2e-7);
    }

    #[test]
    fn inverse_inverts() {
        for p in [1e-10, 0.01, 0.3, 0.5, 0.9, 0.999] {
            assert!((cdf(inverse_cdf(p)) - p).abs() < 1e-6 * p.max(1e-3), "{p}");
        }
    }

    #[test]
    fn truncated_draws_stay_inside_and_match_the_mean() {
        let mut rng = SplitMix64::new(9);
        let n = 20_000;
        let mut sum = 0.0;
        for _ in 0..n {
            let x = truncated_normal(&mut rng, 0.0, 1.0, 0.0, 10.0);
            assert!((0.0..=10.0).contains(&x));
            sum += x;
        }
        // Half-normal mean: sqrt(2/pi).
        assert!((sum / n as f64 - 0.797_884_56).abs() < 0.02, "{}", sum / n as f64);
        // Far in the tail the draws still land in range.
        let x = truncated_normal(&mut rng, 0.0, 1.0, 9.0, 10.0);
        assert!((9.0..=10.0).contains(&x));
    }
}
