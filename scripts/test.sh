#!/usr/bin/env bash
# The test command: installs what the tests need (scripts/setup.sh), then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo test --workspace "$@"
