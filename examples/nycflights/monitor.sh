#!/usr/bin/env bash
# The monitoring example end to end, from the repository root (needs scripts/fetch-nycflights.sh
# and a built `sluice`; SLUICE overrides which binary, SLUICE_HOME_DIR the home, PORT the port,
# REPORT where the HTML report goes):
#   1. train on January-April and register nyc-delays@champion (train.yaml);
#   2. serve it, logging every prediction, and replay May-September through it (replay.py);
#   3. run the monitor pipeline (monitor.yaml): drift and AUC per window, alerts, and a
#      retraining run that the server picks up; then list the alerts and write the report.
set -euo pipefail
cd "$(dirname "$0")/../.."
SLUICE=${SLUICE:-target/release/sluice}
PORT=${PORT:-8088}
HOME_DIR=${SLUICE_HOME_DIR:-.sluice}
REPORT=${REPORT:-nyc-delays-report.html}
LOGS="$(mkdir -p "$HOME_DIR" && cd "$HOME_DIR" && pwd)/artifacts/logs/predictions/nyc-delays"
get() { python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).read().decode())' "$1"; }
"$SLUICE" --home "$HOME_DIR" run examples/nycflights/train.yaml
"$SLUICE" --home "$HOME_DIR" serve --listen "127.0.0.1:$PORT" --log-predictions 1 --log-flush-every 1 \
  --drift-every 5 nyc-delays@champion &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do get "http://127.0.0.1:$PORT/ping" >/dev/null 2>&1 && break; sleep 0.1; done
python3 examples/nycflights/replay.py "http://127.0.0.1:$PORT"
sleep 6   # the log flushes every second; the drift gauges update every 5 s
echo "--- live drift gauges (top PSI)"
get "http://127.0.0.1:$PORT/metrics" | grep '^sluice_drift_psi' | sort -t' ' -k2 -gr | head -5
"$SLUICE" --home "$HOME_DIR" run examples/nycflights/monitor.yaml --set "logs.path=$LOGS"
"$SLUICE" --home "$HOME_DIR" monitor alerts
"$SLUICE" --home "$HOME_DIR" monitor report --reference model:nyc-delays:1 \
  --current logs:nyc-delays --window 15000rows --truth examples/nycflights/data/truth.csv \
  --out "$REPORT"
sleep 3   # hot reload checks the registry every 2 s
echo "--- the server now answers with:"
get "http://127.0.0.1:$PORT/v2/models/nyc-delays" | python3 -c 'import json, sys; m = json.load(sys.stdin); print(m["name"], "version", m["versions"])'
