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
#   BENCH_FLIGHT_LATENCY  lab latency of the flight run, 10,000 probes in flight (default 3s-6s)
#   BENCH_OUT      scratch and results directory (default out/bench)
#   BENCH_CLUSTER_DOMAINS  lab size of the scan over 1, 2 and 4 worker processes (default 20000)
#   BENCH_CLUSTER  0: skip the scan over worker processes
#   BENCH_FIELD_DOMAINS  domains of the proving ground, the side-by-side phase (default 20000)
#   BENCH_PHASES   phases to run (default: all; see bench/harness -h)
#   BENCH_MILLION  1: after the run above, issue 14's end-to-end target: 1,000,000 lab domains, latency
#                  off, one run (scan, x25519 scan, DNS-only scan, the reference loops, the analyzer; no
#                  profile, no rate check; ~30-40 min on 2 cores); "only": that run alone. Its size-1000000.json
#                  joins the other results, and the targets table reads the 1,000,000-domain figures from it.
#
# --smoke: 1,000 domains, 1 run, every step once (lab latency 5ms-20ms), the side-by-side phase at
# 1,000 domains (zgrab2 and zdns built meanwhile, if ../shared is there); results and report go to a
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
# The field's tools (zgrab2, zdns) from ../shared/anchors, built once and
# kept in out/anchors/bin (the first build takes ~1.5 min on 2 cores). The
# build's Go caches stay outside the repository, where `go vet ./...` does
# not look. Without them the side-by-side phase measures mxsurvey alone and
# the report says why.
anchors=(-no-anchors "../shared/anchors was not found")
build_anchors() {
  mkdir -p out/anchors/bin
  if [ -x out/anchors/bin/zgrab2 ] && [ -x out/anchors/bin/zdns ]; then
    echo ok >out/anchors/build.status
    return
  fi
  local tmp="${TMPDIR:-/tmp}/mxsurvey-anchors/bin"
  if bash ../shared/anchors/build.sh "$tmp" >out/anchors/build.out 2>&1 &&
    cp "$tmp/zgrab2" "$tmp/zdns" out/anchors/bin/; then
    echo ok >out/anchors/build.status
  else
    echo "failed (out/anchors/build.out)" >out/anchors/build.status
  fi
}
anchors_result() { # after build_anchors: set anchors, say what happened
  if [ "$(cat out/anchors/build.status 2>/dev/null)" = ok ]; then
    anchors=(-anchors out/anchors/bin)
  else
    echo "bench: building zgrab2 and zdns failed (out/anchors/build.out): they are not measured" >&2
    anchors=(-no-anchors "building them from ../shared/anchors failed")
  fi
}
have_anchors=0
if [ -f ../shared/anchors/build.sh ]; then
  have_anchors=1
else
  echo "bench: ../shared/anchors not found: zgrab2 and zdns are not measured" >&2
fi
if [ "$smoke" = 1 ]; then
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/mxsurvey-bench-smoke.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  # The anchors build (cold in CI) overlaps the size phases instead of
  # adding its minute and a half to them.
  builder=
  if [ "$have_anchors" = 1 ]; then
    rm -f out/anchors/build.status
    build_anchors &
    builder=$!
  fi
  smoke_args=(-bin bin/bench/mxsurvey -sizes 1000 -runs 1 -smoke -analyze-rows 10000 -latency 5ms-20ms -flight-latency 5ms-20ms -field-domains 1000
    -work "$tmp/work" -results "$tmp/results" -report "$tmp/BENCHMARKS.md" -commands "scripts/bench.sh --smoke")
  bin/bench/harness "${smoke_args[@]}" -phases off,on,flight,synth
  if [ -n "$builder" ]; then
    wait "$builder"
    anchors_result
  fi
  bin/bench/harness "${smoke_args[@]}" -phases field "${anchors[@]}"
  grep -q '^## Targets' "$tmp/BENCHMARKS.md"
  grep -q '^## Side by side' "$tmp/BENCHMARKS.md"
  bin/bench/cluster -domains 300 -workers "1 2" -runs 1 -latency 5ms -work "$tmp/cluster" \
    -results "$tmp/results/cluster.json" -report "$tmp/cluster.md"
  grep -q '^| 2 |' "$tmp/cluster.md"
  echo "bench smoke: ok (report was $tmp/BENCHMARKS.md, $tmp/cluster.md)"
  exit 0
fi
if [ "$have_anchors" = 1 ]; then
  build_anchors
  anchors_result
fi
out=${BENCH_OUT:-out/bench}
sizes=${BENCH_SIZES:-10000 100000}
runs=${BENCH_RUNS:-3}
if [ "${BENCH_MILLION:-0}" != only ]; then
  bin/bench/harness -bin bin/bench/mxsurvey -sizes "$sizes" -runs "$runs" -latency "${BENCH_LATENCY:-50ms-200ms}" \
    -flight-latency "${BENCH_FLIGHT_LATENCY:-3s-6s}" \
    -field-domains "${BENCH_FIELD_DOMAINS:-20000}" "${anchors[@]}" ${BENCH_PHASES:+-phases "$BENCH_PHASES"} \
    -work "$out/work" -results "$out/results" -report BENCHMARKS.md \
    -commands "BENCH_SIZES=\"$sizes\" BENCH_RUNS=$runs scripts/bench.sh   # or: make bench"
fi
if [ "${BENCH_MILLION:-0}" != 0 ]; then
  bin/bench/harness -bin bin/bench/mxsurvey -sizes 1000000 -runs 1 -phases off -profile-size 0 -rate-size 0 -analyze-rows 0 \
    -work "$out/work" -results "$out/results" -report BENCHMARKS.md \
    -commands "BENCH_MILLION=${BENCH_MILLION} scripts/bench.sh"
fi
if [ "${BENCH_MILLION:-0}" != only ] && [ "${BENCH_CLUSTER:-1}" != 0 ]; then
  # The scan over worker processes (bench/cluster, docs/distributed.md): its
  # section is appended to the report.
  bin/bench/cluster -domains "${BENCH_CLUSTER_DOMAINS:-20000}" -workers "1 2 4" -runs "$runs" -latency 50ms \
    -work "$out/cluster" -results "$out/results/cluster.json" -report "$out/cluster.md" \
    -commands "BENCH_CLUSTER_DOMAINS=${BENCH_CLUSTER_DOMAINS:-20000} BENCH_RUNS=$runs scripts/bench.sh"
  { echo; cat "$out/cluster.md"; } >> BENCHMARKS.md
fi
