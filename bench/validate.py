#!/usr/bin/env python3
"""Data validation + profiling benchmark: sluice's validate step vs pandas and Polars, same data,
same checks, same run, each tool in its own process (wall time and peak memory).

The job, on the 3M-row flights data (../shared/data/flights-3m, or fetched from the npm
package vega-datasets@3.2.1) and on 10M rows made by stacking it (dates shifted by a year per
copy): read Parquet; check delay and distance ranges, no missing values, origin/destination
codes against ^[A-Z]{3}$, and the row check origin <> destination; write the passing rows to
Parquet and the failing ones, with the names of the checks each failed, to another Parquet file;
profile the passing rows (count, nulls, min, max, mean, std, 7 quantiles, distinct count, top 20
values of text columns). sluice also ingests the file as a content-addressed artifact first
(its `source` step), which the peers do not do; its times include that.

Needs: pip install pandas pyarrow polars (scripts/bench-setup.sh) and
  cargo build --release -p sluice-cli
Usage: python3 bench/validate.py [--rows 3m,10m] [--runs 3] [--bin target/release/sluice]
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
DATA = ROOT / "bench" / ".data"
SHARED = ROOT.parent / "shared" / "data" / "flights-3m" / "flights-3m.parquet"
QUANTILES = [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99]

CHECKS = """    policy: quarantine
    columns:
      date: {nullable: false}
      delay: {nullable: false, min: -1200, max: 1500}
      distance: {nullable: false, min: 30, max: 5000}
      origin: {nullable: false, regex: '^[A-Z]{3}$'}
      destination: {nullable: false, regex: '^[A-Z]{3}$'}
    rows:
      - {name: not_a_loop, check: "origin <> destination"}
