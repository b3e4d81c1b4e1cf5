"""The `fer-bench` command as a user runs it: list, run, the metrics.json contract, bad input."""

import datetime
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import cli, cli_here
from fer_bench.check import consistency

TOP_KEYS = {"schema", "paper", "model", "profile", "protocol", "seed", "run_id", "status", "epochs_planned",
            "epochs_completed", "best_epoch", "selected_on", "budget", "splits", "timing", "hardware", "software",
            "dataset", "config"}
SPLIT_KEYS = {"n", "accuracy", "macro_f1", "loss", "per_class_accuracy", "confusion_matrix"}


def check_metrics(path: Path, n_test: int) -> dict:
    """Assert the metrics.json contract of DESIGN.md and the internal consistency of its numbers."""
    d = json.loads(path.read_text())
    assert TOP_KEYS <= set(d)
    assert d["status"] == "completed" and d["schema"] == "fer-bench/metrics/v1"
    assert d["run_id"] == path.parent.name
    finished = datetime.datetime.strptime(d["finished"], "%Y-%m-%dT%H:%M:%SZ")  # UTC, when metrics.json was written
    written = datetime.datetime.fromtimestamp(path.stat().st_mtime, datetime.timezone.utc).replace(tzinfo=None)
    assert abs(written - finished).total_seconds() < 5
    assert set(d["splits"]) == {"PrivateTest", "PublicTest"}
    assert consistency(d, {"PrivateTest": n_test, "PublicTest": n_test}) == []  # every image once, accuracies of the CM
    for split in d["splits"].values():
        assert SPLIT_KEYS <= set(split) and 0 <= split["macro_f1"] <= 1 and split["loss"] > 0
    assert set(d["timing"]) == {"train_s", "train_img_per_s", "eval_s"} and d["timing"]["train_s"] > 0
    assert set(d["hardware"]) == {"accelerator", "device_name", "devices", "num_nodes", "precision"}
    assert set(d["software"]) == {"python", "torch", "lightning", "fer_bench", "git_sha"}
    assert d["dataset"]["format"] in {"folder", "csv"} and len(d["dataset"]["fingerprint"]) == 16
    assert not list(path.parent.glob(".*.tmp"))  # atomic write leaves no temporary file
    assert (path.parent / "logs" / "metrics.csv").is_file() and (path.parent / "run.json").is_file()
    return d


def test_list_json_has_papers_models_and_claims():
    r = cli("list", "--json")
    assert r.returncode == 0, r.stderr
    papers = {p["id"]: p for p in json.loads(r.stdout)}
    huang = papers["huang_fpn"]
    assert {m["name"]: m["params"] for m in huang["models"]} == {"resnet50_fpn": 31514439, "resnet50": 23522375}
    for p in papers.values():
        assert {"id", "title", "seed", "models", "claims"} <= set(p)
        for c in p["claims"]:
            assert {"model", "metric", "value", "as_printed", "split", "protocol", "kind", "source", "quote"} <= set(c)
            assert c["kind"] in {"own", "cited"}
            if c["metric"] == "accuracy":
                assert 0 <= c["value"] <= 1
    assert "huang_fpn" in cli("list").stdout


def test_smoke_run_on_tiny_data_writes_the_contract(tmp_path, tiny_csv):
    r = cli("run", "--paper", "huang_fpn", "--model", "resnet50", "--profile", "smoke", "--data", str(tiny_csv),
            "--out", str(tmp_path), "--no-progress", "--seed", "3", "--set", "lr=0.0005")
    assert r.returncode == 0, r.stderr
    (path,) = tmp_path.glob("runs/huang_fpn/resnet50/*/metrics.json")
    d = check_metrics(path, n_test=21)
    assert (d["paper"], d["model"], d["profile"], d["seed"]) == ("huang_fpn", "resnet50", "smoke", 3)
    assert d["config"]["lr"] == 0.0005 and d["config"]["input_size"] == 48 and d["config"]["epochs"] == 1
    assert d["budget"]["full"] is False and "profile smoke" in d["budget"]["reasons"]
    assert d["selected_on"] == "PublicTest" and d["best_epoch"] == 1 and d["epochs_completed"] == 1
    assert d["hardware"]["accelerator"] == "cpu" and d["hardware"]["devices"] == 1


