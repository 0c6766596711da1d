"""Reference numbers for sluice-profile's drift statistics: SciPy on small samples (small enough
that the profiles' sketches are exact, so the same numbers must come out of them).

Writes crates/sluice-profile/tests/fixtures/drift.json: each case's reference and current values
and the expected statistics.

Conventions, matching sluice's:
- KS: the two-sample statistic (scipy.stats.ks_2samp) and its p-value from the limiting
  Kolmogorov distribution, kstwobign.sf(sqrt(n m / (n + m)) D).
- Wasserstein: scipy.stats.wasserstein_distance (first Wasserstein distance of the samples).
- Numeric PSI and Jensen-Shannon distance use 10 bins cut at the reference's deciles
  (numpy's inverted_cdf quantiles, duplicates dropped); a value v is in the bin whose upper
  edge is the first edge >= v. Categorical ones use the union of the values.
- PSI: sum (c - r) ln(c / r) over bins of proportions, a proportion of 0 counting as 0.0001.
- Jensen-Shannon: scipy.spatial.distance.jensenshannon (natural log).
- Chi-squared: scipy.stats.chi2_contingency of the 2 x k table of counts, correction=False.
"""
import json
import pathlib

import numpy as np
from scipy.spatial.distance import jensenshannon
from scipy.stats import chi2_contingency, ks_2samp, kstwobign, wasserstein_distance

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "crates/sluice-profile/tests/fixtures/drift.json"
rng = np.random.default_rng(20261124)


def proportions(counts):
    p = np.asarray(counts, dtype=float) / max(sum(counts), 1)
    return p


def psi(r, c):
    r = np.where(r == 0, 0.0001, r)
    c = np.where(c == 0, 0.0001, c)
    return float(np.sum((c - r) * np.log(c / r)))


def numeric(name, ref, cur):
    ref, cur = np.round(ref, 2), np.round(cur, 2)
    d = ks_2samp(ref, cur).statistic
    en = len(ref) * len(cur) / (len(ref) + len(cur))
    edges = np.unique(np.quantile(ref, np.arange(1, 10) / 10, method="inverted_cdf"))
    bins = lambda x: np.bincount(np.searchsorted(edges, x, side="left"), minlength=len(edges) + 1)
    r, c = proportions(bins(ref)), proportions(bins(cur))
    return {
        "name": name, "kind": "numeric", "reference": ref.tolist(), "current": cur.tolist(),
        "ks": float(d), "ks_p_value": float(kstwobign.sf(np.sqrt(en) * d)),
        "wasserstein": float(wasserstein_distance(ref, cur)),
        "edges": edges.tolist(), "psi": psi(r, c), "js": float(jensenshannon(r, c)),
    }


def categorical(name, ref, cur):
    cats = sorted(set(ref) | set(cur))
    rc = [ref.count(v) for v in cats]
    cc = [cur.count(v) for v in cats]
    chi2, p, dof, _ = chi2_contingency([rc, cc], correction=False)
    r, c = proportions(rc), proportions(cc)
    return {
        "name": name, "kind": "categorical", "reference": ref, "current": cur,
        "chi2": float(chi2), "chi2_p_value": float(p), "chi2_dof": int(dof),
        "psi": psi(r, c), "js": float(jensenshannon(r, c)),
    }


cases = [
    numeric("shifted", rng.normal(0, 1, 200), rng.normal(0.4, 1.3, 180)),
    numeric("same", rng.normal(5, 2, 150), rng.normal(5, 2, 160)),
    numeric("few_values", rng.integers(0, 6, 220).astype(float), rng.integers(1, 8, 190).astype(float)),
    categorical("letters", list(rng.choice(list("abcde"), 240, p=[0.4, 0.3, 0.15, 0.1, 0.05])),
                list(rng.choice(list("abcdef"), 200, p=[0.25, 0.25, 0.2, 0.15, 0.1, 0.05]))),
    categorical("stable", list(rng.choice(["x", "y", "z"], 250, p=[0.5, 0.3, 0.2])),
                list(rng.choice(["x", "y", "z"], 230, p=[0.5, 0.3, 0.2]))),
]
for c in cases:
    if c["kind"] == "categorical":
        c["reference"] = [str(v) for v in c["reference"]]
        c["current"] = [str(v) for v in c["current"]]
OUT.write_text(json.dumps({"cases": cases}, indent=1))
print(f"wrote {OUT}")
