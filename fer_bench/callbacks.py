"""The Lightning callbacks of a run (fer_bench.runner): training time, resumable safepoints with a clean stop at
the time limit or on SIGTERM, progress.json for `fer-bench reproduce --status`, and the kept training log; and the
CheckpointIO plugin that writes every checkpoint atomically in its own directory.

Their class names are the keys of their state in checkpoints: renaming one would drop that state on resume."""

from __future__ import annotations

import csv
import os
import signal
import tempfile
import time
from pathlib import Path

import torch
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_warn

from .errors import UserError
from .results import _UMASK, write_json_atomic


def previous_checkpoint(path: Path) -> Path:
    """Where AtomicCheckpointIO keeps the checkpoint that ``path`` replaced: last.ckpt -> last.prev.ckpt."""
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def _fsync_dir(d: Path) -> None:
    try:  # the rename itself reaches the disk (a crash of the machine, not only of the process)
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Every checkpoint goes to a temporary file in its own directory, is fsynced and renamed into place, so a kill
    at any instant leaves the old file or the new one. Lightning's own save goes through fsspec, which writes into
    $TMPDIR and moves the file: where $TMPDIR is another filesystem (node-local /tmp, results on a shared one) the
    move is a copy, and a SIGKILL during it left a 0-byte last.ckpt; a small $TMPDIR failed the save outright.

    The file each resumable checkpoint (``keep``) replaces stays beside it as <name>.prev.ckpt (a hard link: no
    copy), and a resume whose checkpoint cannot be read (cut short by an older fer-bench, or damaged) loads that
    one instead; with none readable it stops with what to do (UnreadableCheckpoint, exit 2)."""

    def __init__(self, keep: tuple[str, ...] = ("last.ckpt",)):
        self.keep = keep
        self._unreadable: set[Path] = set()  # checkpoints a resume could not read (and fell back from)

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} writes local files only: storage_options is not supported.")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a kill during an earlier save
            stale.unlink(missing_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                try:
                    torch.save(checkpoint, f)
                except RuntimeError as e:  # a full disk: torch's zip writer hides the OSError behind its own error
                    if isinstance(e.__context__, OSError):
                        raise e.__context__ from None
                    raise
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600
            if path.name in self.keep and path.is_file() and path not in self._unreadable:
                self._keep_previous(path)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._unreadable.discard(path)
        _fsync_dir(path.parent)

    @staticmethod
    def _keep_previous(path: Path) -> None:
        prev = previous_checkpoint(path)
        link = prev.with_name(f".{prev.name}.{os.getpid()}.tmp")
        try:
            link.unlink(missing_ok=True)
            os.link(path, link)
            os.replace(link, prev)  # atomic: <name>.prev.ckpt is always a whole checkpoint
        except OSError:  # a filesystem without hard links: no previous checkpoint is kept
            link.unlink(missing_ok=True)

    def load_checkpoint(self, path, map_location=lambda storage, loc: storage, weights_only=None):
        try:
            return super().load_checkpoint(path, map_location=map_location, weights_only=weights_only)
        except FileNotFoundError:
            raise
        except Exception as e:  # 0 bytes: EOFError; cut short: RuntimeError (zip); damaged: UnpicklingError, ...
            error = e
        path = Path(path)
        size = path.stat().st_size if path.is_file() else 0
        why = f"{size:,} bytes; {type(error).__name__}: {str(error).splitlines()[0] if str(error) else 'unreadable'}"
        prev = previous_checkpoint(path)
        if prev.is_file():
            try:
                checkpoint = super().load_checkpoint(prev, map_location=map_location, weights_only=weights_only)
            except Exception:
                checkpoint = None
            if checkpoint is not None:
                rank_zero_warn(f"{path} cannot be read ({why}); resuming from the checkpoint before it, {prev.name}.")
                self._unreadable.add(path)  # never kept as the previous one
                return checkpoint
        raise UnreadableCheckpoint(path, why)


class UnreadableCheckpoint(UserError):
    """A resume found its checkpoint unreadable and no readable one before it."""

    def __init__(self, path: Path, why: str):
        run_dir = path.parent.parent
        super().__init__(f"The checkpoint {path} cannot be read ({why}): it was cut short (most likely a kill while "
                         f"an older fer-bench was saving it) or damaged, and no readable {previous_checkpoint(path).name}"
                         f" is beside it. This run cannot continue: move its directory aside (mv {run_dir} "
                         f"{run_dir}.unreadable) and start it again: `fer-bench reproduce` with the same command, "
                         "`fer-bench run` without --resume.")


class _TrainTimer(Callback):
    """Wall time and images of the training epochs only: the clock stops while Lightning validates
    (which it does inside the training epoch, before on_train_epoch_end)."""

    def __init__(self):
        self.seconds, self.images, self._t = 0.0, 0, None

    def _start(self, *_):
        self._t = time.perf_counter()

    def _stop(self, *_):
        if self._t is not None:
            self.seconds += time.perf_counter() - self._t
            self._t = None

    on_train_start = on_train_epoch_start = _start
    on_validation_start = on_train_epoch_end = on_exception = _stop

    def on_validation_end(self, trainer, pl_module):
        if trainer.state.fn == "fit":  # validation inside fit: training resumes after it
            self._start()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.images += len(batch[1]) * trainer.world_size

    def state_dict(self) -> dict:  # saved in every checkpoint: a resumed run's timing covers all its segments
        running = time.perf_counter() - self._t if self._t is not None else 0.0
        return {"seconds": self.seconds + running, "images": self.images}

    def load_state_dict(self, state: dict) -> None:
        self.seconds, self.images = float(state["seconds"]), int(state["images"])


class TimeLimitReached(Exception):
    """Raised inside training when --time-limit is about to run out, after a checkpoint was written."""


class _Signalled(Exception):
    """Raised at the training step after SIGTERM, after a checkpoint, on every rank; in one process also at the final
    evaluation's step after it."""


