#!/usr/bin/env python3
"""Drift benchmark: `sluice monitor drift` against a stored reference profile vs Evidently's
data-drift report, same data, same run, each in its own process (wall time and peak memory).

Data (generated once into bench/.data/, fixed seed): a reference of --reference-rows rows and a
current window of --rows rows, 20 features — 14 numeric (normal, log-normal, integer counts)
and 6 text (5 to 40 values) — where 4 numeric and 2 text columns drift in the current window.

sluice: the reference is profiled once beforehand (`sluice data profile --json`, as a validate
step stores it); the timed command reads the current Parquet file, profiles it in one pass and
compares it with the stored profile. Evidently (its `DataDriftPreset`, default tests per column
type and size) needs the reference data itself: the timed script reads both Parquet files with
pandas and runs the report. Both print which columns drifted.

Evidently does not import with pandas 3, so it runs from its own virtual environment, which
scripts/bench-setup.sh creates (bench/.venv-evidently: evidently, pandas<3, pyarrow).

Needs: cargo build --release -p sluice-cli
Usage: python3 bench/drift.py [--rows 10000000] [--reference-rows 1000000] [--runs 3]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
DATA = ROOT / "bench" / ".data"
VENV = ROOT / "bench" / ".venv-evidently" / "bin" / "python"

NUMERIC = 14
TEXT = 6


def generate(rows, seed, drift):
    """Write `rows` rows to a Parquet file; with `drift`, shift 4 numeric and 2 text columns."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = DATA / f"drift_{rows}_{'cur' if drift else 'ref'}.parquet"
    if path.exists():
        return path
    DATA.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    writer = None
    chunk = 1_000_000
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        cols = {}
        for j in range(NUMERIC):
            shift = 0.3 if drift and j < 4 else 0.0
            if j % 3 == 0:
                cols[f"n{j}"] = rng.normal(shift, 1.0 + j / 10, n)
            elif j % 3 == 1:
                cols[f"n{j}"] = rng.lognormal(shift, 0.5, n)
            else:
                cols[f"n{j}"] = rng.poisson(3 + j + (2 if shift else 0), n).astype(np.float64)
        for j in range(TEXT):
            k = 5 + 7 * j
            p = np.arange(1, k + 1, dtype=float) ** -1.0
            if drift and j < 2:
                p = p[::-1]
            p /= p.sum()
            values = np.array([f"v{j}_{i}" for i in range(k)])
            cols[f"t{j}"] = pa.array(values[rng.choice(k, n, p=p)]).dictionary_encode()
        table = pa.table(cols)
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    writer.close()
    return path


EVIDENTLY = r'''
import json, sys
import pandas as pd
from evidently import Report
from evidently.presets import DataDriftPreset
ref = pd.read_parquet(sys.argv[1]); cur = pd.read_parquet(sys.argv[2])
for c in ref.columns:
    if str(ref[c].dtype) == "category":
        ref[c] = ref[c].astype(str); cur[c] = cur[c].astype(str)
snapshot = Report([DataDriftPreset()]).run(reference_data=ref, current_data=cur)
drifted = []
for m in snapshot.dict()["metrics"]:
    cfg, value = m.get("config", {}), m.get("value")
    if cfg.get("type", "").endswith("ValueDrift") and isinstance(value, (int, float)):
        # p-value methods drift below the threshold, distances at or above it.
        below = "p_value" in str(cfg.get("method"))
        if (value < cfg["threshold"]) if below else (value >= cfg["threshold"]):
            drifted.append(cfg["column"])
print(json.dumps({"drifted": sorted(drifted)}))
'''


def timed(cmd):
    """Run a command; (wall seconds, peak RSS in MB, stdout). Peak memory from GNU time's %M
    when installed, else from the child's resource usage."""
    wrapper = ["/usr/bin/time", "-f", "%M"] if Path("/usr/bin/time").exists() else None
    if wrapper:
        start = time.perf_counter()
        proc = subprocess.run(wrapper + cmd, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"{cmd[:3]} failed:\n{proc.stderr[-3000:]}")
        peak = int(proc.stderr.strip().splitlines()[-1]) / 1024
        return wall, peak, proc.stdout
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    out = proc.stdout.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{cmd[:3]} failed:\n{proc.stderr.read()[-3000:]}")
    return wall, usage.ru_maxrss / 1024, out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--reference-rows", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--bin", default=str(TARGET / "release" / "sluice"))
    ap.add_argument("--skip-evidently", action="store_true")
    args = ap.parse_args()
    ref = generate(args.reference_rows, 1, False)
    cur = generate(args.rows, 2, True)
    with tempfile.TemporaryDirectory(dir=DATA) as tmp:
        profile = Path(tmp) / "reference.json"
        with open(profile, "w") as f:
            subprocess.run([args.bin, "data", "profile", str(ref), "--json"], check=True, stdout=f)
        tools = {"sluice": [args.bin, "monitor", "drift", "--reference", str(profile), "--current", str(cur), "--json"]}
        if not args.skip_evidently:
            if not VENV.exists():
                raise SystemExit(f"missing {VENV}: run scripts/bench-setup.sh")
            tools["Evidently"] = [str(VENV), "-c", EVIDENTLY, str(ref), str(cur)]
        results = {}
        for name, cmd in tools.items():
            walls, peaks = [], []
            for _ in range(args.runs):
                wall, peak, out = timed(cmd)
                walls.append(wall)
                peaks.append(peak)
            if name == "sluice":
                report = json.loads(out)
                drifted = sorted(c["column"] for c in report["columns"] if c["drifted"])
            else:
                drifted = json.loads(out.strip().splitlines()[-1])["drifted"]
            results[name] = (statistics.median(walls), max(peaks), drifted)
    print(f"\ndrift of {args.rows:,} current rows x {NUMERIC + TEXT} columns against a reference of "
          f"{args.reference_rows:,} rows (median of {args.runs} runs)")
    print(f"{'tool':<10} {'wall s':>8} {'peak MB':>9} {'wall / sluice':>14}  drifted columns")
    base = results["sluice"][0]
    for name, (wall, peak, drifted) in results.items():
        print(f"{name:<10} {wall:>8.2f} {peak:>9.0f} {wall / base:>13.1f}x  {', '.join(drifted)}")


if __name__ == "__main__":
    main()
