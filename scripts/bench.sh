#!/usr/bin/env bash
# usage: scripts/bench.sh [--smoke]
#
# mxsurvey's performance benchmark (`make bench`): lab, scanner, analyzer and
# the bare reference loops (bench/tlsloop, bench/dnsloop) as separate
# processes, each one's CPU and memory measured on its own, latency off and
# on; figures are medians of BENCH_RUNS runs; then the analyzer on a synthetic
# real-like scan of 1,000,000 probe rows (bench/synthscan, written once into
# out/bench/synth and reused), on one core and on every core. Writes BENCHMARKS.md from every
# size in out/bench/results (so a size run by hand, e.g. BENCH_SIZES=1000000
# BENCH_RUNS=1, is added to the figures already there). Last, the polite tail
# (bench/harness/polite.go, docs/scheduling.md): one 100,000-domain lab scan
# with default politeness and 20-200 ms latency against its polite lower
# bound (15-20 min; --smoke: 1,000 domains, 50 ms interval).
#
#   BENCH_SIZES    lab sizes in domains (default "10000 100000")
#   BENCH_RUNS     runs per size (default 3)
#   BENCH_LATENCY  lab latency of the latency-on runs (default 50ms-200ms)
#   BENCH_OUT      scratch and results directory (default out/bench)
#
# --smoke: 1,000 domains, 1 run, every step once (lab latency 5ms-20ms); results and report go to a
# temporary directory (never BENCHMARKS.md); exits non-zero if any step fails.
# CI runs it so the harness never rots.
set -euo pipefail
cd "$(dirname "$0")/.."
smoke=0
case "${1:-}" in
  --smoke) smoke=1 ;;
  "") ;;
  *) echo "usage: scripts/bench.sh [--smoke]" >&2; exit 2 ;;
esac
GO=${GO:-go}
# A private copy of the binary: others rebuild bin/mxsurvey while a long
# benchmark runs, and every process of one benchmark must be the same build.
mkdir -p bin/bench
"$GO" build -o bin/bench/mxsurvey ./cmd/mxsurvey
for t in harness tlsloop dnsloop; do
  "$GO" build -o "bin/bench/$t" "./bench/$t"
done
# The same command with runtime/pprof around it (cmd/mxsurvey/profiled.go).
"$GO" build -tags profiled -o bin/bench/profiled ./cmd/mxsurvey
ulimit -n 20000 2>/dev/null || true
if [ "$smoke" = 1 ]; then
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/mxsurvey-bench-smoke.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  bin/bench/harness -bin bin/bench/mxsurvey -sizes 1000 -runs 1 -smoke -analyze-rows 10000 -latency 5ms-20ms \
    -work "$tmp/work" -results "$tmp/results" -report "$tmp/BENCHMARKS.md" \
    -commands "scripts/bench.sh --smoke"
  grep -q '^## Targets' "$tmp/BENCHMARKS.md"
  echo "bench smoke: ok (report was $tmp/BENCHMARKS.md)"
  exit 0
fi
out=${BENCH_OUT:-out/bench}
sizes=${BENCH_SIZES:-10000 100000}
runs=${BENCH_RUNS:-3}
bin/bench/harness -bin bin/bench/mxsurvey -sizes "$sizes" -runs "$runs" -latency "${BENCH_LATENCY:-50ms-200ms}" \
  -work "$out/work" -results "$out/results" -report BENCHMARKS.md \
  -commands "BENCH_SIZES=\"$sizes\" BENCH_RUNS=$runs scripts/bench.sh   # or: make bench"
