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

import contextlib
import fcntl
import json
import shutil
import time
from pathlib import Path

from .errors import UserError
from .plan import (MIN_START_S, RUN_PREFIX, Planned, _read_json, check_judgeable, check_minutes,  # noqa: F401
                   claim_label, judged_claims, load_plan, make_plan, parse_seeds, parse_time_limit)
from .results import is_locked, run_lock, run_summary
from .runner import RunInterrupted, TimeLimitReached, run


def find_published(item: Planned, published: Path | None) -> Path | None:
    """A completed run of exactly this (paper, model, seed, recipe) under ``published``/runs (the committed results,
    from any machine: a GPU run, another campaign), found by what its metrics.json records, not by its name. How it
    executed (channels_last, compile_mode, eval_batch_size, exclude_leaked: config.EXECUTION) is not compared: a
    GPU run compiled with CUDA graphs trained the same recipe as the CPU's eager plan."""
    if published is None:
        return None
    for m in sorted((Path(published) / "runs" / item.paper / item.model).glob("*/metrics.json")):
        d = _read_json(m) or {}
        if d.get("status") == "completed" and (d.get("dataset") or {}).get("name", "fer2013") == "fer2013" \
                and not item.differs(d, execution=False):
            return m.parent
    return None


def _lost(item: Planned, d: Path, published: Path | None) -> dict | None:
    """The progress a half-way run had when it was last published (``publish``), if this machine no longer has it."""
    if published is None:
        return None
    return _read_json(Path(published) / HALF_WAY / item.paper / item.model / f"{d.name}.json")


def state(item: Planned, out: Path, published: Path | None = None, claimed_here: bool = False) -> dict:
    """What is known of one planned run: state (pending, running, interrupted, completed, published: completed
    elsewhere and committed, foreign: its directory holds another run), epochs done/planned, measured training
    img/s, and the fraction of the run done."""
    d = item.run_dir(out)
    cfg = item.config()
    metrics = _read_json(d / "metrics.json") or {}
    progress = _read_json(d / "progress.json") or {}
    row = {"paper": item.paper, "model": item.model, "seed": item.seed, "profile": item.profile, "dir": d,
           "epochs": cfg["epochs"], "done": 0.0, "img_per_s": None, "train_s": None, "note": "",
           "images": _images_per_epoch(cfg)}
    if isinstance(progress.get("epoch"), int) and isinstance(progress.get("batch"), int):
        batches = progress.get("batches") or 1
        row["done"] = min(progress["epoch"] + progress["batch"] / batches, cfg["epochs"])
        row["img_per_s"], row["train_s"] = progress.get("img_per_s"), progress.get("train_s")
    recorded = metrics or _read_json(d / "run.json") or {}
    foreign = item.differs(recorded) if recorded else []
    unreadable = _unreadable(d)
    done_here = metrics.get("status") == "completed" and not foreign and unreadable is None
    elsewhere = None if done_here else find_published(item, published)
    # a completed run of this recipe under `out` in another directory: executed another way (e.g. by an older plan)
    here = None if done_here or elsewhere is not None else find_published(item, out)
    if done_here:
        row.update(state="completed", done=float(metrics["epochs_completed"]),
                   img_per_s=metrics["timing"].get("train_img_per_s"), train_s=metrics["timing"].get("train_s"))
    elif elsewhere is not None or here is not None:
        m = _read_json((elsewhere or here) / "metrics.json")
        how = "; ".join(item.differs(m))  # only execution keys can differ here (find_published)
        how = f" (executed with {how.removeprefix('recipe ')})" if how else ""
        row.update(state="published" if elsewhere is not None else "completed", done=float(m["epochs_completed"]),
                   dir=elsewhere or here, img_per_s=m["timing"].get("train_img_per_s"),
                   train_s=m["timing"].get("train_s"),
                   note=(f"committed from {(m.get('hardware') or {}).get('device_name', '?')}: {elsewhere}{how}"
                         if elsewhere is not None else f"completed in {here}{how}"))
    elif unreadable is not None:
        row.update(state="unreadable", note=unreadable)
    elif foreign:
        row.update(state="foreign", note=f"{d} holds another run: " + "; ".join(foreign))
    elif is_locked(d) or (not claimed_here and _claimed(d)):
        row["state"] = "running"
    elif (d / "checkpoints" / "last.ckpt").is_file():
        row["state"] = "interrupted"
    else:
        row["state"] = "pending"
        lost = _lost(item, d, published)
        if lost and isinstance(lost.get("epoch"), int):
            done = lost["epoch"] + (lost.get("batch") or 0) / (lost.get("batches") or 1)
            row["note"] = (f"lost: was half-way ({done:.2f} of {cfg['epochs']} epochs, {_hms(lost.get('train_s'))} of "
                           f"training) on {lost.get('host', '?')} at {lost.get('published', '?')}; its checkpoints "
                           "are not on this machine, so it restarts from epoch 0")
    return row


