#!/usr/bin/env bash
# The reproduction campaign (results/plan.toml) on a machine whose working periods end: the code is a clone pinned
# at one commit (so a run never changes code half-way), with its own venv; checkpoints and results live outside the
# work tree, in $CAMPAIGN_DIR (default: campaign/ beside the checkout).
#
#   scripts/campaign.sh run COMMIT H:MM:SS   continue the plan at COMMIT until the time limit (then exit 0)
#   scripts/campaign.sh status               where every planned run stands
#   scripts/campaign.sh publish              copy completed runs (metrics.json, run.json, logs/) into results/runs
#
# Moving to another COMMIT is refused while a run is half-way (interrupted with a checkpoint): finish it first, or
# set CAMPAIGN_FORCE=1 knowing that the rest of that run would train with other code.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
DIR=${CAMPAIGN_DIR:-$(cd "$REPO/.." && pwd)/campaign}
DATA=${FER_BENCH_DATA:-$(cd "$REPO/../shared/datasets/fer2013" && pwd)}
FB="$DIR/venv/bin/fer-bench"

half_way() {  # run directories with a checkpoint and no completed metrics.json
  for d in "$DIR"/results/runs/*/*/*/; do
    [ -f "$d/checkpoints/last.ckpt" ] || continue
    grep -q '"status": "completed"' "$d/metrics.json" 2>/dev/null || echo "$d"
  done
}

case "${1:-}" in
run)
  COMMIT=${2:?commit}; LIMIT=${3:?H:MM:SS}
  mkdir -p "$DIR"
  [ -d "$DIR/code/.git" ] || git clone -q "$REPO" "$DIR/code"
  git -C "$DIR/code" fetch -q "$REPO" main
  WANT=$(git -C "$REPO" rev-parse "$COMMIT^{commit}")  # named in this repository
  HAVE=$(git -C "$DIR/code" rev-parse HEAD)
  if [ "$WANT" != "$HAVE" ] && [ -n "$(half_way)" ] && [ -z "${CAMPAIGN_FORCE:-}" ]; then
    echo "campaign: runs are half-way at $HAVE; finish them with that commit first:" >&2
    half_way >&2
    exit 2
  fi
  git -C "$DIR/code" checkout -q "$WANT"
  if [ ! -x "$FB" ]; then
    python3 -m venv "$DIR/venv"
    "$DIR/venv/bin/pip" install -q torch==2.14.1 torchvision==0.29.1
    "$DIR/venv/bin/pip" install -q -e "$DIR/code"
  fi
  cd "$DIR/code"
  exec "$FB" reproduce --plan results/plan.toml --data "$DATA" --out "$DIR/results" --time-limit "$LIMIT" \
      --no-progress ;;
status)
  cd "$DIR/code" && exec "$FB" reproduce --plan results/plan.toml --out "$DIR/results" --status ;;
publish)
  for m in "$DIR"/results/runs/*/*/*/metrics.json; do
    grep -q '"status": "completed"' "$m" || continue
    d=$(dirname "$m"); rel=${d#"$DIR/results/"}
    mkdir -p "$REPO/results/$rel/logs"
    cp "$d/metrics.json" "$d/run.json" "$REPO/results/$rel/"
    cp "$d/logs/metrics.csv" "$REPO/results/$rel/logs/"
    echo "published $rel"
  done ;;
*)
  sed -n '2,13p' "$0" >&2; exit 2 ;;
esac
