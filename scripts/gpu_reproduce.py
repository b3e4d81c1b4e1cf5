"""Full-budget recipes on a GPU lent once, for minutes (issues 13, 30).

    python3 scripts/gpu_reproduce.py --budget 480 --out $OUT      on the GPU machine (again: resumes)
    python3 scripts/gpu_reproduce.py --dry-run --work DIR           here, on the CPU (smoke profile, synthetic data)

The data: --data, else $FER_BENCH_DATA, else .gpu/fer2013.tar.gz (a tar of the FER-2013 folder, unpacked once into
the work directory; the dataset does not travel otherwise). Never commit that archive: .gpu/ is for carrying only.

1. Tune (the first ~--tune-s seconds; scripts/gpu_tune.py): per model kind, steps/s eager vs CUDA graphs
   (compile_mode=reduce-overhead) and 1 vs 2 vs 4 processes at once (under NVIDIA MPS when nvidia-cuda-mps-control
   exists: started with its pipes in the work directory, never touching the card's settings, quit at the end), on
   synthetic batches with the real network and optimiser. The table goes to tune.json; a second call reuses it.
2. Pack: the number of processes whose schedule completes the most runs; each run in its faster faithful mode;
   tiers by seed (every claim gets a run before any gets a second), longest first within a tier, and a run starts
   only if, at the measured speed, it ends before the budget: never one that cannot finish.
3. Work in a fixed directory (--work, default $HOME/.fer-bench-gpu): a second command on the same warm machine
   resumes the runs the first left half-way (`fer-bench reproduce` finds them by their recipe) and skips tuning.
4. OUT gets runs.tar.gz (every run's metrics.json, run.json, progress.json and logs/, its console log; no
   checkpoints), tune.json and gpu_reproduce.json (settings, table, schedule, each run's state). Commit the completed
   runs like any run: their metrics.json says which GPU, precision, compile mode and code version produced them.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# the queue (issue 30): what the CPU campaign will not reach, one tier per seed; du's seeds the tree already holds
# completed are left out (default_queue). miao's claims are on its own split: protocol=paper.
MODELS = [("du_resnet_fc", "resnet50", ()), ("du_resnet_fc", "improved_resnet50", ()),
          ("rodrigues_cnn", "cnn8", ()), ("rodrigues_cnn", "resnet50_scratch", ()),
          ("miao_presnet_vgg", "presnet", ("protocol=paper",)), ("miao_presnet_vgg", "presnet_vgg", ("protocol=paper",))]
SEEDS = (0, 1, 2)
MARGIN_S = 30.0  # kept free at the end of the budget
LEVELS = (1, 2, 4)  # processes at once, measured
DRY_SETS = ["input_size=32", "batch_size=8", "eval_batch_size=16"]  # the dry run's tuning: the real networks, small


def default_queue(results: Path = REPO / "results") -> list[tuple[str, str, int, tuple]]:
    """MODELS x SEEDS, seed-major, without the runs ``results`` holds completed (the campaign's committed runs)."""
    from fer_bench.reproduce import Planned
    queue = []
    for seed in SEEDS:
        for paper, model, sets in MODELS:
            d = Planned(paper, model, seed, "paper", sets).run_dir(results)
            try:
                if json.loads((d / "metrics.json").read_text()).get("status") == "completed":
                    continue
            except (OSError, ValueError):
                pass
            queue.append((paper, model, seed, sets))
    return queue


def fits(running: list[tuple[float, float]], time_left: float, margin: float = MARGIN_S) -> bool:
    """Whether one more run can start beside ``running`` ((fraction done, fraction per second) of each) when no
    measured table covers it: worst case the GPU is the bottleneck and one more run slows each by n/(n+1)."""
    if not running or any(rate <= 0 for _, rate in running):
        return False
    slow = len(running) / (len(running) + 1)
    budget = time_left - margin
    mean_rate = sum(rate for _, rate in running) / len(running)
    return all((1 - done) / (rate * slow) <= budget for done, rate in running) and 1 / (mean_rate * slow) <= budget


def _dirs(out: Path, paper: str, model: str, seed: int) -> list[Path]:
    return sorted((out / "runs" / paper / model).glob(f"repro-s{seed}-*"))


def fraction_done(out: Path, paper: str, model: str, seed: int) -> float | None:
    """From progress.json, which the runner rewrites at every epoch's end and every 30 s; 1.0 once completed."""
    for d in _dirs(out, paper, model, seed):
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
    folder.mkdir(parents=True, exist_ok=True)
    return tiny_csv(folder / "fer2013.csv", per_class=8)


class Refused(Exception):
    """Bad input: the message is printed and the script exits 2, before anything is started or written."""


def parse_queue(text: str | None) -> list[tuple[str, str, int, tuple]]:
    """--queue paper:model:seed[:key=value+key=value],...; None: default_queue()."""
    if text is None:
        return default_queue()
    try:
        queue = []
        for q in text.split(","):
            parts = q.split(":")
            if len(parts) not in (3, 4):
                raise ValueError
            sets = tuple(parts[3].split("+")) if len(parts) == 4 and parts[3] else ()
            queue.append((parts[0], parts[1], int(parts[2]), sets))
    except ValueError:
        queue = []
    if not queue or any(not p or not m or s < 0 for p, m, s, _ in queue):
        raise Refused(f"--queue {text!r}: write paper:model:seed[:key=value+...],... e.g. du_resnet_fc:resnet50:0")
    return queue


def parse_budget(budget: float) -> float:
    if not math.isfinite(budget) or budget <= 0:
        raise Refused(f"--budget {budget}: give the wall-clock seconds for everything, a positive finite number.")
    return budget


def find_data(arg: str | None, work: Path) -> str:
    if arg or os.environ.get("FER_BENCH_DATA"):
        return arg or os.environ["FER_BENCH_DATA"]
    if (work / "data" / "fer2013").is_dir():  # unpacked by an earlier call
        return str(work / "data" / "fer2013")
    archive = REPO / ".gpu" / "fer2013.tar.gz"
    if not archive.is_file():
        raise Refused("no data: give --data, set FER_BENCH_DATA, or carry .gpu/fer2013.tar.gz "
                      "(tar -C ../shared/datasets -czf .gpu/fer2013.tar.gz fer2013).")
    shutil.rmtree(work / "data.tmp", ignore_errors=True)  # a call killed while unpacking
    with tarfile.open(archive) as t:
        t.extractall(work / "data.tmp", filter="data")
    (work / "data").mkdir(parents=True, exist_ok=True)
    (work / "data.tmp" / "fer2013").rename(work / "data" / "fer2013")
    return str(work / "data" / "fer2013")


def check_plan(queue, dry_run: bool) -> None:
    """Every planned run must answer a claim (fer_bench.plan.check_judgeable); the dry run's smoke runs answer none."""
    from fer_bench.plan import Planned, check_judgeable
    if not dry_run:
        check_judgeable([Planned(p, m, s, "paper", sets) for p, m, s, sets in queue])


class MPS:
    """NVIDIA MPS for several processes on one GPU, if its control program exists: its pipe and log directories in
    the work directory (no root, the card's settings untouched); quit at the end."""

    def __init__(self, work: Path, log):
        self.exe, self.env, self.log = shutil.which("nvidia-cuda-mps-control"), {}, log
        self.started = False
        if self.exe:
            pipe, logs = work / "mps" / "pipe", work / "mps" / "log"
            pipe.mkdir(parents=True, exist_ok=True)
            logs.mkdir(parents=True, exist_ok=True)
            self.env = {"CUDA_MPS_PIPE_DIRECTORY": str(pipe), "CUDA_MPS_LOG_DIRECTORY": str(logs)}

    def start(self) -> bool:
        if not self.exe or self.started:
            return self.started
        r = subprocess.run([self.exe, "-d"], env={**os.environ, **self.env}, capture_output=True, text=True)
        self.started = r.returncode == 0 or "already" in (r.stdout + r.stderr).lower()
        self.log(f"MPS: {'started' if self.started else 'could not start: ' + (r.stderr or r.stdout).strip()[:200]}")
        return self.started

    def quit(self) -> None:
        if self.started:
            subprocess.run([self.exe], input="quit\n", env={**os.environ, **self.env}, capture_output=True, text=True)
            self.log("MPS: quit")
            self.started = False


def tune(kinds, work: Path, env: dict, device: str, tune_s: float, dry_run: bool, mps: MPS, log) -> dict:
    """The table (gpu_tune.run_level per level) within ``tune_s``: eager at 1, 2 and 4 processes, then CUDA graphs at
    1 (its compilation takes most of its time); a level that would not fit is left out, and recorded so."""
    import gpu_tune
    slot, warm = (1.0, 6.0) if dry_run else (6.0, 2.5)
    levels = [("eager", n) for n in (LEVELS[:2] if dry_run else LEVELS)] + ([] if dry_run else [("graphs", 1)])
    t0, rows, skipped = time.time(), [], []
    for mode, procs in levels:
        cost = 20 + len(kinds) * (slot + (60 if mode == "graphs" else 0))
        if time.time() - t0 + cost > tune_s:
            skipped.append(f"{mode} x{procs}: not measured (needs about {cost:.0f} s of the {tune_s:.0f} s)")
            continue
        if procs > 1:
            mps.start()
        g_slot, g_warm = (slot + 60, warm + 60) if mode == "graphs" else (slot, warm)
        got = gpu_tune.run_level(kinds, mode, procs, g_slot, g_warm, device, work / "tune", {**env, **mps.env},
                                 DRY_SETS if dry_run else ())
        rows += got
        log(f"tune {mode} x{procs}: " + "; ".join(
            f"{r['kind']} {r.get('train_steps_per_s', r.get('error'))}" for r in got))
    return {"rows": gpu_tune.faithful(rows), "skipped": skipped, "seconds": round(time.time() - t0, 1),
            "mps": bool(mps.exe), "device": device, "sets": DRY_SETS if dry_run else []}


def split_sizes(dataset, paper: str, model: str, sets, profile: str = "paper") -> dict:
    """The images a run trains, validates (every epoch) and tests on, and its epochs: what its time is made of."""
    from fer_bench import protocols
    from fer_bench.runner import resolve_config
    cfg = resolve_config(paper, model, profile, None, list(sets))
    split = protocols.splits(dataset, cfg)[0]
    val = len(split.tests[split.selected_on]) if split.selects_on_reported else len(split.val)
    cut = lambda n, k: min(n, k) if k else n  # noqa: E731  (the profiles' subsets)
    return {"train": cut(len(split.train), cfg["train_subset"]), "epochs": cfg["epochs"],
            "val": val if split.selects_on_reported else cut(val, cfg["val_subset"]),
            "tests": [len(v) for v in split.tests.values()]}


def settings(table: dict, queue, sizes: dict, budget: float, done: dict) -> tuple[int, dict, list]:
    """The level and per-job mode that complete the most runs (gpu_tune.choose), each job's seconds at it."""
    import gpu_tune
    rows = [r for r in table["rows"] if r.get("faithful") and "error" not in r]
    options, modes = {}, {}
    for procs in sorted({r["procs"] for r in rows}):
        jobs = []
        for job in queue:
            kind = f"{job[0]}/{job[1]}"
            cands = [r for r in rows if r["kind"] == kind and r["procs"] == procs]
            if not cands:
                continue
            sz = sizes[job]
            best = min(cands, key=lambda r: gpu_tune.estimate(r, sz, sz["epochs"], done.get(job, 0.0)))
            modes[(procs, job)] = best["mode"]
            jobs.append({"name": job, "tier": job[2], "seconds": round(gpu_tune.estimate(
                best, sz, sz["epochs"], done.get(job, 0.0)), 1)})
        options[procs] = jobs
    procs, plan = gpu_tune.choose(options, budget, MARGIN_S)
    return procs, {job: modes[(procs, job)] for job in queue if (procs, job) in modes}, plan


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget", type=float, default=480, help="wall-clock seconds for everything (default 480)")
    ap.add_argument("--out", default=os.environ.get("OUT", "results/gpu"))
    ap.add_argument("--work", default=None, help="the fixed work directory (default $HOME/.fer-bench-gpu; the dry "
                    "run: a new temporary one unless given)")
    ap.add_argument("--data", default=None)
    ap.add_argument("--tune-s", type=float, default=90.0, help="seconds for measuring (default 90)")
    ap.add_argument("--dry-run", action="store_true", help="on the CPU: smoke profile, tiny synthetic data")
    ap.add_argument("--queue", default=None, help="paper:model:seed[:key=value+...],... instead of the default queue")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="passed to every run")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO / "scripts"))
    from fer_bench.data import load_fer2013  # decoded and cached once here, not by every run at once
    from fer_bench.errors import UserError

    work = Path(args.work) if args.work else (Path(tempfile.mkdtemp()) if args.dry_run else
                                              Path.home() / ".fer-bench-gpu")
    try:  # every argument is checked before anything starts or is written under --out
        queue, budget = parse_queue(args.queue), parse_budget(args.budget)
        check_plan(queue, args.dry_run)
        work.mkdir(parents=True, exist_ok=True)
        data = str(tiny_data(work / "data")) if args.dry_run else find_data(args.data, work)
        dataset = load_fer2013(data)
        profile, sets = ("smoke", ["pretrained=false", *args.set]) if args.dry_run else ("paper", args.set)
        sizes = {job: split_sizes(dataset, job[0], job[1], [*job[3], *sets], profile) for job in queue}
    except (Refused, UserError) as e:
        print(f"gpu_reproduce: {e}", file=sys.stderr)
        return 2
    t0 = time.time()
    deadline = t0 + budget

    def log(msg: str) -> None:
        print(f"[{time.time() - t0:6.1f} s] {msg}", flush=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = work / "results"
    (results / "logs").mkdir(parents=True, exist_ok=True)
    device = "cpu" if args.dry_run else "cuda"
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "PYTHONUNBUFFERED": "1", "TORCHINDUCTOR_CACHE_DIR": str(work / "inductor")}  # compiled once, reused
    mps = MPS(work, log)
    log(f"work {work}; data {Path(data).name}: fingerprint {dataset.fingerprint}; {len(queue)} runs queued")
    tune_file = work / "tune.json"
    kinds = list(dict.fromkeys(f"{p}/{m}" for p, m, _, _ in queue))
    try:
        table = json.loads(tune_file.read_text())
        if set(kinds) - {r["kind"] for r in table["rows"]}:
            raise ValueError("kinds missing")
        log(f"tuning table from {tune_file} (an earlier call)")
    except (OSError, ValueError, KeyError):
        table = tune(kinds, work, env, device, args.tune_s, args.dry_run, mps, log)
        tune_file.write_text(json.dumps(table, indent=2) + "\n")
    done = {job: fraction_done(results, job[0], job[1], job[2]) or 0.0 for job in queue}
    queue = [job for job in queue if done[job] < 1.0]
    procs, modes, predicted = settings(table, queue, sizes, deadline - time.time(), done)
    if procs > 1:
        mps.start()
    log(f"{procs} process(es) at once; predicted: " + "; ".join(
        f"{'/'.join(map(str, p['name'][:3]))} {p['start']:.0f}-{p['end']:.0f} s" for p in predicted))
    extra = ["--profile", "smoke", "--set", "pretrained=false", "--purpose", "gpu_reproduce --dry-run",
             "--checkpoint-minutes", "0.0001"] if args.dry_run else ["--checkpoint-minutes", "1"]
    extra += [a for kv in args.set for a in ("--set", kv)]
    seconds = {p["name"]: p["seconds"] for p in predicted}
    pending = sorted([p["name"] for p in predicted], key=lambda j: (j[2], -seconds[j]))
    running: dict[tuple, tuple[subprocess.Popen, float]] = {}
    schedule, exits = [], {}

    def name(job) -> str:
        return f"{job[0]}/{job[1]}/s{job[2]}"

    def start(job) -> None:
        paper, model, seed, sets = job
        limit = max(int(deadline - time.time() - 5), 1)
        mode_sets = ["--set", "compile_mode=reduce-overhead"] if modes.get(job) == "graphs" else []
        cmd = [sys.executable, "-c", "import sys, fer_bench.reproduce as r, fer_bench.cli as c; r.MIN_START_S = 30; "
               "sys.exit(c.main(sys.argv[1:]))", "reproduce", "--paper", paper, "--model", model,
               "--seeds", str(seed), "--data", data, "--out", str(results), "--no-progress",
               "--time-limit", f"{limit // 3600}:{limit // 60 % 60:02d}:{limit % 60:02d}",
               *[a for kv in sets for a in ("--set", kv)], *mode_sets, *extra]
        logf = open(results / "logs" / f"{paper}-{model}-s{seed}.log", "a")
        running[job] = (subprocess.Popen(cmd, cwd=REPO, env={**env, **mps.env}, stdout=logf,
                                         stderr=subprocess.STDOUT), time.time())
        schedule.append({"run": name(job), "started_s": round(time.time() - t0, 1), "mode": modes.get(job, "eager"),
                         "resumed_from": round(done.get(job, 0.0), 3), "predicted_s": seconds[job]})
        log(f"start {name(job)} ({modes.get(job)}, predicted {seconds[job]:.0f} s, limit {limit} s)")

    try:
        while running or pending:
            for job, (proc, began) in list(running.items()):
                if proc.poll() is not None:
                    del running[job]
                    exits[name(job)] = proc.returncode
                    log(f"exit {name(job)}: {proc.returncode} after {time.time() - began:.0f} s")
            # the measured speed may flatter: slow every later estimate by the worst ratio a running run shows
            slow = 1.0
            for job, (_, began) in running.items():
                f = (fraction_done(results, *job[:3]) or 0.0) - done.get(job, 0.0)
                if f > 0.05:
                    slow = max(slow, (time.time() - began) / (f / max(1 - done.get(job, 0.0), 1e-9) * seconds[job]))
            while pending and len(running) < procs:
                left = deadline - time.time() - MARGIN_S
                fit = [j for j in pending if seconds[j] * slow <= left]
                if not fit:
                    log(f"not started (cannot finish in {left:.0f} s): {', '.join(map(name, pending))}")
                    pending = []
                    break
                job = next(j for j in fit if j[2] == min(k[2] for k in fit))
                pending.remove(job)
                start(job)
            if time.time() > deadline + 40:  # --time-limit stops each run before this: a hung one ends here
                for proc, _ in running.values():
                    proc.kill()
            time.sleep(1 if args.dry_run else 3)
    finally:
        mps.quit()
    return finish(args, out, work, results, queue, schedule, exits, table, procs, modes, t0, budget, dataset)


