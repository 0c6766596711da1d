#!/usr/bin/env python3
"""The feature pipeline on a Ballista cluster: sluice's local engine vs the same binary's
scheduler with 1 and 2 executors on this machine, side by side with PySpark in local mode on
the same job and the same cores.

A source that is one plain Parquet file is ingested by copying its bytes, on any engine;
`--read-source` names its columns instead, so that the source step reads and writes every row
(on a cluster: executors scan, rows come back to the client over Arrow Flight), as it does
for CSV or several files.

The job is bench/features.py's, on 50M rows made by stacking flights-3m 17 times (dates shifted
by a year per copy): read Parquet (sluice ingests it as a content-addressed artifact, its
`source` step); `delay`: impute the median, then standardize; `distance`: 10 quantile buckets;
`origin`: one-hot over its 20 most frequent airports; keep `date` and `destination`; write
Parquet. PySpark: Imputer(median), StandardScaler on the imputed delay, QuantileDiscretizer(10)
(Spark's approximate quantiles, relative error 0.001), one-hot of the 20 most frequent origins
as 0/1 columns, written as Parquet; local[2], 8 GB driver. Each run is a fresh process (sluice: a
fresh home, so nothing is cached); wall time of the whole process, so PySpark's includes its JVM
start (~3 s) and sluice's on a cluster includes connecting to the scheduler, not starting it.

On one 2-core machine a cluster cannot be faster: the point is what going through Ballista
costs (planning, shipping the plan, Arrow Flight back to the client) against the local engine,
and where sluice stands against Spark on the same cores.

Needs: pip install pyarrow pyspark (scripts/bench-setup.sh; Java 17) and a release sluice.
Usage: python3 bench/cluster.py [--rows 50m] [--runs 3] [--bin PATH] [--no-spark]
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from features import TRANSFORMS  # noqa: E402
from runner import sluice_bin  # noqa: E402
from train_cluster import Cluster  # noqa: E402
from validate import DATA, flights_3m, measure  # noqa: E402


def stacked(rows):
    path = DATA / f"flights-{rows // 1_000_000}m.parquet"
    if path.exists():
        return path
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    base = pq.read_table(flights_3m())
    DATA.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with pq.ParquetWriter(tmp, base.schema.set(0, pa.field("date", pa.timestamp("us")))) as w:
        written, k = 0, 0
        while written < rows:
            shift = pa.scalar(k * 365 * 86_400_000_000, pa.duration("us"))
            part = base.set_column(0, "date", pc.add(base["date"].cast(pa.timestamp("us")), shift))
            part = part.slice(0, rows - written)
            w.write_table(part, row_group_size=1_000_000)
            written += part.num_rows
            k += 1
    tmp.rename(path)
    return path


def spark_worker(src, out):
    import time
    import warnings

    warnings.filterwarnings("ignore")
    from pyspark.ml import Pipeline
    from pyspark.ml.feature import Imputer, QuantileDiscretizer, StandardScaler, VectorAssembler
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import SparkSession, functions as F

    spark = (
        SparkSession.builder.master("local[2]").appName("sluice-bench")
        .config("spark.driver.memory", "8g").config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false").config("spark.sql.shuffle.partitions", "2")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    t0 = time.perf_counter()
    df = spark.read.parquet(src).withColumn("delay", F.col("delay").cast("double"))
    pipeline = Pipeline(stages=[
        Imputer(inputCols=["delay"], outputCols=["delay_i"], strategy="median"),
        VectorAssembler(inputCols=["delay_i"], outputCol="delay_v"),
        StandardScaler(inputCol="delay_v", outputCol="delay_s", withMean=True, withStd=True),
        QuantileDiscretizer(inputCol="distance", outputCol="distance_b", numBuckets=10),
    ])
    model = pipeline.fit(df)
    top = [r["origin"] for r in df.groupBy("origin").count().orderBy(F.desc("count"), "origin").limit(20).collect()]
    out_df = model.transform(df).select(
        "date",
        vector_to_array("delay_s")[0].alias("delay"),
        F.col("distance_b").alias("distance"),
        *[(F.col("origin") == c).cast("double").alias(f"origin={c}") for c in sorted(top)],
        "destination",
    )
    out_df.write.mode("overwrite").parquet(str(Path(out) / "features.parquet"))
    print(f"{time.perf_counter() - t0:.1f} s after start-up")
    spark.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", default="50m")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--bin")
    ap.add_argument("--no-spark", action="store_true")
    ap.add_argument(
        "--read-source", action="store_true",
        help="name the source's columns, so its step reads and re-writes every row (through the "
        "executors on a cluster) instead of copying the one Parquet file, as a CSV or several files would",
    )
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--input", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        spark_worker(args.input, args.out)
        return
    binary = str(sluice_bin(args.bin))
    rows = int(args.rows.rstrip("mM")) * 1_000_000
    src = stacked(rows)
    print(f"{rows:,} rows ({src.name}, {src.stat().st_size / 2**20:.0f} MB); sluice {binary}; median of {args.runs} runs")
    columns = ", columns: [date, delay, distance, origin, destination]" if args.read_source else ""
    steps = f"  features:\n    kind: fit_transform\n    input: flights\n{TRANSFORMS}"
    results = {}

    def run(name, engine):
        walls, notes = [], []
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory(dir=DATA) as tmp:
                out = Path(tmp)
                spec = out / "pipeline.yaml"
                spec.write_text(f"name: bench\nsources:\n  flights: {{path: '{src}'{columns}}}\nsteps:\n{steps}")
                cmd = [binary, "--home", str(out / "home"), "run", str(spec), "--json", "--engine", engine]
                wall, peak, stdout = measure(cmd)
                events = [json.loads(line) for line in stdout.splitlines()]
                notes.append(", ".join(f"{e['step']} {e['elapsed_ms'] / 1000:.1f} s" for e in events if e["event"] == "step_finished"))
                walls.append(wall)
        results[name] = statistics.median(walls)
        print(f"  {name:<28} {results[name]:7.2f} s   runs {', '.join(f'{w:.1f}' for w in walls)}; last: {notes[-1]}", flush=True)

    run("sluice local engine", "local")
    for n in (1, 2):
        with tempfile.TemporaryDirectory(dir=DATA) as work:
            cluster = Cluster(binary, n, Path(work))
            try:
                run(f"sluice Ballista, {n} executor(s)", cluster.url())
            finally:
                cluster.stop()
    if not args.no_spark:
        walls = []
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory(dir=DATA) as tmp:
                wall, _, stdout = measure([sys.executable, __file__, "--worker", "spark", "--input", str(src), "--out", tmp])
                walls.append(wall)
        results["PySpark local[2]"] = statistics.median(walls)
        print(f"  {'PySpark local[2]':<28} {results['PySpark local[2]']:7.2f} s   runs {', '.join(f'{w:.1f}' for w in walls)}; last: {stdout.strip()}")

    base = results["sluice local engine"]
    print("\nratios:")
    for name, wall in results.items():
        print(f"  {name:<28} {wall / base:6.2f}x the local engine")
    if "PySpark local[2]" in results:
        for name in [n for n in results if n.startswith("sluice Ballista")]:
            print(f"  PySpark / {name:<18} {results['PySpark local[2]'] / results[name]:6.2f}x")


if __name__ == "__main__":
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    main()
