#!/usr/bin/env bash
# usage: scripts/labscan.sh DOMAINS OUTDIR [extra scan flags...]
# Starts the lab (DOMAINS domains, seed 1) on free loopback ports, scans it,
# analyzes the scan against the lab's CA and stops the lab. Leaves
# OUTDIR/lab (domains, CA, truth), OUTDIR/scan (the dataset) and
# OUTDIR/report (summary.json, report.md/html, exports).
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:?usage: labscan.sh DOMAINS OUTDIR [scan flags]}
out=${2:?usage: labscan.sh DOMAINS OUTDIR [scan flags]}
shift 2
bin=${MXSURVEY:-bin/mxsurvey}
[ -x "$bin" ] || go build -o "$bin" ./cmd/mxsurvey
rm -rf "$out"
mkdir -p "$out"
"$bin" lab -domains "$n" -seed "${LAB_SEED:-1}" -dns 127.0.0.1:0 -smtp-port 0 -mta-sts-port 0 -latency "${LAB_LATENCY:-0}" \
  -out "$out/lab" ${LAB_FLAGS:-} >"$out/lab.log" 2>&1 &
labpid=$!
trap 'kill $labpid 2>/dev/null || true; wait $labpid 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
  [ -s "$out/lab/lab.json" ] && break
  kill -0 $labpid 2>/dev/null || { cat "$out/lab.log" >&2; echo "labscan: the lab did not start" >&2; exit 1; }
  sleep 0.1
done
[ -s "$out/lab/lab.json" ] || { echo "labscan: lab.json not written within 60s" >&2; exit 1; }
dns=$(sed -n 's/.*"dns": *"\([^"]*\)".*/\1/p' "$out/lab/lab.json" | head -1)
port=$(sed -n 's/.*"smtp_port": *\([0-9]*\).*/\1/p' "$out/lab/lab.json" | head -1)
stsport=$(sed -n 's/.*"mta_sts_port": *\([0-9]*\).*/\1/p' "$out/lab/lab.json" | head -1)
# The lab lives on loopback (and ::1 for its connection-refused case), which
# a real scan never contacts: allow exactly those ranges.
"$bin" scan -resolver "$dns" -port "$port" -mta-sts-port "$stsport" -allow 127.0.0.0/8 -allow ::1/128 -ipv6 \
  -ehlo-name scanner.mxsurvey.test -rate 0 -dns-rate 0 -ip-interval 0 -timeout 10s -step-timeout 5s \
  -o "$out/scan" "$@" "$out/lab/domains.csv"
"$bin" analyze -roots "$out/lab/ca.pem" -o "$out/report" "$out/scan"
