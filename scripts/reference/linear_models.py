#!/usr/bin/env python3
"""Reference fixtures: sluice's linear models and metrics against scikit-learn.

Generated with scikit-learn 1.9.1, numpy 2.4.6, scipy 1.17.1, pandas 3.1.1, Python 3.11.7 by
running, from the workspace root (no network needed: both data sets ship with scikit-learn):

    python3 scripts/reference/linear_models.py

and checked by

    CARGO_TARGET_DIR=/root/.cache/sluice-target cargo test -p sluice-train --test it

It writes, under crates/sluice-train/tests/fixtures/:

* breast_cancer.csv, diabetes.csv -- the RAW features and the label, with a header, so the Rust
  test goes through `fit_transforms` + `design_matrix` itself;
* linear_models.json -- per case, the standardization (mean, scale), scikit-learn's coefficients,
  intercept, predictions and metrics, the solver used and how well it converged;
* metrics.json -- random labels and scores with ties (fixed seed), and scikit-learn's metrics.

Mapping of the objectives. sluice minimizes `mean(loss_i) + l2/2 * ||w||^2` (intercept not
penalized) on features standardized with the population std (ddof=0; scale 1 when the std is 0):

* logistic, loss = log(1 + e^z) - y z:  scikit-learn minimizes `C * sum(loss_i) + ||w||^2 / 2`,
  the same optimum for C = 1 / (l2 * n);
* ridge, loss = (y - z)^2 / 2:  scikit-learn minimizes `||y - Xw - b||^2 + alpha ||w||^2`, the same
  optimum for alpha = l2 * n.

The scikit-learn calls, on Xs = the standardized matrix (n rows):

    LogisticRegression(C=1 / (l2 * n), tol=1e-12, max_iter=10000, solver=SOLVER).fit(Xs, y)
        for l2 in (1e-2, 1e-4); p = predict_proba(Xs)[:, 1]
    Ridge(alpha=l2 * n).fit(Xs, y)   for l2 = 1e-3 (solver 'auto', i.e. cholesky); yhat = predict(Xs)
    roc_auc_score(y, p), log_loss(y, p, labels=[0, 1]), accuracy_score(y, p >= 0.5),
    precision_score / recall_score / f1_score(y, p >= 0.5, zero_division=0)
    root_mean_squared_error(y, yhat), mean_absolute_error(y, yhat), r2_score(y, yhat)

SOLVER is lbfgs first; if the gradient of the sluice objective at its solution is above GRAD_TOL
(1e-9), newton-cholesky and then newton-cg are tried. With scikit-learn 1.9.1 lbfgs stops at
|gradient| ~5e-9 on both cases and newton-cholesky is used (|gradient| < 1e-13); the JSON records
the solver used, every attempt's gradient and the literal commands with their C / alpha.
"""

import json
import platform
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import scipy
import sklearn
from scipy.special import expit
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import ElasticNet, LogisticRegression, Ridge
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    brier_score_loss,
    f1_score,
    log_loss,
    mean_absolute_error,
    mean_absolute_percentage_error,
    precision_score,
    r2_score,
    recall_score,
    roc_auc_score,
    root_mean_squared_error,
)

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "crates" / "sluice-train" / "tests" / "fixtures"
COMMAND = "python3 scripts/reference/linear_models.py"
GRAD_TOL = 1e-9
THRESHOLD = 0.5
LOGISTIC_L2 = [1e-2, 1e-4]
RIDGE_L2 = [1e-3]
# (l1, l2) for the elastic-net cases: lasso and an even mix.
ELASTIC_NET = [(1.0, 0.0), (0.5, 0.5)]
LOGISTIC_L1 = [(0.02, 0.0), (0.01, 0.01)]
MULTINOMIAL_L2 = [1e-2, 1e-3]
# The sluice objective's optimality gap (largest component of the minimum-norm subgradient)
# that the L1 references must reach: saga and coordinate descent converge linearly.
L1_GAP_TOL = 1e-7
METRICS_SEED = 20240611


def versions():
    return {
        "sklearn": sklearn.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "pandas": pd.__version__,
        "python": platform.python_version(),
    }


