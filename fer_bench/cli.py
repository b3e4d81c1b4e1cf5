"""The `fer-bench` command: list, run, report. Bad input exits with status 2 and a message."""

from __future__ import annotations

import argparse
import json
import sys

from .errors import UserError


def _list(args) -> None:
    from .registry import get_paper, list_papers

    papers = [get_paper(p) for p in list_papers()]
    if args.json:
        print(json.dumps([p.to_json() for p in papers], indent=2))
        return
    for p in papers:
        print(f"{p.id}  {p.title}  (seed {p.seed})")
        for m in p.models:
            claims = [c for c in p.claims if c.model == m and c.metric == "accuracy"]
            claimed = ", ".join(f"{c.as_printed} {c.split}" for c in claims) or "no accuracy claimed"
            print(f"    {m:<22} {p.num_params(m) / 1e6:8.2f}M params   claims: {claimed}")


def _run(args) -> None:
    from .runner import run

    paths = run(args.paper, model=args.model, profile=args.profile, seed=args.seed, data=args.data,
                out=args.out, epochs=args.epochs, max_time=args.max_time, accelerator=args.accelerator,
                devices=args.devices, num_nodes=args.num_nodes, strategy=args.strategy,
                precision=args.precision, overrides=args.set, resume=args.resume,
                deterministic=args.deterministic, progress=not args.no_progress)
    for p in paths:
        d = json.loads(p.read_text())
        acc = {s: f"{v['accuracy']:.4f}" for s, v in d["splits"].items()}
        print(f"{d['paper']}/{d['model']} [{d['profile']}] {d['status']}: accuracy {acc} -> {p}")


def _report(args) -> None:
    from .report import generate

    report, paths = generate(args.runs, args.out, "README.md" if args.readme else None)
    print(f"{len(report.units)} run(s), {len(report.summary)} claim(s), {len(report.findings)} audit finding(s) -> "
          f"{paths['report']}, {paths['summary']}, {paths['figures']}/" + (" and README.md" if args.readme else ""))


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
                                                "then ./data/fer2013)")
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

    p = sub.add_parser("report", help="claimed vs measured tables, claim audit and figures")
    p.add_argument("--runs", default="results", help="results root holding runs/ (default results/)")
    p.add_argument("--out", default=None, help="where REPORT.md, summary.csv and figures/ go (default: --runs)")
    p.add_argument("--readme", action="store_true", help="refresh the generated table in ./README.md")
    p.set_defaults(func=_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "max_time", None):
        _check_max_time(args.max_time)
    try:
        args.func(args)
    except UserError as e:
        print(f"fer-bench: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fer-bench: interrupted.", file=sys.stderr)
        return 2
    return 0


def _check_max_time(text: str) -> None:
    parts = text.split(":")
    if len(parts) != 4 or not all(p.isdigit() for p in parts):
        print(f"fer-bench: error: --max-time {text}: write it as D:HH:MM:SS, e.g. 00:01:30:00.", file=sys.stderr)
        raise SystemExit(2)


if __name__ == "__main__":
    sys.exit(main())
