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
# BENCH_RUNS=1, is added to the figures already there).
#
#   BENCH_SIZES    lab sizes in domains (default "10000 100000")
#   BENCH_RUNS     runs per size (default 3)
#   BENCH_LATENCY  lab latency of the latency-on runs (default 50ms-200ms)
#   BENCH_OUT      scratch and results directory (default out/bench)
#   BENCH_CLUSTER_DOMAINS  lab size of the scan over 1, 2 and 4 worker processes (default 20000)
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
for t in harness tlsloop dnsloop cluster; do
  "$GO" build -o "bin/bench/$t" "./bench/$t"
done
"$GO" build -o bin/bench/nats-server github.com/nats-io/nats-server/v2
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
  bin/bench/cluster -domains 300 -workers "1 2" -runs 1 -latency 5ms -work "$tmp/cluster" \
    -results "$tmp/results/cluster.json" -report "$tmp/cluster.md"
  grep -q '^| 2 |' "$tmp/cluster.md"
  echo "bench smoke: ok (report was $tmp/BENCHMARKS.md, $tmp/cluster.md)"
  exit 0
fi
out=${BENCH_OUT:-out/bench}
sizes=${BENCH_SIZES:-10000 100000}
runs=${BENCH_RUNS:-3}
bin/bench/harness -bin bin/bench/mxsurvey -sizes "$sizes" -runs "$runs" -latency "${BENCH_LATENCY:-50ms-200ms}" \
  -work "$out/work" -results "$out/results" -report BENCHMARKS.md \
  -commands "BENCH_SIZES=\"$sizes\" BENCH_RUNS=$runs scripts/bench.sh   # or: make bench"
# The scan over worker processes (bench/cluster, docs/distributed.md): its
# section is appended to the report.
bin/bench/cluster -domains "${BENCH_CLUSTER_DOMAINS:-20000}" -workers "1 2 4" -runs "$runs" -latency 50ms \
  -work "$out/cluster" -results "$out/results/cluster.json" -report "$out/cluster.md" \
  -commands "BENCH_CLUSTER_DOMAINS=${BENCH_CLUSTER_DOMAINS:-20000} BENCH_RUNS=$runs scripts/bench.sh"
{ echo; cat "$out/cluster.md"; } >> BENCHMARKS.md
