"""Reference outputs for sluice's fitted feature transforms, from scikit-learn and numpy on a
small generated table (fixed seed) with missing values, categories and short texts.

Writes crates/sluice-train/tests/fixtures/transforms.json: the input table (columns as lists,
null for missing) and, per transform, scikit-learn's fitted output on it.
Needs: pip install scikit-learn numpy
"""
import json
import pathlib

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.preprocessing import MinMaxScaler, RobustScaler, StandardScaler

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "crates/sluice-train/tests/fixtures/transforms.json"

rng = np.random.default_rng(20261124)
n = 300
x = rng.gamma(2.0, 10.0, n)
x[rng.random(n) < 0.1] = np.nan
y = rng.normal(50, 15, n).round(2)
words = ["delay", "storm", "clear", "fog", "wind", "snow", "late", "early", "gate", "crew"]
text = [" ".join(rng.choice(words, rng.integers(1, 6))) for _ in range(n)]
cats = rng.choice(["JFK", "LGA", "EWR", "BOS"], n, p=[0.4, 0.3, 0.2, 0.1])

col = x.reshape(-1, 1)
out = {
    "input": {
        "x": [None if np.isnan(v) else float(v) for v in x],
        "y": [float(v) for v in y],
        "text": text,
        "cat": [str(c) for c in cats],
    },
    "impute_mean": SimpleImputer(strategy="mean").fit_transform(col).ravel().tolist(),
    "impute_median": SimpleImputer(strategy="median").fit_transform(col).ravel().tolist(),
    # StandardScaler/MinMaxScaler/RobustScaler ignore NaN when fitting and keep it.
    "standardize": StandardScaler().fit_transform(y.reshape(-1, 1)).ravel().tolist(),
    "minmax": MinMaxScaler().fit_transform(y.reshape(-1, 1)).ravel().tolist(),
    "robust": RobustScaler().fit_transform(y.reshape(-1, 1)).ravel().tolist(),
    "quantile_edges_4": [float(np.quantile(y, q)) for q in (0.25, 0.5, 0.75)],
    "log1p": np.log1p(y).tolist(),
}
tfidf = TfidfVectorizer(max_features=6)
m = tfidf.fit_transform(text).toarray()
out["tfidf_vocabulary"] = sorted(tfidf.vocabulary_, key=tfidf.vocabulary_.get)
out["tfidf"] = m.tolist()
OUT.write_text(json.dumps(out) + "\n")
print(f"wrote {OUT}")