class _SigtermFlag(Callback):
    """SIGTERM only raises this flag; _Safepoints shares it from rank 0 at the next training step, where every rank
    writes the checkpoint and stops together (and after fit and after test), so a preempted run loses no training.
    Lightning's own handler stops one process at the next step without a checkpoint (the newest is then up to
    --checkpoint-minutes old), and under several processes it broadcasts from inside the signal handler, in the middle
    of whatever collective the rank was in: gloo reports a collective mismatch and the ranks crash
    (tests/test_robustness.py)."""

    def __init__(self):
        self.received = False

    def _note(self, signum, frame) -> None:
        self.received = True

    def _install(self, *_) -> None:  # Lightning registers its handlers when fit or test starts: replace them
        signal.signal(signal.SIGTERM, self._note)

    on_train_start = on_test_start = _install

    def on_test_batch_end(self, trainer, *_):
        """One process leaves the final evaluation at once (it is repeated on resume); several finish it, since a
        rank cannot leave a collective alone, and stop after it (runner.py asks shared()). Validation inside fit
        always finishes, so that the epoch's checkpoint is written before the next training step stops."""
        if self.received and trainer.world_size == 1:
            raise _Signalled

    def shared(self, trainer) -> bool:
        """Rank 0's flag, on every rank (a collective: every rank calls it at the same point)."""
        return bool(trainer.strategy.broadcast(self.received, src=0))


