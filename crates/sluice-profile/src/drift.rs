//! Drift between a reference profile and a current one, column by column, from the sketches
//! alone: a window of millions of rows is compared after its one profiling pass.
//!
//! Every column gets the population stability index (PSI) and the Jensen–Shannon distance over
//! bins (numeric columns: 10 bins cut at the reference's deciles; text and booleans: the values
//! themselves); numeric columns also get the two-sample Kolmogorov–Smirnov statistic with its
//! p-value and the first Wasserstein distance; text and booleans the chi-squared test of the
//! 2 x k table of counts. Which one decides "drifted" follows Evidently's defaults (the test
//! for the type and size):
//!
//! | column | reference rows | method | drifted when |
//! | --- | --- | --- | --- |
//! | numeric | <= 1,000 | Kolmogorov–Smirnov | p-value < 0.05 |
//! | numeric | > 1,000 | Wasserstein distance / reference std | >= 0.1 |
//! | text, boolean | <= 1,000 | chi-squared | p-value < 0.05 |
//! | text, boolean | > 1,000 | Jensen–Shannon distance | >= 0.1 |
//!
//! PSI is reported for every column (0.1–0.2: moderate shift, > 0.2: significant, the usual
//! reading) for alert rules such as `psi(feature) > 0.2`. The statistics match SciPy's on the
//! same data while the sketches are exact (tests/fixtures/drift.json); beyond that they carry
//! the sketches' error (~1% in rank for KLL).

use serde::{Deserialize, Serialize};

use crate::profile::{ColumnKind, ColumnProfile, Profile};

/// Proportion used for an empty bin in PSI (Evidently's and most implementations' choice).
const PSI_EMPTY: f64 = 1e-4;
/// Above this many reference rows, distances replace the tests (whose p-values go to 0 for any
/// difference once samples are large).
const SMALL: u64 = 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftMethod {
    KolmogorovSmirnov,
    Wasserstein,
    ChiSquared,
    JensenShannon,
}

impl DriftMethod {
    /// What the score is, for people.
    pub fn label(self) -> &'static str {
        match self {
            DriftMethod::KolmogorovSmirnov => "KS p-value",
            DriftMethod::Wasserstein => "Wasserstein / std",
            DriftMethod::ChiSquared => "chi² p-value",
            DriftMethod::JensenShannon => "Jensen–Shannon",
        }
    }
}

/// One column's drift.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ColumnDrift {
    pub column: String,
    pub kind: ColumnKind,
    /// The method that decides `drifted`, its score and threshold (a p-value is drifted below
    /// it, a distance at or above it).
    pub method: DriftMethod,
    pub score: f64,
    pub threshold: f64,
    pub drifted: bool,
    pub psi: f64,
    pub jensen_shannon: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ks: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ks_p_value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wasserstein: Option<f64>,
    /// Wasserstein distance over the reference's standard deviation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wasserstein_normed: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chi2: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chi2_p_value: Option<f64>,
    pub reference_rows: u64,
    pub current_rows: u64,
    /// Missing values: reference fraction, current fraction.
    pub null_fraction: (f64, f64),
}

/// Drift of every column the two profiles share (numeric, text and boolean ones with values on
/// both sides), most severe first: drifted before not, then by PSI.
pub fn drift(reference: &Profile, current: &Profile) -> Vec<ColumnDrift> {
    let mut out: Vec<ColumnDrift> = reference
        .columns
        .iter()
        .filter_map(|r| current.column(&r.name).filter(|c| c.kind == r.kind).and_then(|c| column_drift(r, c)))
        .collect();
    out.sort_by(|a, b| b.drifted.cmp(&a.drifted).then(b.psi.total_cmp(&a.psi)).then(a.column.cmp(&b.column)));
    out
}

/// One window's drift against the reference.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WindowDrift {
    /// The window's start: seconds since the epoch, or its first row.
    pub start: crate::WindowStart,
    pub rows: u64,
    pub drifted_columns: Vec<String>,
    pub columns: Vec<ColumnDrift>,
}

