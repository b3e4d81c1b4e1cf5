"""Full-budget recipes on one GPU within a fixed wall-clock budget (issue 13), for the rare session with a GPU.

    python3 scripts/gpu_reproduce.py --budget 480 --out $OUT      on the GPU machine
    python3 scripts/gpu_reproduce.py --dry-run                      here, on the CPU (smoke profile, synthetic data)

The data: --data, else $FER_BENCH_DATA, else .gpu/fer2013.tar.gz (a tar of the FER-2013 folder, unpacked to a
temporary folder; the dataset does not travel otherwise). Never commit that archive: .gpu/ is for carrying only.

Runs start in QUEUE's order, several at a time on the one GPU (small recipes are launch-bound, so one run leaves
most of an H200 idle). A run starts only if, with every run going slowed as though the GPU were shared evenly by
one more, all of them and the new one still end before the budget: measured rates decide, never a guess. Each is
`fer-bench reproduce` (the same command as on a CPU) with --time-limit at the budget's end, in its own process.
At the end OUT holds runs.tar.gz (every run's metrics.json, run.json, progress.json and logs/, and its console
log; no checkpoints) and gpu_reproduce.json (the schedule and each run's state). Commit the completed ones like any
run: their metrics.json says which GPU, precision and code version produced them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# (paper, model, seed) in priority order: Du's headline pair and its seed spread, then what the CPU plan runs next
QUEUE = [("du_resnet_fc", "resnet50", 0), ("du_resnet_fc", "improved_resnet50", 0),
         ("du_resnet_fc", "resnet50", 1), ("du_resnet_fc", "improved_resnet50", 1),
         ("du_resnet_fc", "resnet50", 2), ("du_resnet_fc", "improved_resnet50", 2),
         ("rodrigues_cnn", "cnn8", 0), ("miao_presnet_vgg", "presnet", 0), ("rodrigues_cnn", "resnet50_scratch", 0)]
INITIAL = 2  # started at once, before any rate is known
MARGIN_S = 30.0  # kept free at the end: the final evaluation on PublicTest and PrivateTest, writing metrics.json


def fits(running: list[tuple[float, float]], time_left: float, margin: float = MARGIN_S) -> bool:
    """Whether one more run can start: ``running`` holds (fraction done, fraction per second) of every run going.

    Worst case, the GPU is already the bottleneck and one more run slows each by n/(n+1); the new run is assumed to
    go at the mean rate of those going (the queue's neighbours are alike). Needs a measured rate for every run."""
    if not running or any(rate <= 0 for _, rate in running):
        return False
    slow = len(running) / (len(running) + 1)
    budget = time_left - margin
    mean_rate = sum(rate for _, rate in running) / len(running)
    return all((1 - done) / (rate * slow) <= budget for done, rate in running) and 1 / (mean_rate * slow) <= budget


def fraction_done(out: Path, paper: str, model: str, seed: int) -> float | None:
    """From progress.json, which the runner rewrites at every epoch's end and every 30 s; 1.0 once completed."""
    for d in (out / "runs" / paper / model).glob(f"repro-s{seed}-*"):
        try:
            if json.loads((d / "metrics.json").read_text()).get("status") == "completed":
                return 1.0
        except (OSError, ValueError):
            pass
        try:
            p = json.loads((d / "progress.json").read_text())
            return (p["epoch"] + p["batch"] / max(p["batches"], 1)) / max(p["epochs"], 1)
        except (OSError, ValueError, KeyError, TypeError):  # not written yet, or not what the runner writes
            return None
    return None


def tiny_data(folder: Path) -> Path:
    sys.path.insert(0, str(REPO / "scripts"))
    from gpu_check import tiny_csv
    return tiny_csv(folder / "fer2013.csv", per_class=8)


class Refused(Exception):
    """Bad input: the message is printed and the script exits 2, before anything is started or written."""


def parse_queue(text: str | None) -> list[tuple[str, str, int]]:
    """--queue paper:model:seed,...; None: QUEUE."""
    if text is None:
        return list(QUEUE)
    try:
        queue = [(p, m, int(s)) for p, m, s in (q.split(":") for q in text.split(","))]
    except ValueError:
        queue = []
    if not queue or any(not p or not m or s < 0 for p, m, s in queue):
        raise Refused(f"--queue {text!r}: write paper:model:seed,... e.g. du_resnet_fc:resnet50:0")
    return queue


def parse_budget(budget: float) -> float:
    if not math.isfinite(budget) or budget <= 0:
        raise Refused(f"--budget {budget}: give the wall-clock seconds for everything, a positive finite number.")
    return budget


def find_data(arg: str | None, tmp: Path) -> str:
    if arg or os.environ.get("FER_BENCH_DATA"):
        return arg or os.environ["FER_BENCH_DATA"]
    archive = REPO / ".gpu" / "fer2013.tar.gz"
    if not archive.is_file():
        raise Refused("no data: give --data, set FER_BENCH_DATA, or carry .gpu/fer2013.tar.gz "
                      "(tar -C ../shared/datasets -czf .gpu/fer2013.tar.gz fer2013).")
    with tarfile.open(archive) as t:
        t.extractall(tmp, filter="data")
    return str(tmp / "fer2013")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget", type=float, default=480, help="wall-clock seconds for everything (default 480)")
    ap.add_argument("--out", default=os.environ.get("OUT", "results/gpu"))
    ap.add_argument("--data", default=None)
    ap.add_argument("--dry-run", action="store_true", help="on the CPU: smoke profile, tiny synthetic data")
    ap.add_argument("--queue", default=None, help="paper:model:seed,... instead of QUEUE")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="passed to every run, e.g. compile=true (an execution key: still the paper's recipe)")
    args = ap.parse_args()
    from fer_bench.data import load_fer2013  # decoded and cached once here, not by every run at once
    from fer_bench.errors import UserError

    tmp = Path(tempfile.mkdtemp())
    try:  # every argument is checked before anything starts or is written under --out
        queue, budget = parse_queue(args.queue), parse_budget(args.budget)
        data = str(tiny_data(tmp)) if args.dry_run else find_data(args.data, tmp)
        fingerprint = load_fer2013(data).fingerprint
    except (Refused, UserError) as e:
        print(f"gpu_reproduce: {e}", file=sys.stderr)
        return 2
    t0 = time.time()
    deadline = t0 + budget

    def log(msg: str) -> None:
        print(f"[{time.time() - t0:6.1f} s] {msg}", flush=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = tmp / "results"
    (work / "logs").mkdir(parents=True)
    extra = ["--profile", "smoke", "--set", "pretrained=false", "--purpose", "gpu_reproduce --dry-run"] \
        if args.dry_run else []
    extra += [a for kv in args.set for a in ("--set", kv)]
    log(f"data {data}: fingerprint {fingerprint}")
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "PYTHONUNBUFFERED": "1"}
    running: dict[tuple, tuple[subprocess.Popen, float]] = {}
    schedule, took, exits = [], [], {}  # took: wall seconds of every run that completed; exits: status of each

    def start(job) -> None:
        paper, model, seed = job
        limit = max(int(deadline - time.time() - 5), 1)
        # fer-bench reproduce, except that a run may start with less than MIN_START_S (5 min) left: here a
        # run takes minutes, and `fits` has already judged that it ends in time
        cmd = [sys.executable, "-c", "import sys, fer_bench.reproduce as r, fer_bench.cli as c; r.MIN_START_S = 30; "
               "sys.exit(c.main(sys.argv[1:]))", "reproduce", "--paper", paper, "--model", model,
               "--seeds", str(seed), "--data", data, "--out", str(work), "--no-progress",
               "--time-limit", f"{limit // 3600}:{limit // 60 % 60:02d}:{limit % 60:02d}", *extra]
        logf = open(work / "logs" / f"{paper}-{model}-s{seed}.log", "w")
        running[job] = (subprocess.Popen(cmd, cwd=REPO, env=env, stdout=logf, stderr=subprocess.STDOUT), time.time())
        schedule.append({"run": f"{paper}/{model}/s{seed}", "started_s": round(time.time() - t0, 1)})
        log(f"start {paper}/{model}/s{seed} (time limit {limit} s, {len(running)} running)")

    while running or (queue and time.time() < deadline):
        for job, (proc, began) in list(running.items()):
            if proc.poll() is not None:
                del running[job]
                if fraction_done(work, *job) == 1.0:
                    took.append(time.time() - began)
                exits[f"{job[0]}/{job[1]}/s{job[2]}"] = proc.returncode
                log(f"exit {job[0]}/{job[1]}/s{job[2]}: {proc.returncode}")
        now = time.time()
        if queue and now < deadline:
            rates = []
            for job, (_, began) in running.items():
                done = fraction_done(work, *job) or 0.0
                rates.append((done, done / max(now - began, 1e-9)))
            alone = not running and took and min(took) <= deadline - now - MARGIN_S  # a run alone went this fast
            if len(schedule) < INITIAL or fits(rates, deadline - now) or alone:
                start(queue.pop(0))
                continue
            if not running:
                break
        # --time-limit stops each run (a checkpoint, then exit) before this: a hung one ends here
        if now > deadline + 40:
            for proc, _ in running.values():
                proc.kill()
        time.sleep(1 if args.dry_run else 5)

    states = {}
    for paper, model, seed in [tuple(s["run"].split("/")) for s in schedule]:
        for d in (work / "runs" / paper / model).glob(f"repro-{seed}-*"):
            m = json.loads((d / "metrics.json").read_text()) if (d / "metrics.json").is_file() else {}
            states[f"{paper}/{model}/{seed}"] = {
                "dir": d.name, "status": m.get("status", "no metrics.json"),
                "exit": exits.get(f"{paper}/{model}/{seed}"),
                "epochs": f"{m.get('epochs_completed')} / {m.get('epochs_planned')}", **(m.get("timing") or {}),
                "hardware": m.get("hardware"),
                "PrivateTest": (m.get("splits") or {}).get("PrivateTest", {}).get("accuracy")}
            log(f"{paper}/{model}/{seed}: {states[f'{paper}/{model}/{seed}']}")
    with tarfile.open(out / "runs.tar.gz", "w:gz") as t:
        t.add(work / "logs", arcname="logs")  # one console log per run
        for f in sorted(work.glob("runs/*/*/*/*")):
            if f.name in ("metrics.json", "run.json", "progress.json", "logs"):
                t.add(f, arcname=str(f.relative_to(work)))
    summary = {"budget_s": budget, "seconds": round(time.time() - t0, 1), "dry_run": args.dry_run,
               # no machine path in a committed record: where the data came from, and what it decoded to
               "data": "synthetic" if args.dry_run else f"{Path(data).name}, fingerprint {fingerprint}",
               "schedule": schedule, "runs": states,
               "not_started": [f"{p}/{m}/s{s}" for p, m, s in queue]}
    (out / "gpu_reproduce.json").write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")
    log(f"-> {out / 'runs.tar.gz'}, {out / 'gpu_reproduce.json'}")
    if not any(s["status"] == "completed" for s in states.values()):
        failed = ", ".join(f"{run}: exit {rc}" for run, rc in exits.items()) or "none started"
        print(f"gpu_reproduce: no run completed ({failed}); see the console logs in runs.tar.gz.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
