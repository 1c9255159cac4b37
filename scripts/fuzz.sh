#!/usr/bin/env bash
# Runs every Go fuzz target in the module for $1 each: a count such as 30000x
# (or a duration such as 60s).
# go test -fuzz takes one target per run, so list them and loop.
set -euo pipefail
fuzztime=${1:-30000x}
cd "$(dirname "$0")/.."
status=0
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
    echo "fuzz: $pkg $target ($fuzztime)"
    if ! go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" -fuzzminimizetime 1s "$pkg" >/tmp/mxsurvey-fuzz.log 2>&1; then
      cat /tmp/mxsurvey-fuzz.log
      status=1
    fi
  done
done
exit $status
