"""`fer-bench data info/audit` on data with planted duplicates, conflicts and blank images."""

import csv
import json

import numpy as np
import torch

from conftest import cli, synthetic_arrays
from fer_bench.data import FER2013
from fer_bench.data_audit import audit, dhash


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
