#!/usr/bin/env python3
"""Serving benchmark, all on 127.0.0.1 in one run, with wrk (32 connections):

  sluice serve      the quickstart model (Adult, logistic regression), MLflow /invocations
  hello (axum)      a hello-world axum handler: the ceiling on this machine
  FastAPI+uvicorn   the same kind of model in scikit-learn (OneHotEncoder + StandardScaler +
                    LogisticRegression on the same data), as a user would write it, 2 workers

One row per request, then 1,000 rows per request (rows/s). Prints medians of wrk runs and ratios.

With --model gbdt: a 100-tree GBDT instead (examples/adult/gbdt.yaml at 100 rounds, learning
rate 0.1), against FastAPI + uvicorn serving LightGBM (100 rounds, the same features, native
categoricals) — the issue's "FastAPI + LightGBM" peer.

Needs: wrk (apt), fastapi uvicorn scikit-learn pandas (pip), and release builds:
  cargo build --release --bin sluice && cargo build --release -p sluice-serve --example hello
Usage: python3 bench/serve.py [--seconds 10] [--runs 3]
"""

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))

ROW = {
    "age": 39, "workclass": "State-gov", "education": "Bachelors", "education_num": 13,
    "marital_status": "Never-married", "occupation": "Adm-clerical", "relationship": "Not-in-family",
    "race": "White", "sex": "Male", "capital_gain": 2174, "capital_loss": 0, "hours_per_week": 40,
    "native_country": "United-States",
}

# What both FastAPI apps share: the Adult data as the quickstart reads it (X, y) and the app.
FASTAPI_PRELUDE = r'''
import numpy as np
import pandas as pd
from fastapi import FastAPI, Request

COLS = ["age", "workclass", "fnlwgt", "education", "education_num", "marital_status", "occupation",
        "relationship", "race", "sex", "capital_gain", "capital_loss", "hours_per_week", "native_country", "income"]
TEXT = ["workclass", "education", "marital_status", "occupation", "relationship", "race", "sex", "native_country"]
NUM = ["age", "education_num", "capital_gain", "capital_loss", "hours_per_week"]
frames = []
for name in ["adult.data.gz", "adult.test.gz"]:
    frames.append(pd.read_csv(DATA + "/" + name, header=None, names=COLS, comment="|", skipinitialspace=True, na_values="?"))
df = pd.concat(frames).dropna(subset=["income"])
y = df["income"].str.rstrip(".").eq(">50K").astype(int)
X = df[NUM + TEXT].copy()
app = FastAPI()
'''

FASTAPI_LGBM_APP = FASTAPI_PRELUDE + r'''
import lightgbm as lgb

CATS = {c: sorted(X[c].dropna().unique()) for c in TEXT}
for c in TEXT:
    X[c] = pd.Categorical(X[c], categories=CATS[c])
model = lgb.train({"objective": "binary", "verbose": -1, "num_threads": 1}, lgb.Dataset(X, y), num_boost_round=100)

@app.post("/invocations")
async def invocations(request: Request):
    body = await request.json()
    frame = pd.DataFrame(body["dataframe_records"])[NUM + TEXT]
    for c in TEXT:
        frame[c] = pd.Categorical(frame[c], categories=CATS[c])
    return {"predictions": model.predict(frame).tolist()}
'''

FASTAPI_APP = FASTAPI_PRELUDE + r'''
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

X[TEXT] = X[TEXT].fillna("missing")
model = make_pipeline(
    ColumnTransformer([("num", StandardScaler(), NUM), ("cat", OneHotEncoder(handle_unknown="ignore"), TEXT)]),
    LogisticRegression(max_iter=1000),
).fit(X, y)

@app.post("/invocations")
async def invocations(request: Request):
    body = await request.json()
    frame = pd.DataFrame(body["dataframe_records"])
    frame[TEXT] = frame[TEXT].fillna("missing")
    return {"predictions": model.predict_proba(frame[NUM + TEXT])[:, 1].tolist()}
'''

LUA = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = io.open("%s"):read("*a")
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing listening on {port}")


