#!/usr/bin/env python3
"""Runner benchmarks: whole-process wall time of sluice, side by side with DVC.

1. Fully cached re-run of the quickstart (examples/adult): goal < 100 ms.
2. A 200-step chain of no-op steps: per-step overhead, cold and fully cached.
   sluice: `SELECT * FROM prev` SQL steps over a 10-row table (each writes a Parquet artifact).
   DVC:    200 `cp` stages (`dvc repro`), the cheapest possible stage command.

Usage:  python3 bench/runner.py [--bin PATH] [--repeat N] [--no-dvc]
The sluice binary defaults to target/release/sluice (built with `cargo build --release --bin sluice`
if missing). Prints medians and the ratio DVC / sluice.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed(cmd, cwd, env=None):
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def median_of(cmd, cwd, repeat, env=None):
    return statistics.median(timed(cmd, cwd, env) for _ in range(repeat))


def sluice_bin(arg):
    if arg:
        return Path(arg).resolve()
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    path = target / "release" / "sluice"
    if not path.exists():
        subprocess.run(["cargo", "build", "--release", "--bin", "sluice"], cwd=ROOT, check=True)
    return path


def chain_spec(n):
    lines = ["name: chain", "sources:", "  s0: {path: data.csv, format: csv}", "steps:"]
    for i in range(1, n + 1):
        lines.append(f"  s{i}: {{kind: sql, inputs: [s{i-1}], query: 'SELECT * FROM s{i-1}'}}")
    return "\n".join(lines) + "\n"


def dvc_chain(d, n):
    subprocess.run(["git", "init", "-q"], cwd=d, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=d, check=True)
    stages = ["stages:"]
    for i in range(1, n + 1):
        prev = "data.csv" if i == 1 else f"out{i-1}.csv"
        stages += [f"  s{i}:", f"    cmd: cp {prev} out{i}.csv", f"    deps: [{prev}]", f"    outs: [out{i}.csv]"]
    (d / "dvc.yaml").write_text("\n".join(stages) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin")
    ap.add_argument("--repeat", type=int, default=11)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--no-dvc", action="store_true")
    args = ap.parse_args()
    sluice = str(sluice_bin(args.bin))
    has_dvc = not args.no_dvc and subprocess.run([sys.executable, "-m", "dvc", "--version"], capture_output=True).returncode == 0
    print(f"sluice binary: {sluice}")
    rows = []

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        home = tmp / "home"
        shutil.copytree(ROOT / "examples" / "adult", tmp / "adult")
        spec = str(tmp / "adult" / "pipeline.yaml")
        cold = timed([sluice, "--home", str(home), "run", spec], tmp)
        cached = median_of([sluice, "--home", str(home), "run", spec], tmp, args.repeat)
        rows.append(("quickstart, cold run (6 steps)", cold, None))
        rows.append((f"quickstart, fully cached re-run (median of {args.repeat})", cached, None))

        n = args.steps
        chain = tmp / "chain"
        chain.mkdir()
        (chain / "data.csv").write_text("a,b\n" + "".join(f"{i},{i * 2}\n" for i in range(10)))
        (chain / "pipeline.yaml").write_text(chain_spec(n))
        chome = tmp / "chome"
        s_cold = timed([sluice, "--home", str(chome), "run", "pipeline.yaml"], chain)
        s_cached = median_of([sluice, "--home", str(chome), "run", "pipeline.yaml"], chain, max(3, args.repeat // 2))
        d_cold = d_cached = None
        if has_dvc:
            dchain = tmp / "dvc"
            dchain.mkdir()
            shutil.copy(chain / "data.csv", dchain / "data.csv")
            dvc_chain(dchain, n)
            d_cold = timed([sys.executable, "-m", "dvc", "repro", "-q"], dchain)
            d_cached = median_of([sys.executable, "-m", "dvc", "repro", "-q"], dchain, 3)
        rows.append((f"{n}-step chain, cold: per step", s_cold / n, d_cold / n if d_cold else None))
        rows.append((f"{n}-step chain, fully cached: whole run", s_cached, d_cached))

    print(f"\n{'case':58} {'sluice':>10} {'dvc':>10} {'dvc/sluice':>11}")
    for name, s, d in rows:
        ratio = f"{d / s:10.1f}x" if d else "          -"
        dv = f"{d * 1000:8.1f}ms" if d else "         -"
        print(f"{name:58} {s * 1000:8.1f}ms {dv} {ratio}")


if __name__ == "__main__":
    main()
