#!/usr/bin/env bash
# The prepared GPU check (benchmarks/gpu_check.py) under a hard time limit: `timeout` is its budget.
#
#   bash benchmarks/gpu_check.sh [DIR] [gpu_check.py options...]
#
# DIR (default: gpu_check) receives gpu_check.json (the report, rewritten after every step) and gpu_check.txt
# (what was printed: one line per step, tracebacks of failed steps). Data and runs go to a fresh work
# folder under ${TMPDIR:-/tmp}. Wheels in ${GPU_CHECK_WHEELS:-.whl} (packages the machine lacks, such as cdflib)
# are installed first, offline, into that folder. After GPU_CHECK_BUDGET_S seconds (default 480) `timeout`
# sends SIGTERM (the running step is recorded as interrupted, the report written, exit 130), 15 s later SIGKILL.
set -u
cd "$(dirname "$0")/.." || exit 2
DIR="${1:-gpu_check}"
[ $# -gt 0 ] && shift
PY="${PYTHON:-python3}"
BUDGET="${GPU_CHECK_BUDGET_S:-480}"
mkdir -p "$DIR" || exit 2
WORK="$(mktemp -d "${TMPDIR:-/tmp}/ctxpose_gpu_check.XXXXXX")" || exit 2
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
WHEELS="${GPU_CHECK_WHEELS:-.whl}"
if compgen -G "$WHEELS/*.whl" > /dev/null; then
  timeout 60 "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$WORK/site" "$WHEELS"/*.whl \
    && export PYTHONPATH="$WORK/site:$PYTHONPATH"
fi
echo "gpu_check: report in $DIR/gpu_check.json, work folder $WORK, budget ${BUDGET} s"
set -o pipefail
timeout --preserve-status --signal=TERM --kill-after=15 "$BUDGET" "$PY" benchmarks/gpu_check.py --out "$DIR/gpu_check.json" \
  --work-dir "$WORK" "$@" 2>&1 | tee "$DIR/gpu_check.txt"
