"""Checkpoints survive a kill at any instant of a save (issue 29 item 1): written beside their target and renamed,
never via $TMPDIR; a resume that finds an unreadable last.ckpt falls back to the one before it, or says what to do.
And a resumed epoch logs the training metrics an uninterrupted one logs (item 3)."""

import csv
import signal
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import ROOT, cli, only_metrics, write_csv

# a small network (PResNet, 0.87M parameters against cnn8's 5.9M: a checkpoint a seventh the size) at 32x32, 28 training
# images, 3 steps an epoch
ARGS = ["run", "--paper", "miao_presnet_vgg", "--model", "presnet", "--profile", "smoke", "--no-progress", "--set",
        "input_size=32", "--set", "batch_size=8", "--set", "eval_batch_size=8", "--epochs", "3", "--deterministic"]

# the CLI in a process whose saves are sabotaged as $CKPT_TEST says:
#   copy:  $TMPDIR is another filesystem (a rename out of it fails with EXDEV, as across filesystems), and the process
#          is SIGKILLed half-way through copying a file into last.ckpt
#   write: SIGKILLed half-way through writing a checkpoint meant for last.ckpt, once $CKPT_KILL_AFTER exists beside it
#   full:  $TMPDIR is full (a temporary file there cannot be created)
SABOTAGE = r"""
import errno, io, os, signal, sys, tempfile
import torch
mode = os.environ["CKPT_TEST"]

def die():
    os.kill(os.getpid(), signal.SIGKILL)

if mode == "copy":
    tmpdir = os.path.realpath(tempfile.gettempdir()) + os.sep
    real_rename, real_sendfile = os.rename, os.sendfile
    def rename(src, dst, *a, **k):
        if os.path.realpath(os.fspath(src)).startswith(tmpdir):
            raise OSError(errno.EXDEV, "Invalid cross-device link", os.fspath(src))
        return real_rename(src, dst, *a, **k)
    def sendfile(out_fd, in_fd, offset, count):
        if os.readlink(f"/proc/self/fd/{out_fd}").endswith("/last.ckpt"):
            real_sendfile(out_fd, in_fd, offset, max(count // 2, 1))
            die()
        return real_sendfile(out_fd, in_fd, offset, count)
    os.rename, os.sendfile = rename, sendfile
elif mode == "write":
    real_save = torch.save
    def save(obj, f, *a, **k):
        try:
            name = os.readlink(f"/proc/self/fd/{f.fileno()}")
        except Exception:  # in memory
            name = None
        if name and "last.ckpt" in os.path.basename(name) and os.path.exists(
                os.path.join(os.path.dirname(name), os.environ["CKPT_KILL_AFTER"])):
            buf = io.BytesIO()
            real_save(obj, buf, *a, **k)
            f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
            f.flush()
            die()
        return real_save(obj, f, *a, **k)
    torch.save = save
elif mode == "full":
    real_mkstemp = tempfile.mkstemp
    def mkstemp(*a, dir=None, **k):
        if dir is None:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_mkstemp(*a, dir=dir, **k)
    tempfile.mkstemp = mkstemp

from fer_bench.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tiny") / "fer2013.csv"
    write_csv(path, per_class=4)
    return path


def _cli(args, out: Path, tmpdir: Path, mode: str | None = None, fresh: bool = False,
         **env) -> subprocess.CompletedProcess:
    tmpdir.mkdir(exist_ok=True)
    return cli(*args, "--out", str(out), env={"TMPDIR": str(tmpdir), "CKPT_TEST": mode or "", **env}, fresh=fresh,
               code=SABOTAGE if mode else None)


@pytest.fixture(scope="module")
def uninterrupted(data, tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("straight")
    r = _cli([*ARGS, "--data", str(data)], tmp / "out", tmp / "tmpdir", fresh=True)  # compared with forked runs
    assert r.returncode == 0, r.stderr[-2000:]
    return only_metrics(tmp / "out")


def _checkpoints(out: Path) -> Path:
    (d,) = out.glob("runs/*/*/*/checkpoints")
    return d


def _big_files(d: Path) -> list[str]:
    return [f.name for f in d.rglob("*") if f.is_file() and f.stat().st_size > 1_000_000]


def test_tmpdir_on_another_filesystem_never_carries_a_checkpoint(data, tmp_path, uninterrupted):
    """A kill while Lightning (via fsspec) copied last.ckpt in from $TMPDIR on another filesystem left it cut short
    (and a checkpoint-sized file in $TMPDIR); checkpoints are now written beside their target: no copy to cut."""
    r = _cli([*ARGS, "--data", str(data)], tmp_path / "out", tmp_path / "tmpdir", mode="copy")
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])
    assert only_metrics(tmp_path / "out")["splits"] == uninterrupted["splits"]
    assert _big_files(tmp_path / "tmpdir") == []
    ckpt = torch.load(_checkpoints(tmp_path / "out") / "last.ckpt", weights_only=False)
    assert ckpt["epoch"] == 2  # the end of the third epoch (0-based)


def test_a_full_tmpdir_does_not_stop_a_run(data, tmp_path, uninterrupted):
    """With a full $TMPDIR the save failed and the run stopped, blaming --out ("Cannot write to <run dir> (No space
    left on device)") although --out had room."""
    r = _cli([*ARGS, "--data", str(data)], tmp_path / "out", tmp_path / "tmpdir", mode="full")
    assert r.returncode == 0, r.stderr[-2000:]
    assert only_metrics(tmp_path / "out")["splits"] == uninterrupted["splits"]


