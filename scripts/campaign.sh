#!/usr/bin/env bash
# The reproduction campaign (results/plan.toml) on a machine whose working periods end: the code is a clone pinned
# at one commit (so a run never changes code half-way), with its own venv; checkpoints and results live outside the
# work tree, in $CAMPAIGN_DIR (default: campaign/ beside the checkout).
#
#   scripts/campaign.sh run COMMIT H:MM:SS   continue the plan at COMMIT until the time limit (then exit 0)
#   scripts/campaign.sh status               where every planned run stands, and which claims each answers
#   scripts/campaign.sh publish              copy completed runs (metrics.json, run.json, logs/) into results/runs,
#                                            and record the progress of a half-way run in results/campaign/
#
# A run half-way (interrupted with a checkpoint) finishes on the commit it started with; only then does the plan go
# on at COMMIT. Runs already completed under results/runs (any machine) are not trained again. One campaign process
# at a time (a lock in $CAMPAIGN_DIR). On a fresh machine the same `run` command starts from the plan.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
DIR=${CAMPAIGN_DIR:-$(cd "$REPO/.." && pwd)/campaign}
DATA=${FER_BENCH_DATA:-$REPO/../shared/datasets/fer2013}
die() { echo "campaign: $*" >&2; exit 2; }

python_for() {  # the interpreter with fer-bench's dependencies: the campaign's venv, else the checkout's
  for p in "$DIR/venv/bin/python" "$REPO/.venv/bin/python"; do [ -x "$p" ] && { echo "$p"; return; }; done
  echo python3
}

fb_at() {  # fb_at CODE ARGS...: fer-bench as it is in checkout CODE, recording that checkout's commit
  local code=$1; shift
  (cd "$code" && PYTHONPATH="$code" FER_BENCH_GIT_SHA=$(git -C "$code" rev-parse HEAD 2>/dev/null || echo unknown) \
      "$(python_for)" -m fer_bench.cli "$@")
}

seconds() {  # H:MM:SS or MM:SS -> seconds (exit 2 on anything else)
  [[ $1 =~ ^([0-9]+:[0-5][0-9]|[0-9]+):[0-5][0-9]$ ]] || die "time limit '$1': write it as H:MM:SS, e.g. 2:40:00."
  local s=0 p; IFS=: read -ra parts <<< "$1"
  for p in "${parts[@]}"; do s=$((s * 60 + 10#$p)); done
  echo "$s"
}

hms() { printf '%d:%02d:%02d' $(($1 / 3600)) $(($1 % 3600 / 60)) $(($1 % 60)); }

half_way() {  # run directories with a checkpoint and no completed metrics.json
  for d in "$DIR"/results/runs/*/*/*/; do
    [ -f "$d/checkpoints/last.ckpt" ] || continue
    grep -q '"status": "completed"' "$d/metrics.json" 2>/dev/null || echo "$d"
  done
}

case "${1:-}" in
run)
  [ $# -eq 3 ] || die "usage: scripts/campaign.sh run COMMIT H:MM:SS"
  COMMIT=$2; LIMIT=$(seconds "$3")
  [ "$LIMIT" -ge 300 ] || die "time limit $3: a run is not started with less than 5 minutes left."
  WANT=$(git -C "$REPO" rev-parse --verify -q "$COMMIT^{commit}") || die "$COMMIT is no commit of $REPO."
  END=$(($(date +%s) + LIMIT))
  mkdir -p "$DIR"
  exec 9> "$DIR/campaign.lock"
  flock -n 9 || die "another campaign process is running in $DIR (it holds $DIR/campaign.lock); stop it first."
  [ -d "$DIR/code/.git" ] || git clone -q "$REPO" "$DIR/code"
  git -C "$DIR/code" fetch -q "$REPO" main
  git -C "$DIR/code" cat-file -e "$WANT^{commit}" 2>/dev/null || git -C "$DIR/code" fetch -q "$REPO" "$WANT"
  if [ ! -x "$DIR/venv/bin/fer-bench" ]; then
    python3 -m venv "$DIR/venv"
    "$DIR/venv/bin/pip" install -q torch==2.14.1 torchvision==0.29.1
    "$DIR/venv/bin/pip" install -q -e "$DIR/code"
  fi
  HAVE=$(git -C "$DIR/code" rev-parse HEAD)
  if [ "$WANT" != "$HAVE" ] && [ -n "$(half_way)" ]; then
    # the half-way runs were started by the commit checked out now: they finish on it, alone, before the switch
    echo "campaign: finishing the half-way run(s) on $HAVE before moving to $WANT:"; half_way
    (cd "$DIR/code" && PYTHONPATH="$DIR/code" "$(python_for)" "$REPO/scripts/campaign_halfway.py" \
        "$DIR/code/results/plan.toml" "$DIR/results") > "$DIR/finish.toml"
    if [ -s "$DIR/finish.toml" ]; then
      LEFT=$((END - $(date +%s)))
      [ "$LEFT" -ge 300 ] || { echo "campaign: time limit reached; continue with the same command."; exit 0; }
      fb_at "$DIR/code" reproduce --plan "$DIR/finish.toml" --data "$DATA" --out "$DIR/results" \
          --time-limit "$(hms "$LEFT")" --no-progress
      [ -z "$(half_way)" ] || { echo "campaign: still half-way; continue with the same command."; exit 0; }
    fi
  fi
  git -C "$DIR/code" checkout -q "$WANT"
  LEFT=$((END - $(date +%s)))
  [ "$LEFT" -ge 300 ] || { echo "campaign: time limit reached; continue with the same command."; exit 0; }
  fb_at "$DIR/code" reproduce --plan results/plan.toml --data "$DATA" --out "$DIR/results" \
      --time-limit "$(hms "$LEFT")" --no-progress --published "$REPO/results" ;;
status)
  # the repository's plan as the next `run` carries it out, read by the repository's code
  fb_at "$REPO" reproduce --plan "$REPO/results/plan.toml" --out "$DIR/results" --published "$REPO/results" \
      --status ;;
publish)
  [ -d "$DIR/results/runs" ] || { echo "campaign: nothing to publish ($DIR/results/runs does not exist)."; exit 0; }
  fb_at "$REPO" reproduce --publish "$REPO/results" --out "$DIR/results" ;;
*)
  sed -n '2,15p' "$0" >&2; exit 2 ;;
esac
