#!/usr/bin/env bash
# The GPU check (issue 16), for a session with a lent GPU machine: run from the repository root as
#   bash scripts/gpu_check.sh            (on the GPU machine; writes $OUT/gpu_check.json)
#   bash scripts/gpu_check.sh --dry-run  (here, on the CPU: the same checks on a tiny synthetic dataset)
# The GPU machine has no network: packages its python lacks come from wheels carried in .whl/
# (pip download -d .whl lightning torchmetrics pandas ..., then run with carry=[".whl"]).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] && [ "${1:-}" = "--dry-run" ] && PY=.venv/bin/python
if ! "$PY" -c "import lightning, torchmetrics" 2>/dev/null && [ -d .whl ]; then
  "$PY" -m pip install -q --no-index --find-links .whl lightning torchmetrics pandas matplotlib seaborn
fi
export OUT=${OUT:-results/gpu}
PYTHONPATH=. exec timeout 480 "$PY" scripts/gpu_check.py --out "$OUT" "$@"
