#!/usr/bin/env python3
"""Feature pipeline benchmark: sluice's `fit_transform` step vs pandas + scikit-learn
(ColumnTransformer) and Polars, same data, same job, same run, each in its own process (wall
time and peak memory).

The job, on flights-3m (3M rows) and on 10M rows made by stacking it (see bench/validate.py):
read Parquet; `delay`: impute the median, then standardize; `distance`: 10 quantile buckets;
`origin`: one-hot over its 20 most frequent airports (others: all zeros); keep `date` and
`destination`; write Parquet. sluice also ingests the file as a content-addressed artifact
first (its `source` step: a plain Parquet file is copied byte for byte), which the peers do not
do; its times include that.

Needs: pip install pandas pyarrow polars scikit-learn (scripts/bench-setup.sh) and
  cargo build --release -p sluice-cli
Usage: python3 bench/features.py [--rows 3m,10m] [--runs 3] [--bin target/release/sluice]
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from validate import arguments, compare  # noqa: E402

TRANSFORMS = """    transforms:
      - {op: impute, columns: [delay], strategy: median}
      - {op: standardize, columns: [delay]}
      - {op: bucketize, columns: [distance], quantiles: 10}
      - {op: onehot, columns: [origin], max_categories: 20}
"""


def run_sklearn(src, out):
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import make_pipeline
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import KBinsDiscretizer, OneHotEncoder, StandardScaler

    df = pd.read_parquet(src)
    ct = ColumnTransformer(
        [
            ("delay", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), ["delay"]),
            ("distance", KBinsDiscretizer(n_bins=10, encode="ordinal", strategy="quantile", subsample=None), ["distance"]),
            ("origin", OneHotEncoder(max_categories=21, handle_unknown="infrequent_if_exist", sparse_output=False), ["origin"]),
        ],
        remainder="passthrough",
        verbose_feature_names_out=False,
    )
    ct.set_output(transform="pandas")
    result = ct.fit_transform(df)
    result.to_parquet(out / "features.parquet")
    return result.shape


def run_polars(src, out):
    import polars as pl

    df = pl.read_parquet(src)
    median = df["delay"].median()
    delay = pl.col("delay").fill_null(median)
    filled = df["delay"].fill_null(median)
    mean, std = filled.mean(), filled.std(ddof=0)
    edges = sorted(set(df["distance"].quantile(i / 10, "linear") for i in range(1, 10)))
    top = df["origin"].value_counts(sort=True).head(20)["origin"].sort().to_list()
    bucket = pl.lit(0)
    for e in edges:
        bucket = bucket + (pl.col("distance") >= e).cast(pl.Int64)
    result = df.select(
        pl.col("date"),
        ((delay - mean) / std).alias("delay"),
        bucket.alias("distance"),
        *[(pl.col("origin") == c).cast(pl.Float64).alias(f"origin={c}") for c in top],
        pl.col("destination"),
    )
    result.write_parquet(out / "features.parquet")
    return result.shape


def worker(tool, src, out):
    out = Path(out)
    shape = run_sklearn(src, out) if tool == "sklearn" else run_polars(src, out)
    print(json.dumps({"rows": shape[0], "columns": shape[1]}))


def main():
    args = arguments()
    if args.worker:
        worker(args.worker, args.input, args.out)
        return
    import pandas
    import polars
    import sklearn

    print(f"pandas {pandas.__version__}, scikit-learn {sklearn.__version__}, polars {polars.__version__}, sluice {args.bin}")
    steps = f"  features:\n    kind: fit_transform\n    input: flights\n{TRANSFORMS}"
    timings = lambda events: ", ".join(  # noqa: E731
        f"{e['step']} {e['elapsed_ms']} ms" for e in events if e["event"] == "step_finished"
    )
    compare(args, __file__, steps, ["polars", "sklearn"], timings)


if __name__ == "__main__":
    main()
