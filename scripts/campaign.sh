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

checkout_at() {  # a checkout of commit $1 of its own (the campaign's clone holds the history): code that never moves
  local path="$DIR/at/$1"
  [ -d "$path" ] || git -C "$DIR/code" worktree add -q --detach "$path" "$1" >&2
  echo "$path"
}

half_way_not_at() {  # half-way runs that started with another commit than $1 (unknown: the clone's old HEAD)
  "$(python_for)" "$REPO/scripts/campaign_halfway.py" commits "$DIR/results" | while read -r key d; do
    [ "$key" = unknown ] && key=$HAVE
    [ "$key" = "$1" ] || echo "$d"
  done
}

pending_runs() {  # whether the plan has runs no process trains yet (one line each)
  fb_at "$NEW" reproduce --plan results/plan.toml --out "$DIR/results" --published "$REPO/results" --status \
      2>/dev/null | grep -E '\| (pending|interrupted) ' || true
}

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
  WORKERS=${CAMPAIGN_WORKERS:-1}
  [[ $WORKERS =~ ^[1-9][0-9]*$ ]] && [ "$WORKERS" -le "$(nproc)" ] || \
      die "CAMPAIGN_WORKERS=$WORKERS: give 1 to $(nproc) processes (each trains one run with a share of the cores)."
  THREADS=$(( $(nproc) / WORKERS ))
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
  fi
  HAVE=$(git -C "$DIR/code" rev-parse HEAD)
  NEW=$(checkout_at "$WANT")
  git -C "$DIR/code" checkout -q "$WANT"  # the commit the next call takes for runs that recorded none
  "$DIR/venv/bin/pip" install -q -e "$DIR/code"  # COMMIT's dependencies (a no-op when they are there)
  pids=()
  # every half-way run finishes on the commit it started with, alone in its process; while it trains, its
  # .claim is held (inherited from here), so no worker of the new commit resumes it with other code
  finish=()
  while read -r key d; do
    [ -n "$key" ] || continue
    sha=$key; [ "$sha" = unknown ] && sha=$HAVE
    [ "$sha" = "$WANT" ] || finish+=("$sha")  # (the new commit's workers resume their own)
  done < <("$(python_for)" "$REPO/scripts/campaign_halfway.py" commits "$DIR/results")
  for sha in $(printf '%s\n' "${finish[@]}" | sort -u); do
    OLD=$(checkout_at "$sha")
    keys=$sha; [ "$sha" = "$HAVE" ] && keys="$sha unknown"
    : > "$DIR/finish-$sha.toml"
    for key in $keys; do
      (cd "$OLD" && PYTHONPATH="$OLD" "$(python_for)" "$REPO/scripts/campaign_halfway.py" plan results/plan.toml \
          "$DIR/results" "$key") >> "$DIR/finish-$sha.toml"
    done
    [ -s "$DIR/finish-$sha.toml" ] || continue
    LEFT=$((END - $(date +%s)))
    [ "$LEFT" -ge 300 ] || break
    echo "campaign: finishing the half-way run(s) started with $sha on that commit"
    fds=(); dirs=(); share=()
    while read -r key d; do
      [ "$key" = "$sha" ] || { [ "$key" = unknown ] && [ "$sha" = "$HAVE" ]; } || continue
      dirs+=("$d")
    done < <("$(python_for)" "$REPO/scripts/campaign_halfway.py" commits "$DIR/results")
    if grep -q -- '"--share"' "$OLD/fer_bench/cli.py"; then
      share=(--share)  # that code claims its runs itself: a claim held here would read to it as another process's
    else  # older code ignores claims: hold them here (inherited) so no new worker resumes its runs with other code
      for d in "${dirs[@]}"; do
        exec {fd}> "$d/.claim"; flock -n "$fd" || die "$d is claimed by another process."; fds+=("$fd")
      done
    fi
    if [ "$WORKERS" -gt 1 ]; then
      # one process per half-way run, as many as there are workers free (code that claims its runs itself shares
      # them out; older code finishes them in turn in one process)
      n=${#dirs[@]}; [ ${#share[@]} -gt 0 ] || n=1
      room=$((WORKERS - ${#pids[@]})); [ "$n" -le "$room" ] || n=$room
      for i in $(seq "$n"); do
        OMP_NUM_THREADS=$THREADS fb_at "$OLD" reproduce --plan "$DIR/finish-$sha.toml" --data "$DATA" \
            --out "$DIR/results" --time-limit "$(hms "$LEFT")" --no-progress "${share[@]}" & pids+=($!)
        # the next process (and the new commit's workers) start once this one holds its run (a brief look at a
        # claim would otherwise make it leave that run alone)
        for _ in $(seq 120); do
          kill -0 "${pids[-1]}" 2> /dev/null || break
          held=0; for d in "${dirs[@]}"; do flock -n "$d/.lock" true 2> /dev/null || held=$((held + 1)); done
          [ "$held" -ge "$i" ] && break; sleep 1
        done
      done
    else
      fb_at "$OLD" reproduce --plan "$DIR/finish-$sha.toml" --data "$DATA" --out "$DIR/results" \
          --time-limit "$(hms "$LEFT")" --no-progress "${share[@]}"
    fi
    for fd in "${fds[@]}"; do exec {fd}>&-; done
  done
  status=0
  start_worker() {
    local left=$((END - $(date +%s)))
    [ "$left" -ge 300 ] || return 0
    if [ "$WORKERS" -gt 1 ]; then
      OMP_NUM_THREADS=$THREADS fb_at "$NEW" reproduce --plan results/plan.toml --data "$DATA" --out "$DIR/results" \
          --time-limit "$(hms "$left")" --no-progress --published "$REPO/results" --share & pids+=($!)
    else
      fb_at "$NEW" reproduce --plan results/plan.toml --data "$DATA" --out "$DIR/results" \
          --time-limit "$(hms "$left")" --no-progress --published "$REPO/results" || status=$?
    fi
  }
  if [ "$WORKERS" -eq 1 ]; then
    [ -z "$(half_way_not_at "$WANT")" ] || { echo "campaign: still half-way; continue with the same command."; exit 0; }
    start_worker; exit $status
  fi
  for _ in $(seq $((WORKERS - ${#pids[@]}))); do start_worker; done
  restarts=0
  while [ ${#pids[@]} -gt 0 ]; do  # a process that ends frees its cores for another worker of the new commit
    wait -n -p done_pid "${pids[@]}" || status=$?
    left=(); for p in "${pids[@]}"; do [ "$p" = "$done_pid" ] || left+=("$p"); done; pids=("${left[@]}")
    if [ "$status" -eq 0 ] && [ "$restarts" -lt $((4 * WORKERS)) ] && [ -n "$(pending_runs)" ]; then
      restarts=$((restarts + 1)); start_worker
    fi
  done
  exit $status ;;
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
