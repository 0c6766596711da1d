#!/usr/bin/env python3
"""Data-parallel training benchmark: a logistic regression trained by sluice in-process, with
`distributed: true` on the local engine, and on a Ballista cluster of 1 and 2 executors (all on
this machine), side by side with Spark MLlib's LogisticRegression in local mode on the same rows.

Data: ROWS generated rows in one Parquet file (128k-row groups): 8 standard-normal features and
one 40-category text feature; the label is drawn from a logistic model of them.
sluice: the `train` step's time (from `--json` events; it reads the source's Parquet artifact,
fits standardization and the one-hot encoding, then Newton steps). Spark: reading the Parquet,
StringIndexer + OneHotEncoder + VectorAssembler, and LogisticRegression.fit (L-BFGS; its
default in-training standardization), timed from the read to the fitted model, after a warm-up
fit on a small sample. Both with L2 1e-4 (Spark's regParam has the same scale: mean loss +
reg/2 ||w||^2) and no elastic net. Quality: training log loss of each model.

The point of the cluster rows is overhead (this machine has 2 cores): what a Newton pass costs as
a Ballista job compared with the same pass in-process.

Needs: pip install numpy pyarrow pyspark (scripts/bench-setup.sh; Java 17) and a sluice binary.
Usage: python3 bench/train_cluster.py [--rows 2000000] [--runs 3] [--bin PATH] [--no-spark]
"""

import argparse
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from runner import sluice_bin  # noqa: E402

L2 = 1e-4


def generate(path, rows, seed=7):
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, 8))
    w = np.array([0.8, -0.5, 0.3, 0.0, 1.2, -0.9, 0.15, 0.4])
    cats = np.array([f"c{i:02d}" for i in range(40)])
    cat = rng.integers(0, 40, rows)
    effect = rng.normal(0, 0.7, 40)
    z = x @ w + effect[cat] - 0.3
    label = rng.random(rows) < 1 / (1 + np.exp(-z))
    table = pa.table({**{f"x{j}": x[:, j] for j in range(8)}, "cat": cats[cat], "label": label})
    pq.write_table(table, path, row_group_size=128 * 1024)


