#!/usr/bin/env bash
# usage: bash scripts/duckdb/install.sh
# Installs @duckdb/node-api (DuckDB with its Linux binary, from npm) into
# scripts/duckdb/node_modules for the cross-check (scripts/duckdb.sh), at the
# versions of the committed package-lock.json. Idempotent: does nothing when
# node_modules already holds exactly that lock and DuckDB loads.
# To upgrade: edit the version in package.json, run `npm install` here, check
# that package-lock.json lists all eight @duckdb/node-bindings-* platform
# packages (else `npm ci` refuses it, see README.md), commit both files.
set -euo pipefail
cd "$(dirname "$0")"
command -v npm >/dev/null || { echo "duckdb install: npm not found (apt-get install npm)" >&2; exit 1; }
stamp=node_modules/.mxsurvey-lock.sha256
loads() { node --input-type=module -e "import '@duckdb/node-api'" >/dev/null 2>&1; }
if [ ! -f package-lock.json ]; then
  npm install --no-audit --no-fund --loglevel=error
fi
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && loads; then
  exit 0
fi
npm ci --no-audit --no-fund --loglevel=error
loads || { echo "duckdb install: @duckdb/node-api installed but does not load" >&2; exit 1; }
echo "$want" >"$stamp"
echo "duckdb install: @duckdb/node-api $(node -p "require('./node_modules/@duckdb/node-api/package.json').version") in $(pwd)/node_modules"
