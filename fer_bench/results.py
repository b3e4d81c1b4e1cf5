"""Run directories and metrics.json: atomic writes, unique run ids, the environment of a run."""

from __future__ import annotations

import fcntl
import json
import os
import platform
import secrets
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from .errors import UserError
from .stats import wilson

SCHEMA = "fer-bench/metrics/v1"
_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once: the process's umask, restored at once


def write_json_atomic(path: Path, obj) -> None:
    """Write JSON so that a reader sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600: results in a shared folder stay readable
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def new_run_dir(out: Path, paper: str, model: str, seed: int, suffix: str = "") -> Path:
    """<out>/runs/<paper>/<model>/<run_id><suffix>, created exclusively: concurrent runs never share one."""
    parent = out / "runs" / paper / model
    try:
        parent.mkdir(parents=True, exist_ok=True)
        while True:
            run_id = f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-s{seed}-{secrets.token_hex(3)}"
            try:
                (parent / f"{run_id}{suffix}").mkdir()
                return parent / f"{run_id}{suffix}"
            except FileExistsError:
                continue
    except OSError as e:
        raise UserError(f"Cannot write results under {out}: {e.strerror}. Choose a writable directory "
                        "with --out DIR.") from None


@contextmanager
def run_lock(run_dir: Path):
    """An exclusive lock on a run directory for as long as this process trains it (released when it dies)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    f = open(run_dir / ".lock", "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise UserError(f"{run_dir} is being trained by another process; wait for it, or stop it first.") from None
    try:
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        yield
    finally:
        fcntl.flock(f, fcntl.LOCK_UN)
        f.close()


def is_locked(run_dir: Path) -> bool:
    try:
        f = open(run_dir / ".lock")
    except OSError:
        return False
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
        return False


def git_sha() -> str:
    """HEAD of the checkout fer_bench runs from, with '-dirty' if tracked files changed; else 'unknown'."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def device_name(accelerator: str) -> str:
    if accelerator == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores)"


def software() -> dict:
    import lightning

    from . import __version__
    return {"python": platform.python_version(), "torch": torch.__version__, "lightning": lightning.__version__,
            "fer_bench": __version__, "git_sha": git_sha()}


def load_runs(out: Path) -> list[dict]:
    """Every metrics.json under <out>/runs, each with its path under '_path'."""
    runs = []
    for p in sorted((out / "runs").glob("*/*/*/metrics.json")):
        with open(p) as f:
            d = json.load(f)
        d["_path"] = str(p)
        runs.append(d)
    return runs


def run_summary(d: dict, path: Path) -> str:
    """The closing lines of a run: accuracy per split with its 95% test-set (Wilson) interval, budget, where it is."""
    fold = f" fold {d['fold']['index']}/{d['fold']['of']}" if "fold" in d else ""
    lines = [f"{d['paper']}/{d['model']} [{d['profile']}]{fold} seed {d['seed']}: {d['status']}, "
             f"{d['epochs_completed']}/{d['epochs_planned']} epochs, best epoch {d.get('best_epoch')}"
             + ("" if d["budget"]["full"] else f" (reduced budget: {'; '.join(d['budget']['reasons'])})")]
    for name, splits in (("selected", d["splits"]), ("last epoch", (d.get("last_epoch") or {}).get("splits", {}))):
        for split, v in splits.items():
            lo, hi = wilson(v["accuracy"], v["n"])
            lines.append(f"  {name:<10} {split:<20} accuracy {100 * v['accuracy']:6.2f}% "
                         f"[{100 * lo:.2f}, {100 * hi:.2f}] (95% test-set interval, n={v['n']})  loss {v['loss']:.4f}")
    lines.append(f"  -> {path}")
    return "\n".join(lines)