/// Drift of each window (from [`crate::WindowedProfiler`]) against the reference, leaving out
/// `time`, the column the windows were cut on (it drifts by construction).
pub fn window_drift(
    reference: &Profile,
    windows: &[(crate::WindowStart, Profile)],
    time: Option<&str>,
) -> Vec<WindowDrift> {
    windows
        .iter()
        .map(|(start, profile)| {
            let mut columns = drift(reference, profile);
            columns.retain(|c| Some(c.column.as_str()) != time);
            let drifted_columns = columns.iter().filter(|c| c.drifted).map(|c| c.column.clone()).collect();
            WindowDrift { start: *start, rows: profile.rows, drifted_columns, columns }
        })
        .collect()
}

/// One column's drift; `None` for kinds without a distribution (lists, binary) or no values.
pub fn column_drift(reference: &ColumnProfile, current: &ColumnProfile) -> Option<ColumnDrift> {
    let (r, c) = (&reference.state, &current.state);
    let base = |method, score: f64, threshold: f64, drifted, psi, js| ColumnDrift {
        column: reference.name.clone(),
        kind: reference.kind,
        method,
        score,
        threshold,
        drifted,
        psi,
        jensen_shannon: js,
        ks: None,
        ks_p_value: None,
        wasserstein: None,
        wasserstein_normed: None,
        chi2: None,
        chi2_p_value: None,
        reference_rows: reference.count,
        current_rows: current.count,
        null_fraction: (reference.null_fraction(), current.null_fraction()),
    };
    match reference.kind {
        ColumnKind::Numeric | ColumnKind::Temporal => {
            let (rk, ck) = (r.kll.as_ref()?, c.kll.as_ref()?);
            if rk.count() == 0 || ck.count() == 0 {
                return None;
            }
            let (ri, ci) = (rk.items(), ck.items());
            let d = ks(&ri, &ci);
            let p = ks_p_value(d, rk.count(), ck.count());
            let w = wasserstein(&ri, &ci);
            let std = r.moments.as_ref().and_then(|m| m.std()).unwrap_or(0.0);
            let normed = if std > 0.0 {
                w / std
            } else if w > 0.0 {
                f64::INFINITY
            } else {
                0.0
            };
            // Bins cut at the reference's deciles; a value is in the bin of the first edge >= it.
            let mut edges: Vec<f64> =
                rk.quantiles(&[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]).into_iter().flatten().collect();
            edges.dedup();
            let counts = |k: &crate::Kll| {
                let ranks = k.ranks(&edges);
                let mut out = Vec::with_capacity(edges.len() + 1);
                let mut below = 0;
                for r in ranks.into_iter().chain(std::iter::once(k.count())) {
                    out.push((r - below.min(r)) as f64);
                    below = r;
                }
                out
            };
            let (rc, cc) = (counts(rk), counts(ck));
            let (psi, js) = (psi(&rc, &cc), js_distance(&rc, &cc));
            let mut out = if rk.count() <= SMALL {
                base(DriftMethod::KolmogorovSmirnov, p, 0.05, p < 0.05, psi, js)
            } else {
                base(DriftMethod::Wasserstein, normed, 0.1, normed >= 0.1, psi, js)
            };
            out.ks = Some(d);
            out.ks_p_value = Some(p);
            out.wasserstein = Some(w);
            out.wasserstein_normed = Some(normed);
            Some(out)
        }
        ColumnKind::Categorical | ColumnKind::Boolean => {
            let (rf, cf) = (r.freq.as_ref()?, c.freq.as_ref()?);
            let mut values: Vec<String> =
                rf.top(usize::MAX).into_iter().chain(cf.top(usize::MAX)).map(|(v, _)| v).collect();
            values.sort();
            values.dedup();
            let rc: Vec<f64> = values.iter().map(|v| rf.count(v) as f64).collect();
            let cc: Vec<f64> = values.iter().map(|v| cf.count(v) as f64).collect();
            let (rn, cn) = (rc.iter().sum::<f64>(), cc.iter().sum::<f64>());
            if rn == 0.0 || cn == 0.0 {
                return None;
            }
            let (chi2, _, p) = chi2_contingency(&rc, &cc);
            let (psi, js) = (psi(&rc, &cc), js_distance(&rc, &cc));
            let mut out = if rn as u64 <= SMALL {
                base(DriftMethod::ChiSquared, p, 0.05, p < 0.05, psi, js)
            } else {
                base(DriftMethod::JensenShannon, js, 0.1, js >= 0.1, psi, js)
            };
            out.chi2 = Some(chi2);
            out.chi2_p_value = Some(p);
            Some(out)
        }
        ColumnKind::Other => None,
    }
}

