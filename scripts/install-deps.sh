#!/usr/bin/env bash
# Installs what `make test` needs beyond Go: Debian's Jupyter stack for the
# notebook, Chromium (and DejaVu, the font the report's chart layout is
# measured against) for the report's browser test, real mail, DNS and web
# servers and DNSSEC tools for realservers/, and DuckDB (npm) for the independent cross-check of the
# Parquet files. Idempotent; run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "install-deps: run as root (sudo bash scripts/install-deps.sh)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
need=()
for pkg in python3-pandas python3-matplotlib jupyter-nbconvert python3-nbclient python3-ipykernel chromium fonts-dejavu-core; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  [ -n "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v lock)" ] || apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null || { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; }
fi
bash realservers/install.sh
bash scripts/duckdb/install.sh
