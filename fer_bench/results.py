"""The run record: run directories, metrics.json (written atomically, validated when read), cross-validation folds
pooled, the environment of a run. Everyone else reads and writes results through this module.

metrics.json (schema ``fer-bench/metrics/v1``; extended, never broken: files written by older versions load) holds
paper, model, profile, protocol, seed, run_id, status, epochs_planned/completed, best_epoch, selected_on, budget
{full, reasons}, splits {name: {n, accuracy, macro_f1, loss, per_class_accuracy, confusion_matrix, ...}},
last_epoch {epoch, same_as_selected, splits}, timing, hardware, software, dataset and config (the recipe).
"""

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


def is_locked(run_dir: Path, name: str = ".lock") -> bool:
    """Whether another process holds the lock file ``name`` of ``run_dir`` (.lock: trains it; .claim: reproduce
    --share claimed it)."""
    try:
        f = open(run_dir / name)
    except OSError:
        return False
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
        return False


CODE_DIRS = ("papers", "fer_bench")  # an untracked file here is code a run may have used: it makes the version dirty


def git_sha(root: Path | None = None) -> str:
    """HEAD of the checkout fer_bench runs from (or of ``root``), with '-dirty' if tracked files changed or an
    untracked, not ignored file lies under papers/ or fer_bench/ (a new paper module not yet committed); else
    'unknown'. A copied tree whose .git is missing or stale (one sent to a GPU machine) names its commit in
    $FER_BENCH_GIT_SHA, which wins."""
    if os.environ.get("FER_BENCH_GIT_SHA"):
        return os.environ["FER_BENCH_GIT_SHA"]
    here = Path(root) if root is not None else Path(__file__).resolve().parent.parent
    try:
        def git(*args):
            return subprocess.run(["git", *args], cwd=here, capture_output=True, text=True, timeout=10, check=True
                                  ).stdout.strip()

        sha = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no") or \
            git("ls-files", "--others", "--exclude-standard", "--", *CODE_DIRS)
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


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_record(d) -> None:
    """ValueError saying why ``d`` is not a metrics.json a reader can use (the report then lists it as unreadable
    instead of counting it or failing on it)."""
    if not isinstance(d, dict) or not {"paper", "model", "splits"} <= set(d):
        raise ValueError("not a fer-bench metrics.json (paper, model or splits missing)")
    if not (isinstance(d["paper"], str) and isinstance(d["model"], str)):
        raise ValueError("paper and model must be names (strings)")
    _check_splits(d["splits"], "splits")
    last = d.get("last_epoch")
    if last is not None:
        if not isinstance(last, dict):
            raise ValueError(f"last_epoch is a {type(last).__name__}, not a mapping")
        _check_splits(last.get("splits") or {}, "last_epoch.splits")


def _check_splits(splits, where: str) -> None:
    """Each split a mapping of metrics; accuracies and macro-F1 numbers in [0, 1]; a numeric confusion matrix."""
    if not isinstance(splits, dict):
        raise ValueError(f"{where} is a {type(splits).__name__}, not a mapping of split names to metrics")
    for name, m in splits.items():
        at = f"{where}.{name}"
        if not isinstance(m, dict):
            raise ValueError(f"{at} is a {type(m).__name__}, not a mapping of metrics")
        fractions = {"accuracy": m.get("accuracy"), "macro_f1": m.get("macro_f1")}
        per_class = m.get("per_class_accuracy")
        if per_class is not None:
            if not isinstance(per_class, dict):
                raise ValueError(f"{at}.per_class_accuracy is not a mapping of classes to accuracies")
            fractions |= {f"per_class_accuracy.{c}": v for c, v in per_class.items()}
        for key, v in fractions.items():
            if v is not None and not (_is_number(v) and 0 <= v <= 1):
                raise ValueError(f"{at}.{key} is {v!r}, not a number in [0, 1]")
        for key in ("loss", "loss_sd", "n"):
            if m.get(key) is not None and not _is_number(m[key]):
                raise ValueError(f"{at}.{key} is {m[key]!r}, not a number")
        cm = m.get("confusion_matrix")
        if cm is not None and not (isinstance(cm, list) and all(isinstance(r, list) and len(r) == len(cm)
                                                                and all(_is_number(x) and x >= 0 for x in r)
                                                                for r in cm)):
            raise ValueError(f"{at}.confusion_matrix is not a square matrix of counts")


def write_metrics(run_dir: Path, record: dict) -> Path:
    """metrics.json of a run, written atomically, then validated: a record that fails is kept (a finished run is
    never thrown away) and the error names it."""
    path = run_dir / "metrics.json"
    write_json_atomic(path, record)
    try:
        check_record(record)
    except ValueError as e:
        raise UserError(f"{path} was written but is not a valid run record ({e}); the report will skip it.") from None
    return path


def load_runs(runs_dir: str | Path) -> tuple[list[dict], list[str]]:
    """Every metrics.json under <runs_dir>/runs (each with '_path'), the folds of each cross-validation pooled into
    one record; and the files that could not be read, with the reason."""
    runs, skipped = [], []
    for path in sorted(Path(runs_dir).glob("runs/*/*/*/metrics.json")):
        try:
            d = json.loads(path.read_text())
            check_record(d)
        except (OSError, ValueError) as e:
            skipped.append(f"{path}: {e}")
            continue
        d["_path"] = str(path)
        runs.append(d)
    return pool_folds(runs), skipped