/// Walk two weighted samples (sorted by value) together; `f(value, next value, Fa, Fb)` at each
/// distinct value, with the CDFs just after it.
fn walk(a: &[(f64, u64)], b: &[(f64, u64)], mut f: impl FnMut(f64, Option<f64>, f64, f64)) {
    let na = a.iter().map(|x| x.1).sum::<u64>().max(1) as f64;
    let nb = b.iter().map(|x| x.1).sum::<u64>().max(1) as f64;
    let (mut i, mut j, mut ca, mut cb) = (0, 0, 0u64, 0u64);
    while i < a.len() || j < b.len() {
        let v = match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) => x.0.min(y.0),
            (Some(x), None) => x.0,
            (None, Some(y)) => y.0,
            (None, None) => break,
        };
        while i < a.len() && a[i].0 == v {
            ca += a[i].1;
            i += 1;
        }
        while j < b.len() && b[j].0 == v {
            cb += b[j].1;
            j += 1;
        }
        let next = match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) => Some(x.0.min(y.0)),
            (Some(x), None) => Some(x.0),
            (None, Some(y)) => Some(y.0),
            (None, None) => None,
        };
        f(v, next, ca as f64 / na, cb as f64 / nb);
    }
}

/// The two-sample Kolmogorov–Smirnov statistic: the largest gap between the two empirical CDFs.
pub fn ks(a: &[(f64, u64)], b: &[(f64, u64)]) -> f64 {
    let mut d: f64 = 0.0;
    walk(a, b, |_, _, fa, fb| d = d.max((fa - fb).abs()));
    d
}

/// The first Wasserstein distance: the area between the two empirical CDFs.
pub fn wasserstein(a: &[(f64, u64)], b: &[(f64, u64)]) -> f64 {
    let mut area = 0.0;
    walk(a, b, |v, next, fa, fb| {
        if let Some(n) = next {
            area += (fa - fb).abs() * (n - v);
        }
    });
    area
}

/// The asymptotic p-value of a KS statistic `d` for samples of `n` and `m` values: the limiting
/// Kolmogorov distribution's survival at `sqrt(n m / (n + m)) d`.
pub fn ks_p_value(d: f64, n: u64, m: u64) -> f64 {
    let en = (n as f64 * m as f64) / (n + m).max(1) as f64;
    kolmogorov_sf(en.sqrt() * d)
}

/// `P(K > x)` for the Kolmogorov distribution, by the series that converges fast on each side.
fn kolmogorov_sf(x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    if x < 1.18 {
        // 1 - sqrt(2 pi) / x * sum_k exp(-(2k - 1)^2 pi^2 / (8 x^2))
        let pi2 = std::f64::consts::PI * std::f64::consts::PI;
        let s: f64 = (1..=20).map(|k| (-((2 * k - 1) as f64).powi(2) * pi2 / (8.0 * x * x)).exp()).sum();
        (1.0 - (2.0 * std::f64::consts::PI).sqrt() / x * s).clamp(0.0, 1.0)
    } else {
        // 2 sum_k (-1)^(k-1) exp(-2 k^2 x^2)
        let s: f64 =
            (1..=100).map(|k| if k % 2 == 1 { 1.0 } else { -1.0 } * (-2.0 * (k * k) as f64 * x * x).exp()).sum();
        (2.0 * s).clamp(0.0, 1.0)
    }
}

fn proportions(counts: &[f64]) -> Vec<f64> {
    let n: f64 = counts.iter().sum();
    counts.iter().map(|c| if n > 0.0 { c / n } else { 0.0 }).collect()
}

/// Population stability index of current bin counts against reference ones.
pub fn psi(reference: &[f64], current: &[f64]) -> f64 {
    let (r, c) = (proportions(reference), proportions(current));
    r.iter()
        .zip(&c)
        .map(|(&r, &c)| {
            let (r, c) = (if r == 0.0 { PSI_EMPTY } else { r }, if c == 0.0 { PSI_EMPTY } else { c });
            (c - r) * (c / r).ln()
        })
        .sum()
}

