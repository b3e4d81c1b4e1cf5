"""`fer-bench reproduce`: full-recipe runs that survive being stopped, and continue where they stopped.

A plan is a list of (paper, model, seed, profile, recipe overrides). Each planned run has one run directory whose
name is derived from what it trains, ``<out>/runs/<paper>/<model>/repro-s<seed>-<recipe hash>``, so calling the
same command again finds it: a completed run is skipped, an interrupted one resumes from its newest checkpoint
(inside an epoch too), one that never checkpointed starts over in the same directory. Nothing is trained twice
and no second directory appears. A lock file keeps a second process out of a directory that is being trained.

Every write is atomic (run.json, metrics.json, progress.json, checkpoints), so SIGKILL at any instant leaves either
the state before or after it; the next call continues from there.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

from .config import same_recipe
from .errors import UserError
from papers import get_paper
from .results import is_locked, run_lock, run_summary
from .runner import RunInterrupted, TimeLimitReached, resolve_config, run

RUN_PREFIX = "repro"
MIN_START_S = 300  # a run is not started (or resumed) with less time left than this before --time-limit


@dataclass(frozen=True)
class Planned:
    paper: str
    model: str
    seed: int
    profile: str = "paper"
    overrides: tuple[str, ...] = ()

    def config(self) -> dict:
        return resolve_config(self.paper, self.model, self.profile, None, list(self.overrides))

    def run_dir(self, out: Path) -> Path:
        """The run directory: named after the paper, model, seed, profile and the fully resolved recipe when it is
        created; found again by that name, or by its run.json when a later fer-bench added recipe keys (which
        changes the name but not the recipe: see same_recipe)."""
        cfg = self.config()
        key = json.dumps({"profile": self.profile, "dataset": "fer2013", "config": cfg}, sort_keys=True)
        digest = hashlib.sha256(key.encode()).hexdigest()[:10]
        named = out / "runs" / self.paper / self.model / f"{RUN_PREFIX}-s{self.seed}-{digest}"
        if named.exists():
            return named
        for d in sorted(named.parent.glob(f"{RUN_PREFIX}-s{self.seed}-*")):
            info = _read_json(d / "run.json") or {}
            if (info.get("seed"), info.get("profile"), info.get("dataset")) == (self.seed, self.profile, "fer2013") \
                    and same_recipe(info.get("config") or {}, cfg):
                return d
        return named


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in str(text).split(",") if s.strip()]
    except ValueError:
        raise UserError(f"--seeds {text}: give comma-separated integers, e.g. 0,1,2.") from None
    if not seeds or any(not 0 <= s < 2**32 for s in seeds) or len(set(seeds)) != len(seeds):
        raise UserError(f"--seeds {text}: give distinct seeds in [0, 2^32), e.g. 0,1,2.")
    return seeds


def make_plan(paper: str, model: str = "all", seeds: str | list[int] = "0", profile: str = "paper",
              overrides: list[str] = ()) -> list[Planned]:
    """Every (model, seed) of one paper, models in the paper's order, seed by seed (seed 0 of every model first)."""
    p = get_paper(paper)
    models = list(p.models) if model == "all" else [model]
    for m in models:
        if m not in p.models:
            raise UserError(f"--model {m}: {p.id} has the models {', '.join(p.models)} (or 'all').")
    seed_list = parse_seeds(",".join(map(str, seeds))) if isinstance(seeds, list) else parse_seeds(seeds)
    plan = [Planned(p.id, m, s, profile, tuple(overrides)) for s in seed_list for m in models]
    for item in plan:
        item.config()  # every override is checked before anything runs
    return plan


def load_plan(path: Path) -> list[Planned]:
    """A TOML plan file: ``[[run]]`` tables with paper, model (default "all"), seeds (default [0]), profile
    (default "paper") and set (a list of "key=value"), carried out in the file's order."""
    try:
        doc = tomllib.loads(Path(path).read_text())
    except OSError as e:
        raise UserError(f"--plan {path}: cannot read it ({e.strerror}).") from None
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"--plan {path}: not valid TOML ({e}).") from None
    entries = doc.get("run")
    if not isinstance(entries, list) or not entries:
        raise UserError(f"--plan {path}: expected one or more [[run]] tables with at least `paper = \"...\"`.")
    plan = []
    for i, e in enumerate(entries, 1):
        unknown = set(e) - {"paper", "model", "seeds", "profile", "set"}
        if "paper" not in e or unknown:
            raise UserError(f"--plan {path}: [[run]] number {i} needs `paper` and may have model, seeds, profile, "
                            f"set" + (f" (unknown: {', '.join(sorted(unknown))})" if unknown else "") + ".")
        seeds = e.get("seeds", [0])
        if not isinstance(seeds, list):
            raise UserError(f"--plan {path}: [[run]] number {i}: seeds must be a list, e.g. [0, 1, 2].")
        plan += make_plan(e["paper"], e.get("model", "all"), [int(s) for s in seeds], e.get("profile", "paper"),
                          list(e.get("set", [])))
    if len(set(plan)) != len(plan):
        raise UserError(f"--plan {path}: the same run is planned twice.")
    return plan