def test_a_kill_during_a_save_leaves_the_previous_checkpoint_and_the_run_resumes(data, tmp_path, uninterrupted):
    out, tmpdir = tmp_path / "out", tmp_path / "tmpdir"
    r = _cli([*ARGS, "--data", str(data)], out, tmpdir, mode="write", CKPT_KILL_AFTER="last.ckpt")
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr[-2000:])  # killed half-way through epoch 2's
    ckpts = _checkpoints(out)
    assert [f.name for f in ckpts.glob(".last.ckpt.*.tmp")]  # the cut-short file, beside last.ckpt ...
    assert torch.load(ckpts / "last.ckpt", weights_only=False)["epoch"] == 0  # ... which is epoch 1's, whole
    r = _cli([*ARGS, "--data", str(data), "--resume"], out, tmpdir)
    assert r.returncode == 0, r.stderr[-2000:]
    assert only_metrics(out)["splits"] == uninterrupted["splits"]
    assert list(ckpts.glob(".*.tmp")) == []  # the next save removed it
    assert _big_files(tmpdir) == []


def test_an_unreadable_last_checkpoint_falls_back_to_the_one_before(data, tmp_path, uninterrupted):
    """last.ckpt cut short (as an older fer-bench left it): the resume loads last.prev.ckpt and ends where an
    uninterrupted run ends."""
    out, tmpdir = tmp_path / "out", tmp_path / "tmpdir"
    r = _cli([*ARGS, "--data", str(data)], out, tmpdir, mode="write", CKPT_KILL_AFTER="last.prev.ckpt")
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr[-2000:])  # in epoch 3's save
    ckpts = _checkpoints(out)
    assert torch.load(ckpts / "last.prev.ckpt", weights_only=False)["epoch"] == 0
    last = ckpts / "last.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 3])
    r = _cli([*ARGS, "--data", str(data), "--resume"], out, tmpdir)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "cannot be read" in r.stderr and "last.prev.ckpt" in r.stderr
    assert only_metrics(out)["splits"] == uninterrupted["splits"]