/// Jensen–Shannon distance (natural log) between two distributions given as counts.
pub fn js_distance(reference: &[f64], current: &[f64]) -> f64 {
    let (p, q) = (proportions(reference), proportions(current));
    let kl = |a: &[f64], m: &[f64]| -> f64 {
        a.iter().zip(m).filter(|(x, _)| **x > 0.0).map(|(x, m)| x * (x / m).ln()).sum()
    };
    let m: Vec<f64> = p.iter().zip(&q).map(|(a, b)| 0.5 * (a + b)).collect();
    (0.5 * (kl(&p, &m) + kl(&q, &m))).max(0.0).sqrt()
}

/// Pearson's chi-squared test of independence on the 2 x k table (reference and current counts
/// per value), without continuity correction: (statistic, degrees of freedom, p-value).
pub fn chi2_contingency(reference: &[f64], current: &[f64]) -> (f64, usize, f64) {
    let cells: Vec<(f64, f64)> =
        reference.iter().zip(current).map(|(a, b)| (*a, *b)).filter(|(a, b)| a + b > 0.0).collect();
    let (ra, cb): (f64, f64) = (cells.iter().map(|c| c.0).sum(), cells.iter().map(|c| c.1).sum());
    let n = ra + cb;
    if cells.len() < 2 || ra == 0.0 || cb == 0.0 {
        return (0.0, 0, 1.0);
    }
    let stat: f64 = cells
        .iter()
        .map(|(a, b)| {
            let col = a + b;
            let (ea, eb) = (ra * col / n, cb * col / n);
            (a - ea).powi(2) / ea + (b - eb).powi(2) / eb
        })
        .sum();
    let dof = cells.len() - 1;
    (stat, dof, gamma_q(dof as f64 / 2.0, stat / 2.0))
}

/// `ln Γ(x)` for `x > 0` (Lanczos, g = 7, 9 terms: ~1e-15 relative).
fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection.
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let t = x + 7.5;
    let s = G[0] + (1..9).map(|i| G[i] / (x + i as f64)).sum::<f64>();
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + s.ln()
}

/// The regularized upper incomplete gamma function `Q(a, x)`: the chi-squared survival is
/// `Q(dof / 2, x / 2)`. Series below `a + 1`, Lentz's continued fraction above.
fn gamma_q(a: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    let log_prefix = a * x.ln() - x - ln_gamma(a);
    if x < a + 1.0 {
        let (mut sum, mut term, mut ap) = (1.0 / a, 1.0 / a, a);
        for _ in 0..1000 {
            ap += 1.0;
            term *= x / ap;
            sum += term;
            if term.abs() < sum.abs() * 1e-16 {
                break;
            }
        }
        (1.0 - sum * log_prefix.exp()).clamp(0.0, 1.0)
    } else {
        let tiny = 1e-300;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / tiny;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..1000 {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < tiny {
                d = tiny;
            }
            c = b + an / c;
            if c.abs() < tiny {
                c = tiny;
            }
            d = 1.0 / d;
            let delta = d * c;
            h *= delta;
            if (delta - 1.0).abs() < 1e-16 {
                break;
            }
        }
        (log_prefix.exp() * h).clamp(0.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_functions_match_known_values() {
        // Python: math.lgamma; scipy.special.gammaincc; scipy.stats.kstwobign.sf.
        assert!((ln_gamma(0.5) - 0.572_364_942_924_700_4).abs() < 1e-13);
        assert!((ln_gamma(10.0) - 12.801_827_480_081_467).abs() < 1e-12);
        assert!((gamma_q(2.5, 1.0) - 0.849_145_036_084_609_6).abs() < 1e-12, "{}", gamma_q(2.5, 1.0));
        assert!((gamma_q(1.0, 30.0) - (-30.0f64).exp()).abs() < 1e-25);
        assert!((kolmogorov_sf(1.0) - 0.269_999_671_677_354_56).abs() < 1e-12, "{}", kolmogorov_sf(1.0));
        assert!((kolmogorov_sf(0.5) - 0.963_945_243_664_875_1).abs() < 1e-12, "{}", kolmogorov_sf(0.5));
    }
}