def wrk(url, body_file, seconds, tmp):
    script = tmp / "post.lua"
    script.write_text(LUA % body_file)
    out = subprocess.run(["wrk", "-t2", "-c32", f"-d{seconds}s", "--latency", "-s", str(script), url],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}[p99.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, float(p99.group(1)) * scale, int(errors.group(1)) if errors else 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--model", choices=["linear", "gbdt"], default="linear")
    args = ap.parse_args()
    gbdt = args.model == "gbdt"
    sluice = TARGET / "release" / "sluice"
    hello = TARGET / "release" / "examples" / "hello"
    for b in (sluice, hello):
        if not b.exists():
            sys.exit(f"missing {b}: cargo build --release --bin sluice && cargo build --release -p sluice-serve --example hello")
    procs = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        shutil.copytree(ROOT / "examples" / "adult", tmp / "adult")
        home = tmp / "home"
        if gbdt:
            # Exactly 100 trees at LightGBM's learning rate: the example without early stopping.
            spec = (tmp / "adult" / "gbdt.yaml").read_text()
            for line in ["    validation: split.valid\n", "      early_stopping_rounds: 30\n"]:
                assert line in spec, line
                spec = spec.replace(line, "")
            spec = spec.replace("num_rounds: 500", "num_rounds: 100").replace("learning_rate: 0.05", "learning_rate: 0.1")
            (tmp / "adult" / "gbdt100.yaml").write_text(spec)
            run = [str(tmp / "adult" / "gbdt100.yaml")]
        else:
            run = [str(tmp / "adult" / "pipeline.yaml")]
        subprocess.run([str(sluice), "--home", str(home), "run", *run], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        one = tmp / "one.json"
        one.write_text(json.dumps({"dataframe_records": [ROW]}))
        many = tmp / "many.json"
        many.write_text(json.dumps({"dataframe_records": [ROW] * 1000}))
        (tmp / "app.py").write_text(f"DATA = {str(ROOT / 'examples' / 'adult' / 'data')!r}\n" +
                                    (FASTAPI_LGBM_APP if gbdt else FASTAPI_APP))
        ports = {name: free_port() for name in ["sluice", "hello", "fastapi"]}
        try:
            served = "adult-income-gbdt@champion" if gbdt else "adult-income@champion"
            procs.append(subprocess.Popen([str(sluice), "--home", str(home), "serve", served,
                                           "--listen", f"127.0.0.1:{ports['sluice']}"], stderr=subprocess.DEVNULL))
            procs.append(subprocess.Popen([str(hello), f"127.0.0.1:{ports['hello']}"], stderr=subprocess.DEVNULL))
            procs.append(subprocess.Popen([sys.executable, "-m", "uvicorn", "app:app", "--workers", "2", "--log-level",
                                           "warning", "--port", str(ports["fastapi"])], cwd=tmp,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            for p in ports.values():
                wait_port(p)
            time.sleep(2)
            urls = {
                "sluice": f"http://127.0.0.1:{ports['sluice']}/invocations",
                "hello": f"http://127.0.0.1:{ports['hello']}/",
                "fastapi": f"http://127.0.0.1:{ports['fastapi']}/invocations",
            }
            # Rounds interleave the servers, so that the machine's drift over minutes (it is
            # large on shared 2-core machines) reaches all of them alike; the ratio to hello-world
            # is taken within each round, then its median.
            runs = {name: [] for name in urls}
            batch_runs = {"sluice": [], "fastapi": []}
            for _ in range(args.runs):
                for name in ["hello", "sluice", "fastapi"]:
                    runs[name].append(wrk(urls[name], one, args.seconds, tmp))
                for name in batch_runs:
                    batch_runs[name].append(wrk(urls[name], many, args.seconds, tmp))
            results = {name: (statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs),
                              sum(r[2] for r in rs)) for name, rs in runs.items()}
            of_hello = statistics.median(s[0] / h[0] for s, h in zip(runs["sluice"], runs["hello"]))
            batch = {name: (statistics.median(r[0] for r in rs) * 1000, statistics.median(r[1] for r in rs),
                            sum(r[2] for r in rs)) for name, rs in batch_runs.items()}
        finally:
            for p in procs:
                p.terminate()
                p.wait()
    peer = "FastAPI+LightGBM (2w)" if gbdt else "FastAPI+sklearn (2w)"
    print(f"\nmodel: {'100-tree GBDT' if gbdt else 'logistic regression'} (Adult)")
    f = results["fastapi"][0]
    print(f"\none row per request, 32 connections, {args.runs} x {args.seconds}s (medians)")
    print(f"{'server':22} {'req/s':>10} {'p99 ms':>8} {'errors':>7} {'vs FastAPI':>11} {'of hello':>9}")
    for name, label in [("hello", "hello-world axum"), ("sluice", "sluice serve"), ("fastapi", peer)]:
        rps, p99, errors = results[name]
        print(f"{label:22} {rps:10.0f} {p99:8.2f} {errors:7d} {rps / f:10.1f}x {rps / results['hello'][0]:8.0%}")
    print(f"sluice / hello-world within each round: median {of_hello:.0%} "
          f"({', '.join(f'{s[0] / h[0]:.0%}' for s, h in zip(runs['sluice'], runs['hello']))})")
    print("\n1,000 rows per request")
    print(f"{'server':22} {'rows/s':>12} {'p99 ms':>8} {'errors':>7} {'vs FastAPI':>11}")
    for name, label in [("sluice", "sluice serve"), ("fastapi", peer)]:
        rows, p99, errors = batch[name]
        print(f"{label:22} {rows:12.0f} {p99:8.2f} {errors:7d} {rows / batch['fastapi'][0]:10.1f}x")


if __name__ == "__main__":
    main()
