"""The campaign's plan: only runs that can answer a claim are trained, plan files are read strictly, runs committed
elsewhere are not trained again, a directory holding another run is refused, and `publish` copies each run whole.
Nothing here trains: completed runs are written by hand."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT, cli, cli_here
from fer_bench.errors import UserError
from fer_bench.plan import Planned, check_judgeable, judged_claims, load_plan
from fer_bench.reproduce import publish, reproduce, state, status_table

CAMPAIGN = ROOT / "scripts" / "campaign.sh"


def _plan(tmp_path, text: str) -> Path:
    p = tmp_path / "plan.toml"
    p.write_text(text)
    return p


def _labels(item) -> set[tuple]:
    return {(c.metric, c.split, c.protocol) for c in judged_claims(item)[0]}


def test_miao_is_judged_only_under_its_own_protocol():
    """Every miao FER-2013 claim is its 28,000/3,500 protocol, selected on the test subset: a canonical run answers
    none of them (20 CPU-hours for nothing), a protocol=paper run answers the accuracy and the per-class table."""
    canonical = Planned("miao_presnet_vgg", "presnet", 0)
    judged, why = judged_claims(canonical)
    assert judged == [] and any("protocol canonical (claim: paper)" in w for w in why)
    own = Planned("miao_presnet_vgg", "presnet", 0, overrides=("protocol=paper",))
    assert _labels(own) == {("accuracy", "PrivateTest", "paper"), ("per_class_accuracy", "PrivateTest", "paper")}


def test_du_runs_answer_the_headline_and_reduced_budgets_answer_nothing():
    assert ("accuracy_gain", "PublicTest", "canonical") in _labels(Planned("du_resnet_fc", "resnet50", 0))
    judged, why = judged_claims(Planned("du_resnet_fc", "resnet50", 0, overrides=("epochs=2",)))
    assert judged == [] and "epochs=2 (paper: 30)" in why[0]
    assert judged_claims(Planned("du_resnet_fc", "resnet50", 0, "smoke"))[0] == []


def test_the_committed_plan_answers_a_claim_with_every_run():
    plan = load_plan(ROOT / "results" / "plan.toml")
    judged = check_judgeable(plan)  # raises if any run answers nothing
    assert all(judged[item] for item in plan)
    miao = [item for item in plan if item.paper == "miao_presnet_vgg"]
    assert miao and all("protocol=paper" in item.overrides for item in miao)


def test_a_run_that_answers_nothing_is_refused_unless_its_purpose_is_said(tmp_path):
    bad = _plan(tmp_path, '[[run]]\npaper = "miao_presnet_vgg"\nmodel = "presnet"\n')
    r = cli("reproduce", "--plan", str(bad), "--out", str(tmp_path / "o"), "--data", str(tmp_path / "none"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "miao_presnet_vgg/presnet seed 0" in r.stderr and "protocol canonical (claim: paper)" in r.stderr
    assert not (tmp_path / "o").exists()
    ok = _plan(tmp_path, '[[run]]\npaper = "miao_presnet_vgg"\nmodel = "presnet"\n'
                         'purpose = "the canonical protocol, for comparison with other papers"\n')
    check_judgeable(load_plan(ok))  # no exception
    r = cli("reproduce", "--plan", str(ok), "--out", str(tmp_path / "o"), "--status")
    assert r.returncode == 0 and "none (purpose: the canonical protocol" in r.stdout


@pytest.mark.parametrize("entry, fragment", [
    ('[[run]]\npaper = "du_resnet_fc"\nseeds = ["a"]\n', "seeds must be a list of integers"),
    ('[[run]]\npaper = "du_resnet_fc"\nseeds = [1.5]\n', "seeds must be a list of integers"),
    ('[[run]]\npaper = "du_resnet_fc"\nseeds = [true]\n', "seeds must be a list of integers"),
    ('run = [1, 2]\n', "[[run]] tables"),
    ('[[run]]\npaper = "du_resnet_fc"\nprofile = ["smoke"]\n', "profile must be a string"),
    ('[[run]]\npaper = "du_resnet_fc"\nset = [1]\n', "set must be a list"),
    ('[[run]]\npaper = "du_resnet_fc"\nset = "epochs=2"\n', "set must be a list"),
    ('[[run]]\npaper = "du_resnet_fc"\nmodel = "resnet50"\nset = ["lr=0.1"]\n\n'
     '[[run]]\npaper = "du_resnet_fc"\nmodel = "resnet50"\nset = ["lr=0.10"]\n', "planned twice"),
])
def test_plan_files_are_read_strictly(entry, fragment, tmp_path):
    p = _plan(tmp_path, entry)
    with pytest.raises(UserError, match=fragment.replace("[", r"\[")):
        load_plan(p)


def test_a_bad_plan_exits_2_without_a_traceback(tmp_path):
    p = tmp_path / "plan.toml"
    p.write_bytes(b'[[run]]\npaper = "du\xff"\n')
    with pytest.raises(UserError, match="not UTF-8"):
        load_plan(p)
    _plan(tmp_path, '[[run]]\npaper = "du_resnet_fc"\nseeds = [1.5]\n')
    r = cli("reproduce", "--plan", str(p), "--status", "--out", str(tmp_path))
    assert r.returncode == 2 and "seeds must be a list of integers" in r.stderr and "Traceback" not in r.stderr


def _completed(d: Path, item: Planned, fingerprint: str = "f" * 16, logs: bool = True, device: str = "GPU X"):
    d.mkdir(parents=True)
    cfg = item.config()
    record = {"paper": item.paper, "model": item.model, "seed": item.seed, "profile": item.profile, "config": cfg,
              "dataset": {"name": "fer2013", "fingerprint": fingerprint}, "status": "completed",
              "epochs_completed": cfg["epochs"], "hardware": {"device_name": device},
              "timing": {"train_img_per_s": 1000.0, "train_s": 60.0}}
    (d / "metrics.json").write_text(json.dumps(record))
    (d / "run.json").write_text(json.dumps({k: record[k] for k in ("paper", "model", "seed", "profile", "config")}))
    if logs:
        (d / "logs").mkdir()
        (d / "logs" / "metrics.csv").write_text("epoch,train/acc\n0,0.5\n")
    return record


def test_a_run_committed_elsewhere_is_not_trained_again(tmp_path, monkeypatch):
    """A GPU run committed under results/runs, in a directory of another name, counts for the campaign: reproduce
    skips it (training would raise here) and the status row says where it came from."""
    import fer_bench.reproduce as rep

    item = Planned("du_resnet_fc", "resnet50", 1)
    _completed(tmp_path / "committed/runs/du_resnet_fc/resnet50/gpu-20261201-s1", item, fingerprint="abc")
    monkeypatch.setattr(rep, "_fingerprint", lambda data: "abc")
    monkeypatch.setattr(rep, "run", lambda *a, **k: pytest.fail("trained a committed run again"))
    logs = []
    assert reproduce([item], out=tmp_path / "out", published=tmp_path / "committed", log=logs.append) is True
    assert "completed elsewhere, not trained again" in logs[0]
    row = state(item, tmp_path / "out", tmp_path / "committed")
    assert row["state"] == "published" and "GPU X" in row["note"]
    assert "| published |" in status_table([item], tmp_path / "out", tmp_path / "committed")
    # another seed, or the same seed with another recipe, is not the planned run
    other = Planned("du_resnet_fc", "resnet50", 2)
    assert state(other, tmp_path / "out", tmp_path / "committed")["state"] == "pending"
    changed = Planned("du_resnet_fc", "resnet50", 1, overrides=("lr=0.01",))
    assert state(changed, tmp_path / "out", tmp_path / "committed")["state"] == "pending"
    # the same recipe executed another way (the GPU compiled it; the plan asks for the unleaked subsets too) is it
    for how in (("compile_mode=reduce-overhead",), ("exclude_leaked=true", "channels_last=false", "eval_batch_size=8")):
        assert state(Planned("du_resnet_fc", "resnet50", 1, overrides=how), tmp_path / "out",
                     tmp_path / "committed")["state"] == "published", how
    # ... but not under another protocol or test-time augmentation: those answer other claims
    for what in (("protocol=paper",), ("tta=hflip",)):
        assert state(Planned("du_resnet_fc", "resnet50", 1, overrides=what), tmp_path / "out",
                     tmp_path / "committed")["state"] == "pending", what


def test_the_time_left_of_a_model_measured_only_in_a_committed_run_is_estimated_from_it_and_marked(tmp_path):
    """A fresh machine has measured nothing yet: the pending seed of a model whose committed run trained at 1,000
    img/s is estimated at that rate (30 epochs of 28,709 images: 861.27 s), marked '*' and summed apart."""
    done, todo = Planned("du_resnet_fc", "resnet50", 0), Planned("du_resnet_fc", "resnet50", 1)
    _completed(tmp_path / "committed/runs/du_resnet_fc/resnet50/gpu-s0", done)
    table = status_table([done, todo], tmp_path / "out", tmp_path / "committed")
    row = next(line for line in table.splitlines() if line.startswith("| du_resnet_fc | resnet50 | 1 |"))
    assert "| pending |" in row and "| 0:14:21* |" in row
    assert "rates measured here: 0:00:00, plus 0:14:21 (*) at the rates committed runs" in table
    assert "not measured yet" not in table
    # a run measured on this machine is estimated from its own rate, not the committed one
    d = todo.run_dir(tmp_path / "out")
    (d / "checkpoints").mkdir(parents=True)
    (d / "checkpoints" / "last.ckpt").write_bytes(b"x")
    (d / "progress.json").write_text(json.dumps({"epoch": 15, "batch": 0, "batches": 897, "img_per_s": 500.0,
                                                 "train_s": 861.27}))
    row = next(line for line in status_table([done, todo], tmp_path / "out", tmp_path / "committed").splitlines()
               if line.startswith("| du_resnet_fc | resnet50 | 1 |"))
    assert "| interrupted |" in row and "| 0:14:21 |" in row  # 15 epochs left at 500 img/s: 861.27 s


def test_a_directory_holding_another_run_is_refused_with_what_differs(tmp_path, monkeypatch):
    import fer_bench.reproduce as rep

    item = Planned("du_resnet_fc", "resnet50", 1)
    d = item.run_dir(tmp_path)
    _completed(d, Planned("du_resnet_fc", "resnet50", 2, overrides=("lr=0.01",)))
    monkeypatch.setattr(rep, "run", lambda *a, **k: pytest.fail("trained"))
    row = state(item, tmp_path)
    assert row["state"] == "foreign" and "seed 2 (planned: 1)" in row["note"] and "lr=0.01 (planned: 0.001)" in \
        row["note"]
    with pytest.raises(UserError, match="holds another run"):
        reproduce([item], out=tmp_path, log=lambda m: 0)
    # the same seed and recipe on another dataset is another run too
    shutil.rmtree(d)
    _completed(d, item, fingerprint="0123")
    monkeypatch.setattr(rep, "_fingerprint", lambda data: "4567")
    with pytest.raises(UserError, match="trained on dataset 0123"):
        reproduce([item], out=tmp_path, log=lambda m: 0)


def test_publish_copies_each_run_whole_and_goes_on(tmp_path):
    out, dest = tmp_path / "campaign", tmp_path / "repo"
    a, b = Planned("du_resnet_fc", "resnet50", 1), Planned("du_resnet_fc", "resnet50", 2)
    _completed(a.run_dir(out), a, logs=False)  # first in order, and incomplete
    _completed(b.run_dir(out), b)
    (b.run_dir(out) / "checkpoints").mkdir()
    (b.run_dir(out) / "checkpoints" / "last.ckpt").write_bytes(b"x" * 100)
    half = Planned("du_resnet_fc", "improved_resnet50", 1)
    hd = half.run_dir(out)
    (hd / "checkpoints").mkdir(parents=True)
    (hd / "checkpoints" / "last.ckpt").write_bytes(b"x")
    (hd / "progress.json").write_text(json.dumps({"epoch": 2, "batch": 684, "batches": 898, "train_s": 4000.0}))
    logs = []
    assert publish(out, dest, log=logs.append) == 1
    assert not (dest / a.run_dir(out).relative_to(out)).exists()
    assert any("not published" in m and "logs/metrics.csv" in m for m in logs)
    pb = dest / b.run_dir(out).relative_to(out)
    assert sorted(str(p.relative_to(pb)) for p in pb.rglob("*") if p.is_file()) == \
        ["logs/metrics.csv", "metrics.json", "run.json"]  # never checkpoints
    # the half-way record holds no machine path (results are committed): the run by its place under --out
    (rec,) = (dest / "campaign").rglob("*.json")
    assert str(tmp_path) not in rec.read_text() and json.loads(rec.read_text())["run"] == \
        hd.relative_to(out).as_posix()
    # a later machine without the half-way run's checkpoints is told what was lost
    row = state(half, tmp_path / "fresh", dest)
    assert row["state"] == "pending" and "was half-way (2.76 of 30 epochs, 1:06:40 of training)" in row["note"]
    assert "restarts from epoch 0" in status_table([half], tmp_path / "fresh", dest)
    r = cli("reproduce", "--publish", str(dest), "--out", str(out))
    assert r.returncode == 1 and "not published" in r.stdout


def _campaign(tmp_path, *args, **env):
    return subprocess.run(["bash", str(CAMPAIGN), *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "CAMPAIGN_DIR": str(tmp_path / "campaign"), **env})


def test_campaign_refuses_a_bad_time_limit_before_building_anything(tmp_path):
    for limit in ("soon", "0:04:59", "1:99:00"):
        r = _campaign(tmp_path, "run", "HEAD", limit)
        assert r.returncode == 2 and "time limit" in r.stderr, r.stderr
    r = _campaign(tmp_path, "run", "no-such-commit", "1:00:00")
    assert r.returncode == 2 and "no commit" in r.stderr
    assert not (tmp_path / "campaign").exists()


def test_campaign_lock_keeps_a_second_process_out(tmp_path):
    """While one campaign process runs, another `run` (which would check another commit out under it) is refused."""
    (tmp_path / "campaign").mkdir()
    holder = subprocess.Popen(["flock", str(tmp_path / "campaign" / "campaign.lock"), "sleep", "30"])
    try:
        import time
        time.sleep(0.5)
        r = _campaign(tmp_path, "run", "HEAD", "1:00:00")
        assert r.returncode == 2 and "another campaign process" in r.stderr
        assert not (tmp_path / "campaign" / "code").exists()
    finally:
        holder.kill()


def test_campaign_status_and_publish_before_any_run(tmp_path):
    r = _campaign(tmp_path, "status")
    assert r.returncode == 0, r.stderr
    assert "| du_resnet_fc | resnet50 | 1 |" in r.stdout and "acc 44.00%" in r.stdout
    r = _campaign(tmp_path, "publish")
    assert r.returncode == 0 and "nothing to publish" in r.stdout and "grep" not in r.stderr


def test_campaign_finds_the_half_way_runs_and_the_commit_each_started_with(tmp_path):
    """Before moving to another commit, `campaign.sh run` finishes each half-way run with the code that started it:
    campaign_halfway.py names each half-way run's commit (run.json's started_with, else an interrupted segment's
    metrics.json) and, run with that commit's code on PYTHONPATH, lists its runs as a plan that code reads."""
    import sys
    import tomllib

    out = tmp_path / "out"
    c1, c2 = "1" * 40, "2" * 40
    half1, half2, done, fresh = (Planned("du_resnet_fc", m, s) for m, s in
                                 (("improved_resnet50", 1), ("resnet50", 1), ("resnet50", 0), ("improved_resnet50", 0)))
    for item, record in ((half1, {"run.json": {"started_with": c1}}),
                         (half2, {"metrics.json": {"status": "interrupted", "software": {"git_sha": c2 + "-dirty"}}})):
        (item.run_dir(out) / "checkpoints").mkdir(parents=True)
        (item.run_dir(out) / "checkpoints" / "last.ckpt").write_bytes(b"x")
        for name, content in record.items():
            (item.run_dir(out) / name).write_text(json.dumps(content))
    _completed(done.run_dir(out), done)
    (done.run_dir(out) / "checkpoints").mkdir()
    (done.run_dir(out) / "checkpoints" / "last.ckpt").write_bytes(b"x")
    fresh.run_dir(out).mkdir(parents=True)  # never checkpointed: it starts over, on any commit
    script = [sys.executable, str(ROOT / "scripts" / "campaign_halfway.py")]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run(script + ["commits", str(out)], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert sorted(line.split()[0] for line in r.stdout.splitlines()) == [c1, c2]
    plan = _plan(tmp_path, '[[run]]\npaper = "du_resnet_fc"\nseeds = [0, 1]\n')
    r = subprocess.run(script + ["plan", str(plan), str(out), c1], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    finish = tmp_path / "finish.toml"
    finish.write_text(r.stdout)
    assert tomllib.loads(r.stdout)["run"] == [{"paper": "du_resnet_fc", "model": "improved_resnet50", "seeds": [1],
                                               "profile": "paper", "set": []}]
    assert load_plan(finish) == [half1]


def test_share_leaves_a_run_claimed_by_another_process_to_it(tmp_path, monkeypatch):
    import fer_bench.reproduce as rep

    item = Planned("du_resnet_fc", "resnet50", 1)
    d = item.run_dir(tmp_path)
    d.mkdir(parents=True)
    holder = subprocess.Popen(["flock", str(d / ".claim"), "sleep", "60"])
    try:
        import time
        deadline = time.time() + 30
        while not rep._claimed(d):
            assert time.time() < deadline
            time.sleep(0.1)
        monkeypatch.setattr(rep, "run", lambda *a, **k: pytest.fail("trained a run another process claimed"))
        assert state(item, tmp_path)["state"] == "running"
        logs = []
        assert reproduce([item], out=tmp_path, share=True, log=logs.append) is False
        assert "left to it" in logs[-1]
        with pytest.raises(UserError, match="another process"):
            reproduce([item], out=tmp_path, log=lambda m: 0)  # without --share: refused, as before
    finally:
        holder.kill()


def test_share_never_resumes_a_run_that_started_with_other_code(tmp_path, monkeypatch):
    """A half-way run finishes on the commit it started with: a --share worker of another commit leaves it."""
    import fer_bench.reproduce as rep

    item = Planned("du_resnet_fc", "resnet50", 1)
    d = item.run_dir(tmp_path)
    (d / "checkpoints").mkdir(parents=True)
    (d / "checkpoints" / "last.ckpt").write_bytes(b"x")
    (d / "run.json").write_text(json.dumps({"paper": item.paper, "model": item.model, "seed": 1, "profile": "paper",
                                            "config": item.config(), "started_with": "a" * 40}))
    trained = []
    monkeypatch.setattr(rep, "_train", lambda item, d, st, *a: trained.append(st["state"]) or True)
    monkeypatch.setattr(rep, "_code", lambda: "b" * 40)
    logs = []
    assert reproduce([item], out=tmp_path, share=True, log=logs.append) is False and trained == []
    assert "started with " + "a" * 40 in logs[-1]
    monkeypatch.setattr(rep, "_code", lambda: "a" * 40)
    assert reproduce([item], out=tmp_path, share=True, log=logs.append) is True and trained == ["interrupted"]
    assert not rep._claimed(d)  # the claim ends with the run


def test_an_out_that_cannot_hold_run_directories_exits_2(tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(UserError, match="cannot create"):
        reproduce([Planned("du_resnet_fc", "resnet50", 1)], out=not_a_dir, log=lambda m: 0)


def test_a_run_directory_whose_records_cannot_be_read_is_refused_not_started_over(tmp_path):
    """Issue 29: a metrics.json that cannot be read (here a directory: root reads through permissions) was a
    traceback from the fresh start's cleanup, and --status called the run pending. Now --status says 'unreadable'
    with the path and why, and reproduce exits 2 before anything is started or deleted."""
    item = Planned("du_resnet_fc", "resnet50", 1)
    d = item.run_dir(tmp_path)
    (d / "metrics.json").mkdir(parents=True)
    (d / "logs").mkdir()
    row = state(item, tmp_path)
    assert row["state"] == "unreadable" and row["note"] == f"{d / 'metrics.json'} cannot be read (Is a directory)"
    assert "| unreadable |" in status_table([item], tmp_path)
    with pytest.raises(UserError, match="cannot be read .Is a directory.; fix its permissions or move it away"):
        reproduce([item], out=tmp_path, log=lambda m: 0)
    assert (d / "logs").is_dir()  # nothing deleted
    plan = _plan(tmp_path, '[[run]]\npaper = "du_resnet_fc"\nmodel = "resnet50"\nseeds = [1]\n')
    r = cli_here("reproduce", "--plan", str(plan), "--out", str(tmp_path), "--data", str(tmp_path / "nodata"))
    assert r.returncode == 2 and "cannot be read" in r.stderr and "Traceback" not in r.stderr
    # a run directory that is a file
    shutil.rmtree(d)
    d.write_text("x")
    assert state(item, tmp_path)["note"] == f"{d} is not a directory"


def test_the_time_left_counts_the_recipes_own_training_images(tmp_path):
    """Issue 29: 'est. left' assumed 28,709 training images (8 min 36 s shown for a smoke run with 9 s left). The
    smoke profile trains one epoch of 512 images: at 64 img/s, 8 s."""
    item = Planned("du_resnet_fc", "resnet50", 0, profile="smoke")
    d = item.run_dir(tmp_path)
    (d / "checkpoints").mkdir(parents=True)
    (d / "checkpoints" / "last.ckpt").write_bytes(b"x")
    (d / "progress.json").write_text(json.dumps({"epoch": 0, "batch": 0, "batches": 16, "img_per_s": 64.0,
                                                 "train_s": 1.0}))
    row = next(line for line in status_table([item], tmp_path).splitlines() if line.startswith("| du_resnet_fc"))
    assert "| 0.00 / 1 |" in row and "| 0:00:08 |" in row


def test_a_run_completed_here_with_other_execution_keys_is_not_trained_again(tmp_path, monkeypatch):
    """campaign.sh finishes a half-way run on its old commit, then the new commit's plan starts with no publish in
    between: if the new plan differs from it only in execution keys (compile_mode, channels_last), that run is the
    planned one, found by its records under --out, not trained again."""
    import fer_bench.reproduce as rep

    old = Planned("miao_presnet_vgg", "presnet", 0, overrides=("protocol=paper",))
    new = Planned("miao_presnet_vgg", "presnet", 0, overrides=("protocol=paper", "compile_mode=default"))
    assert old.run_dir(tmp_path) != new.run_dir(tmp_path)
    _completed(old.run_dir(tmp_path), old)
    monkeypatch.setattr(rep, "_fingerprint", lambda data: "f" * 16)
    monkeypatch.setattr(rep, "run", lambda *a, **k: pytest.fail("trained a completed run again"))
    row = state(new, tmp_path)
    assert row["state"] == "completed" and row["dir"] == old.run_dir(tmp_path)
    assert row["note"] == f"completed in {old.run_dir(tmp_path)} (executed with compile_mode=none (planned: default))"
    logs = []
    assert reproduce([new], out=tmp_path, log=logs.append) is True
    assert logs == [f"{new.name}: completed, skipped -> {old.run_dir(tmp_path) / 'metrics.json'}"]


def test_a_directory_that_would_stop_the_plan_stops_it_before_anything_trains(tmp_path, monkeypatch):
    import fer_bench.reproduce as rep

    first, second = Planned("du_resnet_fc", "resnet50", 1), Planned("du_resnet_fc", "resnet50", 2)
    (second.run_dir(tmp_path) / "run.json").mkdir(parents=True)
    monkeypatch.setattr(rep, "run", lambda *a, **k: pytest.fail("trained before refusing the plan"))
    with pytest.raises(UserError, match="seed 2 .*run.json cannot be read"):
        reproduce([first, second], out=tmp_path, log=lambda m: 0)
    assert not first.run_dir(tmp_path).exists()
