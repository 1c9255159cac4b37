#!/usr/bin/env bash
# usage: scripts/duckdb.sh [SCANDIR REPORTDIR]   (make duckdb)
# The independent cross-check: DuckDB (npm @duckdb/node-api) recounts the
# simple figures from SCANDIR's raw Parquet with plain SQL and compares them
# with REPORTDIR/summary.json (scripts/duckdb/crosscheck.mjs says which).
# Exits 1 on any mismatch. Without arguments, scans a 1000-domain lab into
# out/duckdb first.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)

if ! command -v node >/dev/null; then
  if [ "${CI:-}" = true ]; then
    echo "duckdb: node not installed (sudo bash scripts/install-deps.sh)" >&2
    exit 1
  fi
  echo "duckdb: skipped: node not installed (sudo bash scripts/install-deps.sh)"
  exit 0
fi

case $# in
  0)
    scripts/labscan.sh 1000 out/duckdb -quiet
    scan=out/duckdb/scan report=out/duckdb/report
    ;;
  2) scan=$1 report=$2 ;;
  *) echo "usage: scripts/duckdb.sh [SCANDIR REPORTDIR]" >&2; exit 2 ;;
esac
[ -f "$report/summary.json" ] || { echo "duckdb: $report/summary.json not found" >&2; exit 2; }
[ -d "$scan/probes" ] || [ -d "$scan/mx" ] || { echo "duckdb: $scan is not a scan directory (no probes/ or mx/)" >&2; exit 2; }

bash scripts/duckdb/install.sh
node scripts/duckdb/crosscheck.mjs "$scan" "$report/summary.json"
echo "duckdb: ok in $(( $(date +%s) - start ))s"