@pytest.mark.parametrize("size", [0, "third"])
def test_an_unreadable_checkpoint_with_none_before_it_says_what_to_do(data, tmp_path, size):
    out, tmpdir = tmp_path / "out", tmp_path / "tmpdir"
    r = _cli([*ARGS, "--data", str(data)], out, tmpdir, mode="write", CKPT_KILL_AFTER="last.ckpt")
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr[-2000:])
    last = _checkpoints(out) / "last.ckpt"
    assert not (last.parent / "last.prev.ckpt").exists()
    last.write_bytes(last.read_bytes()[: 0 if size == 0 else last.stat().st_size // 3])  # a SIGKILLed copy's 0 bytes
    r = _cli([*ARGS, "--data", str(data), "--resume"], out, tmpdir)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert f"{last} cannot be read" in r.stderr and "move its directory aside" in r.stderr


def _train_columns(run_dir: Path) -> dict:
    with (run_dir / "logs" / "metrics.csv").open() as f:
        return {row["epoch"]: (row["train/acc"], row["train/loss_epoch"]) for row in csv.DictReader(f)
                if row["train/acc"]}


def test_a_resumed_epoch_logs_what_an_uninterrupted_one_logs(data, tmp_path):
    """Issue 29 item 3: after a stop inside an epoch, the resumed epoch's train/acc and train/loss_epoch averaged
    only the batches after the resume; the checkpoint now carries the epoch's running sums."""
    from fer_bench import runner

    class Killed(BaseException):
        pass

    kw = dict(data=data, profile="smoke", deterministic=True, progress=False, checkpoint_every_s=1e-6,
              overrides=["input_size=32", "batch_size=8", "eval_batch_size=8"], epochs=3)
    (straight,) = runner.run("miao_presnet_vgg", "presnet", out=tmp_path / "straight", **kw)
    calls, original = {"n": 0}, runner._Safepoints.on_train_batch_end

    def stop_at_step_five(self, trainer, *a):  # epoch 2, after batch 2 of 3 (checkpointed)
        original(self, trainer, *a)
        calls["n"] += 1
        if calls["n"] == 5:
            raise Killed  # like SIGKILL: nothing after this point runs

    runner._Safepoints.on_train_batch_end = stop_at_step_five
    try:
        with pytest.raises(Killed):
            runner.run("miao_presnet_vgg", "presnet", out=tmp_path / "resumed", **kw)
    finally:
        runner._Safepoints.on_train_batch_end = original
    (resumed,) = runner.run("miao_presnet_vgg", "presnet", out=tmp_path / "resumed", resume=True, **kw)
    expected = _train_columns(straight.parent)
    assert set(expected) == {"0", "1", "2"}
    assert _train_columns(resumed.parent) == expected


def test_the_training_curves_mark_epochs_logged_over_part_of_them():
    """The committed du_resnet_fc runs were resumed inside epochs before the fix: their figure marks those epochs'
    train points (found in the log: a whole epoch's train/acc x its images is a whole number of correct images)."""
    from fer_bench import figures
    from fer_bench.verdicts import build
    from papers import get_paper

    rep = build(ROOT / "results", papers=[get_paper("du_resnet_fc")])
    curves = figures.training_curves(rep, "du_resnet_fc")
    marked = {(r, e) for r, e in curves[curves.partial][["run", "epoch"]].drop_duplicates().itertuples(index=False)}
    assert marked == {("repro-s0-47d5629d93", e) for e in (2, 6, 20)} | {
        ("repro-s0-748b3e73a9", e) for e in (4, 6, 12, 15, 19, 22, 24)}  # 1-based, as plotted
    assert set(curves[curves.partial].phase) == {"train"}
    fig = figures.plot_training_curves(rep, "du_resnet_fc")
    for ax in fig.axes:
        (ring,) = [ln for ln in ax.get_lines() if ln.get_label().startswith("train: epoch resumed mid-way")]
        assert len(ring.get_xdata()) == 10
    whole = pd.DataFrame({"epoch": [0, 1], "step": [3, 7], "train/acc": [3 / 32, 17 / 32]})
    assert figures._partial_epochs(whole, {"batch_size": 8}) == set()
    assert figures._partial_epochs(whole.assign(**{"train/acc": [3 / 32, 5 / 24]}), {"batch_size": 8}) == {1}