def _unreadable(d: Path) -> str | None:
    """Why a run directory's records cannot be read (None when they can, or when there are none yet): a run that
    cannot be read is never taken for a fresh one and started over."""
    if d.exists() and not d.is_dir():
        return f"{d} is not a directory"
    for f in ("metrics.json", "run.json", "progress.json"):
        try:
            with open(d / f, "rb") as fh:
                fh.read(1)
        except (FileNotFoundError, NotADirectoryError):  # (a directory above it that is a file: mkdir says so)
            continue
        except OSError as e:
            return f"{d / f} cannot be read ({e.strerror})"
    return None


def _images_per_epoch(cfg: dict) -> int:
    """Training images per epoch of a FER-2013 recipe (its subsets, or all 28,709 of Training)."""
    n = 28709
    if cfg.get("protocol") == "paper" and cfg.get("paper_train_size"):
        n = cfg["paper_train_size"]
    if cfg.get("train_subset"):
        n = min(n, cfg["train_subset"])
    views = 10 if cfg.get("train_views") == "tencrop" else 1
    return n * views


def _hms(seconds: float | None) -> str:
    if not isinstance(seconds, (int, float)):
        return "-"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def status_table(plan: list[Planned], out: Path, published: Path | None = None, judged: dict | None = None) -> str:
    """One row per planned run: its state, what it answers, and the time left, estimated from the run's own measured
    rate, else the rate of the same model in another run of the plan on this machine, else (marked ``*``) the rate a
    committed run of the same model measured on its own machine. Below the table: the aggregate rate of the runs
    training now, and the training time left (summed over runs, at one run's rate each)."""
    rows = [state(item, out, published) for item in plan]
    rate_of, committed_rate = {}, {}
    for r in rows:
        if r["img_per_s"]:
            (committed_rate if r["state"] == "published" else rate_of).setdefault((r["paper"], r["model"]),
                                                                                  r["img_per_s"])
    lines = ["| paper | model | seed | state | epochs done / planned | img/s | train time | est. left | answers |",
             "|---|---|---|---|---|---|---|---|---|"]
    left_here, left_committed, unknown = 0.0, 0.0, []
    for item, r in zip(plan, rows):
        key = (r["paper"], r["model"])
        rate = (r["img_per_s"] if r["state"] != "published" else None) or rate_of.get(key)
        left, mark = None, ""
        if r["state"] in ("completed", "published"):
            left = 0.0
        elif rate:
            left = (r["epochs"] - r["done"]) * r["images"] / rate
            left_here += left
        elif committed_rate.get(key):
            left, mark = (r["epochs"] - r["done"]) * r["images"] / committed_rate[key], "*"
            left_committed += left
        else:
            unknown.append(f"{r['paper']}/{r['model']} s{r['seed']}")
        bar = ""
        if r["state"] == "running":
            frac = r["done"] / r["epochs"]
            bar = " [" + "#" * int(frac * 20) + "." * (20 - int(frac * 20)) + f"] {frac:.0%}"
        answers = "; ".join(claim_label(c) for c in (judged or {}).get(item, [])) if judged is not None else ""
        if judged is not None and not answers:
            answers = f"none (purpose: {item.purpose})" if item.purpose else "none"
        lines.append(f"| {r['paper']} | {r['model']} | {r['seed']} | {r['state']}{bar} | {r['done']:.2f} / "
                     f"{r['epochs']} | {r['img_per_s'] or '-'} | {_hms(r['train_s'])} | {_hms(left)}{mark} | {answers} |")
    notes = [f"- {r['paper']}/{r['model']} seed {r['seed']}: {r['note']}" for r in rows if r["note"]]
    running = [r["img_per_s"] for r in rows if r["state"] == "running"]
    if running:
        notes.append(f"Runs training now: {len(running)}, {sum(r for r in running if r):.2f} img/s together "
                     f"({sum(1 for r in running if r)} measured).")
    summary = f"Training time left at the rates measured here: {_hms(left_here)}"
    if left_committed:
        summary += (f", plus {_hms(left_committed)} (*) at the rates committed runs of the same models measured "
                    "on their own machines")
    if unknown:
        summary += f", plus {len(unknown)} run(s) of a model not measured yet ({', '.join(unknown)})"
    return "\n".join(lines + [""] + notes + [summary + "."])