@pytest.mark.parametrize("args, message", [
    (["run", "--paper", "no_such_paper"], "Unknown paper 'no_such_paper'"),
    (["run", "--paper", "huang_fpn", "--model", "vgg99"], "has no model 'vgg99'"),
    (["run", "--paper", "huang_fpn", "--profile", "fast"], "Unknown profile 'fast'"),
    (["run", "--paper", "huang_fpn", "--set", "learning_rate=1"], "unknown key"),
    (["run", "--paper", "huang_fpn", "--set", "lr=fast"], "lr takes a float"),
    (["run", "--paper", "huang_fpn", "--set", "epochs=2.5"], "epochs takes a int"),
    (["run", "--paper", "huang_fpn", "--set", "aug_hflip=maybe"], "aug_hflip takes a bool"),
    (["run", "--paper", "huang_fpn", "--set", "optimizer=lbfgs"], "choose one of adam, adamw, sgd"),
    (["run", "--paper", "huang_fpn", "--set", "lr"], "key=value"),
    (["run", "--paper", "huang_fpn", "--epochs", "0"], "at least 1 epoch"),
    (["run", "--paper", "huang_fpn", "--max-time", "90min"], "D:HH:MM:SS"),
    (["run", "--paper", "huang_fpn", "--data", "/nonexistent/fer2013"], "FER-2013 not found"),
])
def test_bad_input_exits_2_with_a_message(tmp_path, args, message):
    r = cli_here(*args, "--out", str(tmp_path / "out"))
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert message in r.stderr and "Traceback" not in r.stderr
    assert not list(tmp_path.glob("out/runs/*/*/*"))  # nothing half-written


def test_malformed_data_and_unwritable_output_exit_2(tmp_path, tiny_csv):
    lines = tiny_csv.read_text().splitlines()
    tiny_csv.write_text("\n".join(lines[:4] + ["1,12 34,Training"] + lines[4:]) + "\n")
    r = cli("run", "--paper", "huang_fpn", "--data", str(tiny_csv), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "line 5" in r.stderr and "Traceback" not in r.stderr
    blocker = tmp_path / "file"
    blocker.write_text("x")
    good = tmp_path / "good.csv"
    good.write_text("\n".join(lines) + "\n")
    # (huang's paper profile starts from ImageNet weights: offline that would stop it first)
    r = cli("run", "--paper", "huang_fpn", "--data", str(good), "--out", str(blocker / "sub"), "--set",
            "pretrained=false")
    assert r.returncode == 2 and "Cannot write results" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.realdata
def test_real_smoke_run_through_the_cli(tmp_path, real_data):
    """The smallest model (fer-bench check runs every model's smoke run and checks its numbers the same way), in a
    new interpreter: the whole path a user's command takes, imports included (other tests fork from a server that
    has imported torch and Lightning already)."""
    r = cli("run", "--paper", "miao_presnet_vgg", "--model", "presnet", "--profile", "smoke", "--data",
            str(real_data), "--out", str(tmp_path), "--no-progress", fresh=True)
    assert r.returncode == 0, r.stderr[-3000:]
    (path,) = tmp_path.glob("runs/miao_presnet_vgg/presnet/*/metrics.json")
    d = check_metrics(path, n_test=3589)
    assert d["dataset"]["format"] == "folder" and d["protocol"] == "canonical" and d["selected_on"] == "PublicTest"
    assert d["epochs_completed"] == 1 and d["budget"]["full"] is False
    per_class_n = np.array(d["splits"]["PrivateTest"]["confusion_matrix"]).sum(1).tolist()
    assert per_class_n == [491, 55, 528, 879, 594, 416, 626]  # PrivateTest, FER-2013 label order