class _Safepoints(Callback):
    """Resumable checkpoints inside an epoch, at most ``every_s`` seconds of training apart, so a kill loses at most
    that much work even when one epoch takes half an hour; and a clean stop (a checkpoint, then TimeLimitReached)
    once the wall clock passes ``deadline``, or (_Signalled) after SIGTERM. Rank 0 decides and every rank follows
    (saving is collective)."""

    def __init__(self, path: Path, every_s: float | None, deadline: float | None, timer: _TrainTimer,
                 sigterm: _SigtermFlag, every_epoch: bool = True):
        self.path, self.every_s, self.deadline, self.timer, self.sigterm = path, every_s, deadline, timer, sigterm
        self.every_epoch = every_epoch  # False: _LastCheckpoint saves at an epoch's end only when due (epoch_end_due)
        self._last = self._noted = time.monotonic()

    def _note_progress(self, trainer) -> None:
        """progress.json beside the checkpoints: what `fer-bench reproduce --status` shows of a running run."""
        t = self.timer.state_dict()
        fit = trainer.fit_loop
        write_json_atomic(self.path.parent.parent / "progress.json", {
            "epoch": fit.epoch_progress.current.processed, "epochs": trainer.max_epochs,
            "batch": fit.epoch_loop.batch_progress.current.processed, "batches": trainer.num_training_batches,
            "train_s": round(t["seconds"], 1), "images": t["images"],
            "img_per_s": round(t["images"] / t["seconds"], 2) if t["seconds"] else None, "updated": time.time()})
        self._noted = time.monotonic()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.is_global_zero and time.monotonic() - self._noted >= 30:
            self._note_progress(trainer)
        now = time.monotonic()
        stop = self.deadline is not None and time.time() >= self.deadline
        signalled = self.sigterm.received
        save = stop or signalled or (self.every_s is not None and now - self._last >= self.every_s)
        save, stop, signalled = trainer.strategy.broadcast((save, stop, signalled), src=0)
        if save:
            # the whole state (optimizer, loops, callbacks), as ModelCheckpoint(save_weights_only=False) writes it;
            # atomic: written beside it, then renamed (AtomicCheckpointIO)
            trainer.save_checkpoint(self.path, weights_only=False)
            self._last = time.monotonic()
        if signalled:
            raise _Signalled
        if stop:
            raise TimeLimitReached

    def on_train_epoch_end(self, trainer, pl_module):
        if self.every_epoch:
            self._last = time.monotonic()  # the end-of-epoch checkpoint is written at every epoch's end
        if trainer.is_global_zero:
            self._note_progress(trainer)

    def epoch_end_due(self, trainer) -> bool:
        """Whether the checkpoint at this epoch's end is written (rank 0 decides): every epoch (every_epoch), else
        once ``every_s`` passed since the last one, at the last epoch, and when training stops."""
        last_epoch = trainer.current_epoch + 1 >= (trainer.max_epochs or 0) > 0
        due = self.every_epoch or last_epoch or trainer.should_stop or \
            (self.every_s is not None and time.monotonic() - self._last >= self.every_s)
        return bool(trainer.strategy.broadcast(due, src=0))


class _LastCheckpoint(ModelCheckpoint):
    """last.ckpt at an epoch's end when ``safepoints`` says it is due (_Safepoints.epoch_end_due). On a CPU that is
    every epoch (an epoch takes minutes); on a GPU an epoch takes seconds and a full checkpoint with optimizer state
    (about 300 MB for a ResNet50) a good part of one, so it is written by wall-clock time and at the end. The state
    key is ModelCheckpoint's: checkpoints written before keep their callback state on resume."""

    def __init__(self, *args, safepoints: _Safepoints, **kw):
        super().__init__(*args, **kw)
        self.safepoints = safepoints

    @property
    def state_key(self) -> str:
        return "ModelCheckpoint" + super().state_key.removeprefix(type(self).__qualname__)

    def on_train_epoch_end(self, trainer, pl_module):
        if self.safepoints.epoch_end_due(trainer):
            super().on_train_epoch_end(trainer, pl_module)
            self.safepoints._last = time.monotonic()


class _KeepLog(Callback):
    """Lightning's CSV logger starts logs/metrics.csv afresh: a resumed run puts back the rows of the epochs it
    does not train again."""

    def __init__(self, path: Path):
        try:  # read now: the logger deletes the file when it starts
            with path.open(newline="") as f:
                self.rows = list(csv.DictReader(f))
        except FileNotFoundError:  # nothing was logged (or a DDP child, started after rank 0's logger)
            self.rows = []

        self.path, self.restored = path, False

    def on_train_start(self, trainer, pl_module):
        # the rows of the steps the resumed checkpoint already holds (a mid-epoch checkpoint keeps its epoch's rows)
        if trainer.is_global_zero and self.rows:
            trainer.logger.experiment.metrics[:0] = [{k: v for k, v in r.items() if v != ""} for r in self.rows
                                                     if int(float(r["step"])) < trainer.global_step]
            trainer.logger.save()
        self.restored = True

    def put_back(self) -> None:
        """After a resume that trained nothing (it stopped in the final evaluation, or failed before training):
        the log is written back if the logger removed it."""
        if self.rows and not self.restored and not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=list(self.rows[0]))
                w.writeheader()
                w.writerows(self.rows)
