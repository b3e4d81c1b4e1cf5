"""`fer-bench data info/audit` on data with planted duplicates, conflicts and blank images."""

import csv
import json

import lightning as L
import numpy as np
import pytest
import torch

from conftest import cli, synthetic_arrays
from fer_bench.augment import preprocess
from fer_bench.config import DEFAULTS
from fer_bench.data import FER2013, SPLITS
from fer_bench.data_audit import audit, dhash
from fer_bench.training import FERClassifier, FERDataModule


def _dataset():
    images, labels, splits = synthetic_arrays(per_class=2, seed=1)  # 42 random images, 14 per split
    images = images.copy()
    train = np.flatnonzero(splits == 0)
    pub, priv = np.flatnonzero(splits == 1), np.flatnonzero(splits == 2)
    images[pub[0]] = images[train[0]]  # exact duplicate across Training/PublicTest, same label
    labels[pub[0]] = labels[train[0]]
    images[priv[0]] = images[train[1]]  # exact duplicate with a different label -> conflict
    labels[priv[0]] = (labels[train[1]] + 1) % 7
    images[priv[1]] = np.clip(images[train[2]].astype(int) + 3, 0, 255).astype(np.uint8)  # brighter copy: near dup
    images[train[3]] = 128  # constant
    images[train[4]] = 100 + (np.arange(48 * 48).reshape(48, 48) % 4)  # spans 4 levels: near blank
    return FER2013(torch.from_numpy(images), torch.from_numpy(labels), torch.from_numpy(splits), "csv", "x" * 16), \
        (train, pub, priv)


def test_audit_finds_exactly_the_planted_problems():
    ds, (train, pub, priv) = _dataset()
    rows, summary = audit(ds)
    pairs = {(r["kind"], r["index_a"], r["index_b"]) for r in rows if r["index_b"] != ""}
    assert pairs == {("exact_duplicate", train[0], pub[0]), ("exact_duplicate", train[1], priv[0]),
                     ("label_conflict", train[1], priv[0]), ("near_duplicate", train[2], priv[1])}
    blanks = {(r["kind"], r["index_a"]) for r in rows if r["index_b"] == ""}
    assert blanks == {("blank", train[3]), ("near_blank", train[4])}
    assert summary["exact_duplicate PublicTest/Training"] == 1
    assert summary["PrivateTest images with a duplicate in Training"] == 2
    assert summary["PublicTest images with a duplicate in Training"] == 1


def test_dhash_is_stable_under_brightness_and_differs_between_images():
    a = torch.randint(0, 200, (1, 48, 48), dtype=torch.uint8)
    assert dhash(a) == dhash(a + 20)
    b = torch.randint(0, 200, (1, 48, 48), dtype=torch.uint8)
    assert dhash(a) != dhash(b)


def test_data_cli_info_and_audit(tmp_path, tiny_csv):
    r = cli("data", "info", "--data", str(tiny_csv))
    assert r.returncode == 0 and "format csv" in r.stdout
    assert [line.split()[-1] for line in r.stdout.splitlines()[2:]] == ["21", "21", "21"]
    r = cli("data", "audit", "--data", str(tiny_csv), "--out", str(tmp_path / "audit"))
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "audit" / "summary.json").read_text())
    assert summary["counts"]["PublicTest images with a duplicate in Training"] == 0
    with open(tmp_path / "audit" / "pairs.csv") as f:
        assert next(csv.reader(f))[:3] == ["kind", "index_a", "split_a"]
    r = cli("data", "info", "--data", str(tmp_path / "missing"))
    assert r.returncode == 2 and "not found" in r.stderr