def pooled_split(tests: list[dict]) -> dict:
    """One split from the test splits of several folds: each image counted once (the confusion matrices summed),
    its accuracy, macro-F1, per-class accuracy, and the loss weighted by each fold's n."""
    import numpy as np

    from .data import CLASSES

    cm = np.sum([np.asarray(t["confusion_matrix"]) for t in tests], axis=0)
    n, tp = int(cm.sum()), np.diag(cm)
    f1 = np.divide(2 * tp, cm.sum(0) + cm.sum(1), out=np.zeros(len(cm)), where=(cm.sum(0) + cm.sum(1)) > 0)
    loss = float(sum(t["loss"] * t["n"] for t in tests) / n)
    spread = {}
    if all(t.get("loss_sd") is not None for t in tests):  # the pooled per-image sd: E[l^2] over all images - mean^2
        sq = sum((t["loss_sd"] ** 2 + t["loss"] ** 2) * t["n"] for t in tests) / n
        spread = {"loss_sd": max(0.0, sq - loss ** 2) ** 0.5}
    return {"n": n, "accuracy": float(tp.sum() / n), "macro_f1": float(f1.mean()), "loss": loss, **spread,
            "per_class_accuracy": {c: float(tp[i] / cm[i].sum()) if cm[i].sum() else 0.0
                                   for i, c in enumerate(CLASSES)},
            "confusion_matrix": cm.tolist()}


def pool_folds(runs: list[dict]) -> list[dict]:
    """The folds of one cross-validation become one record whose 'test' split pools every fold's test images."""
    out, cvs = [], {}
    for d in runs:
        if isinstance(d.get("fold"), dict) and d["fold"].get("cv_id"):
            cvs.setdefault((d["paper"], d["model"], d["fold"]["cv_id"]), []).append(d)
        else:
            out.append(d)
    for (_, _, cv_id), folds in cvs.items():
        folds.sort(key=lambda d: d["fold"].get("index", 0))
        first, k = folds[0], folds[0]["fold"].get("of", len(folds))
        done = len(folds) == k and all(f.get("status") == "completed" for f in folds)
        tests = [f["splits"]["test"] for f in folds if "test" in f.get("splits", {})]
        lasts = [(f.get("last_epoch") or {}).get("splits", {}).get("test") for f in folds]
        last = {"last_epoch": {"epoch": first["last_epoch"].get("epoch"), "splits": {"test": pooled_split(lasts)}}} \
            if done and lasts and all(lasts) else {}
        out.append({**{k: v for k, v in first.items() if k != "last_epoch"}, **last, "run_id": f"{cv_id}-cv",
                    "status": "completed" if done else "incomplete",
                    "splits": {"test": pooled_split(tests)} if done and tests else {},
                    "folds": [f["run_id"] for f in folds],
                    "epochs_completed": min(f.get("epochs_completed") or 0 for f in folds),
                    "timing": {"train_s": sum((f.get("timing") or {}).get("train_s") or 0 for f in folds)},
                    "_logs": [str(Path(f["_path"]).parent / "logs" / "metrics.csv") for f in folds]})
    return out


def cv_summary(fold_results: list[dict]) -> dict:
    """cv.json: mean, sample std (n-1), min and max over folds of the test accuracy, macro-F1 and loss, and the
    pooled test split of all folds (``pooled_split``: every image counted once)."""
    import numpy as np

    first = fold_results[0]
    tests = [r["splits"]["test"] for r in fold_results]

    def spread(values):
        v = np.array(values, dtype=float)
        return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
                "min": float(v.min()), "max": float(v.max()), "per_fold": [float(x) for x in v]}

    classes = list(tests[0]["per_class_accuracy"])
    return {
        "schema": "fer-bench/cv/v1", "paper": first["paper"], "model": first["model"], "profile": first["profile"],
        "protocol": first["protocol"], "seed": first["seed"], "dataset": first["dataset"],
        "folds": len(fold_results), "folds_by": first["fold"]["by"], "selected_on": first["selected_on"],
        "status": "completed" if all(r["status"] == "completed" for r in fold_results) else "interrupted",
        "test": {"accuracy": spread([t["accuracy"] for t in tests]),
                 "macro_f1": spread([t["macro_f1"] for t in tests]),
                 "loss": spread([t["loss"] for t in tests]),
                 "per_class_accuracy_mean": {c: float(np.mean([t["per_class_accuracy"][c] for t in tests]))
                                             for c in classes}},
        "pooled": pooled_split(tests),
        "budget": first["budget"], "config": first["config"],
    }


def cv_summary_path(fold_metrics: Path) -> Path:
    """The cv.json beside the run directory of one fold."""
    cv_id = json.loads(Path(fold_metrics).read_text())["fold"]["cv_id"]
    return Path(fold_metrics).parent.parent / f"{cv_id}-cv" / "cv.json"


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
