"""The prepared GPU scripts, dry-run on the CPU: they must work the first time a GPU session runs them."""

import json
import os
import subprocess
import sys
import tarfile

import pytest

from conftest import ROOT


def test_gpu_check_dry_run_passes_every_check(tmp_path):
    r = subprocess.run(["bash", "scripts/gpu_check.sh", "--dry-run"], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "OUT": str(tmp_path)}, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((tmp_path / "gpu_check.json").read_text())
    assert res["accelerator"] == "cpu" and res["precision"]["capability"] is None
    assert res["determinism"]["identical"] is True
    assert res["compile"] == "n/a"  # inductor's C++ build takes minutes on a CPU: GPU only
    per_class, classes = 4, 7  # the synthetic set: 4 images of each class in each split
    assert res["tta"] == {s: {"n": per_class * classes, "views": 10} for s in ("PrivateTest", "PublicTest")}
    assert res["vgg16"].startswith("deterministic") and res["host_syncs"] == "n/a"


def _gpu_reproduce():
    import importlib.util
    spec = importlib.util.spec_from_file_location("gpu_reproduce", ROOT / "scripts" / "gpu_reproduce.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_gpu_reproduce_starts_a_run_only_if_every_run_still_ends_in_time():
    fits = _gpu_reproduce().fits
    # one run half done at 1/200 per s: alone 100 s left; with a second sharing the GPU 200 s; the new one 400 s
    assert fits([(0.5, 1 / 200)], time_left=400 + 30, margin=30)
    assert not fits([(0.5, 1 / 200)], time_left=399 + 30, margin=30)
    # two runs, each slowed to 2/3: the slow one (0.9 left at 1/300 per s) needs 405 s, the new one 225 s
    assert not fits([(0.9, 1 / 100), (0.1, 1 / 300)], time_left=404, margin=0)
    assert fits([(0.9, 1 / 100), (0.1, 1 / 300)], time_left=406, margin=0)
    assert not fits([(0.99, 1 / 100), (0.9, 1 / 100)], time_left=149, margin=0)  # only the new one (150 s) is too long
    assert not fits([], time_left=1e9) and not fits([(0.0, 0.0)], time_left=1e9)  # no measured rate: no start


def test_gpu_reproduce_dry_run_runs_the_queue_and_packs_completed_runs(tmp_path):
    r = subprocess.run([sys.executable, "scripts/gpu_reproduce.py", "--dry-run", "--budget", "600", "--out",
                        str(tmp_path), "--queue", "miao_presnet_vgg:presnet:0,miao_presnet_vgg:presnet:1", "--set",
                        "eval_batch_size=16", "--tune-s", "30"],
                       cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    res = json.loads((tmp_path / "gpu_reproduce.json").read_text())
    assert [s["run"] for s in res["schedule"]] == ["miao_presnet_vgg/presnet/s0", "miao_presnet_vgg/presnet/s1"]
    assert {k: v["status"] for k, v in res["runs"].items()} == {"miao_presnet_vgg/presnet/s0": "completed",
                                                                 "miao_presnet_vgg/presnet/s1": "completed"}
    with tarfile.open(tmp_path / "runs.tar.gz") as t:
        names = t.getnames()
    assert not any(n.endswith(".ckpt") for n in names)
    for seed in (0, 1):
        assert sum(n.startswith(f"runs/miao_presnet_vgg/presnet/repro-s{seed}-") and n.endswith("/metrics.json")
                   for n in names) == 1
        assert f"logs/miao_presnet_vgg-presnet-s{seed}.log" in names
        (m,) = [n for n in names
                if n.startswith(f"runs/miao_presnet_vgg/presnet/repro-s{seed}-") and n.endswith("/metrics.json")]
        with tarfile.open(tmp_path / "runs.tar.gz") as t:
            assert json.load(t.extractfile(m))["config"]["eval_batch_size"] == 16  # --set reached every run


def test_git_sha_of_a_copied_tree_comes_from_the_environment(monkeypatch):
    """A GPU machine's copy of the tree carried a stale .git (HEAD of an older commit, '-dirty'): the commit the
    copy was made from is named in FER_BENCH_GIT_SHA and wins over git."""
    from fer_bench import results
    monkeypatch.delenv("FER_BENCH_GIT_SHA", raising=False)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert results.git_sha().removesuffix("-dirty") == head
    monkeypatch.setenv("FER_BENCH_GIT_SHA", "0123abc")
    assert results.git_sha() == "0123abc"
    monkeypatch.delenv("FER_BENCH_GIT_SHA")
    monkeypatch.setattr(results.subprocess, "run", lambda *a, **k: (_ for _ in ()).throw(FileNotFoundError("git")))
    assert results.git_sha() == "unknown"


def test_gpu_reproduce_bad_queue_is_a_clear_error_with_exit_2(tmp_path):
    r = subprocess.run([sys.executable, "scripts/gpu_reproduce.py", "--dry-run", "--out", str(tmp_path), "--queue",
                        "du_resnet_fc:resnet50"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "write paper:model:seed" in r.stderr and "Traceback" not in r.stderr
    assert list(tmp_path.iterdir()) == []  # nothing started, nothing written


@pytest.mark.parametrize("args, fragment", [
    (["--queue", ""], "write paper:model:seed"), (["--queue", "du_resnet_fc::0"], "write paper:model:seed"),
    (["--budget", "0"], "--budget 0.0"), (["--budget", "-5"], "--budget -5.0"), (["--budget", "nan"], "--budget nan"),
    (["--budget", "inf"], "--budget inf")])
def test_gpu_reproduce_bad_arguments_exit_2_before_anything_starts(tmp_path, args, fragment):
    """Issue 29: --queue "" ran the default queue; a budget of 0, -5 or nan exited 0 (nan written into JSON)."""
    r = subprocess.run([sys.executable, "scripts/gpu_reproduce.py", "--dry-run", "--out", str(tmp_path), *args],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and fragment in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert list(tmp_path.iterdir()) == []


def test_gpu_reproduce_missing_data_exits_2(tmp_path):
    r = subprocess.run([sys.executable, "scripts/gpu_reproduce.py", "--out", str(tmp_path / "out"), "--data",
                        str(tmp_path / "nowhere")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr and str(tmp_path / "nowhere") in r.stderr, r.stderr
    assert not (tmp_path / "out").exists()


def test_gpu_reproduce_with_a_recipe_no_run_can_train_exits_2_before_anything_starts(tmp_path):
    """Issue 29's lr=nan started both runs, which failed (exit 1); since issue 30 each run's recipe is resolved for
    the packing before anything starts, so it is refused at once."""
    r = subprocess.run([sys.executable, "scripts/gpu_reproduce.py", "--dry-run", "--budget", "300", "--out",
                        str(tmp_path / "out"), "--queue", "rodrigues_cnn:cnn8:0,rodrigues_cnn:cnn8:1", "--set", "lr=nan",
                        "--work", str(tmp_path / "work")], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 2 and "--set lr=nan: give a finite number" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists()


def test_gpu_reproduce_progress_without_an_epoch_is_no_progress(tmp_path):
    d = tmp_path / "runs" / "p" / "m" / "repro-s0-abc"
    d.mkdir(parents=True)
    (d / "progress.json").write_text('{"batch": 3}')
    assert _gpu_reproduce().fraction_done(tmp_path, "p", "m", 0) is None  # was a KeyError


def test_the_packing_starts_only_runs_that_finish_longest_first_within_a_seed():
    tune = _gpu_tune()
    jobs = [{"name": "a0", "tier": 0, "seconds": 100}, {"name": "b0", "tier": 0, "seconds": 300},
            {"name": "c1", "tier": 1, "seconds": 50}, {"name": "d1", "tier": 1, "seconds": 400}]
    # one process, 480 s, 30 s kept free: b0 (longest of seed 0) then a0, then c1; d1 (400 s) can never finish
    plan = tune.simulate(jobs, 1, 480, margin=30)
    assert [(p["name"], p["start"], p["end"]) for p in plan] == [("b0", 0, 300), ("a0", 300, 400), ("c1", 400, 450)]
    # two processes: b0 and a0 at once, then c1 at 100; d1 from 150 would end at 550 > 450: not started
    plan = tune.simulate(jobs, 2, 480, margin=30)
    assert [(p["name"], p["start"], p["slot"]) for p in plan] == [("b0", 0, 0), ("a0", 0, 1), ("c1", 100, 1)]
    assert all(p["end"] <= 450 for p in plan)
    # the level that completes the most runs wins: 4 processes at half the speed each finish all four
    slow = [{**j, "seconds": j["seconds"] * 1.1} for j in jobs]
    procs, plan = tune.choose({1: jobs, 4: slow}, 480, margin=30)
    assert procs == 4 and len(plan) == 4


def test_a_runs_seconds_come_from_the_measured_rates():
    tune = _gpu_tune()
    row = {"procs": 2, "mode": "eager", "train_steps_per_s": 40.0, "eval_steps_per_s": 100.0, "batch_size": 32,
           "eval_batch_size": 64, "compile_s": 50.0}
    sizes = {"train": 28709, "val": 3589, "tests": [3589, 3589]}
    # each of 2 processes: 20 train steps/s, 50 eval steps/s; 897 steps + 57 val batches an epoch; 2 x 114 at the end
    per_epoch = 897 / 20 + 57 / 50
    assert tune.estimate(row, sizes, 30) == pytest.approx(tune.START_S + 30 * per_epoch + 2 * 114 / 50)
    assert tune.estimate(row, sizes, 30, done=0.5) == pytest.approx(tune.START_S + 15 * per_epoch + 2 * 114 / 50)
    graphs = {**row, "mode": "graphs"}  # its compilation counts
    assert tune.estimate(graphs, sizes, 30) == pytest.approx(tune.estimate(row, sizes, 30) + 50.0)
    rows = tune.faithful([{"kind": "k", "mode": "eager", "first_loss": 2.0}, {"kind": "k", "mode": "graphs",
                           "first_loss": 2.01, "compiled": True}, {"kind": "k", "mode": "graphs", "first_loss": 2.5,
                                                                  "compiled": True}])
    assert [r["faithful"] for r in rows] == [True, True, False]


def test_the_default_queue_answers_claims_and_leaves_out_committed_du_runs():
    mod = _gpu_reproduce()
    queue = mod.default_queue()
    assert ("du_resnet_fc", "resnet50", 0, ()) not in queue  # committed, completed under results/runs
    assert ("du_resnet_fc", "resnet50", 1, ()) in queue and ("miao_presnet_vgg", "presnet_vgg", 2,
                                                               ("protocol=paper",)) in queue
    assert [j[2] for j in queue] == sorted(j[2] for j in queue)  # seed-major: every model's seed 0 first
    mod.check_plan(queue, dry_run=False)  # fer_bench.plan.check_judgeable: each run answers a claim
    from fer_bench.errors import UserError
    with pytest.raises(UserError, match="no claim"):
        mod.check_plan([("miao_presnet_vgg", "presnet", 0, ())], dry_run=False)  # canonical: judged on nothing


def test_a_second_call_resumes_what_the_first_left_half_way(tmp_path):
    """The call's end kills everything (SIGKILL of the process group) after a run's first checkpoint; the same
    command with the same --work continues that run from its checkpoint, reuses the tuning table, and completes."""
    import signal
    import time
    work, cmd = tmp_path / "work", [sys.executable, "scripts/gpu_reproduce.py", "--dry-run", "--budget", "500",
                                    "--tune-s", "30", "--queue", "miao_presnet_vgg:presnet:0", "--set", "epochs=4",
                                    "--set", "eval_batch_size=16"]
    first = subprocess.Popen([*cmd, "--work", str(work), "--out", str(tmp_path / "out1")], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.time() + 400
    while not list(work.glob("results/runs/*/*/*/progress.json")) or \
            json.loads(next(work.glob("results/runs/*/*/*/progress.json")).read_text())["epoch"] < 1:
        assert time.time() < deadline and first.poll() is None
        time.sleep(0.5)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    r = subprocess.run([*cmd, "--work", str(work), "--out", str(tmp_path / "out2")], cwd=ROOT, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "tuning table from" in r.stdout
    res = json.loads((tmp_path / "out2" / "gpu_reproduce.json").read_text())
    (run,) = res["schedule"]
    assert run["run"] == "miao_presnet_vgg/presnet/s0" and 0 < run["resumed_from"] < 1
    assert res["runs"]["miao_presnet_vgg/presnet/s0"]["status"] == "completed"
    assert len(list(work.glob("results/runs/*/*/*"))) == 1  # the same run directory, continued
    assert json.loads((tmp_path / "out2" / "tune.json").read_text())["rows"]


def _gpu_tune():
    sys.path.insert(0, str(ROOT / "scripts"))
    import gpu_tune
    return gpu_tune


def test_gpu_reproduce_exits_1_when_every_run_it_started_failed(tmp_path):
    """Issue 29: a queue whose runs all fail exited 0. The runs start (a tuning table from an 'earlier call' in the
    fixed --work directory skips the measuring) and each fails at once (the work directory's runs/ is a file, so
    reproduce exits 2): exit 1, naming each run's exit status, with what was packed still written."""
    work = tmp_path / "work"
    (work / "results").mkdir(parents=True)
    (work / "results" / "runs").write_text("not a directory")
    (work / "tune.json").write_text(json.dumps({"rows": [
        {"kind": "miao_presnet_vgg/presnet", "procs": 1, "mode": "eager", "faithful": True, "train_steps_per_s": 100,
         "eval_steps_per_s": 100, "batch_size": 128, "eval_batch_size": 128, "compile_s": 0}],
        "skipped": [], "seconds": 0}))
    r = subprocess.run([sys.executable, "scripts/gpu_reproduce.py", "--dry-run", "--budget", "300", "--out",
                        str(tmp_path / "out"), "--queue", "miao_presnet_vgg:presnet:0", "--work", str(work)],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stdout[-2000:] + r.stderr[-2000:]
    assert "no run completed (miao_presnet_vgg/presnet/s0: exit 2)" in r.stderr and "Traceback" not in r.stderr
    res = json.loads((tmp_path / "out" / "gpu_reproduce.json").read_text())
    assert [s["run"] for s in res["schedule"]] == ["miao_presnet_vgg/presnet/s0"]
    assert (tmp_path / "out" / "runs.tar.gz").is_file()