def test_audit_out_is_both_files_or_neither(tmp_path, tiny_csv, monkeypatch, capsys):
    """A failure after pairs.csv is written (full disk, Ctrl-C) leaves the previous pairs.csv and summary.json."""
    import fer_bench.data_audit as data_audit
    from fer_bench.cli import main

    _write_csv(tmp_path / "planted.csv", _dataset()[0])
    out = tmp_path / "audit"
    assert main(["data", "audit", "--data", str(tmp_path / "planted.csv"), "--out", str(out)]) == 0
    before = {name: (out / name).read_bytes() for name in ("pairs.csv", "summary.json")}
    assert before["pairs.csv"].count(b"\n") > 1  # the planted pairs; tiny_csv has none

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(data_audit.json, "dumps", full)  # summary.json fails after pairs.csv was written
    capsys.readouterr()
    assert main(["data", "audit", "--data", str(tiny_csv), "--out", str(out)]) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # old audit whole, no temporary files


def _write_csv(path, ds: FER2013) -> None:
    lines = ["emotion,pixels,Usage"] + [f"{int(lab)},{' '.join(map(str, img.flatten().tolist()))},{SPLITS[s]}"
                                        for img, lab, s in zip(ds.images, ds.labels, ds.splits)]
    path.write_text("\n".join(lines) + "\n")


def test_exclude_leaked_adds_test_splits_without_the_training_duplicates():
    ds, (train, pub, priv) = _dataset()
    cfg = {**DEFAULTS, "channels_last": False, "exclude_leaked": True, "eval_batch_size": 5}
    dm = FERDataModule(ds, cfg)
    dm.setup()
    assert dm.split_names == ("PrivateTest", "PublicTest", "PrivateTest_unleaked", "PublicTest_unleaked")
    assert dm.leaked == {"PrivateTest_unleaked": 2, "PublicTest_unleaked": 1}
    sets = dict(zip(dm.split_names, dm.test_sets))
    clean_priv = [i for i in priv if i not in (priv[0], priv[1])]
    assert torch.equal(sets["PrivateTest_unleaked"].images, ds.images[clean_priv])
    assert torch.equal(sets["PublicTest_unleaked"].labels, ds.labels[pub[1:]])
    assert torch.equal(sets["PrivateTest"].images, ds.images[priv])  # the official splits stay whole

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48 * 48, 7))
    module = FERClassifier(net, cfg, dm.norm, test_names=dm.split_names)
    L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
              enable_checkpointing=False).test(module, datamodule=dm, verbose=False)
    r = module.test_results
    assert [r[s]["n"] for s in dm.split_names] == [14, 14, 12, 13]
    with torch.no_grad():
        pred = net(preprocess(ds.images[clean_priv], cfg, False, *dm.norm)).argmax(-1)
    assert r["PrivateTest_unleaked"]["accuracy"] == pytest.approx((pred == ds.labels[clean_priv]).float().mean().item())


def test_exclude_leaked_run_writes_the_extra_splits_and_what_they_left_out(tmp_path):
    _write_csv(tmp_path / "fer2013.csv", _dataset()[0])
    r = cli("run", "--paper", "huang_fpn", "--model", "resnet50", "--profile", "smoke", "--no-progress",
            "--set", "input_size=32", "--set", "batch_size=7", "--set", "exclude_leaked=true",
            "--data", str(tmp_path / "fer2013.csv"), "--out", str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr[-2000:]
    (path,) = (tmp_path / "out").glob("runs/*/*/*/metrics.json")
    d = json.loads(path.read_text())
    assert {s: v["n"] for s, v in d["splits"].items()} == {
        "PrivateTest": 14, "PublicTest": 14, "PrivateTest_unleaked": 12, "PublicTest_unleaked": 13}
    assert d["leak_check"]["excluded"] == {"PrivateTest_unleaked": 2, "PublicTest_unleaked": 1}
    assert not any("exclude_leaked" in reason for reason in d["budget"]["reasons"])  # evaluation only


def test_exclude_leaked_refuses_a_dataset_without_a_training_split(tmp_path):
    r = cli("run", "--paper", "miao_presnet_vgg", "--dataset", "jaffe", "--set", "exclude_leaked=true",
            "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out"))
    assert r.returncode == 2 and "exclude_leaked" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists()