"""


def flights_3m():
    if SHARED.exists():
        return SHARED
    path = DATA / "flights-3m.parquet"
    if not path.exists():
        DATA.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(["npm", "pack", "vega-datasets@3.2.1"], cwd=tmp, check=True, capture_output=True)
            subprocess.run(["tar", "xzf", "vega-datasets-3.2.1.tgz", "package/data/flights-3m.parquet"], cwd=tmp, check=True)
            shutil.move(Path(tmp) / "package/data/flights-3m.parquet", path)
    return path


def flights_10m():
    path = DATA / "flights-10m.parquet"
    if path.exists():
        return path
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    base = pq.read_table(flights_3m())
    parts = []
    for k in range(4):
        shifted = pc.add(base["date"].cast(pa.timestamp("us")), pa.scalar(k * 365 * 86_400_000_000, pa.duration("us")))
        parts.append(base.set_column(0, "date", shifted))
    table = pa.concat_tables(parts).slice(0, 10_000_000)
    DATA.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=1_000_000)
    return path


def profile_pandas(df):
    import pandas as pd

    out = {}
    for c in df.columns:
        s = df[c]
        entry = {"count": int(s.count()), "nulls": int(s.isna().sum()), "distinct": int(s.nunique())}
        if pd.api.types.is_numeric_dtype(s) or pd.api.types.is_datetime64_any_dtype(s):
            q = s.quantile(QUANTILES)
            entry.update(min=str(s.min()), max=str(s.max()), quantiles=[str(v) for v in q])
            if pd.api.types.is_numeric_dtype(s):
                entry.update(mean=float(s.mean()), std=float(s.std()))
        else:
            entry["top"] = s.value_counts().head(20).to_dict()
        out[c] = entry
    return out


def run_pandas(src, out):
    import numpy as np
    import pandas as pd

    df = pd.read_parquet(src)
    text = r"^[A-Z]{3}$"
    fails = {
        "date.nullable": df["date"].isna(),
        "delay.nullable": df["delay"].isna(),
        "delay.min": df["delay"] < -1200,
        "delay.max": df["delay"] > 1500,
        "distance.nullable": df["distance"].isna(),
        "distance.min": df["distance"] < 30,
        "distance.max": df["distance"] > 5000,
        "origin.nullable": df["origin"].isna(),
        "origin.regex": ~df["origin"].str.match(text, na=True),
        "destination.nullable": df["destination"].isna(),
        "destination.regex": ~df["destination"].str.match(text, na=True),
        "not_a_loop": ~(df["origin"] != df["destination"]),
    }
    bad = np.zeros(len(df), dtype=bool)
    for m in fails.values():
        bad |= m.to_numpy()
    quarantined = df[bad].copy()
    reasons = pd.Series([""] * len(quarantined), index=quarantined.index)
    for name, m in fails.items():
        hit = m[bad]
        reasons[hit] = np.where(reasons[hit] == "", name, reasons[hit] + ", " + name)
    quarantined["_failed_checks"] = reasons
    good = df[~bad]
    good.to_parquet(out / "good.parquet")
    quarantined.to_parquet(out / "bad.parquet")
    profile = profile_pandas(good)
    return len(good), len(quarantined), profile


def run_polars(src, out):
    import polars as pl

    df = pl.read_parquet(src)
    text = r"^[A-Z]{3}$"
    checks = {
        "date.nullable": pl.col("date").is_null(),
        "delay.nullable": pl.col("delay").is_null(),
        "delay.min": (pl.col("delay") < -1200).fill_null(False),
        "delay.max": (pl.col("delay") > 1500).fill_null(False),
        "distance.nullable": pl.col("distance").is_null(),
        "distance.min": (pl.col("distance") < 30).fill_null(False),
        "distance.max": (pl.col("distance") > 5000).fill_null(False),
        "origin.nullable": pl.col("origin").is_null(),
        "origin.regex": (~pl.col("origin").str.contains(text)).fill_null(False),
        "destination.nullable": pl.col("destination").is_null(),
        "destination.regex": (~pl.col("destination").str.contains(text)).fill_null(False),
        "not_a_loop": (pl.col("origin") == pl.col("destination")).fill_null(False),
    }
    flagged = df.with_columns([e.alias(f"__{n}") for n, e in checks.items()])
    any_bad = pl.any_horizontal([pl.col(f"__{n}") for n in checks])
    good = flagged.filter(~any_bad).select(df.columns)
    reason = pl.concat_str(
        [pl.when(pl.col(f"__{n}")).then(pl.lit(n)) for n in checks], separator=", ", ignore_nulls=True
    ).alias("_failed_checks")
    bad = flagged.filter(any_bad).select(df.columns + [reason])
    good.write_parquet(out / "good.parquet")
    bad.write_parquet(out / "bad.parquet")
    profile = {}
    for c in good.columns:
        s = good[c]
        entry = {"count": s.len() - s.null_count(), "nulls": s.null_count(), "distinct": s.n_unique()}
        if s.dtype.is_numeric() or s.dtype.is_temporal():
            entry.update(min=str(s.min()), max=str(s.max()), quantiles=[str(s.quantile(q, "nearest")) for q in QUANTILES])
            if s.dtype.is_numeric():
                entry.update(mean=s.mean(), std=s.std())
        else:
            entry["top"] = s.value_counts(sort=True).head(20).rows()
        profile[c] = entry
    return good.height, bad.height, profile


def worker(tool, src, out):
    out = Path(out)
    if tool == "pandas":
        good, bad, _ = run_pandas(src, out)
    else:
        good, bad, _ = run_polars(src, out)
    print(json.dumps({"good": good, "bad": bad}))


def measure(cmd):
    """Run a command; return (wall seconds, peak RSS in MB, stdout)."""
    import time

    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    stdout = proc.stdout.read()
    stderr = proc.stderr.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{cmd} failed:\n{stderr}")
    return wall, usage.ru_maxrss / 1024, stdout


def compare(args, script, sluice_steps, peers, sluice_note):
    """Run sluice (a pipeline reading the data then `sluice_steps`) and each peer worker of
    `script` on every size in `args.rows`, `args.runs` times each, and print medians, peak
    memory and ratios to sluice."""
    sources = {"3m": flights_3m, "10m": flights_10m}
    DATA.mkdir(parents=True, exist_ok=True)
    for size in args.rows.split(","):
        src = sources[size]()
        results = {}
        for tool in ["sluice", *peers]:
            walls, peaks, note = [], [], ""
            for _ in range(args.runs):
                with tempfile.TemporaryDirectory(dir=DATA) as tmp:
                    out = Path(tmp)
                    if tool == "sluice":
                        spec = out / "pipeline.yaml"
                        spec.write_text(f"name: bench\nsources:\n  flights: {{path: '{src}'}}\nsteps:\n{sluice_steps}")
                        cmd = [args.bin, "--home", str(out / "home"), "run", str(spec), "--json"]
                    else:
                        cmd = [sys.executable, script, "--worker", tool, "--input", str(src), "--out", str(out)]
                    wall, peak, stdout = measure(cmd)
                    if tool == "sluice":
                        note = sluice_note([json.loads(line) for line in stdout.splitlines()])
                    else:
                        note = stdout.strip()
                    walls.append(wall)
                    peaks.append(peak)
            results[tool] = (statistics.median(walls), max(peaks), note)
        print(f"\n{size} rows ({src.name}), median of {args.runs} runs:")
        print(f"{'tool':<8} {'wall s':>8} {'peak MB':>9} {'vs sluice':>10}  result")
        base = results["sluice"][0]
        for tool, (wall, peak, note) in results.items():
            print(f"{tool:<8} {wall:>8.2f} {peak:>9.0f} {wall / base:>9.2f}x  {note}")


def arguments():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", default="3m,10m")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--bin", default=str(TARGET / "release" / "sluice"))
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--input", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    return ap.parse_args()


def main():
    args = arguments()
    if args.worker:
        worker(args.worker, args.input, args.out)
        return
    import pandas
    import polars

    print(f"pandas {pandas.__version__}, polars {polars.__version__}, sluice {args.bin}")
    steps = f"  check:\n    kind: validate\n    input: flights\n{CHECKS}"
    report = lambda events: next(e["text"] for e in events if e["event"] == "step_report").splitlines()[0]  # noqa: E731
    compare(args, __file__, steps, ["polars", "pandas"], report)


if __name__ == "__main__":
    main()