def parse_time_limit(text: str) -> float:
    """H:MM:SS (or MM:SS) -> seconds."""
    parts = text.split(":")
    if not 2 <= len(parts) <= 3 or not all(p.isdigit() for p in parts):
        raise UserError(f"--time-limit {text}: write it as H:MM:SS, e.g. 2:45:00.")
    seconds = 0
    for p in parts:
        seconds = seconds * 60 + int(p)
    if seconds <= 0:
        raise UserError(f"--time-limit {text}: give a positive duration.")
    return float(seconds)


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def state(item: Planned, out: Path) -> dict:
    """What is known of one planned run: state (pending, running, interrupted, completed), epochs done/planned,
    measured training img/s, and the fraction of the run done."""
    d = item.run_dir(out)
    cfg_epochs = item.config()["epochs"]
    metrics = _read_json(d / "metrics.json") or {}
    progress = _read_json(d / "progress.json") or {}
    row = {"paper": item.paper, "model": item.model, "seed": item.seed, "profile": item.profile, "dir": d,
           "epochs": cfg_epochs, "done": 0.0, "img_per_s": None, "train_s": None}
    if progress:
        batches = progress.get("batches") or 1
        row["done"] = min(progress["epoch"] + progress["batch"] / batches, cfg_epochs)
        row["img_per_s"], row["train_s"] = progress.get("img_per_s"), progress.get("train_s")
    if metrics.get("status") == "completed":
        row.update(state="completed", done=float(metrics["epochs_completed"]),
                   img_per_s=metrics["timing"].get("train_img_per_s"), train_s=metrics["timing"].get("train_s"))
    elif is_locked(d):
        row["state"] = "running"
    elif (d / "checkpoints" / "last.ckpt").is_file():
        row["state"] = "interrupted"
    else:
        row["state"] = "pending"
    return row


def _hms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def status_table(plan: list[Planned], out: Path, data_n: int = 28709) -> str:
    """One row per planned run; the time left is estimated from the run's own measured rate (or the rate of the
    same model in another run of the plan), for training only."""
    rows = [state(item, out) for item in plan]
    rate_of = {}
    for r in rows:
        if r["img_per_s"]:
            rate_of.setdefault((r["paper"], r["model"]), r["img_per_s"])
    lines = ["| paper | model | seed | state | epochs done / planned | img/s | train time | est. left |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        rate = r["img_per_s"] or rate_of.get((r["paper"], r["model"]))
        left = (r["epochs"] - r["done"]) * data_n / rate if rate and r["state"] != "completed" else None
        if r["state"] == "completed":
            left = 0.0
        bar = ""
        if r["state"] == "running":
            frac = r["done"] / r["epochs"]
            bar = " [" + "#" * int(frac * 20) + "." * (20 - int(frac * 20)) + f"] {frac:.0%}"
        lines.append(f"| {r['paper']} | {r['model']} | {r['seed']} | {r['state']}{bar} | {r['done']:.2f} / "
                     f"{r['epochs']} | {r['img_per_s'] or '-'} | {_hms(r['train_s'])} | {_hms(left)} |")
    return "\n".join(lines)


def reproduce(plan: list[Planned], data=None, out: str | Path = "results", time_limit: float | None = None,
              precision: str | None = None, checkpoint_every_s: float = 300.0, progress: bool = True,
              deterministic: bool = False, log=print) -> bool:
    """Carry out the plan in order; True when every planned run is completed, False when the time limit stopped
    it (the same call continues it)."""
    out = Path(out)
    deadline = time.time() + time_limit if time_limit else None
    for item in plan:
        d = item.run_dir(out)
        st = state(item, out)
        name = f"{item.paper}/{item.model} seed {item.seed} ({item.profile})"
        if st["state"] == "completed":
            log(f"{name}: completed, skipped -> {d / 'metrics.json'}")
            continue
        if st["state"] == "running":
            raise UserError(f"{name}: {d} is being trained by another process; wait for it, or stop it first.")
        if deadline is not None and deadline - time.time() < MIN_START_S:
            log(f"Time limit: {name} not started (less than {MIN_START_S // 60} minutes left).")
            return False
        resume = st["state"] == "interrupted" and (d / "run.json").is_file()
        if not resume:  # a fresh start: nothing of an earlier attempt that never checkpointed is kept
            with run_lock(d):  # (the runner locks the directory again while it trains)
                for sub in ("checkpoints", "logs"):
                    shutil.rmtree(d / sub, ignore_errors=True)
                for f in ("metrics.json", "progress.json", "run.json"):
                    (d / f).unlink(missing_ok=True)
        log(f"{name}: {'resuming' if resume else 'starting'} in {d}")
        try:
            run(item.paper, model=item.model, profile=item.profile, seed=item.seed, data=data, out=out,
                precision=precision, overrides=list(item.overrides), resume=resume, progress=progress,
                deterministic=deterministic, checkpoint_every_s=checkpoint_every_s, deadline=deadline, run_dir=d)
        except TimeLimitReached as e:
            log(f"{name}: {e} Continue with the same command.")
            return False
        except RunInterrupted as e:  # SIGTERM, Ctrl-C, a full disk: the plan continues where it stopped
            raise UserError(f"{name}: {e.advice('the same command')}") from None
        log(run_summary(json.loads((d / "metrics.json").read_text()), d / "metrics.json"))
    return True