def finish(args, out, work, results, queue, schedule, exits, table, procs, modes, t0, budget, dataset) -> int:
    states = {}
    for paper, model, seed, _ in queue:
        for d in _dirs(results, paper, model, seed):
            m = json.loads((d / "metrics.json").read_text()) if (d / "metrics.json").is_file() else {}
            states[f"{paper}/{model}/s{seed}"] = {
                "dir": d.name, "status": m.get("status", "no metrics.json"), "exit": exits.get(f"{paper}/{model}/s{seed}"),
                "epochs": f"{m.get('epochs_completed')} / {m.get('epochs_planned')}", **(m.get("timing") or {}),
                "hardware": m.get("hardware"), "execution": m.get("execution"),
                "PrivateTest": (m.get("splits") or {}).get("PrivateTest", {}).get("accuracy")}
    with tarfile.open(out / "runs.tar.gz", "w:gz") as t:
        t.add(results / "logs", arcname="logs")  # one console log per run
        for f in sorted(results.glob("runs/*/*/*/*")):
            if f.name in ("metrics.json", "run.json", "progress.json", "logs"):
                t.add(f, arcname=str(f.relative_to(results)))
    (out / "tune.json").write_text(json.dumps(table, indent=2) + "\n")
    started = {s["run"] for s in schedule}
    summary = {"budget_s": budget, "seconds": round(time.time() - t0, 1), "dry_run": args.dry_run,
               # no machine path in a committed record: where the data came from, and what it decoded to
               "data": "synthetic" if args.dry_run else f"{dataset.format}, fingerprint {dataset.fingerprint}",
               "settings": {"processes": procs, "modes": {f"{j[0]}/{j[1]}/s{j[2]}": m for j, m in modes.items()},
                            "mps": table.get("mps"), "set": args.set, "work": "fixed" if args.work or not
                            args.dry_run else "temporary"},
               "tune": table, "schedule": schedule, "runs": states,
               "not_started": [f"{p}/{m}/s{s}" for p, m, s, _ in queue if f"{p}/{m}/s{s}" not in started
                               and states.get(f"{p}/{m}/s{s}", {}).get("status") != "completed"]}
    (out / "gpu_reproduce.json").write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")
    print(f"-> {out / 'runs.tar.gz'}, {out / 'gpu_reproduce.json'}, {out / 'tune.json'}", flush=True)
    if not any(s["status"] == "completed" for s in states.values()):
        failed = ", ".join(f"{run}: exit {rc}" for run, rc in exits.items()) or "none started"
        print(f"gpu_reproduce: no run completed ({failed}); see the console logs in runs.tar.gz.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
