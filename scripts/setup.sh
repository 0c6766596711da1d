#!/usr/bin/env bash
# Installs what building and testing sluice needs beyond a Rust toolchain. Idempotent.
# Today that is nothing: the embedded stores (SQLite, bundled) and DataFusion build from crates.
# Later issues add services (PostgreSQL, an S3-compatible server) here, started if down.
set -euo pipefail
command -v cargo >/dev/null || { echo "cargo not found: install Rust (https://rustup.rs)" >&2; exit 1; }
echo "rust: $(rustc --version)"
