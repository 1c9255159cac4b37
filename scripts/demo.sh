#!/usr/bin/env bash
# usage: scripts/demo.sh [DOMAINS] [OUTDIR]  (make demo)
# The whole product in one command: start the lab, scan it, analyze the scan,
# print the headline table and where the report is, stop the lab.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-2000}
out=${2:-out/demo}
start=$(date +%s)
scripts/labscan.sh "$n" "$out"
echo
sed -n '/^## Which name/,/^## Hosts/p' "$out/report/report.md" | sed '$d'
echo "Lab ground truth: $out/lab/truth-hosts.jsonl, $out/lab/truth-domains.jsonl, $out/lab/truth-tlsa.jsonl"
echo "Dataset:          $out/scan (docs/schema.md)"
echo "Report:           $out/report/report.html  (also report.md, summary.json, hosts.csv, domains.csv)"
echo "demo: done in $(( $(date +%s) - start ))s"
