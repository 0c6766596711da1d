"""Reference numbers for sluice-profile: pandas/numpy statistics of the first 10,000 rows of the
UCI Adult training file, cleaned (fields trimmed, `?` -> missing).

Writes crates/sluice-profile/tests/fixtures/adult_10k.csv.gz (the data the test profiles) and
crates/sluice-profile/tests/fixtures/adult_10k.json (the expected statistics).

Conventions, matching the profile's: std is the sample std (ddof=1); quantiles use numpy's
`inverted_cdf` method; histograms have 20 equal-width bins whose edges are
min + (max - min) * i / 20, each bin [left, right) except the last, which also holds max.
"""
import gzip
import json
import pathlib

import numpy as np
import pandas as pd

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "crates/sluice-profile/tests/fixtures"
NAMES = ["age", "workclass", "fnlwgt", "education", "education_num", "marital_status", "occupation",
         "relationship", "race", "sex", "capital_gain", "capital_loss", "hours_per_week",
         "native_country", "income"]
QUANTILES = [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99]

df = pd.read_csv(ROOT / "examples/adult/data/adult.data.gz", header=None, names=NAMES,
                 skipinitialspace=True, na_values=["?"], nrows=10_000)
# A float column with missing values, so NaN/null handling is covered too.
df["hours_per_week_f"] = df["hours_per_week"].where(df.index % 7 != 0) / 3.0
OUT.mkdir(parents=True, exist_ok=True)
with gzip.open(OUT / "adult_10k.csv.gz", "wt", compresslevel=9) as f:
    df.to_csv(f, index=False)

columns = {}
for name in df.columns:
    s = df[name]
    values = s.dropna()
    entry = {"count": int(values.size), "nulls": int(s.isna().sum()), "distinct": int(values.nunique())}
    if pd.api.types.is_numeric_dtype(s):
        v = np.sort(values.to_numpy(dtype=float))
        mn, mx = float(v[0]), float(v[-1])
        edges = [mn + (mx - mn) * i / 20 for i in range(21)]
        below = np.searchsorted(v, edges[1:-1], side="left").tolist()
        counts = np.diff([0] + below + [v.size]).tolist()
        entry.update({
            "min": mn, "max": mx, "mean": float(v.mean()), "std": float(v.std(ddof=1)),
            "quantiles": [float(np.quantile(v, q, method="inverted_cdf")) for q in QUANTILES],
            "histogram": {"edges": edges, "counts": [int(c) for c in counts]},
        })
    else:
        vc = values.value_counts()
        top = sorted(vc.items(), key=lambda kv: (-kv[1], kv[0]))[:20]
        entry["top"] = [[k, int(c)] for k, c in top]
    columns[name] = entry

(OUT / "adult_10k.json").write_text(json.dumps({"rows": int(len(df)), "columns": columns}, indent=1) + "\n")
print(f"wrote {OUT}/adult_10k.csv.gz and adult_10k.json ({len(df)} rows, {len(columns)} columns)")
