#!/usr/bin/env bash
# Installs the peers the benchmarks in bench/ compare against (not needed to build or test):
#   pip: lightgbm xgboost scikit-learn pandas pyarrow (bench/gbdt.py), polars (bench/validate.py,
#        bench/features.py), dvc (bench/runner.py),
#        fastapi uvicorn (bench/serve.py), optuna psycopg2-binary (bench/tune.py), pyspark
#        (bench/train_cluster.py; runs on the machine's Java 17); apt: wrk (bench/serve.py);
#   a virtual environment bench/.venv-evidently with evidently and pandas<3 (bench/drift.py:
#        Evidently 0.7 does not import with pandas 3).
set -euo pipefail
python3 -m pip install --quiet lightgbm xgboost scikit-learn pandas pyarrow polars dvc fastapi uvicorn optuna psycopg2-binary pyspark
if ! command -v wrk >/dev/null; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq || true
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends wrk
fi
venv="$(dirname "$0")/../bench/.venv-evidently"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet "pandas<3" evidently pyarrow
python3 -c "import lightgbm, xgboost, sklearn; print('lightgbm', lightgbm.__version__, 'xgboost', xgboost.__version__, 'scikit-learn', sklearn.__version__)"
