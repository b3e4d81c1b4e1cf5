"""The Lightning callbacks of a run (fer_bench.runner): training time, resumable safepoints with a clean stop at
the time limit or on SIGTERM, progress.json for `fer-bench reproduce --status`, and the kept training log.

Their class names are the keys of their state in checkpoints: renaming one would drop that state on resume."""

from __future__ import annotations

import csv
import signal
import time
from pathlib import Path

from lightning.pytorch.callbacks import Callback

from .results import write_json_atomic


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
                 sigterm: _SigtermFlag):
        self.path, self.every_s, self.deadline, self.timer, self.sigterm = path, every_s, deadline, timer, sigterm
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
            # atomic: written aside, then renamed (Lightning's _atomic_save)
            trainer.save_checkpoint(self.path, weights_only=False)
            self._last = time.monotonic()
        if signalled:
            raise _Signalled
        if stop:
            raise TimeLimitReached

    def on_train_epoch_end(self, trainer, pl_module):
        self._last = time.monotonic()  # the end-of-epoch checkpoint was just written
        if trainer.is_global_zero:
            self._note_progress(trainer)


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
