"""Determinism, interruption and resume, DDP on CPU, and results that are never clobbered."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from papers import get_paper

from conftest import ROOT, cli, cli_here, only_metrics, write_csv

# a 28-image training set at 32x32: a PResNet epoch (0.87M parameters) takes well under a second on the CPU
TINY = ["--paper", "miao_presnet_vgg", "--model", "presnet", "--profile", "smoke", "--no-progress",
        "--set", "input_size=32", "--set", "eval_batch_size=8", "--set", "batch_size=8"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tiny") / "fer2013.csv"
    write_csv(path, per_class=4)
    return path


@pytest.fixture(scope="module")
def uninterrupted(data, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("straight")  # a new interpreter: the runs compared with it are forked (conftest.cli)
    r = cli("run", *TINY, "--data", str(data), "--out", str(out), "--epochs", "6", "--deterministic", fresh=True)
    assert r.returncode == 0, r.stderr[-2000:]
    return only_metrics(out)


def test_deterministic_runs_give_identical_metrics(data, tmp_path, uninterrupted):
    r = cli("run", *TINY, "--data", str(data), "--out", str(tmp_path), "--epochs", "6", "--deterministic")
    assert r.returncode == 0, r.stderr[-2000:]
    again = only_metrics(tmp_path)
    assert again["splits"] == uninterrupted["splits"]
    assert again["run_id"] != uninterrupted["run_id"]


def _start(data: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "fer_bench.cli", "run", *TINY, "--data", str(data), "--out",
                             str(out), "--epochs", "6", "--deterministic"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ})


def _wait_for_checkpoint(out: Path, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not list(out.glob("runs/*/*/*/checkpoints/last.ckpt")):
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])  # SIGINT takes the SIGTERM path
def test_interrupted_run_resumes_to_the_same_metrics(data, tmp_path, uninterrupted, sig):
    proc = _start(data, tmp_path)
    _wait_for_checkpoint(tmp_path, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=300)
    (run_dir,) = tmp_path.glob("runs/miao_presnet_vgg/presnet/*")
    if sig == signal.SIGKILL:  # no chance to write anything: the run has only run.json and its checkpoint
        assert not (run_dir / "metrics.json").exists()
    else:
        assert proc.returncode == 2 and "--resume" in err and "Traceback" not in err
        d = json.loads((run_dir / "metrics.json").read_text())
        assert d["status"] == "interrupted" and 1 <= d["epochs_completed"] < 6 and d["splits"] == {}
        assert d["budget"]["full"] is False
    r = cli("run", *TINY, "--data", str(data), "--out", str(tmp_path), "--epochs", "6", "--deterministic",
            "--resume")
    assert r.returncode == 0, r.stderr[-2000:]
    resumed = only_metrics(tmp_path)  # still one run directory: the resumed run completed in place
    assert resumed["status"] == "completed" and resumed["epochs_completed"] == 6
    assert resumed["run_id"] == run_dir.name
    assert resumed["splits"] == uninterrupted["splits"]


def test_resume_without_an_interrupted_run_is_a_clear_error(data, tmp_path):
    r = cli("run", *TINY, "--data", str(data), "--out", str(tmp_path), "--resume")
    assert r.returncode == 2 and "no interrupted run" in r.stderr


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_counts_every_test_image_once(data, tmp_path):
    r = cli("run", *TINY, "--data", str(data), "--out", str(tmp_path), "--accelerator", "cpu", "--devices", "2",
            "--strategy", "ddp", "--set", "eval_batch_size=5")
    assert r.returncode == 0, r.stderr[-2000:]
    d = only_metrics(tmp_path)  # one run directory for both ranks
    assert d["hardware"]["devices"] == 2
    # 28 images per split over 2 ranks in batches of 5: 14 each, uneven last batches, nothing padded
    assert {k: v["n"] for k, v in d["splits"].items()} == {"PrivateTest": 28, "PublicTest": 28}
    for v in d["splits"].values():
        assert [sum(row) for row in v["confusion_matrix"]] == [4] * 7
    # the recipe's batch of 8 is the global batch: 4 per rank, 3 steps an epoch for 28 training images
    assert d["config"]["batch_size"] == 8
    log = (Path(_path(tmp_path)).parent / "logs" / "metrics.csv").read_text().splitlines()
    assert max(int(line.split(",")[1]) for line in log[1:]) == 2  # steps 0-2 of the one epoch
    assert any("ranks' share of the batch" in r for r in d["budget"]["reasons"])  # no SyncBatchNorm on CPUs


@pytest.mark.slow
def test_sigterm_in_a_ddp_run_of_every_model_stops_every_rank(data, tmp_path):
    """Issue 16 item 4: SIGTERM to the launching process while the second of three models trains stops both ranks
    there: that run is recorded as interrupted, exit 2, no rank goes on to the third model. (With Lightning's own
    handler, which broadcasts from inside the signal handler, gloo reported a collective mismatch and both ranks
    crashed with a traceback.)"""
    paper = "rodrigues_cnn"
    first, second, third = get_paper(paper).models  # trained in this order
    proc = subprocess.Popen([sys.executable, "-m", "fer_bench.cli", "run", "--paper", paper, "--model", "all",
                             "--profile", "smoke", "--no-progress", "--set", "pretrained=false", "--set",
                             "batch_size=8", "--set", "eval_batch_size=8", "--epochs", "3", "--data", str(data),
                             "--out", str(tmp_path), "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    runs = tmp_path / "runs" / paper
    try:
        t0 = time.time()
        while not list((runs / second).glob("*/checkpoints/last.ckpt")):  # an epoch of the second model is done
            assert proc.poll() is None and time.time() - t0 < 300, proc.communicate()[1][-3000:]
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=180)  # Lightning's own handler could also hang here
        left = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True).stdout.split()
    finally:
        subprocess.run(["pkill", "-9", "-f", str(tmp_path)])  # no rank outlives a failed test
    assert proc.returncode == 2, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    status = {m: [json.loads(f.read_text())["status"] for f in (runs / m).glob("*/metrics.json")]
              for m in (first, second, third)}
    assert status == {first: ["completed"], second: ["interrupted"], third: []}
    assert [f for f in (runs / third).rglob("*") if f.is_file()] == []  # its directory is named up front only
    assert left == [], f"ranks still running after the launcher exited: {left}"


def test_torchrun_ranks_share_one_run_directory(data, tmp_path):
    """torchrun starts every rank itself: both ranks use one directory named after the launch (not one each), and
    only global rank 0 writes run.json and metrics.json."""
    torchrun = Path(sys.executable).parent / "torchrun"
    r = subprocess.run([str(torchrun), "--standalone", "--nproc-per-node", "2", "-m", "fer_bench.cli", "run", *TINY,
                        "--data", str(data), "--out", str(tmp_path), "--accelerator", "cpu", "--devices", "2",
                        "--strategy", "ddp"], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    dirs = list(tmp_path.glob("runs/*/*/*"))
    assert len(dirs) == 1 and dirs[0].name.startswith("torchrun-"), dirs
    d = json.loads((dirs[0] / "metrics.json").read_text())
    assert d["hardware"]["devices"] == 2 and {k: v["n"] for k, v in d["splits"].items()} == {"PrivateTest": 28,
                                                                                           "PublicTest": 28}


def test_rank_and_launch_from_the_launchers_environment(monkeypatch):
    from fer_bench.runner import is_rank0, launch_id

    for key in ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK", "TORCHELASTIC_RUN_ID", "SLURM_JOB_ID", "WORLD_SIZE",
                "SLURM_NTASKS", "SLURM_STEP_ID"):
        monkeypatch.delenv(key, raising=False)
    assert is_rank0() and launch_id() is None  # one plain process
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("SLURM_NTASKS", "16")
    monkeypatch.setenv("SLURM_STEP_ID", "0")
    monkeypatch.setenv("SLURM_PROCID", "9")  # srun sets no LOCAL_RANK: rank 9 of 16 is not rank 0
    assert not is_rank0() and launch_id() == "slurm-77.0"
    monkeypatch.setenv("SLURM_PROCID", "0")
    assert is_rank0()


def _path(out: Path) -> Path:
    (path,) = out.glob("runs/*/*/*/metrics.json")
    return path


def test_ranks_draw_different_randomness_and_share_the_batch(monkeypatch):
    """Under DDP each rank takes batch/world images and seeds its step from (seed, step, rank); rank 0 seeds what a
    single process seeds."""
    import torch
    from types import SimpleNamespace

    from fer_bench.runner import resolve_config
    from fer_bench.training import FERClassifier, FERDataModule

    cfg = resolve_config("huang_fpn", "resnet50", "smoke", None, ["batch_size=8"])
    seeds = []
    monkeypatch.setattr(torch, "manual_seed", lambda s: seeds.append(s))
    for rank in (0, 1):
        m = FERClassifier(torch.nn.Identity(), cfg, seed=3)
        object.__setattr__(m, "_trainer", SimpleNamespace(training=True, global_step=5, global_rank=rank))
        m.on_after_batch_transfer((torch.zeros(1, 48, 48, dtype=torch.uint8), torch.zeros(1)), 0)
    assert seeds == [3 * 1_000_003 + 5, 3 * 1_000_003 + 5 + 2**40]
    dm = FERDataModule.__new__(FERDataModule)
    dm.cfg = cfg
    object.__setattr__(dm, "trainer", SimpleNamespace(world_size=3))
    with pytest.raises(Exception, match="shared equally by 3"):
        dm.train_dataloader()


def test_concurrent_runs_get_distinct_run_directories(data, tmp_path):
    procs = [subprocess.Popen([sys.executable, "-m", "fer_bench.cli", "run", *TINY, "--data", str(data), "--out",
                               str(tmp_path)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    for p in procs:
        assert p.wait(timeout=600) == 0, p.stderr.read()[-2000:]
    runs = list(tmp_path.glob("runs/miao_presnet_vgg/presnet/*/metrics.json"))
    assert len(runs) == 2 and len({p.parent.name for p in runs}) == 2


@pytest.mark.parametrize("setting, fragment", [
    ("lr=nan", "finite"), ("lr=inf", "finite"), ("lr=0", "positive"), ("batch_size=0", "at least 1"),
    ("input_size=0", "at least 1"), ("channels=2", "grayscale"), ("step_size=0", "at least 1"),
    ("label_smoothing=2", "[0, 1)"), ("adam_beta1=1.5", "[0, 1)"), ("aug_erasing=1.5", "[0, 1]"),
    ("epochs=0", "at least 1"), ("aug_resized_crop_min=0.9", "min <= max"), ("crop_size=64", "larger than"),
])
def test_out_of_range_values_are_refused_before_a_run_directory_exists(setting, fragment, tmp_path):
    from fer_bench.errors import UserError
    from fer_bench.runner import resolve_config

    overrides = [setting] + (["aug_resized_crop_max=0.5"] if "crop_min" in setting else [])
    with pytest.raises(UserError, match=fragment.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        resolve_config("huang_fpn", "resnet50", "smoke", None, overrides)


@pytest.mark.parametrize("args, fragment", [(["--seed", "-1"], "--seed -1"), (["--seed", str(2**32)], "2^32"),
                                            (["--set", "lr=nan"], "finite")])
def test_cli_bad_values_exit_2_without_an_orphan_directory(args, fragment, data, tmp_path):
    r = cli_here("run", *TINY, "--data", str(data), "--out", str(tmp_path), *args)
    assert r.returncode == 2 and fragment in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("change, fragment", [
    (["--set", "lr=0.5"], "another recipe (lr="), (["--seed", "7"], "seed 0, not 7"),
    (["--profile", "paper"], "profile smoke, not paper")])
def test_resume_refuses_what_the_run_was_not_started_with(change, fragment, data, tmp_path):
    """--resume continues the run as it was started; new arguments are refused, not silently ignored."""
    from fer_bench.results import write_json_atomic

    out = tmp_path / "out"
    d = out / "runs/miao_presnet_vgg/presnet/20260101-000000-s0-abcdef"
    (d / "checkpoints").mkdir(parents=True)
    (d / "checkpoints" / "last.ckpt").write_bytes(b"not used: the check comes first")
    from fer_bench.runner import resolve_config
    cfg = resolve_config("miao_presnet_vgg", "presnet", "smoke", None, [a for a in TINY[TINY.index("--set"):] if a != "--set"])
    write_json_atomic(d / "run.json", {"paper": "miao_presnet_vgg", "model": "presnet", "profile": "smoke", "seed": 0,
                                       "dataset": "fer2013", "config": cfg})
    args = list(TINY)
    if "--profile" in change:
        i = args.index("--profile")
        args[i + 1] = "paper"
        change = ["--set", "pretrained=false"]  # (a paper profile that loads weights would stop first offline)
    r = cli_here("run", *args, "--data", str(data), "--out", str(out), "--resume", *change)
    assert r.returncode == 2 and fragment in r.stderr and "Traceback" not in r.stderr, r.stderr[-1500:]


def test_resume_refuses_another_dataset(data, tmp_path):
    from fer_bench.results import write_json_atomic
    from fer_bench.runner import resolve_config

    d = tmp_path / "runs/miao_presnet_vgg/presnet/20260101-000000-s0-abcdef"
    (d / "checkpoints").mkdir(parents=True)
    (d / "checkpoints" / "last.ckpt").write_bytes(b"x")
    cfg = resolve_config("miao_presnet_vgg", "presnet", "smoke", None, [a for a in TINY[TINY.index("--set"):] if a != "--set"])
    write_json_atomic(d / "run.json", {"paper": "miao_presnet_vgg", "model": "presnet", "profile": "smoke", "seed": 0,
                                       "dataset": "fer2013", "config": cfg, "data_fingerprint": "0123abcd"})
    r = cli_here("run", *TINY, "--data", str(data), "--out", str(tmp_path), "--resume")
    assert r.returncode == 2 and "fingerprint 0123abcd" in r.stderr


def test_a_run_directory_in_use_is_refused_and_results_are_world_readable(tmp_path):
    import stat

    from fer_bench.results import is_locked, run_lock, write_json_atomic

    d = tmp_path / "run"
    with run_lock(d):
        assert is_locked(d)
        probe = subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; "
                                "from fer_bench.results import run_lock\n"
                                "try:\n    run_lock(Path(sys.argv[1])).__enter__()\nexcept Exception as e:\n"
                                "    print(type(e).__name__, e)", str(d)], capture_output=True, text=True, cwd=ROOT)
        assert "UserError" in probe.stdout and "another process" in probe.stdout
    assert not is_locked(d)
    write_json_atomic(d / "metrics.json", {"a": 1})
    mode = stat.S_IMODE((d / "metrics.json").stat().st_mode)
    assert mode & stat.S_IROTH and mode & stat.S_IRGRP


def test_partial_copies_of_fer2013(tmp_path):
    """A copy missing a class is refused (it would report that class as 0%); one with other split sizes is never a
    full budget."""
    from fer_bench.data import load_fer2013
    from fer_bench.errors import UserError
    from fer_bench.runner import _budget

    path = tmp_path / "fer2013.csv"
    write_csv(path, per_class=2)
    ds = load_fer2013(path, use_cache=False)
    ds.check_classes()  # all seven classes in every split
    assert ds.not_official() == ["dataset 14/14/14 images (Training/PublicTest/PrivateTest), not the official "
                                 "28,709/3,589/3,589"]
    paper = get_paper("rodrigues_cnn")
    cfg = paper.resolve("cnn8")
    trainer = SimpleNamespace(world_size=1)
    assert _budget(paper, "cnn8", "paper", cfg, cfg["epochs"], "fer2013", ds, trainer) == {
        "full": False, "reasons": ds.not_official()}  # the paper's whole recipe, on a partial copy
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0]] + [l for l in lines[1:] if not l.startswith("1,")]) + "\n")  # no disgust
    with pytest.raises(UserError, match="no image of disgust"):
        load_fer2013(path, use_cache=False).check_classes()


def test_the_real_release_is_a_full_dataset(real_data):
    from fer_bench.data import load_fer2013
    ds = load_fer2013(real_data)
    ds.check_classes()
    assert ds.not_official() == []


def test_a_split_smaller_than_the_ranks_is_a_clear_error():
    import torch
    from types import SimpleNamespace

    from fer_bench.errors import UserError
    from fer_bench.training import FERDataModule, _TensorBatches

    dm = FERDataModule.__new__(FERDataModule)
    dm.seed = 0
    object.__setattr__(dm, "trainer", SimpleNamespace(global_rank=0, world_size=3))
    with pytest.raises(UserError, match="holds 2 image"):
        dm._loader(_TensorBatches(torch.zeros(2, 48, 48, dtype=torch.uint8), torch.zeros(2)), 8, shuffle=False)
