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
from fer_bench.data_audit import IMAGE_COUNT_KEYS, audit, dhash, leaked_mask
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


def test_audit_counts_the_planted_images_and_groups():
    ds, _ = _dataset()
    summary = audit(ds)[1]
    assert {k: summary[k] for k in IMAGE_COUNT_KEYS} == {
        "PublicTest images with a duplicate in Training": 1, "PublicTest images with an exact copy in Training": 1,
        "PublicTest images with only a near copy in Training": 0,
        "PrivateTest images with a duplicate in Training": 2, "PrivateTest images with an exact copy in Training": 1,
        "PrivateTest images with only a near copy in Training": 1,  # the brighter copy
        "groups of identical images": 2, "images in groups of identical images": 4,
        "groups of identical images with conflicting labels": 1}


def _groups_dataset():
    """Groups of identical images across splits, and test images with both kinds of copy:
    A: train[5], train[6] (another label), pub[1]: a group of 3 with conflicting labels; pub[1] has an exact copy
       in Training (two, counted once);
    B: pub[2] = priv[2]: a group with no Training image, so neither has a copy in Training;
    C: pub[3] = priv[3] = a brighter train[7]: a group; both test images have only a near copy in Training;
    D: priv[4] = train[8], and train[9] a brighter train[8]: priv[4] has an exact and a near copy: exact only."""
    images, labels, splits = synthetic_arrays(per_class=2, seed=2)
    images = images.copy()
    train, pub, priv = (np.flatnonzero(splits == s) for s in range(3))
    images[train[6]] = images[pub[1]] = images[train[5]]
    labels[train[5]], labels[train[6]], labels[pub[1]] = 0, 1, 0
    images[priv[2]] = images[pub[2]]
    labels[priv[2]] = labels[pub[2]]
    images[train[7]] //= 2  # room to brighten without clipping
    images[pub[3]] = images[priv[3]] = images[train[7]] + 3
    labels[priv[3]] = labels[pub[3]]
    images[train[8]] //= 2
    images[priv[4]] = images[train[8]]
    labels[priv[4]] = labels[train[8]]
    images[train[9]] = images[train[8]] + 3
    ds = FER2013(torch.from_numpy(images), torch.from_numpy(labels), torch.from_numpy(splits), "csv", "y" * 16)
    return ds, (train, pub, priv)


EXPECTED_GROUP_COUNTS = {
    "PublicTest images with a duplicate in Training": 2, "PublicTest images with an exact copy in Training": 1,
    "PublicTest images with only a near copy in Training": 1,
    "PrivateTest images with a duplicate in Training": 2, "PrivateTest images with an exact copy in Training": 1,
    "PrivateTest images with only a near copy in Training": 1,
    "groups of identical images": 4, "images in groups of identical images": 9,
    "groups of identical images with conflicting labels": 1}


def test_images_and_groups_are_counted_once():
    ds, (train, pub, priv) = _groups_dataset()
    rows, summary = audit(ds)
    assert {k: summary[k] for k in IMAGE_COUNT_KEYS} == EXPECTED_GROUP_COUNTS
    # pairs count each pair: group A alone is 3 exact pairs, 2 of them conflicting
    assert summary["exact_duplicate"] == 3 + 1 + 1 + 1 and summary["label_conflict"] == 2
    # the images with a duplicate are the ones exclude_leaked leaves out
    assert sorted(torch.nonzero(leaked_mask(ds)).flatten().tolist()) == sorted([pub[1], pub[3], priv[3], priv[4]])


def test_data_audit_cli_prints_and_saves_the_image_counts(tmp_path, capsys):
    from fer_bench.cli import main

    _write_csv(tmp_path / "groups.csv", _groups_dataset()[0])
    assert main(["data", "audit", "--data", str(tmp_path / "groups.csv"), "--out", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out.splitlines()
    start = out.index("images and groups (each counted once):")
    assert out[start + 1:start + 1 + len(IMAGE_COUNT_KEYS)] == [
        f"{EXPECTED_GROUP_COUNTS[k]:>7}  {k}" for k in IMAGE_COUNT_KEYS]
    assert "      6  exact_duplicate" in out[start + len(IMAGE_COUNT_KEYS) + 1:]
    saved = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert set(saved) == {"dataset", "counts"} and saved["dataset"]["fingerprint"]
    assert {k: saved["counts"][k] for k in IMAGE_COUNT_KEYS} == EXPECTED_GROUP_COUNTS


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


@pytest.mark.realdata
def test_real_fer2013_image_and_group_counts(real_data):
    """The real release (the counts of `fer-bench data audit` on it): every test image is counted once, so the
    exact and near-only copies add up to the images exclude_leaked leaves out (the committed 303 and 313)."""
    from fer_bench.data import load_fer2013

    summary = audit(load_fer2013(real_data))[1]
    assert {k: summary[k] for k in IMAGE_COUNT_KEYS} == {
        "PublicTest images with a duplicate in Training": 303, "PublicTest images with an exact copy in Training": 280,
        "PublicTest images with only a near copy in Training": 23,
        "PrivateTest images with a duplicate in Training": 313,
        "PrivateTest images with an exact copy in Training": 288,
        "PrivateTest images with only a near copy in Training": 25,
        "groups of identical images": 1516, "images in groups of identical images": 3369,
        "groups of identical images with conflicting labels": 57}
