"""The `fer-bench` command: list, run, reproduce, report, data, check, bench. Bad input exits with status 2 and a message."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import UserError


def _list(args) -> None:
    from papers import get_paper, list_papers

    papers = [get_paper(p) for p in list_papers()]
    if args.json:
        print(json.dumps([p.to_json() for p in papers], indent=2))
        return
    for p in papers:
        print(f"{p.id}  {p.title}  ({f'seed {p.seed}' if p.seed else p.source})")
        for m in p.models:
            claims = [c for c in p.claims if c.model == m and c.metric == "accuracy"]
            claimed = ", ".join(f"{c.as_printed} {c.split}" for c in claims) or "no accuracy claimed"
            print(f"    {m:<22} {p.num_params(m) / 1e6:8.2f}M params   claims: {claimed}")


def _run(args) -> None:
    from .results import run_summary
    from .results import cv_summary_path
    from .runner import run

    paths = run(args.paper, model=args.model, profile=args.profile, seed=args.seed, data=args.data,
                out=args.out, epochs=args.epochs, max_time=args.max_time, accelerator=args.accelerator,
                devices=args.devices, num_nodes=args.num_nodes, strategy=args.strategy,
                precision=args.precision, overrides=args.set, resume=args.resume,
                deterministic=args.deterministic, progress=not args.no_progress, dataset=args.dataset,
                folds=args.folds)
    summaries = {}
    for p in paths:
        d = json.loads(p.read_text())
        print(run_summary(d, p))
        if "fold" in d:
            summaries[d["fold"]["cv_id"]] = p
    for p in summaries.values():  # cross-validation: mean and spread over the folds
        cv = json.loads(cv_summary_path(p).read_text())
        a = cv["test"]["accuracy"]
        print(f"{cv['paper']}/{cv['model']} [{cv['profile']}] {cv['protocol']} on {cv['dataset']}: test accuracy "
              f"{a['mean']:.4f} +- {a['std']:.4f} (mean +- sample std over {cv['folds']} folds; min {a['min']:.4f}, "
              f"max {a['max']:.4f}; pooled {cv['pooled']['accuracy']:.4f}) -> {cv_summary_path(p)}")


def _reproduce(args) -> int:
    from . import reproduce as r

    if args.publish:
        if args.plan or args.paper or args.status:
            raise UserError("--publish DEST copies the completed runs under --out: give it alone (with --out).")
        failed = r.publish(Path(args.out), Path(args.publish))
        return 1 if failed else 0
    if args.plan:
        mixed = [f"--{k.replace('_', '-')}" for k, default in (("paper", None), ("model", "all"), ("seeds", "0"),
                 ("profile", "paper"), ("protocol", None), ("set", [])) if getattr(args, k) != default]
        if mixed:
            raise UserError(f"--plan and {', '.join(mixed)}: a plan file says every run's paper, model, seeds, "
                            "profile and recipe; give one or the other.")
        plan = r.load_plan(Path(args.plan))
    elif args.paper:
        sets = list(args.set) + ([f"protocol={args.protocol}"] if args.protocol else [])
        plan = r.make_plan(args.paper, args.model, args.seeds, args.profile, sets, args.purpose or "")
    else:
        raise UserError("reproduce: give --paper PAPER (with --model, --seeds, ...) or --plan FILE.")
    limit = r.parse_time_limit(args.time_limit, r.MIN_START_S) if args.time_limit is not None else None
    r.check_minutes(args.checkpoint_minutes)
    published = Path(args.published) if args.published else None
    if args.status:  # shown even when runs answer nothing, so a user sees which and why
        judged = {item: r.judged_claims(item)[0] for item in plan}
        print(r.status_table(plan, Path(args.out), published, judged))
        return 0
    judged = r.check_judgeable(plan)
    done = r.reproduce(plan, data=args.data, out=args.out, time_limit=limit, precision=args.precision,
                       checkpoint_every_s=args.checkpoint_minutes * 60, progress=not args.no_progress,
                       deterministic=args.deterministic, published=published, share=args.share)
    print(r.status_table(plan, Path(args.out), published, judged))
    if not done:
        print("Stopped before the time limit; every run so far is saved. Continue with the same command.")
    return 0


def _report(args) -> None:
    from .report import generate

    report, paths = generate(args.runs, args.out, "README.md" if args.readme else None)
    for skipped in report.skipped:
        print(f"fer-bench: warning: skipped an unreadable results file: {skipped}", file=sys.stderr)
    print(f"{len(report.units)} run(s), {len(report.summary)} claim(s), {len(report.findings)} audit finding(s) -> "
          f"{paths['report']}, {paths['summary']}, {paths['figures']}/" + (" and README.md" if args.readme else ""))


def _data(args) -> None:
    from .data import load_fer2013, resolve_data_path

    path = resolve_data_path(args.data)
    ds = load_fer2013(path)
    if args.action == "info":
        counts = ds.counts()
        print(f"FER-2013 at {path}: format {ds.format}, fingerprint {ds.fingerprint}, {len(ds.labels)} images")
        print(f"{'split':<12}" + "".join(f"{c:>9}" for c in (*counts["Training"], "total")))
        for split, per in counts.items():
            print(f"{split:<12}" + "".join(f"{n:>9}" for n in (*per.values(), sum(per.values()))))
        return
    from .data_audit import IMAGE_COUNT_KEYS, audit, save_audit

    rows, summary = audit(ds)
    out = Path(args.out)
    try:
        save_audit(out, rows, {"dataset": {"format": ds.format, "fingerprint": ds.fingerprint}, "counts": summary})
    except OSError as e:
        raise UserError(f"Cannot write the audit to {out}: {e.strerror or e}. Free some space or choose a writable "
                        "--out; the audit already there, if any, is left as it was.") from None
    print("images and groups (each counted once):")
    for key in IMAGE_COUNT_KEYS:
        print(f"{summary[key]:>7}  {key}")
    print("pairs of images (blank: single images):")
    for key, n in summary.items():
        if key not in IMAGE_COUNT_KEYS:
            print(f"{n:>7}  {key}")
    print(f"pairs: {out / 'pairs.csv'}; summary: {out / 'summary.json'}")


def _check(args) -> int:
    from .check import check, learning
    from .reproduce import parse_seeds

    if args.learning:
        if args.only is not None:
            raise UserError("--learning checks one fixed run; drop --only.")
        seeds = parse_seeds(args.seeds)
        if len(seeds) < 3:
            raise UserError(f"--seeds {args.seeds}: the prediction interval needs at least 3 seeds.")
        return learning(args.data, Path(args.learning_reference), update=args.update, seeds=seeds)
    return check(args.data, Path(args.reference), update=args.update, only=args.only,
                 out=Path(args.out) if args.out else None, learning_reference=Path(args.learning_reference))


def _bench(args) -> None:
    from .bench import bench, estimates_markdown, gpu_estimates, write_csv
    from papers import get_paper, list_papers

    papers = list_papers() if args.paper == "all" else [get_paper(args.paper).id]
    if args.paper == "all" and args.model != "all":
        raise UserError(f"--paper all --model {args.model}: name the paper of that model.")
    if args.estimate:
        rows = gpu_estimates(papers)
        write_csv(Path(args.out) / "gpu_estimates.csv", list(rows[0]), rows)
        table = estimates_markdown(rows)
        if args.readme:
            from .report import refresh_readme

            refresh_readme("README.md", table, section="bench")
        print(table + f"-> {Path(args.out) / 'gpu_estimates.csv'}" + (" and README.md" if args.readme else ""))
        return
    pipelines = tuple(p.strip() for p in args.pipelines.split(",") if p.strip())
    rows = [row for pid in papers for row in bench(
        pid, model=args.model, batch_size=args.batch_size, steps=args.steps, warmup=args.warmup,
        precision=args.precision, channels_last=args.channels_last, compile=args.compile, overrides=args.set,
        data=args.data, out=args.out, accelerator=args.accelerator, workers=args.workers, pipelines=pipelines,
        data_timings=args.data_timings, rounds=args.rounds)]

    def num(v, fmt="{:.1f}"):
        return "-" if v is None else fmt.format(v)

    for r in rows:
        print(f"{r['paper']}/{r['model']}  {r['input_size']}x{r['input_size']}x{r['channels']}  batch "
              f"{r['batch_size']} (eval {r['eval_batch_size']})  {r['precision']}  channels_last "
              f"{r['channels_last']}  compile {r['compile']}  on {r['device']}  (median of {r['rounds']} rounds of "
              f"{r['steps']} steps)")
        print(f"  {'images/s':<14}{'pure':>10}{'fer_bench':>11}{'conventional':>14}{'fer_bench/pure':>16}"
              f"{'fer_bench/conv':>16}")
        for phase in ("train", "eval"):
            print(f"  {phase:<14}" + "".join(num(r[f"{p}_{phase}_img_s"]).rjust(w) for p, w in
                                             (("pure", 10), ("fer_bench", 11), ("conventional", 14)))
                  + num(r[f"{phase}_ratio_fer_bench_to_pure"], "{:.2f}").rjust(16)
                  + num(r[f"{phase}_ratio_fer_bench_to_conventional"], "{:.2f}").rjust(16))
        print(f"  FLOPs/image: train {r['train_gflop_per_img']:.3f} G, eval {r['eval_gflop_per_img']:.3f} G; "
              f"achieved {num(r['pure_train_gflop_s'])} GFLOP/s pure, {num(r['fer_bench_train_gflop_s'])} "
              f"fer_bench; batched augmentation {r['augment_img_s']:,.0f} img/s"
              + (f"; FER-2013 load cold {r['cold_load_s']:.2f} s, cached {r['cached_load_s']:.2f} s"
                 if r["cold_load_s"] is not None else ""))
    print(f"-> {Path(args.out) / 'bench.csv'}")


def _devices(text: str):
    return text if text == "auto" else int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fer-bench", description="Reproduce facial-expression-recognition papers.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="registered papers, their models and claims")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_list)

    p = sub.add_parser("run", help="train and evaluate a paper's model(s)")
    p.add_argument("--paper", required=True)
    p.add_argument("--model", default="all", help="a model name of the paper, or 'all' (default)")
    p.add_argument("--profile", default="paper", help="paper (the recipe as written) or smoke (seconds, for CI)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", default=None, help="FER-2013 folder or fer2013.csv (default $FER_BENCH_DATA, "
                                                "then ./data/fer2013); with --dataset jaffe the folder of the JAFFE "
                                                ".tiff files (default $FER_BENCH_JAFFE, then ./data/jaffe)")
    p.add_argument("--dataset", default="fer2013", choices=("fer2013", "jaffe"),
                   help="fer2013 (default; official splits) or jaffe (user-supplied; k-fold cross-validation)")
    p.add_argument("--folds", type=int, default=None, metavar="K",
                   help="k-fold cross-validation, one run per fold (jaffe only; default 5); "
                        "--set folds_by=subject for subject-independent folds")
    p.add_argument("--out", default="results", help="results root (default results/)")
    p.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs (recorded as a cut budget)")
    p.add_argument("--max-time", default=None, metavar="D:HH:MM:SS", help="stop training after this wall time")
    p.add_argument("--accelerator", default="auto", help="cpu, gpu or auto")
    p.add_argument("--devices", type=_devices, default=1)
    p.add_argument("--num-nodes", type=int, default=1)
    p.add_argument("--strategy", default="auto", help="auto or ddp")
    p.add_argument("--precision", default=None, help="default: bf16-mixed on Ampere+ GPUs and bf16-capable CPUs, 16-mixed on older GPUs, else 32-true")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a recipe key")
    p.add_argument("--resume", action="store_true", help="continue the newest interrupted run")
    p.add_argument("--deterministic", action="store_true", help="deterministic algorithms (slower)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)

    p = sub.add_parser("reproduce", help="full-recipe runs that can be stopped at any time and continued")
    p.add_argument("--paper", default=None, help="a paper id (or use --plan)")
    p.add_argument("--model", default="all", help="a model name of the paper, or 'all' (default)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    p.add_argument("--profile", default="paper", help="paper (default) or smoke")
    p.add_argument("--protocol", default=None, help="canonical or paper (default: the recipe's)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a recipe key")
    p.add_argument("--plan", default=None, metavar="FILE", help="a TOML plan of [[run]] tables, e.g. results/plan.toml")
    p.add_argument("--data", default=None, help="FER-2013 folder or fer2013.csv (default $FER_BENCH_DATA)")
    p.add_argument("--out", default="results", help="results root (default results/)")
    p.add_argument("--time-limit", default=None, metavar="H:MM:SS",
                   help="stop cleanly (checkpoint, status interrupted, exit 0) before this much wall time")
    p.add_argument("--checkpoint-minutes", type=float, default=5.0,
                   help="minutes of training between resumable checkpoints inside an epoch (default 5)")
    p.add_argument("--precision", default=None, help="for runs that start now (default: as `run`); a resumed "
                                                     "run keeps its own")
    p.add_argument("--deterministic", action="store_true", help="deterministic algorithms (slower)")
    p.add_argument("--status", action="store_true", help="only print the state of every planned run")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--purpose", default=None, help="why runs that answer no claim of the paper are trained anyway "
                                                   "(without it they are refused)")
    p.add_argument("--published", default=None, metavar="DIR",
                   help="committed results (e.g. the repository's results/): a planned run completed there, on any "
                        "machine, is not trained again")
    p.add_argument("--share", action="store_true",
                   help="other reproduce processes carry out the same plan at once (e.g. one per core): a run another "
                        "process trains is left to it, and each run is claimed so that no two start it")
    p.add_argument("--publish", default=None, metavar="DEST",
                   help="copy the completed runs under --out into DEST/runs (each whole or not at all, no "
                        "checkpoints) and record half-way runs' progress in DEST/campaign; nothing is trained")
    p.set_defaults(func=_reproduce)

    p = sub.add_parser("report", help="claimed vs measured tables, claim audit and figures")
    p.add_argument("--runs", default="results", help="results root holding runs/ (default results/)")
    p.add_argument("--out", default=None, help="where REPORT.md, summary.csv and figures/ go (default: --runs)")
    p.add_argument("--readme", action="store_true", help="refresh the generated table in ./README.md")
    p.set_defaults(func=_report)

    p = sub.add_parser("data", help="inspect the dataset: info (counts, fingerprint) or audit (duplicates, leaks)")
    p.add_argument("action", choices=["info", "audit"])
    p.add_argument("--data", default=None, help="FER-2013 folder or fer2013.csv (default $FER_BENCH_DATA)")
    p.add_argument("--out", default="results/data_audit", help="audit: where pairs.csv and summary.json go")
    p.set_defaults(func=_data)

    p = sub.add_parser("bench", help="throughput: plain PyTorch vs fer-bench vs an ImageFolder/PIL pipeline")
    p.add_argument("--paper", required=True, help="a paper id, or 'all'")
    p.add_argument("--model", default="all", help="a model name of the paper, or 'all' (default)")
    p.add_argument("--batch-size", type=int, default=None, help="training batch (default: the paper's)")
    p.add_argument("--steps", type=int, default=5, help="timed batches per pipeline, phase and round (default 5)")
    p.add_argument("--warmup", type=int, default=2, help="untimed batches before them (default 2)")
    p.add_argument("--rounds", type=int, default=3, help="rounds in which the pipelines take turns; the median "
                                                         "is reported (default 3)")
    p.add_argument("--precision", default=None, help="32-true, bf16-mixed or 16-mixed (default: as `run`)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="NHWC memory layout (default: the recipe's, on)")
    p.add_argument("--compile", action="store_true", help="torch.compile the network")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a recipe key")
    p.add_argument("--data", default=None, help="FER-2013 image folder (default $FER_BENCH_DATA)")
    p.add_argument("--out", default="results/bench", help="bench.csv goes here (default results/bench)")
    p.add_argument("--accelerator", default="auto", help="cpu, gpu or auto")
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers of the conventional pipeline "
                                                                "(default: the number of CPUs)")
    p.add_argument("--pipelines", default=",".join(("pure", "fer_bench", "conventional")),
                   help="comma-separated subset of pure,fer_bench,conventional")
    p.add_argument("--data-timings", action="store_true", help="also time a cold (decode) and a cached dataset load")
    p.add_argument("--estimate", action="store_true", help="no timing: estimated GPU epoch times from FLOP counts "
                                                           "(<out>/gpu_estimates.csv)")
    p.add_argument("--readme", action="store_true", help="with --estimate: refresh the table in ./README.md")
    p.set_defaults(func=_bench)

    p = sub.add_parser("check", help="CI reproducibility check: registry, smoke runs, determinism, reference")
    p.add_argument("--data", default=None, help="FER-2013 folder or fer2013.csv (default $FER_BENCH_DATA)")
    p.add_argument("--reference", default="results/reference/smoke.json")
    p.add_argument("--only", nargs="*", default=None, metavar="PAPER[/MODEL]", help="check these models only")
    p.add_argument("--update", action="store_true", help="write the measured values as the new reference")
    p.add_argument("--out", default=None, help="keep the smoke runs under this results root (default: discard)")
    p.add_argument("--learning", action="store_true",
                   help="only the learning check (with --update: measure --seeds and write the learning reference)")
    p.add_argument("--seeds", default="0,1,2,3,4", help="with --learning --update: the seeds to measure (>= 3)")
    p.add_argument("--learning-reference", default="results/reference/learning.json")
    p.set_defaults(func=_check)
    return parser


# Lightning's notices that say nothing about the run (tips, hardware it did not find, fer-bench's own deliberate
# choices); fer-bench prints what a run did itself. FER_BENCH_VERBOSE=1 keeps them.
_NOISE = ("isinstance(treespec, LeafSpec)", "You have overridden `on_after_batch_transfer`",
          "The number of training batches", "exists and is not empty",
          "does not have many workers", "module(s) in eval mode")


def _quiet_lightning() -> None:
    import logging
    import os
    import re
    import warnings

    if os.environ.get("FER_BENCH_VERBOSE"):
        return
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)  # "GPU available", tips, "Restoring states from ..."
    for text in _NOISE:
        warnings.filterwarnings("ignore", message=f".*{re.escape(text)}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in ("run", "reproduce", "check"):
        _quiet_lightning()
    if getattr(args, "max_time", None):
        _check_max_time(args.max_time)
    try:
        status = args.func(args) or 0
    except UserError as e:
        print(f"fer-bench: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fer-bench: interrupted.", file=sys.stderr)
        return 2
    return status


def _check_max_time(text: str) -> None:
    parts = text.split(":")
    if len(parts) != 4 or not all(p.isdigit() for p in parts):
        print(f"fer-bench: error: --max-time {text}: write it as D:HH:MM:SS, e.g. 00:01:30:00.", file=sys.stderr)
        raise SystemExit(2)


if __name__ == "__main__":
    sys.exit(main())