def reproduce(plan: list[Planned], data=None, out: str | Path = "results", time_limit: float | None = None,
              precision: str | None = None, checkpoint_every_s: float = 300.0, progress: bool = True,
              deterministic: bool = False, log=print, published: Path | None = None, share: bool = False) -> bool:
    """Carry out the plan in order; True when every planned run is completed (here or, under ``published``,
    elsewhere), False when the time limit stopped it (the same call continues it). ``share``: other processes
    carry out the same plan at the same time (each with a share of the cores): a run that another process trains
    or has claimed is left to it, not refused, and each run is claimed (``.claim``, a lock held while this process
    trains it) so that no two processes start it."""
    out = Path(out)
    deadline = time.time() + time_limit if time_limit else None
    fingerprint, all_done = None, True
    for item in plan:  # a directory that would stop the plan stops it before anything is trained
        _refuse(item.name, state(item, out, published))
    for item in plan:
        st = state(item, out, published)
        d = item.run_dir(out)
        name = item.name
        if st["state"] in ("completed", "published"):  # the same data too, or it is another run
            fingerprint = fingerprint or _fingerprint(data)
            theirs = ((_read_json(st["dir"] / "metrics.json") or {}).get("dataset") or {}).get("fingerprint")
            if theirs != fingerprint:
                st = st | {"state": "foreign", "note": f"{st['dir']} was trained on dataset {theirs}, and --data "
                                                       f"is {fingerprint}"}
        _refuse(name, st)
        if st["state"] == "completed":
            log(f"{name}: completed, skipped -> {st['dir'] / 'metrics.json'}")
            continue
        if st["state"] == "published":
            log(f"{name}: completed elsewhere, not trained again -> {st['dir'] / 'metrics.json'}")
            continue
        if st["state"] == "running" and not share:
            raise UserError(f"{name}: {d} is being trained by another process; wait for it, or stop it first.")
        if deadline is not None and deadline - time.time() < MIN_START_S:
            log(f"Time limit: {name} not started (less than {MIN_START_S // 60} minutes left).")
            return False
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"{name}: cannot create {d} ({e.strerror}); choose a writable --out.") from None
        with _claim(d) if share else contextlib.nullcontext(True) as mine:
            now = state(item, out, published, claimed_here=share) if mine else {}
            if mine:
                _refuse(name, now)
            if not mine or now["state"] in ("running", "foreign"):  # (completed meanwhile: its run is counted)
                log(f"{name}: trained by another process, left to it")
                all_done = False
                continue
            if now["state"] in ("completed", "published"):
                continue
            if now["state"] == "interrupted" and _started_with(d) not in (None, _code()):
                log(f"{name}: half-way, started with {_started_with(d)}; left to that commit's code (a run never "
                    "changes code half-way)")
                all_done = False
                continue
            outcome = _train(item, d, now, data, out, precision, checkpoint_every_s, progress, deterministic,
                             deadline, log)
        if outcome is False:
            return False
    return all_done


def _refuse(name: str, st: dict) -> None:
    if st["state"] == "foreign":
        raise UserError(f"{name}: {st['note']}. Move that directory away (it is not this planned run), then repeat "
                        "the same command.")
    if st["state"] == "unreadable":
        raise UserError(f"{name}: {st['note']}; fix its permissions or move it away, then repeat the same command "
                        "(nothing was started or deleted).")