def spec(distributed):
    return f"""name: train-bench
sources:
  data: {{path: data.parquet}}
steps:
  train:
    kind: train
    input: data
    model: logistic_regression
    label: label
    distributed: {str(distributed).lower()}
    params: {{l2: {L2}}}
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, what):
    for _ in range(300):
        if proc.poll() is not None:
            sys.exit(f"{what} exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    sys.exit(f"{what} did not listen on {port}")


class Cluster:
    def __init__(self, binary, executors, work):
        self.procs = []
        self.port = free_port()
        sched = subprocess.Popen(
            [binary, "cluster", "scheduler", "--port", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.procs.append(sched)
        wait_port(self.port, sched, "scheduler")
        for i in range(executors):
            flight, grpc = free_port(), free_port()
            ex = subprocess.Popen(
                [binary, "cluster", "executor", "--scheduler", f"127.0.0.1:{self.port}",
                 "--flight-port", str(flight), "--grpc-port", str(grpc),
                 # One executor gets both cores; two get one slot each.
                 "--slots", str(2 // executors), "--work-dir", str(work / f"executor-{i}")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            self.procs.append(ex)
            wait_port(flight, ex, "executor")
        time.sleep(1.0)

    def url(self):
        return f"ballista://127.0.0.1:{self.port}"

    def stop(self):
        for p in self.procs:
            p.kill()
            p.wait()


def run_sluice(binary, work, distributed, engine):
    """A fresh home each time, so nothing is cached; returns (train seconds, model)."""
    d = Path(tempfile.mkdtemp(dir=work))
    (d / "data.parquet").symlink_to(work / "data.parquet")
    (d / "pipeline.yaml").write_text(spec(distributed))
    out = subprocess.run(
        [binary, "--home", str(d / "home"), "run", "pipeline.yaml", "--json", "--engine", engine],
        cwd=d, check=True, capture_output=True, text=True,
    )
    events = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    done = next(e for e in events if e.get("event") == "step_finished" and e["step"] == "train")
    model_hash = dict(done["outputs"])["model"]
    model = json.loads((d / "home/artifacts/objects" / model_hash[:2] / f"{model_hash}.json").read_text())
    return done["elapsed_ms"] / 1000, model


def coefficients(model):
    def find(v):
        if isinstance(v, dict):
            if "weights" in v:
                return v
            for x in v.values():
                r = find(x)
                if r is not None:
                    return r
        return None

    m = find(model)
    return m["weights"] + [m["intercept"]]


def sluice_log_loss(model, path):
    """Training log loss of a sluice model, scored here from its transforms and weights."""
    import numpy as np
    import pyarrow.parquet as pq

    t = pq.read_table(path).to_pandas()
    cols = []
    for tr in model["transforms"]:
        if tr["type"] == "standardize":
            v = t[tr["column"]].to_numpy(dtype=float)
            cols.append((np.nan_to_num(v - tr["mean"], nan=0.0)) / tr["scale"])
        else:
            for c in tr["categories"]:
                cols.append((t[tr["column"]] == c).to_numpy(dtype=float))
    x = np.column_stack(cols)
    c = np.array(coefficients(model))
    z = x @ c[:-1] + c[-1]
    y = t["label"].to_numpy(dtype=float)
    return float(np.mean(np.logaddexp(0, z) - y * z))


def run_spark(path, runs):
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.evaluation import BinaryClassificationEvaluator  # noqa: F401
    from pyspark.ml.feature import OneHotEncoder, StringIndexer, VectorAssembler
    from pyspark.sql import SparkSession, functions as F

    spark = (
        SparkSession.builder.master("local[2]").appName("sluice-bench")
        .config("spark.driver.memory", "6g").config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "2").getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")

    def fit(df):
        stages = [
            StringIndexer(inputCol="cat", outputCol="cat_i"),
            OneHotEncoder(inputCol="cat_i", outputCol="cat_v", dropLast=False),
            VectorAssembler(inputCols=[f"x{j}" for j in range(8)] + ["cat_v"], outputCol="features"),
            LogisticRegression(featuresCol="features", labelCol="y", regParam=L2, elasticNetParam=0.0,
                               maxIter=100, tol=1e-8),
        ]
        return Pipeline(stages=stages).fit(df)

    def load():
        return spark.read.parquet(str(path)).withColumn("y", F.col("label").cast("double"))

    fit(load().limit(20000))  # warm-up: JIT and class loading
    times, model = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        model = fit(load())
        times.append(time.perf_counter() - t0)
    summary = model.stages[-1].summary
    # Spark reports the objective's history; compute the plain log loss from its predictions.
    pred = model.transform(load()).select("y", "probability").toPandas()
    import numpy as np

    p = np.clip(np.array([v[1] for v in pred["probability"]]), 1e-15, 1 - 1e-15)
    y = pred["y"].to_numpy()
    loss = float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    iters = summary.totalIterations
    spark.stop()
    return times, loss, iters


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--bin")
    ap.add_argument("--no-spark", action="store_true")
    args = ap.parse_args()
    binary = sluice_bin(args.bin)
    work = Path(tempfile.mkdtemp(prefix="sluice-train-bench-"))
    data = work / "data.parquet"
    generate(data, args.rows)
    print(f"{args.rows:,} rows, 8 numeric + 1 text (40 categories) features; binary {binary}; medians of {args.runs}")

    results = {}
    models = {}

    def bench(name, distributed, engine):
        times = []
        for _ in range(args.runs):
            t, model = run_sluice(binary, work, distributed, engine)
            times.append(t)
        results[name] = times
        models[name] = model
        print(f"  {name:<34} {statistics.median(times):7.2f} s   (runs: {', '.join(f'{t:.2f}' for t in times)})", flush=True)

    bench("sluice in-process", False, "local")
    bench("sluice distributed, local engine", True, "local")
    for n in (1, 2):
        cluster = Cluster(binary, n, work)
        try:
            bench(f"sluice distributed, {n} executor(s)", True, cluster.url())
        finally:
            cluster.stop()

    base = coefficients(models["sluice in-process"])
    for name, m in models.items():
        c = coefficients(m)
        diff = max(abs(a - b) for a, b in zip(c, base))
        print(f"  {name:<34} max |coef - in-process| = {diff:.1e}")
    loss = sluice_log_loss(models["sluice in-process"], data)
    print(f"  sluice training log loss {loss:.6f}")

    if not args.no_spark:
        try:
            times, spark_loss, iters = run_spark(data, args.runs)
        except ImportError as e:
            print(f"Spark skipped ({e}); pip install pyspark")
        else:
            results["Spark MLlib local[2]"] = times
            print(f"  {'Spark MLlib local[2]':<34} {statistics.median(times):7.2f} s   (runs: {', '.join(f'{t:.2f}' for t in times)}); "
                  f"{iters} L-BFGS iterations, training log loss {spark_loss:.6f}")

    print("\nratios (median train time / sluice in-process):")
    ref = statistics.median(results["sluice in-process"])
    for name, times in results.items():
        print(f"  {name:<34} {statistics.median(times) / ref:6.2f}x")
    if "Spark MLlib local[2]" in results:
        spark = statistics.median(results["Spark MLlib local[2]"])
        for name in [n for n in results if n.startswith("sluice distributed")]:
            print(f"  Spark / {name:<26} {spark / statistics.median(results[name]):6.2f}x")


if __name__ == "__main__":
    main()
