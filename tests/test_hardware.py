"""Hardware and cluster paths checked without the hardware: bad Trainer arguments, spawning strategies,
SIGTERM during the final test, SLURM's auto-requeue."""

import json
import os
import signal
from pathlib import Path

import pytest

from conftest import cli, write_csv
from fer_bench.errors import UserError
from fer_bench.runner import _cluster_plugins, check_hardware, run

TINY = dict(profile="smoke", overrides=["input_size=32", "eval_batch_size=8", "batch_size=8"], progress=False,
            deterministic=True)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tiny") / "fer2013.csv"
    write_csv(path, per_class=2)
    return path


@pytest.mark.parametrize("args, fragment", [
    (dict(accelerator="tpu"), "--accelerator tpu"),
    (dict(precision="bf15"), "--precision bf15"),
    (dict(strategy="ddp_spawn"), "worker processes"),
    (dict(strategy="ddp_fork"), "worker processes"),
    (dict(strategy="ddp_notebook"), "worker processes"),
    (dict(strategy="fsdp2000"), "--strategy fsdp2000"),
    (dict(num_nodes=0), "--num-nodes 0"),
    (dict(devices=0), "--devices 0"),
    (dict(devices=-1), "--devices -1"),
    (dict(devices=(os.cpu_count() or 1) + 1, accelerator="cpu"), "CPU cores"),
])
def test_bad_hardware_arguments_are_refused_before_anything_starts(args, fragment):
    kw = dict(accelerator="cpu", devices=1, num_nodes=1, strategy="auto", precision=None) | args
    with pytest.raises(UserError, match=fragment.replace("(", r"\(")):
        check_hardware(**kw)


def test_gpu_without_one_is_refused(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="no CUDA GPU"):
        check_hardware("gpu", 1, 1, "auto", None)


def test_cli_refuses_huge_devices_with_exit_2_and_no_run_directory(data, tmp_path):
    r = cli("run", "--paper", "huang_fpn", "--model", "resnet50", "--profile", "smoke", "--data", str(data),
            "--out", str(tmp_path), "--accelerator", "cpu", "--devices", "4096")
    assert r.returncode == 2 and "CPU cores" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "runs").exists()


def test_sigterm_during_the_final_test_is_an_interruption(data, tmp_path, monkeypatch):
    """SLURM preemption in the evaluation: status interrupted and an error (exit 2), never a silent success."""
    from fer_bench.training import FERClassifier

    original = FERClassifier.test_step

    def test_step_then_sigterm(self, *a, **k):
        os.kill(os.getpid(), signal.SIGTERM)
        return original(self, *a, **k)

    monkeypatch.setattr(FERClassifier, "test_step", test_step_then_sigterm)
    with pytest.raises(UserError, match="interrupted"):
        run("huang_fpn", model="resnet50", seed=0, data=data, out=tmp_path, **TINY)
    (path,) = tmp_path.glob("runs/*/*/*/metrics.json")
    m = json.loads(path.read_text())
    assert m["status"] == "interrupted" and m["splits"] == {} and m["epochs_completed"] == 1
    log = (path.parent / "logs" / "metrics.csv").read_text()
    # --resume then only evaluates: the training log and the training time are kept
    monkeypatch.setattr(FERClassifier, "test_step", original)
    (path,) = run("huang_fpn", model="resnet50", seed=0, data=data, out=tmp_path, resume=True, **TINY)
    done = json.loads(path.read_text())
    assert done["status"] == "completed" and done["splits"]
    assert (path.parent / "logs" / "metrics.csv").read_text().startswith(log.splitlines()[0])
    assert len((path.parent / "logs" / "metrics.csv").read_text().splitlines()) >= len(log.splitlines())
    assert done["timing"]["train_s"] == pytest.approx(m["timing"]["train_s"], rel=1e-6) and done["timing"]["train_s"] > 0


def test_slurm_auto_requeue_is_off(monkeypatch):
    for k in ("SLURM_NTASKS", "SLURM_JOB_NAME", "SLURM_JOB_ID", "SLURM_PROCID", "SLURM_LOCALID", "SLURM_NODEID"):
        monkeypatch.delenv(k, raising=False)
    assert _cluster_plugins() == []
    monkeypatch.setenv("SLURM_NTASKS", "1")
    monkeypatch.setenv("SLURM_JOB_NAME", "train")
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    monkeypatch.setenv("SLURM_PROCID", "0")
    monkeypatch.setenv("SLURM_LOCALID", "0")
    monkeypatch.setenv("SLURM_NODEID", "0")
    (env,) = _cluster_plugins()
    assert env.auto_requeue is False
