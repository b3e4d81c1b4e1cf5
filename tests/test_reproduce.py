"""`fer-bench reproduce`: killed at any instant (SIGKILL), continued, it ends where an uninterrupted run ends;
a second call trains nothing; --time-limit stops cleanly; --status shows every planned run."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, cli, cli_here, only_metrics, write_csv
from fer_bench.reproduce import Planned, load_plan, make_plan, parse_time_limit, reproduce, state, status_table

# 56 training images at 32x32, batches of 8: 7 steps an epoch, a checkpoint after every step
SETS = ["--set", "input_size=32", "--set", "eval_batch_size=8", "--set", "batch_size=8", "--set", "train_subset=0",
        "--set", "epochs=3"]
ARGS = ["--paper", "miao_presnet_vgg", "--model", "presnet", "--profile", "smoke", *SETS, "--deterministic",
        "--no-progress", "--checkpoint-minutes", "0.00001", "--purpose", "a test of the machinery"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tiny") / "fer2013.csv"
    write_csv(path, per_class=8)
    return path


@pytest.fixture(scope="module")
def uninterrupted(data, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("straight")  # a new interpreter: the runs compared with it are forked (conftest.cli)
    r = cli("reproduce", *ARGS, "--data", str(data), "--out", str(out), fresh=True)
    assert r.returncode == 0, r.stderr[-2000:]
    return only_metrics(out)


def _start(data: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "fer_bench.cli", "reproduce", *ARGS, "--data", str(data),
                             "--out", str(out)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env={**os.environ})


def test_uninterrupted_run_records_last_epoch_beside_selected(uninterrupted):
    m = uninterrupted
    assert m["status"] == "completed" and m["epochs_completed"] == 3
    assert m["run_id"].startswith("repro-s0-")
    last = m["last_epoch"]
    assert last["epoch"] == 3 and set(last["splits"]) == {"PrivateTest", "PublicTest"}
    assert last["same_as_selected"] == (m["best_epoch"] == 3)
    if last["same_as_selected"]:
        assert last["splits"] == m["splits"]
    assert m["timing"]["train_s"] > 0


def test_sigkill_at_random_instants_then_continue_matches_uninterrupted(data, tmp_path, uninterrupted):
    rng = random.Random(1)
    kills = 0
    for _ in range(3):
        proc = _start(data, tmp_path)
        deadline = time.time() + 300
        while not list(tmp_path.glob("runs/*/*/*/checkpoints/last.ckpt")) and proc.poll() is None:
            assert time.time() < deadline
            time.sleep(0.1)
        time.sleep(rng.uniform(0.0, 3.0))  # anywhere: between steps, while saving, while evaluating
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    assert kills >= 1
    r = cli("reproduce", *ARGS, "--data", str(data), "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(list(tmp_path.glob("runs/*/*/*"))) == 1  # one directory for the one planned run
    again = only_metrics(tmp_path)
    assert again["status"] == "completed"
    assert again["splits"] == uninterrupted["splits"]
    assert again["last_epoch"] == uninterrupted["last_epoch"]
    assert again["best_epoch"] == uninterrupted["best_epoch"]


def test_mid_epoch_resume_continues_the_same_batches(data, tmp_path, uninterrupted):
    """A stop after step 10 (epoch 2, batch 4 of 7), then a resume: identical to the uninterrupted run."""
    from fer_bench import runner

    class Killed(BaseException):
        pass

    calls = {"n": 0}
    original = runner._Safepoints.on_train_batch_end

    def stop_after_ten(self, trainer, *a):
        original(self, trainer, *a)
        calls["n"] += 1
        if calls["n"] == 10:
            raise Killed  # like SIGKILL: nothing after this point runs, metrics.json is not written

    plan = make_plan("miao_presnet_vgg", "presnet", "0", "smoke", [s for s in SETS if s != "--set"])
    kw = dict(data=data, out=tmp_path, checkpoint_every_s=1e-6, progress=False, deterministic=True, log=lambda m: 0)
    runner._Safepoints.on_train_batch_end = stop_after_ten
    try:
        with pytest.raises(Killed):
            reproduce(plan, **kw)
    finally:
        runner._Safepoints.on_train_batch_end = original
    progress = json.loads((plan[0].run_dir(tmp_path) / "progress.json").read_text())
    assert state(plan[0], tmp_path)["state"] == "interrupted"
    assert (progress["epoch"], progress["batches"]) == (1, 7)
    assert reproduce(plan, **kw) is True
    again = only_metrics(tmp_path)
    assert again["splits"] == uninterrupted["splits"] and again["last_epoch"] == uninterrupted["last_epoch"]
    rows = (plan[0].run_dir(tmp_path) / "logs" / "metrics.csv").read_text().splitlines()
    epochs_logged = {line.split(",")[0] for line in rows[1:]}
    assert epochs_logged == {"0", "1", "2"}  # epoch 0, trained before the stop, kept its rows


def test_second_call_trains_nothing(data, tmp_path):
    r = cli("reproduce", *ARGS, "--data", str(data), "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "weights_only" not in r.stdout + r.stderr  # one log line per in-epoch checkpoint flooded long runs' logs
    first = only_metrics(tmp_path)
    r = cli("reproduce", *ARGS, "--data", str(data), "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "completed, skipped" in r.stdout
    assert only_metrics(tmp_path) == first  # not rewritten
    assert len(list(tmp_path.glob("runs/*/*/*"))) == 1


def test_time_limit_stops_cleanly_and_the_same_command_continues(data, tmp_path, uninterrupted, monkeypatch):
    import fer_bench.reproduce as rep

    monkeypatch.setattr(rep, "MIN_START_S", 0)
    plan = make_plan("miao_presnet_vgg", "presnet", "0", "smoke", [s for s in SETS if s != "--set"])
    kw = dict(data=data, out=tmp_path, checkpoint_every_s=1e9, progress=False, deterministic=True, log=lambda m: 0)
    assert reproduce(plan, time_limit=1.0, **kw) is False  # the limit passes during the first epoch
    m = only_metrics(tmp_path)
    assert m["status"] == "interrupted" and m["splits"] == {} and "last_epoch" not in m
    assert state(plan[0], tmp_path)["state"] == "interrupted"
    assert reproduce(plan, **kw) is True
    assert only_metrics(tmp_path)["splits"] == uninterrupted["splits"]


def test_sigterm_checkpoints_the_step_it_arrived_in_and_the_same_command_continues(data, tmp_path, uninterrupted,
                                                                                  monkeypatch):
    """SIGTERM (a preempted job) in step 10 of 21 (epoch 2, batch 3 of 7), with no periodic checkpoint due: the
    checkpoint is written at that step, the error says to repeat the same command (not --resume), and the
    continued run ends where the uninterrupted one ended."""
    import torch

    from fer_bench.errors import UserError
    from fer_bench.training import FERClassifier

    original = FERClassifier.training_step

    def sigterm_in_step_ten(self, *a, **k):
        if self.global_step == 9:
            os.kill(os.getpid(), signal.SIGTERM)
        return original(self, *a, **k)

    plan = make_plan("miao_presnet_vgg", "presnet", "0", "smoke", [s for s in SETS if s != "--set"])
    kw = dict(data=data, out=tmp_path, checkpoint_every_s=1e9, progress=False, deterministic=True, log=lambda m: 0)
    monkeypatch.setattr(FERClassifier, "training_step", sigterm_in_step_ten)
    with pytest.raises(UserError) as e:
        reproduce(plan, **kw)
    assert "Continue it with the same command." in str(e.value) and "--resume" not in str(e.value)
    d = plan[0].run_dir(tmp_path)
    assert json.loads((d / "metrics.json").read_text())["status"] == "interrupted"
    ckpt = torch.load(d / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 10  # not 7, the end of epoch 1, the newest checkpoint before it
    monkeypatch.setattr(FERClassifier, "training_step", original)
    assert reproduce(plan, **kw) is True
    again = only_metrics(tmp_path)
    assert again["splits"] == uninterrupted["splits"] and again["last_epoch"] == uninterrupted["last_epoch"]


def test_a_time_limit_that_could_start_nothing_is_refused(data, tmp_path):
    for limit in ("0:00:01", "4:59", ""):
        r = cli("reproduce", *ARGS, "--data", str(data), "--out", str(tmp_path), "--time-limit", limit)
        assert r.returncode == 2 and "--time-limit" in r.stderr and "Traceback" not in r.stderr, (limit, r.stderr)
    assert not (tmp_path / "runs").exists()


def test_status_table_and_plan_file(data, tmp_path, uninterrupted):
    plan_file = tmp_path / "plan.toml"
    plan_file.write_text('[[run]]\npaper = "du_resnet_fc"\nseeds = [0, 1]\n\n'
                         '[[run]]\npaper = "rodrigues_cnn"\nmodel = "cnn8"\n')
    plan = load_plan(plan_file)
    assert [(p.paper, p.model, p.seed) for p in plan] == [
        ("du_resnet_fc", "improved_resnet50", 0), ("du_resnet_fc", "resnet50", 0),
        ("du_resnet_fc", "improved_resnet50", 1), ("du_resnet_fc", "resnet50", 1), ("rodrigues_cnn", "cnn8", 0)]
    table = status_table(plan, tmp_path)
    assert table.count("| pending |") == 5 and "0.00 / 30" in table and "0.00 / 150" in table
    r = cli("reproduce", "--plan", str(plan_file), "--status", "--out", str(tmp_path))
    assert r.returncode == 0 and r.stdout.count("pending") == 5


def test_run_dir_names_the_recipe():
    a = Planned("du_resnet_fc", "resnet50", 0)
    assert a.run_dir(Path("o")) == Planned("du_resnet_fc", "resnet50", 0).run_dir(Path("o"))
    assert a.run_dir(Path("o")) != Planned("du_resnet_fc", "resnet50", 1).run_dir(Path("o"))
    assert a.run_dir(Path("o")) != Planned("du_resnet_fc", "resnet50", 0, overrides=("lr=0.01",)).run_dir(Path("o"))


@pytest.mark.parametrize("args, fragment", [
    (["--paper", "du_resnet_fc", "--seeds", "0,x"], "--seeds"),
    (["--paper", "du_resnet_fc", "--seeds", "1,1"], "distinct"),
    (["--paper", "du_resnet_fc", "--model", "vgg"], "--model vgg"),
    (["--paper", "du_resnet_fc", "--set", "lr=abc"], "lr"),
    (["--paper", "du_resnet_fc", "--time-limit", "soon"], "--time-limit"),
    (["--paper", "du_resnet_fc", "--time-limit", "0:00:00"], "could never train"),
    (["--paper", "du_resnet_fc", "--time-limit", "\u00b2:00:00"], "H:MM:SS"),
    (["--paper", "du_resnet_fc", "--checkpoint-minutes", "nan"], "--checkpoint-minutes"),
    (["--paper", "du_resnet_fc", "--checkpoint-minutes", "inf"], "--checkpoint-minutes"),
    (["--plan", "results/plan.toml", "--seeds", "3"], "--seeds"),
    (["--plan", "results/plan.toml", "--model", "resnet50"], "--model"),
    (["--plan", "results/plan.toml", "--set", "lr=0.1"], "--set"),
    (["--plan", "results/plan.toml", "--profile", "smoke"], "--profile"),
    ([], "--paper"),
    (["--plan", "/nonexistent/plan.toml"], "cannot read"),
])
def test_bad_input_exits_2(args, fragment, tmp_path):
    r = cli_here("reproduce", *args, "--out", str(tmp_path), "--status")
    assert r.returncode == 2 and fragment in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "runs").exists()


def test_parse_time_limit():
    assert parse_time_limit("2:45:00") == 9900 and parse_time_limit("10:00") == 600


def test_a_run_recorded_before_a_new_recipe_key_is_found_again(tmp_path):
    """A later fer-bench that adds a recipe key (at a default that keeps the old behaviour) renames nothing: the run
    directory is found by its run.json; a recipe that really differs is a new run."""
    from fer_bench.config import DEFAULTS

    item = Planned("du_resnet_fc", "resnet50", 0)
    cfg = item.config()
    new_key = next(k for k in DEFAULTS if k in cfg)
    old = tmp_path / "runs/du_resnet_fc/resnet50/repro-s0-0123456789"
    old.mkdir(parents=True)
    recorded = {k: v for k, v in cfg.items() if k != new_key}  # written before new_key existed
    (old / "run.json").write_text(json.dumps({"seed": 0, "profile": "paper", "dataset": "fer2013",
                                              "config": recorded}))
    assert item.run_dir(tmp_path) == old
    changed = dict(recorded, lr=recorded["lr"] * 10)
    (old / "run.json").write_text(json.dumps({"seed": 0, "profile": "paper", "dataset": "fer2013",
                                              "config": changed}))
    assert item.run_dir(tmp_path) != old
    assert Planned("du_resnet_fc", "resnet50", 1).run_dir(tmp_path) != old
