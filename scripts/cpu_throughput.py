"""Aggregate training images/s of one recipe on this CPU, several ways, timed in turns (an interleaved A/B/...).

    python scripts/cpu_throughput.py --paper du_resnet_fc --model resnet50 \
        --ways 1x2,2x1,1x2:nchw,1x2:compile --seconds 60 --rounds 3

A way is PROCSxTHREADS[:nchw][:compile]: PROCS training processes side by side, each with THREADS intra-op threads,
channels_last unless :nchw, eager unless :compile (nn.Module.compile). Each process trains the paper's network
with its optimiser at the recipe's batch size on one synthetic batch held in memory (fer-bench bench's `pure`
loop: no data loading), for --seconds after a warm-up; the way's rate is the sum of its processes' images/s. The
ways take turns for --rounds rounds (the shared VMs drift by up to 30% from one minute to the next), and the
median over rounds is reported beside every round's value. Rows go to results/bench/cpu_throughput.csv.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def worker(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    from fer_bench.bench import _Plain, _synthetic
    from fer_bench.runner import resolve_config
    from papers import get_paper

    sets = [f"channels_last={'false' if args.nchw else 'true'}", f"compile={'true' if args.compile else 'false'}"]
    cfg = resolve_config(args.paper, args.model, "paper", None, sets)
    plain = _Plain(get_paper(args.paper), args.model, cfg, torch.device("cpu"), "32-true")
    x, y = _synthetic(cfg, cfg["batch_size"], True, (0.0, 1.0))
    for _ in range(args.warmup):
        plain.train_step(x, y)
    t0, images = time.perf_counter(), 0
    while time.perf_counter() - t0 < args.seconds:
        plain.train_step(x, y)
        images += len(y)
    print(json.dumps({"img_s": images / (time.perf_counter() - t0), "threads": torch.get_num_threads()}))


def parse_way(text: str) -> dict:
    head, *flags = text.split(":")
    procs, threads = (int(v) for v in head.lower().split("x"))
    if procs < 1 or threads < 1 or set(flags) - {"nchw", "compile"}:
        raise SystemExit(f"cpu_throughput: way {text!r}: write PROCSxTHREADS[:nchw][:compile], e.g. 2x1:compile")
    return {"way": text, "procs": procs, "threads": threads, "nchw": "nchw" in flags, "compile": "compile" in flags}


def run_way(w: dict, args) -> float:
    cmd = [sys.executable, __file__, "--worker", "--paper", args.paper, "--model", args.model, "--threads",
           str(w["threads"]), "--seconds", str(args.seconds), "--warmup", str(args.warmup)]
    cmd += ["--nchw"] * w["nchw"] + ["--compile"] * w["compile"]
    env = {**os.environ, "OMP_NUM_THREADS": str(w["threads"]), "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(w["procs"])]
    total = 0.0
    for p in procs:
        out, err = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"cpu_throughput: {w['way']} failed:\n{err[-3000:]}")
        total += json.loads(out.strip().splitlines()[-1])["img_s"]
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--paper", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--ways", default="1x2,2x1")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=str(REPO / "results" / "bench" / "cpu_throughput.csv"))
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--nchw", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--compile", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    ways = [parse_way(w) for w in args.ways.split(",")]
    rates = {w["way"]: [] for w in ways}
    for r in range(args.rounds):
        order = ways[r % len(ways):] + ways[:r % len(ways)]  # each way goes first in some round
        for w in order:
            rates[w["way"]].append(run_way(w, args))
            print(f"round {r + 1}: {w['way']}: {rates[w['way']][-1]:.1f} img/s", flush=True)
    sys.path.insert(0, str(REPO))
    from fer_bench.results import device_name, software

    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    base = min(statistics.median(v) for v in rates.values()) if rates else 1.0
    rows = []
    print(f"\n{args.paper}/{args.model}, fp32, {args.seconds:g} s per way and round, {args.rounds} rounds, "
          f"{device_name('cpu')}")
    print("| way | median img/s | rounds | vs slowest |\n|---|---|---|---|")
    for w in ways:
        v = rates[w["way"]]
        med = statistics.median(v)
        print(f"| {w['way']} | {med:.1f} | {', '.join(f'{x:.1f}' for x in v)} | {med / base:.2f}x |")
        rows.append({"timestamp": stamp, "paper": args.paper, "model": args.model, "way": w["way"],
                     "procs": w["procs"], "threads": w["threads"], "channels_last": not w["nchw"],
                     "compile": w["compile"], "seconds": args.seconds, "rounds": args.rounds,
                     "median_img_s": round(med, 2), "round_img_s": " ".join(f"{x:.2f}" for x in v),
                     "device": device_name("cpu"), "git_sha": software()["git_sha"]})
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    new = not out.exists()
    with out.open("a", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=list(rows[0]))
        if new:
            wr.writeheader()
        wr.writerows(rows)


if __name__ == "__main__":
    main()
