"""The first ~90 s of a lent GPU (issue 30), and the arithmetic that packs the queue after them.

Measure: per model kind, training and evaluation steps/s on synthetic batches with the real network, optimiser,
augmentation and precision, eager vs CUDA graphs (compile_mode=reduce-overhead) and 1 vs 2 vs 4 processes at once
(the aggregate of processes measuring in the same window; under NVIDIA MPS where gpu_reproduce started it).
Each level is one set of worker processes (``python gpu_tune.py --worker ...``) that measure every kind in turn, in
time slots they agree on, so concurrent processes measure the same kind at the same time.

Pack: ``estimate`` turns a row of the table into a run's seconds; ``simulate`` lays the queue on ``slots`` processes,
in priority tiers (a tier = one seed of every model: every claim gets a run before any gets a second), longest first
within a tier, never starting a run that cannot finish before the budget ends; ``choose`` picks the level.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
START_S = 25.0  # a run's process: imports, data, the model, Lightning's setup (not measured: a guess kept generous)


def measure(paper: str, model: str, mode: str, device: str, window: tuple[float, float], overrides=()) -> dict:
    """Steps/s of one kind in ``mode`` (eager | graphs) within the wall-clock ``window`` (start, end): warm-up (and
    compilation) before it, training steps in its first two thirds, evaluation steps in the last third."""
    import torch

    from fer_bench.augment import preprocess
    from fer_bench.runner import default_precision, resolve_config
    from fer_bench.training import FERClassifier, optimizers
    from papers import get_paper

    sets = [*overrides, "pretrained=false"] + (["compile_mode=reduce-overhead"] if mode == "graphs" else [])
    cfg = resolve_config(paper, model, "paper", None, sets)
    module = FERClassifier(get_paper(paper).build(model, cfg), cfg, (0.5, 0.25), seed=0).to(device)
    module.setup("fit")
    opt = optimizers(module.parameters(), cfg)
    opt = opt["optimizer"] if isinstance(opt, dict) else opt
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (cfg["batch_size"], 48, 48), dtype=torch.uint8, generator=g).to(device)
    y = torch.randint(0, 7, (cfg["batch_size"],), generator=g).to(device)
    xe = torch.randint(0, 256, (cfg["eval_batch_size"], 48, 48), dtype=torch.uint8, generator=g).to(device)
    bf16 = default_precision("gpu" if device == "cuda" else "cpu") == "bf16-mixed"
    cast = (lambda: torch.autocast(device, dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def train_step():
        torch.manual_seed(0)
        with cast():
            loss = module.training_step((preprocess(x, cfg, True, 0.5, 0.25), y), 0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    def eval_step():
        with torch.no_grad(), cast():
            return module._call(module.predict_logits, preprocess(xe, cfg, False, 0.5, 0.25))

    t0 = time.perf_counter()
    first = float(train_step().detach().float())  # the first step from the seeded weights: graphs vs eager
    sync()
    compile_s = time.perf_counter() - t0
    for _ in range(2):
        train_step()
    module.eval()
    for _ in range(2):
        eval_step()
    module.train()
    sync()
    start, end = window
    time.sleep(max(0.0, start - time.time()))
    split = start + (end - start) * 2 / 3

    def rate(step, until):
        n, t = 0, time.perf_counter()
        while time.time() < until or n == 0:
            step()
            n += 1
        sync()
        return n / (time.perf_counter() - t)

    train = rate(train_step, split)
    module.eval()
    ev = rate(eval_step, end)
    return {"kind": f"{paper}/{model}", "mode": mode, "train_steps_per_s": round(train, 3),
            "eval_steps_per_s": round(ev, 3), "compile_s": round(compile_s, 1), "first_loss": first,
            "compiled": module.execution["compiled"], "fallback": module.execution["fallback"],
            "batch_size": cfg["batch_size"], "eval_batch_size": cfg["eval_batch_size"]}


def worker(args) -> int:
    """One process of one level: ready, then each kind in its slot; one JSON line per kind to --result."""
    warnings.simplefilter("ignore")
    import torch  # noqa: F401  (imported before 'ready': the import is the slow part)
    Path(args.ready).write_text("ready")
    while not Path(args.go).is_file():
        time.sleep(0.05)
    t0 = float(Path(args.go).read_text())
    rows = []
    for i, kind in enumerate(args.kinds.split(",")):
        paper, model = kind.split("/")
        window = (t0 + i * args.slot + args.warm, t0 + (i + 1) * args.slot)
        try:
            rows.append(measure(paper, model, args.mode, args.device, window, args.set))
        except Exception as e:  # one kind that fails (memory, a model that cannot run) leaves the others measured
            rows.append({"kind": kind, "mode": args.mode, "error": f"{type(e).__name__}: {str(e)[:300]}"})
        Path(args.result).write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return 0


def run_level(kinds: list[str], mode: str, procs: int, slot: float, warm: float, device: str, folder: Path,
              env: dict, sets=(), startup_timeout: float = 120.0) -> list[dict]:
    """``procs`` workers measuring every kind at once; per kind the aggregate steps/s over them (per-process rates
    summed), or an error."""
    folder.mkdir(parents=True, exist_ok=True)
    go = folder / f"go-{mode}-{procs}"
    go.unlink(missing_ok=True)
    workers = []
    for p in range(procs):
        ready, result = folder / f"ready-{mode}-{procs}-{p}", folder / f"result-{mode}-{procs}-{p}.jsonl"
        ready.unlink(missing_ok=True)
        result.unlink(missing_ok=True)
        cmd = [sys.executable, str(Path(__file__)), "--worker", "--kinds", ",".join(kinds), "--mode", mode,
               "--device", device, "--slot", str(slot), "--warm", str(warm), "--ready", str(ready), "--go", str(go),
               "--result", str(result), *[a for kv in sets for a in ("--set", kv)]]
        workers.append((subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                                         stderr=open(folder / f"stderr-{mode}-{procs}-{p}.log", "w")), ready, result))
    t0 = time.time()
    while not all(r.is_file() for _, r, _ in workers) and time.time() - t0 < startup_timeout:
        if any(w.poll() is not None for w, _, _ in workers):
            break
        time.sleep(0.1)
    go.write_text(str(time.time() + 1.0))
    for w, _, _ in workers:
        try:
            w.wait(timeout=len(kinds) * slot + 60)
        except subprocess.TimeoutExpired:
            w.kill()
    per_proc = []
    for _, _, result in workers:
        try:
            per_proc.append({r["kind"]: r for r in map(json.loads, result.read_text().splitlines())})
        except (OSError, ValueError):
            per_proc.append({})
    rows = []
    for kind in kinds:
        got = [p.get(kind) for p in per_proc]
        ok = [r for r in got if r and "error" not in r]
        if len(ok) < procs:
            errors = [r["error"] for r in got if r and "error" in r]
            rows.append({"kind": kind, "mode": mode, "procs": procs,
                         "error": errors[0] if errors else "a worker did not report (see stderr logs)"})
            continue
        rows.append({"kind": kind, "mode": mode, "procs": procs, **{k: ok[0][k] for k in (
            "batch_size", "eval_batch_size", "first_loss", "compiled", "fallback")},
            "compile_s": max(r["compile_s"] for r in ok),
            "train_steps_per_s": round(sum(r["train_steps_per_s"] for r in ok), 3),  # aggregate over the processes
            "eval_steps_per_s": round(sum(r["eval_steps_per_s"] for r in ok), 3)})
    return rows


def faithful(rows: list[dict], rtol: float = 0.02) -> list[dict]:
    """Marks each row: graphs is faithful where it ran compiled and its first step's loss (same weights, same batch)
    is eager's within ``rtol`` (bf16's precision); eager always is."""
    eager = {r["kind"]: r["first_loss"] for r in rows if r["mode"] == "eager" and "error" not in r}
    for r in rows:
        if "error" in r:
            r["faithful"] = False
        elif r["mode"] == "eager":
            r["faithful"] = True
        else:
            ref = eager.get(r["kind"])
            r["faithful"] = bool(r.get("compiled")) and ref is not None and \
                abs(r["first_loss"] - ref) <= rtol * max(abs(ref), 1e-6)
    return rows


# ---------------------------------------------------------------- packing arithmetic

def estimate(row: dict, sizes: dict, epochs: int, done: float = 0.0, procs: int = 1) -> float:
    """Seconds one run takes at ``row``'s measured speed (the aggregate of ``row['procs']`` processes; each of them
    gets its share): start-up and compilation, the remaining fraction of its epochs (training steps and a
    validation per epoch), and the final evaluation (every test split twice: the selected and the last epoch)."""
    share = max(row["procs"], 1)
    train_rate, eval_rate = row["train_steps_per_s"] / share, row["eval_steps_per_s"] / share
    steps = sizes["train"] // row["batch_size"]
    val = -(-sizes["val"] // row["eval_batch_size"])
    tests = sum(-(-n // row["eval_batch_size"]) for n in sizes["tests"])
    per_epoch = steps / train_rate + val / eval_rate
    compile_s = row["compile_s"] if row["mode"] == "graphs" else 0.0
    return START_S + compile_s + (1 - done) * epochs * per_epoch + 2 * tests / eval_rate


def simulate(jobs: list[dict], slots: int, budget: float, margin: float = 30.0) -> list[dict]:
    """The schedule on ``slots`` processes: jobs ({"name", "tier", "seconds"}) in tiers, longest first within the
    earliest tier that has one that fits; a job starts only if it ends ``margin`` before ``budget``. Returns the
    started jobs with their start and end (seconds from now), in start order."""
    free = [0.0] * slots
    left = sorted(jobs, key=lambda j: (j["tier"], -j["seconds"]))
    plan = []
    while left:
        i = min(range(slots), key=lambda k: free[k])
        now = free[i]
        fit = [j for j in left if now + j["seconds"] <= budget - margin]
        if not fit:
            # nothing fits in the earliest free slot: none fits later either (slots only get later)
            break
        tier = min(j["tier"] for j in fit)
        job = next(j for j in fit if j["tier"] == tier)  # the longest of that tier (left is sorted)
        left.remove(job)
        plan.append({**job, "start": round(now, 1), "end": round(now + job["seconds"], 1), "slot": i})
        free[i] = now + job["seconds"]
    return plan


def choose(options: dict[int, list[dict]], budget: float, margin: float = 30.0) -> tuple[int, list[dict]]:
    """The number of processes whose schedule completes the most runs within the budget (ties: the earlier end);
    ``options`` maps a level to its jobs with their seconds at that level."""
    best = None
    for procs, jobs in sorted(options.items()):
        plan = simulate(jobs, procs, budget, margin)
        score = (len(plan), -max((p["end"] for p in plan), default=0.0))
        if best is None or score > best[0]:
            best = (score, procs, plan)
    return (best[1], best[2]) if best else (1, [])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", action="store_true")
    ap.add_argument("--kinds", required=True)
    ap.add_argument("--mode", default="eager", choices=("eager", "graphs"))
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--slot", type=float, default=6.0)
    ap.add_argument("--warm", type=float, default=2.5)
    ap.add_argument("--ready")
    ap.add_argument("--go")
    ap.add_argument("--result")
    ap.add_argument("--set", action="append", default=[])
    args = ap.parse_args()
    sys.path.insert(0, str(REPO))
    return worker(args)


if __name__ == "__main__":
    sys.exit(main())
