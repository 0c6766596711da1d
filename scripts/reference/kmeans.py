#!/usr/bin/env python3
"""Reference fixture: sluice's k-means and silhouette score against scikit-learn.

Generated with scikit-learn 1.9.1, numpy 2.4.6, Python 3.11.7 by running, from the workspace root
(no network needed: the data ships with scikit-learn; run scripts/reference/linear_models.py
first, which writes wine.csv):

    python3 scripts/reference/kmeans.py

and checked by

    CARGO_TARGET_DIR=/root/.cache/sluice-target cargo test -p sluice-train --test it kmeans

On Xs = the wine features standardized as sluice's `Transform::Standardize` (population std):

    KMeans(n_clusters=K, n_init=10, random_state=0).fit(Xs)     for K in 2, 3, 5
    silhouette_score(Xs, labels)

It writes crates/sluice-train/tests/fixtures/kmeans.json: per K the inertia, the labels and the
silhouette score.
"""

import json
import platform
from pathlib import Path

import numpy as np
import pandas as pd
import sklearn
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "crates" / "sluice-train" / "tests" / "fixtures"


def main():
    frame = pd.read_csv(FIXTURES / "wine.csv")
    features = [c for c in frame.columns if c != "target"]
    x = frame[features].to_numpy(dtype=float)
    std = x.std(axis=0, ddof=0)
    xs = (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)
    cases = []
    for k in (2, 3, 5):
        model = KMeans(n_clusters=k, n_init=10, random_state=0).fit(xs)
        cases.append({
            "clusters": k,
            "sklearn_estimator": f"KMeans(n_clusters={k}, n_init=10, random_state=0).fit(Xs)",
            "inertia": float(model.inertia_),
            "labels": model.labels_.tolist(),
            "silhouette": float(silhouette_score(xs, model.labels_)),
        })
        print(f"k={k}: inertia {model.inertia_:.6f}, silhouette {cases[-1]['silhouette']:.6f}")
    out = {
        "generated_by": "python3 scripts/reference/kmeans.py",
        "versions": {"sklearn": sklearn.__version__, "numpy": np.__version__, "python": platform.python_version()},
        "csv": "wine.csv",
        "label_excluded": "target",
        "features": features,
        "cases": cases,
    }
    (FIXTURES / "kmeans.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
