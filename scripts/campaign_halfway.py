"""Print, as a plan file, the runs of PLAN that are half-way under OUT (a checkpoint and no completed metrics.json).

`scripts/campaign.sh run` calls it with the half-way runs' own code first on PYTHONPATH (the commit they started
with), so the runs are found by that code's run-directory names, and finishes them on it before moving on:

    PYTHONPATH=CODE python scripts/campaign_halfway.py CODE/results/plan.toml OUT > finish.toml
"""

import json
import sys
from pathlib import Path

from fer_bench.reproduce import load_plan


def half_way(plan_file: Path, out: Path) -> list:
    found = []
    for item in load_plan(plan_file):
        d = item.run_dir(out)
        m = d / "metrics.json"
        if (d / "checkpoints" / "last.ckpt").is_file() and not (m.is_file() and '"completed"' in m.read_text()):
            found.append(item)
    return found


if __name__ == "__main__":
    for it in half_way(Path(sys.argv[1]), Path(sys.argv[2])):
        print(f"[[run]]\npaper = {json.dumps(it.paper)}\nmodel = {json.dumps(it.model)}\nseeds = [{it.seed}]\n"
              f"profile = {json.dumps(it.profile)}\nset = {json.dumps(list(it.overrides))}\n")