def _train(item: Planned, d: Path, st: dict, data, out: Path, precision, checkpoint_every_s, progress, deterministic,
           deadline, log) -> bool:
    """Start or resume one planned run in ``d``; False when the time limit stopped it."""
    resume = st["state"] == "interrupted" and (d / "run.json").is_file()
    if not resume:  # a fresh start: nothing of an earlier attempt that never checkpointed is kept
        with run_lock(d):  # (the runner locks the directory again while it trains)
            for sub in ("checkpoints", "logs"):
                shutil.rmtree(d / sub, ignore_errors=True)
            for f in ("metrics.json", "progress.json", "run.json"):
                (d / f).unlink(missing_ok=True)
    log(f"{item.name}: {'resuming' if resume else 'starting'} in {d}")
    try:
        run(item.paper, model=item.model, profile=item.profile, seed=item.seed, data=data, out=out,
            precision=precision, overrides=list(item.overrides), resume=resume, progress=progress,
            deterministic=deterministic, checkpoint_every_s=checkpoint_every_s, deadline=deadline, run_dir=d)
    except TimeLimitReached as e:
        log(f"{item.name}: {e} Continue with the same command.")
        return False
    except RunInterrupted as e:  # SIGTERM, Ctrl-C, a full disk: the plan continues where it stopped
        raise UserError(f"{item.name}: {e.advice('the same command')}") from None
    log(run_summary(json.loads((d / "metrics.json").read_text()), d / "metrics.json"))
    return True


def _started_with(d: Path) -> str | None:
    """The commit a run directory's run started with (run.json; an interrupted segment's metrics.json), if known."""
    sha = (_read_json(d / "run.json") or {}).get("started_with") or \
        ((_read_json(d / "metrics.json") or {}).get("software") or {}).get("git_sha")
    return sha.removesuffix("-dirty") if isinstance(sha, str) and len(sha.removesuffix("-dirty")) == 40 else None


def _code() -> str:
    from .results import git_sha

    return git_sha().removesuffix("-dirty")


@contextlib.contextmanager
def _claim(d: Path):
    """Yields True while this process holds ``d``'s claim (a lock released when the process dies), False when
    another process holds it."""
    d.mkdir(parents=True, exist_ok=True)
    with open(d / ".claim", "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _claimed(d: Path) -> bool:
    """Whether another process holds ``d``'s claim (it is about to train, or trains, that run)."""
    return is_locked(d, ".claim")


def _fingerprint(data) -> str:
    from .runner import load_dataset

    return load_dataset("fer2013", data).fingerprint


# ---------------------------------------------------------------- publishing a campaign's runs

HALF_WAY = "campaign"  # <dest>/campaign/<paper>/<model>/<run id>.json: the progress of runs published half-way
RESULT_FILES = ("metrics.json", "run.json", "logs/metrics.csv")


def publish(out: Path, dest: Path, log=print) -> int:
    """Copy every completed run under ``out``/runs into ``dest``/runs (metrics.json, run.json, logs/metrics.csv;
    never checkpoints), each run whole or not at all; and record the progress of every half-way run under
    ``dest``/campaign, so that a machine that no longer has its checkpoints can say what was lost. Returns the
    number of runs that could not be published (each named, the others published all the same)."""
    import platform
    from datetime import datetime, timezone

    failed = 0
    for run_dir in sorted(Path(out).glob("runs/*/*/*/")):
        rel = run_dir.relative_to(out)
        metrics = _read_json(run_dir / "metrics.json") or {}
        if metrics.get("status") != "completed":
            progress = _read_json(run_dir / "progress.json")
            if progress and (run_dir / "checkpoints" / "last.ckpt").is_file():
                target = Path(dest) / HALF_WAY / rel.parts[1] / rel.parts[2] / f"{run_dir.name}.json"
                record = progress | {"host": platform.node(), "run": rel.as_posix(),  # relative: no machine path
                                     "published": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
                _write_atomic(target, json.dumps(record, indent=1) + "\n")
                log(f"half-way {rel} (progress recorded in {target})")
            continue
        missing = [f for f in RESULT_FILES if not (run_dir / f).is_file()]
        if missing:
            failed += 1
            log(f"not published {rel}: it lacks {', '.join(missing)}")
            continue
        target = Path(dest) / rel
        staging = target.with_name(f".{target.name}.publishing")
        shutil.rmtree(staging, ignore_errors=True)
        try:
            for f in RESULT_FILES:
                (staging / f).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(run_dir / f, staging / f)
            if target.exists():
                shutil.rmtree(target)
            staging.rename(target)
        except OSError as e:
            shutil.rmtree(staging, ignore_errors=True)
            failed += 1
            log(f"not published {rel}: {e}")
            continue
        (Path(dest) / HALF_WAY / rel.parts[1] / rel.parts[2] / f"{run_dir.name}.json").unlink(missing_ok=True)
        log(f"published {rel}")
    return failed


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
