"""The campaign's half-way runs (a checkpoint and no completed metrics.json), and the commit each started with.

`scripts/campaign.sh run` finishes every half-way run on the code that started it before the plan goes on at a
newer commit:

    python scripts/campaign_halfway.py commits OUT          one line per half-way run: COMMIT RUN_DIR
    PYTHONPATH=CODE python scripts/campaign_halfway.py plan CODE/results/plan.toml OUT COMMIT > finish.toml

The commit is run.json's `started_with` (recorded since fer-bench writes it), else the git_sha of the metrics.json an
interrupted segment wrote, else "unknown" (the campaign then takes the commit its clone has checked out). `plan`
runs with that commit's code on PYTHONPATH, so the runs are found by that code's run-directory names, and prints
them as a plan file that code reads.
"""

import json
import sys
from pathlib import Path


def _read(path: Path) -> dict:
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return d if isinstance(d, dict) else {}


def half_way_dirs(out: Path) -> dict[Path, str]:
    """Half-way run directory -> the commit it started with (40 hex digits, or 'unknown')."""
    found = {}
    for d in sorted(Path(out).glob("runs/*/*/*/")):
        metrics = _read(d / "metrics.json")
        if not (d / "checkpoints" / "last.ckpt").is_file() or metrics.get("status") == "completed":
            continue
        sha = _read(d / "run.json").get("started_with") or (metrics.get("software") or {}).get("git_sha") or ""
        sha = sha.removesuffix("-dirty")
        found[d] = sha if len(sha) == 40 else "unknown"
    return found


def half_way_plan(plan_file: Path, out: Path, commit: str) -> list:
    from fer_bench.reproduce import load_plan  # the half-way runs' own code

    mine = {d.resolve() for d, sha in half_way_dirs(out).items() if sha == commit}
    return [item for item in load_plan(plan_file) if item.run_dir(out).resolve() in mine]


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "commits":
        for d, sha in half_way_dirs(Path(sys.argv[2])).items():
            print(sha, d)
    elif len(sys.argv) == 5 and sys.argv[1] == "plan":
        for it in half_way_plan(Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]):
            print(f"[[run]]\npaper = {json.dumps(it.paper)}\nmodel = {json.dumps(it.model)}\nseeds = [{it.seed}]\n"
                  f"profile = {json.dumps(it.profile)}\nset = {json.dumps(list(it.overrides))}\n")
    else:
        sys.exit(__doc__)
