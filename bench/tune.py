#!/usr/bin/env python3
"""Tuning benchmark: sluice's studies vs Optuna, same run.

(a) Overhead: a trivial objective over the same 5-parameter space (three reals, one of them
    log-scaled, a whole number and a choice), 1,000 trials of TPE, with in-memory storage and
    with persistent storage: SQLite (sluice: the metadata store; Optuna: its RDB storage) and
    PostgreSQL (the local server, a scratch schema each; Optuna through psycopg2).
    Prints milliseconds per trial (median of --runs) and Optuna's time over sluice's.
(b) Tuning the GBDT on the Adult data for a fixed budget of trials: sluice runs
    examples/adult/tune.yaml (TPE over learning rate, leaves, leaf size, L2, feature and row
    subsampling; 300 rounds early-stopped after 30 on validation AUC); Optuna tunes LightGBM over
    the same space, on the same train/validation/test split files sluice wrote, with the same
    rounds and early stopping. Prints wall time of the search, the best validation AUC and the
    test AUC of the best trial's model, over studies seeded 1..--seeds. Optuna runs as its users run it (one trial at a time,
    LightGBM on all cores), with two trials at once on one thread each (as sluice does), and
    with the same ASHA pruner (min resource 10 rounds, reduction factor 3) reporting validation
    AUC each round, as optuna-integration's LightGBM callback does.

Needs: pip install optuna psycopg2-binary lightgbm pandas pyarrow scikit-learn (scripts/bench-setup.sh),
  PostgreSQL on 127.0.0.1:5432 (database test, user postgres; --pg to change) and
  cargo build --release -p sluice-cli && cargo build --release -p sluice-tune --example overhead
Usage: python3 bench/tune.py [--part a|b|ab] [--trials 1000] [--budget 30] [--runs 3] [--seeds 5]
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))

OPTUNA_OVERHEAD = r'''
import json, math, sys, time, optuna
optuna.logging.set_verbosity(optuna.logging.WARNING)
n, storage = int(sys.argv[1]), sys.argv[2]
def objective(t):
    x = t.suggest_float("x", -10, 10); y = t.suggest_float("y", -10, 10)
    lr = t.suggest_float("lr", 1e-4, 1.0, log=True); k = t.suggest_int("k", 1, 100)
    c = t.suggest_categorical("c", ["a", "b", "c"])
    return x * x + y * y + abs(math.log10(lr)) + k / 100 + (0 if c == "b" else 1)
t0 = time.perf_counter()
study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=1), storage=storage if storage != "memory" else None)
study.optimize(objective, n_trials=n)
s = time.perf_counter() - t0
print(json.dumps({"seconds": s, "ms_per_trial": 1000 * s / n, "best": study.best_value}))
'''

OPTUNA_LIGHTGBM = r'''
import json, sys, time
import numpy as np, pandas as pd, pyarrow.parquet as pq, lightgbm as lgb, optuna
from sklearn.metrics import roc_auc_score
optuna.logging.set_verbosity(optuna.logging.WARNING)
train_p, valid_p, test_p, trials, jobs, threads, seed, asha = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7]), sys.argv[8] == "asha"
def load(p):
    t = pq.read_table(p).to_pandas()
    return t.drop(columns=["label"]), t["label"].astype(float).to_numpy()
X, y = load(train_p); Xv, yv = load(valid_p); Xt, yt = load(test_p)
for c in [c for c in X.columns if not pd.api.types.is_numeric_dtype(X[c])]:
    cats = sorted(X[c].dropna().unique())
    for d in (X, Xv, Xt):
        d[c] = pd.Categorical(d[c], categories=cats)
def objective(trial):
    params = {
        "objective": "binary", "metric": "auc", "verbosity": -1, "num_threads": threads, "seed": 7,
        "learning_rate": trial.suggest_float("learning_rate", 0.02, 0.3, log=True),
        "num_leaves": trial.suggest_int("num_leaves", 8, 128, log=True),
        "min_child_samples": trial.suggest_int("min_data_in_leaf", 5, 200, log=True),
        "lambda_l2": trial.suggest_float("lambda_l2", 0.001, 10.0, log=True),
        "feature_fraction": trial.suggest_float("feature_fraction", 0.5, 1.0),
        "bagging_fraction": trial.suggest_float("bagging_fraction", 0.5, 1.0),
        "bagging_freq": trial.suggest_categorical("bagging_freq", [0, 1]),
    }
    dtrain = lgb.Dataset(X, y); dvalid = lgb.Dataset(Xv, yv, reference=dtrain)
    def report(env):  # what optuna-integration's LightGBMPruningCallback does
        trial.report(env.evaluation_result_list[0][2], env.iteration + 1)
        if trial.should_prune():
            raise optuna.TrialPruned()
    callbacks = [lgb.early_stopping(30, verbose=False)] + ([report] if asha else [])
    model = lgb.train(params, dtrain, num_boost_round=300, valid_sets=[dvalid], callbacks=callbacks)
    trial.set_user_attr("test_auc", float(roc_auc_score(yt, model.predict(Xt, num_iteration=model.best_iteration))))
    return float(model.best_score["valid_0"]["auc"])
t0 = time.perf_counter()
pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=10, reduction_factor=3) if asha else optuna.pruners.NopPruner()
study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed), pruner=pruner)
study.optimize(objective, n_trials=trials, n_jobs=jobs)
s = time.perf_counter() - t0
pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)
print(json.dumps({"seconds": s, "best_valid_auc": study.best_value, "test_auc": study.best_trial.user_attrs["test_auc"],
                  "pruned": pruned}))
'''


def run_json(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def part_a(args):
    overhead = TARGET / "release" / "examples" / "overhead"
    if not overhead.exists():
        sys.exit(f"missing {overhead}: cargo build --release -p sluice-tune --example overhead")
    rows = []
    os.environ["SLUICE_TEST_POSTGRES"] = args.pg  # the overhead example's scratch schema goes there
    for storage in ("memory", "sqlite", "postgres"):
        s = [run_json([str(overhead), str(args.trials), storage, "tpe"])["ms_per_trial"] for _ in range(args.runs)]
        o = []
        for run in range(args.optuna_runs):
            with tempfile.TemporaryDirectory() as d:
                schema = f"optuna_bench_{os.getpid()}_{run}"
                if storage == "memory":
                    url = "memory"
                elif storage == "sqlite":
                    url = f"sqlite:///{d}/optuna.db"
                else:
                    psql(args.pg, f"CREATE SCHEMA {schema}")
                    url = args.pg.replace("postgres://", "postgresql+psycopg2://") + f"?options=-csearch_path%3D{schema}"
                try:
                    o.append(run_json([sys.executable, "-c", OPTUNA_OVERHEAD, str(args.trials), url])["ms_per_trial"])
                finally:
                    if storage == "postgres":
                        psql(args.pg, f"DROP SCHEMA {schema} CASCADE")
        rows.append((storage, statistics.median(s), statistics.median(o)))
    print(f"\n(a) overhead per trial, TPE, trivial objective, {args.trials} trials "
          f"(median of {args.runs} sluice / {args.optuna_runs} Optuna runs)")
    print(f"{'storage':<10}{'sluice ms':>12}{'Optuna ms':>12}{'Optuna/sluice':>15}")
    for storage, s, o in rows:
        print(f"{storage:<10}{s:>12.3f}{o:>12.3f}{o / s:>14.1f}x")
    (_, mem, omem), (_, sql, osql), (_, pg, opg) = rows
    print(f"sluice SQLite vs Optuna in-memory: {omem / sql:.1f}x; Optuna SQLite vs sluice SQLite: {osql / sql:.1f}x; "
          f"Optuna PostgreSQL vs sluice PostgreSQL: {opg / pg:.1f}x")


def psql(server, sql):
    env = dict(os.environ, PGOPTIONS="--client-min-messages=warning")
    subprocess.run(["psql", server, "-q", "-c", sql], check=True, env=env)


def object_path(home, digest):
    return home / "artifacts" / "objects" / digest[:2] / f"{digest}.parquet"


def sluice_adult(args, workdir, pruner, seed):
    binary = Path(args.bin)
    spec_src = ROOT / "examples" / "adult" / "tune.yaml"
    adult = workdir / "adult"
    if not adult.exists():
        shutil.copytree(ROOT / "examples" / "adult" / "data", adult / "data")
    text = spec_src.read_text()
    text = text.replace("trials: 30", f"trials: {args.budget}")
    assert "      seed: 7\n" in text
    text = text.replace("      seed: 7\n", f"      seed: {seed}\n")
    text = text.replace("pruner: {kind: asha, min_resource: 10, reduction_factor: 3}", f"pruner: {pruner}")
    spec = adult / "tune.yaml"
    spec.write_text(text)
    home = workdir / f"home-{time.time_ns()}"
    out = subprocess.run([str(binary), "--home", str(home), "run", str(spec), "--json"], check=True,
                         capture_output=True, text=True)
    events = [json.loads(l) for l in out.stdout.splitlines()]
    train = next(e for e in events if e["event"] == "step_finished" and e["step"] == "train")
    split = {name: digest for e in events if e["event"] == "step_finished" and e["step"] == "split"
             for name, digest in e["outputs"]}
    run_id = next(e["run_id"] for e in events if e["event"] == "run_started")
    shown = json.loads(subprocess.run([str(binary), "--home", str(home), "runs", "show", run_id, "--json"],
                                      check=True, capture_output=True, text=True).stdout)
    metric = lambda step, key: next(m["value"] for m in shown["metrics"] if m["step"] == step and m["key"] == key)
    return {
        "seconds": train["elapsed_ms"] / 1000,
        "best_valid_auc": metric("train", "tune_best_roc_auc"),
        "test_auc": metric("evaluate", "roc_auc"),
        "pruned": metric("train", "tune_pruned"),
    }, {k: object_path(home, v) for k, v in split.items()}


def part_b(args):
    rows = []
    with tempfile.TemporaryDirectory() as d:
        workdir = Path(d)
        runs = {"sluice TPE (2 trials at once)": [], "sluice TPE + ASHA": [],
                "Optuna+LightGBM (1 at once, 2 threads)": [], "Optuna+LightGBM (2 at once, 1 thread)": [],
                "Optuna+LightGBM + ASHA (2 at once)": []}
        split = None
        for seed in range(1, args.seeds + 1):
            r, split = sluice_adult(args, workdir, "none", seed)
            runs["sluice TPE (2 trials at once)"].append(r)
            r, _ = sluice_adult(args, workdir, "{kind: asha, min_resource: 10, reduction_factor: 3}", seed)
            runs["sluice TPE + ASHA"].append(r)
            for (jobs, threads, pruner), name in (((1, 2, "none"), "Optuna+LightGBM (1 at once, 2 threads)"),
                                                  ((2, 1, "none"), "Optuna+LightGBM (2 at once, 1 thread)"),
                                                  ((2, 1, "asha"), "Optuna+LightGBM + ASHA (2 at once)")):
                runs[name].append(run_json([sys.executable, "-c", OPTUNA_LIGHTGBM, str(split["train"]),
                                            str(split["valid"]), str(split["test"]), str(args.budget),
                                            str(jobs), str(threads), str(seed), pruner]))
        for name, rs in runs.items():
            rows.append((name, statistics.median(r["seconds"] for r in rs),
                         statistics.mean(r["best_valid_auc"] for r in rs),
                         statistics.mean(r["test_auc"] for r in rs),
                         statistics.mean(r["pruned"] for r in rs)))
    base = rows[0][1]
    print(f"\n(b) tuning a GBDT on Adult, {args.budget} trials, TPE with seeds 1..{args.seeds} "
          f"(median wall time; mean AUCs and pruned trials over the seeds)")
    print(f"{'tool':<42}{'wall s':>8}{'best valid AUC':>16}{'test AUC':>10}{'pruned':>8}{'wall/sluice':>13}")
    for name, s, v, t, p in rows:
        print(f"{name:<42}{s:>8.2f}{v:>16.5f}{t:>10.5f}{p:>8.0f}{s / base:>12.2f}x")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", default="ab")
    p.add_argument("--trials", type=int, default=1000, help="trials in the overhead test")
    p.add_argument("--budget", type=int, default=30, help="trials in the Adult search")
    p.add_argument("--runs", type=int, default=3, help="runs of each overhead measurement")
    p.add_argument("--seeds", type=int, default=5, help="studies (seeds 1..N) per tool in the Adult search")
    p.add_argument("--optuna-runs", type=int, default=1, help="Optuna's SQLite run takes ~30 s")
    p.add_argument("--bin", default=str(TARGET / "release" / "sluice"))
    p.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432/test", help="PostgreSQL server for (a)")
    args = p.parse_args()
    if "a" in args.part:
        part_a(args)
    if "b" in args.part:
        part_b(args)


if __name__ == "__main__":
    main()