def write_csv(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    """Write the raw table and read it back, so that the reference is computed from exactly the
    numbers the Rust test parses."""
    path = OUT / name
    frame.to_csv(path, index=False, lineterminator="\n")
    back = pd.read_csv(path)
    assert list(back.columns) == list(frame.columns)
    assert np.array_equal(back.to_numpy(dtype=float), frame.to_numpy(dtype=float)), name
    return back


def standardize(x: np.ndarray):
    """As sluice's `Transform::Standardize`: population std, scale 1 where the std is 0."""
    mean = x.mean(axis=0)
    std = x.std(axis=0, ddof=0)
    scale = np.where(std > 0, std, 1.0)
    return (x - mean) / scale, mean, scale


def binary_metrics(y, p):
    pred = (p >= THRESHOLD).astype(int)
    return {
        "roc_auc": float(roc_auc_score(y, p)),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "accuracy": float(accuracy_score(y, pred)),
        "precision": float(precision_score(y, pred, zero_division=0)),
        "recall": float(recall_score(y, pred, zero_division=0)),
        "f1": float(f1_score(y, pred, zero_division=0)),
        "f1_macro": float(f1_score(y, pred, average="macro", zero_division=0)),
        "pr_auc": float(average_precision_score(y, p)),
        "balanced_accuracy": float(balanced_accuracy_score(y, pred)),
        "brier": float(brier_score_loss(y, p)),
    }


BINARY_METRIC_COMMANDS = {
    "roc_auc": "roc_auc_score(y, p)",
    "log_loss": "log_loss(y, p, labels=[0, 1])",
    "accuracy": "accuracy_score(y, p >= 0.5)",
    "precision": "precision_score(y, p >= 0.5, zero_division=0)",
    "recall": "recall_score(y, p >= 0.5, zero_division=0)",
    "f1": "f1_score(y, p >= 0.5, zero_division=0)",
    "f1_macro": "f1_score(y, p >= 0.5, average='macro', zero_division=0)",
    "pr_auc": "average_precision_score(y, p)",
    "balanced_accuracy": "balanced_accuracy_score(y, p >= 0.5)",
    "brier": "brier_score_loss(y, p)",
}


def regression_metrics(y, yhat):
    return {
        "rmse": float(root_mean_squared_error(y, yhat)),
        "mae": float(mean_absolute_error(y, yhat)),
        "r2": float(r2_score(y, yhat)),
        "mape": float(mean_absolute_percentage_error(y, yhat)),
    }


REGRESSION_METRIC_COMMANDS = {
    "rmse": "root_mean_squared_error(y, yhat)",
    "mae": "mean_absolute_error(y, yhat)",
    "r2": "r2_score(y, yhat)",
    "mape": "mean_absolute_percentage_error(y, yhat)",
}


def logistic_gradient(xs, y, w, b, l2):
    """Max |gradient| of sluice's logistic objective at (w, b)."""
    r = expit(xs @ w + b) - y
    g = np.append(xs.T @ r / len(y) + l2 * w, r.mean())
    return float(np.abs(g).max())


def ridge_gradient(xs, y, w, b, l2):
    r = xs @ w + b - y
    g = np.append(xs.T @ r / len(y) + l2 * w, r.mean())
    return float(np.abs(g).max())


def table_columns(frame: pd.DataFrame, label: str):
    return [c for c in frame.columns if c != label]


def design(frame: pd.DataFrame, label: str, label_type=float):
    """Every case's inputs: feature names, standardized matrix, labels and the scaling used."""
    features = table_columns(frame, label)
    xs, mean, scale = standardize(frame[features].to_numpy(dtype=float))
    return features, xs, frame[label].to_numpy(dtype=label_type), mean, scale


def case(name, csv, label, features, objective, penalty, head, fitted, standardized, tail):
    """One fixture case, in the fields' fixed order: `penalty` ({"l2", "l1"}), `head` (from
    "rows" to "max_abs_gradient") and `tail` (the fitted model and its metrics)."""
    mean, scale = standardized
    return {"name": name, "csv": csv, "label": label, "features": features, "objective": objective, **penalty,
            **head, "standardize": {"mean": mean.tolist(), "scale": scale.tolist()}, **fitted, **tail}


def logistic_cases(frame: pd.DataFrame, csv: str, label: str):
    features, xs, y, mean, scale = design(frame, label)
    n = len(y)
    cases = []
    for l2 in LOGISTIC_L2:
        c = 1.0 / (l2 * n)
        attempts = []
        chosen = None
        for solver in ["lbfgs", "newton-cholesky", "newton-cg"]:
            model = LogisticRegression(C=c, tol=1e-12, max_iter=10000, solver=solver)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                model.fit(xs, y)
            w, b = model.coef_[0].astype(float), float(model.intercept_[0])
            grad = logistic_gradient(xs, y, w, b, l2)
            command = (
                f"LogisticRegression(C={c!r}, tol=1e-12, max_iter=10000, solver={solver!r})"
                ".fit(Xs, y)  # C = 1 / (l2 * n)"
            )
            attempts.append(
                {"solver": solver, "n_iter": int(model.n_iter_[0]), "max_abs_gradient": grad, "command": command}
            )
            if grad <= GRAD_TOL:
                chosen = (solver, model, w, b, grad, command)
                break
        if chosen is None:
            sys.exit(f"no solver reached |gradient| <= {GRAD_TOL} for logistic l2={l2}: {attempts}")
        solver, model, w, b, grad, command = chosen
        p = model.predict_proba(xs)[:, 1]
        # predict_proba must be the logistic function of the margin we compare against.
        assert np.allclose(p, expit(xs @ w + b), rtol=0, atol=1e-15)
        cases.append(case(
            f"logistic_{Path(csv).stem}_l2_{l2:g}", csv, label, features, "logistic", {"l2": l2},
            {"rows": n, "sklearn_estimator": command, "solver": solver, "attempts": attempts,
             "max_abs_gradient": grad},
            {"coef": w.tolist(), "intercept": b}, (mean, scale),
            {"predictions": p.tolist(), "metrics": binary_metrics(y, p), "metric_commands": BINARY_METRIC_COMMANDS},
        ))
    return cases


def ridge_cases(frame: pd.DataFrame, csv: str, label: str):
    features, xs, y, mean, scale = design(frame, label)
    n = len(y)
    cases = []
    for l2 in RIDGE_L2:
        alpha = l2 * n
        model = Ridge(alpha=alpha).fit(xs, y)
        w, b = model.coef_.astype(float), float(model.intercept_)
        grad = ridge_gradient(xs, y, w, b, l2)
        if grad > GRAD_TOL:
            sys.exit(f"ridge l2={l2}: |gradient| {grad} > {GRAD_TOL}")
        yhat = model.predict(xs)
        cases.append(case(
            f"ridge_{Path(csv).stem}_l2_{l2:g}", csv, label, features, "squared_error", {"l2": l2},
            {"rows": n, "sklearn_estimator": f"Ridge(alpha={alpha!r}).fit(Xs, y)  # alpha = l2 * n; solver 'auto'",
             "solver": str(getattr(model, "solver_", "auto")), "attempts": [], "max_abs_gradient": grad},
            {"coef": w.tolist(), "intercept": b}, (mean, scale), regression_tail(y, yhat),
        ))
    return cases


def sparse_fit(w, b):
    return {"coef": w.tolist(), "intercept": b, "zero_coefficients": int((w == 0).sum())}


def regression_tail(y, yhat):
    return {"predictions": yhat.tolist(), "metrics": regression_metrics(y, yhat),
            "metric_commands": REGRESSION_METRIC_COMMANDS}


def l1_gap(grad_w, w, l1, grad_b):
    """Largest component of the minimum-norm subgradient of `smooth + l1 ||w||_1`."""
    gap = np.where(w != 0, np.abs(grad_w + l1 * np.sign(w)), np.maximum(np.abs(grad_w) - l1, 0.0))
    return float(max(gap.max(initial=0.0), abs(grad_b)))


def elastic_net_cases(frame: pd.DataFrame, csv: str, label: str):
    features, xs, y, mean, scale = design(frame, label)
    n = len(y)
    cases = []
    for l1, l2 in ELASTIC_NET:
        alpha, ratio = l1 + l2, l1 / (l1 + l2)
        model = ElasticNet(alpha=alpha, l1_ratio=ratio, tol=1e-14, max_iter=1_000_000).fit(xs, y)
        w, b = model.coef_.astype(float), float(model.intercept_)
        r = xs @ w + b - y
        gap = l1_gap(xs.T @ r / n + l2 * w, w, l1, r.mean())
        if gap > L1_GAP_TOL:
            sys.exit(f"elastic net l1={l1} l2={l2}: optimality gap {gap} > {L1_GAP_TOL}")
        yhat = model.predict(xs)
        cases.append(case(
            f"elastic_net_{Path(csv).stem}_l1_{l1:g}_l2_{l2:g}", csv, label, features, "squared_error",
            {"l2": l2, "l1": l1},
            {"rows": n, "sklearn_estimator": f"ElasticNet(alpha={alpha!r}, l1_ratio={ratio!r}, tol=1e-14, "
             "max_iter=1_000_000).fit(Xs, y)  # alpha = l1 + l2, l1_ratio = l1 / alpha",
             "solver": "coordinate descent", "attempts": [], "max_abs_gradient": gap},
            sparse_fit(w, b), (mean, scale), regression_tail(y, yhat),
        ))
    return cases


def logistic_l1_cases(frame: pd.DataFrame, csv: str, label: str):
    features, xs, y, mean, scale = design(frame, label)
    n = len(y)
    cases = []
    for l1, l2 in LOGISTIC_L1:
        # scikit-learn: C * sum(loss) + l1_ratio ||w||_1 + (1 - l1_ratio) / 2 ||w||^2; divided by
        # C n it is sluice's objective with l1 = l1_ratio / (C n), l2 = (1 - l1_ratio) / (C n).
        ratio = l1 / (l1 + l2)
        c = 1.0 / ((l1 + l2) * n)
        model = LogisticRegression(C=c, l1_ratio=ratio, solver="saga", tol=1e-14, max_iter=1_000_000)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(xs, y)
        w, b = model.coef_[0].astype(float), float(model.intercept_[0])
        r = expit(xs @ w + b) - y
        gap = l1_gap(xs.T @ r / n + l2 * w, w, l1, r.mean())
        if gap > L1_GAP_TOL:
            sys.exit(f"logistic l1={l1} l2={l2}: optimality gap {gap} > {L1_GAP_TOL}")
        p = model.predict_proba(xs)[:, 1]
        cases.append(case(
            f"logistic_{Path(csv).stem}_l1_{l1:g}_l2_{l2:g}", csv, label, features, "logistic", {"l2": l2, "l1": l1},
            {"rows": n, "sklearn_estimator": f"LogisticRegression(C={c!r}, l1_ratio={ratio!r}, solver='saga', "
             "tol=1e-14, max_iter=1_000_000).fit(Xs, y)  # C = 1 / ((l1 + l2) n), l1_ratio = l1 / (l1 + l2)",
             "solver": "saga", "attempts": [], "max_abs_gradient": gap},
            sparse_fit(w, b), (mean, scale),
            {"predictions": p.tolist(), "metrics": binary_metrics(y, p), "metric_commands": BINARY_METRIC_COMMANDS},
        ))
    return cases


def multinomial_cases(frame: pd.DataFrame, csv: str, label: str):
    features, xs, y, mean, scale = design(frame, label, int)
    n = len(y)
    classes = sorted(set(y.tolist()))
    cases = []
    for l2 in MULTINOMIAL_L2:
        c = 1.0 / (l2 * n)
        attempts = []
        for solver in ["lbfgs", "newton-cholesky"]:
            model = LogisticRegression(C=c, tol=1e-12, max_iter=100_000, solver=solver).fit(xs, y)
            w, b = model.coef_.astype(float), model.intercept_.astype(float)
            b = b - b.mean()
            p = model.predict_proba(xs)
            r = p - np.eye(len(classes))[y]
            grad = np.concatenate([(r.T @ xs / n + l2 * w).ravel(), r.mean(axis=0)])
            gap = float(np.abs(grad).max())
            attempts.append({"solver": solver, "n_iter": int(np.max(model.n_iter_)), "max_abs_gradient": gap})
            if gap <= GRAD_TOL:
                break
        if gap > GRAD_TOL:
            sys.exit(f"multinomial l2={l2}: no solver reached |gradient| <= {GRAD_TOL}: {attempts}")
        pred = p.argmax(axis=1)
        cases.append(case(
            f"multinomial_{Path(csv).stem}_l2_{l2:g}", csv, label, features, "multinomial", {"l2": l2},
            {"rows": n, "classes": [str(k) for k in classes],
             "sklearn_estimator": f"LogisticRegression(C={c!r}, tol=1e-12, max_iter=100_000, solver={solver!r})"
             ".fit(Xs, y)  # C = 1 / (l2 * n); intercepts centred to sum to 0",
             "solver": solver, "attempts": attempts, "max_abs_gradient": gap},
            {"coef": w.ravel().tolist(), "intercepts": b.tolist()}, (mean, scale),
            {"probabilities": p.ravel().tolist(),
             "metrics": {"log_loss": float(log_loss(y, p, labels=classes)),
                         "accuracy": float(accuracy_score(y, pred))}},
        ))
    return cases


def linear_models():
    cancer = load_breast_cancer(as_frame=True).frame
    cancer.columns = [c.replace(" ", "_") for c in cancer.columns]
    cancer = write_csv(cancer.rename(columns={"target": "label"}), "breast_cancer.csv")

    diabetes = load_diabetes(scaled=False, as_frame=True).frame
    diabetes = write_csv(diabetes, "diabetes.csv")

    wine = load_wine(as_frame=True).frame
    wine = write_csv(wine.rename(columns={"od280/od315_of_diluted_wines": "od280_od315"}), "wine.csv")

    return {
        "generated_by": COMMAND,
        "versions": versions(),
        "data": {
            "breast_cancer.csv": "sklearn.datasets.load_breast_cancer(as_frame=True).frame, spaces in "
            "column names replaced by '_', 'target' renamed 'label' (1 = benign)",
            "diabetes.csv": "sklearn.datasets.load_diabetes(scaled=False, as_frame=True).frame",
            "wine.csv": "sklearn.datasets.load_wine(as_frame=True).frame, 'od280/od315_of_diluted_wines' "
            "renamed 'od280_od315' (label 'target': classes 0, 1, 2)",
        },
        "preprocessing": "Xs = (X - X.mean(0)) / S, S = X.std(0, ddof=0) with 0 replaced by 1",
        "threshold": THRESHOLD,
        "cases": logistic_cases(cancer, "breast_cancer.csv", "label")
        + ridge_cases(diabetes, "diabetes.csv", "target")
        + elastic_net_cases(diabetes, "diabetes.csv", "target")
        + logistic_l1_cases(cancer, "breast_cancer.csv", "label")
        + multinomial_cases(wine, "wine.csv", "target"),
    }


def metrics():
    rng = np.random.default_rng(METRICS_SEED)
    cases = []

    # Scores on a 0.05 grid: many ties, including ties across classes, scores exactly at the
    # threshold, and exact 0 and 1 (log_loss clips them to [eps, 1 - eps]).
    n = 400
    y = (rng.random(n) < 0.4).astype(int)
    raw = np.clip(0.35 * y + rng.random(n) * 0.75 - 0.05, 0.0, 1.0)
    s = np.round(raw * 20) / 20
    assert (s == THRESHOLD).any() and (s == 0).any() and (s == 1).any()
    cases.append({"name": "binary_ties_on_grid", "kind": "binary", "y": y, "scores": s})

    # A few distinct scores only: large tied blocks.
    n = 300
    y = (rng.random(n) < 0.55).astype(int)
    s = rng.choice([0.1, 0.3, 0.5, 0.7, 0.9], size=n) * 0.5 + 0.5 * y * rng.choice([0.0, 0.4], size=n)
    cases.append({"name": "binary_few_distinct_scores", "kind": "binary", "y": y, "scores": s})

    # Continuous scores, no ties, rare positives.
    n = 500
    y = (rng.random(n) < 0.1).astype(int)
    s = expit(rng.normal(size=n) + 1.5 * y - 1.0)
    cases.append({"name": "binary_continuous_rare_positives", "kind": "binary", "y": y, "scores": s})

    # Nothing predicted positive: precision and F1 are 0 (zero_division=0).
    n = 50
    y = (rng.random(n) < 0.5).astype(int)
    s = np.round(rng.random(n) * 0.45, 2)
    cases.append({"name": "binary_no_predicted_positive", "kind": "binary", "y": y, "scores": s})

    n = 400
    y = rng.normal(100.0, 25.0, size=n)
    yhat = np.round(y + rng.normal(0.0, 10.0, size=n), 1)
    cases.append({"name": "regression_noisy", "kind": "regression", "y": y, "scores": yhat})

    n = 20
    y = np.full(n, 3.0)
    yhat = y + np.round(rng.normal(0.0, 0.5, size=n), 2)
    cases.append({"name": "regression_constant_labels", "kind": "regression", "y": y, "scores": yhat})

    # Four classes, probabilities from a Dirichlet, with ties in the likeliest class; class 3
    # never predicted.
    n = 300
    y = rng.integers(0, 4, size=n)
    p = rng.dirichlet([1.0, 1.0, 1.0, 0.2], size=n)
    p[:, 3] *= 0.2
    p[y == 0, 0] += 0.3
    p = p / p.sum(axis=1, keepdims=True)
    p[:10] = [0.4, 0.4, 0.1, 0.1]
    cases.append({"name": "multiclass_four_classes", "kind": "multiclass", "y": y, "scores": p})

    out = []
    for case in cases:
        y, s = case["y"], case["scores"]
        if case["kind"] == "multiclass":
            pred = s.argmax(axis=1)
            values = {
                "log_loss": float(log_loss(y, s, labels=[0, 1, 2, 3])),
                "accuracy": float(accuracy_score(y, pred)),
                "balanced_accuracy": float(balanced_accuracy_score(y, pred)),
                "precision_macro": float(precision_score(y, pred, average="macro", zero_division=0)),
                "recall_macro": float(recall_score(y, pred, average="macro", zero_division=0)),
                "f1_macro": float(f1_score(y, pred, average="macro", zero_division=0)),
            }
            commands = {"all": "sklearn.metrics with pred = p.argmax(axis=1), average='macro', zero_division=0"}
            out.append({"name": case["name"], "kind": "multiclass", "classes": 4, "y": [float(v) for v in y],
                        "scores": [float(v) for v in s.ravel()], "metrics": values, "metric_commands": commands})
            continue
        if case["kind"] == "binary":
            values, commands = binary_metrics(y, s), BINARY_METRIC_COMMANDS
        else:
            values, commands = regression_metrics(y, s), REGRESSION_METRIC_COMMANDS
        out.append(
            {
                "name": case["name"],
                "kind": case["kind"],
                "y": [float(v) for v in y],
                "scores": [float(v) for v in s],
                "metrics": values,
                "metric_commands": commands,
            }
        )
    return {
        "generated_by": COMMAND,
        "versions": versions(),
        "seed": f"numpy.random.default_rng({METRICS_SEED})",
        "threshold": THRESHOLD,
        "cases": out,
    }


def write_json(value, name: str):
    with open(OUT / name, "w") as f:
        json.dump(value, f, indent=1)
        f.write("\n")


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    write_json(linear_models(), "linear_models.json")
    write_json(metrics(), "metrics.json")
    for case in json.loads((OUT / "linear_models.json").read_text())["cases"]:
        print(f"{case['name']}: solver {case['solver']}, max |gradient| {case['max_abs_gradient']:.3g}")


if __name__ == "__main__":
    main()
