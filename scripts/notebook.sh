#!/usr/bin/env bash
# usage: scripts/notebook.sh [REPORTDIR]   (make notebook)
# Executes notebooks/mxsurvey.ipynb headless against REPORTDIR (the output of
# `mxsurvey analyze -o REPORTDIR`) and fails when a cell fails, e.g. when the
# notebook's recount of the headline table disagrees with summary.json.
# Without REPORTDIR, scans a 1000-domain lab into out/notebook first.
# Set NOTEBOOK_OUT=DIR to keep the executed notebook (DIR/executed.ipynb).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)

# Debian's Jupyter stack lives under /usr/bin/python3, which need not be the
# python3 first on PATH (pyenv, venvs).
py=/usr/bin/python3
if ! "$py" -c 'import nbconvert, nbclient, ipykernel, pandas, matplotlib' >/dev/null 2>&1; then
  if [ "${CI:-}" = true ]; then
    echo "notebook: jupyter not installed (sudo bash scripts/install-deps.sh)" >&2
    exit 1
  fi
  echo "notebook: skipped: jupyter not installed (sudo bash scripts/install-deps.sh)"
  exit 0
fi

if [ $# -ge 1 ]; then
  report=$1
else
  scripts/labscan.sh 1000 out/notebook -quiet
  report=out/notebook/report
fi
[ -f "$report/summary.json" ] || { echo "notebook: $report/summary.json not found (give a directory written by mxsurvey analyze -o)" >&2; exit 2; }
report=$(cd "$report" && pwd) # the notebook runs in notebooks/: pass an absolute path

if [ -n "${NOTEBOOK_OUT:-}" ]; then
  mkdir -p "$NOTEBOOK_OUT"
  outdir=$NOTEBOOK_OUT
else
  outdir=$(mktemp -d "${TMPDIR:-/tmp}/mxsurvey-notebook.XXXXXX")
fi
if PYDEVD_DISABLE_FILE_VALIDATION=1 MXSURVEY_REPORT="$report" "$py" -m jupyter nbconvert \
  --to notebook --execute notebooks/mxsurvey.ipynb --ExecutePreprocessor.timeout=1800 \
  --output-dir "$outdir" --output executed.ipynb --log-level=WARN; then
  [ -n "${NOTEBOOK_OUT:-}" ] || rm -rf "$outdir"
  echo "notebook: ok: notebooks/mxsurvey.ipynb on $report in $(( $(date +%s) - start ))s"
else
  echo "notebook: FAILED on $report (partial output, if any: $outdir/executed.ipynb)" >&2
  exit 1
fi
