"""FER-2013 readers (both releases), the cache, and the real dataset's official splits."""

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import synthetic_arrays, write_csv, write_folder
from fer_bench.data import CLASSES, SPLITS, detect_format, load_fer2013
from fer_bench.errors import DataError


def _records(images, labels, splits):
    """The dataset as a sorted list of (split, label, pixels): readers may order files differently."""
    return sorted(zip(np.asarray(splits).tolist(), np.asarray(labels).tolist(),
                      [bytes(np.asarray(i).tobytes()) for i in images]))


def test_folder_and_csv_releases_decode_to_the_same_tensors(tmp_path):
    expected = _records(*synthetic_arrays(per_class=2, seed=3))
    write_folder(tmp_path / "folder", per_class=2, seed=3)
    write_csv(tmp_path / "fer2013.csv", per_class=2, seed=3)
    folder = load_fer2013(tmp_path / "folder")
    csv = load_fer2013(tmp_path / "fer2013.csv")
    assert (folder.format, csv.format) == ("folder", "csv")
    for ds in (folder, csv):
        assert ds.images.dtype == torch.uint8 and ds.images.shape == (2 * 7 * 3, 48, 48)
        assert _records(ds.images.numpy(), ds.labels, ds.splits) == expected
    assert folder.counts()["PublicTest"] == {c: 2 for c in CLASSES}


def test_folder_names_map_to_fer_label_order(tmp_path):
    write_folder(tmp_path / "d", per_class=1)
    ds = load_fer2013(tmp_path / "d")
    assert CLASSES == ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    # every file lives in the folder of its label, and the file prefix gives its split
    assert sorted(ds.labels.tolist()) == sorted(list(range(7)) * 3)
    assert ds.counts()["Training"]["neutral"] == 1


def test_format_is_detected_from_the_path(tmp_path, tiny_csv, tiny_folder):
    assert detect_format(tiny_folder)[0] == "folder"
    assert detect_format(tiny_csv)[0] == "csv"
    assert detect_format(tiny_csv.parent) == ("csv", tiny_csv)  # a folder holding fer2013.csv
    with pytest.raises(DataError, match="not found"):
        detect_format(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="neither"):
        detect_format(tmp_path / "empty")


@pytest.mark.parametrize("bad_row, message", [
    ("3,1 2 3,Training", "2304"),  # truncated pixels
    ("9," + " ".join(["0"] * 2304) + ",Training", "emotion"),  # label out of range
    ("2," + " ".join(["0"] * 2304) + ",Holdout", "Usage"),  # unknown split
    ("2," + " ".join(["300"] * 2304) + ",Training", "0-255"),
    ("2," + " ".join(["x"] * 2304) + ",Training", "integers"),
])
def test_malformed_csv_row_names_the_line(tiny_csv, bad_row, message):
    lines = tiny_csv.read_text().splitlines()
    lines.insert(5, bad_row)
    tiny_csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=message) as e:
        load_fer2013(tiny_csv)
    assert "line 6" in str(e.value)


def test_csv_missing_column_and_empty_split(tmp_path):
    p = tmp_path / "fer2013.csv"
    p.write_text("emotion,pixels\n0," + " ".join(["0"] * 2304) + "\n")
    with pytest.raises(DataError, match="Usage"):
        load_fer2013(p)
    p.write_text("emotion,pixels,Usage\n0," + " ".join(["0"] * 2304) + ",Training\n")
    with pytest.raises(DataError, match="PublicTest split is empty"):
        load_fer2013(p)


def test_corrupt_image_and_wrong_size_are_named(tiny_folder):
    victim = next((tiny_folder / "train" / "happy").iterdir())
    victim.write_bytes(b"not an image at all")
    with pytest.raises(DataError, match=f"Cannot decode image .*{victim.name}"):
        load_fer2013(tiny_folder)
    from PIL import Image
    Image.new("L", (64, 64)).save(victim, format="PNG")
    with pytest.raises(DataError, match="64x64"):
        load_fer2013(tiny_folder)


def test_folder_without_usage_prefix_is_rejected(tiny_folder):
    f = next((tiny_folder / "test" / "sad").iterdir())
    f.rename(f.with_name("im0.png"))
    with pytest.raises(DataError, match="PublicTest cannot be told from"):
        load_fer2013(tiny_folder)


def test_unknown_class_folder(tiny_folder):
    (tiny_folder / "train" / "contempt").mkdir()
    with pytest.raises(DataError, match="Unknown class folder"):
        load_fer2013(tiny_folder)


def test_cache_is_used_and_a_changed_source_is_reread(tiny_folder, monkeypatch):
    first = load_fer2013(tiny_folder)
    calls = []
    import fer_bench.data as data
    real = data.read_folder
    monkeypatch.setattr(data, "read_folder", lambda root: calls.append(root) or real(root))
    again = load_fer2013(tiny_folder)
    assert calls == [] and torch.equal(again.images, first.images)  # served from the cache
    f = next((tiny_folder / "train" / "fear").iterdir())
    from PIL import Image
    Image.fromarray(np.full((48, 48), 7, dtype=np.uint8)).save(f, format="PNG")
    os.utime(f, ns=(time.time_ns(), time.time_ns() + 10**9))
    changed = load_fer2013(tiny_folder)
    assert len(calls) == 1 and changed.fingerprint != first.fingerprint
    assert (changed.images == 7).all(dim=(1, 2)).sum() == 1


def test_damaged_cache_is_rebuilt(tiny_csv):
    load_fer2013(tiny_csv)
    from fer_bench.data import cache_dir
    (cached,) = cache_dir().glob("*.pt")
    cached.write_bytes(b"garbage")
    assert load_fer2013(tiny_csv).images.shape[0] == 63


# ---------------------------------------------------------------- the real FER-2013

README_COUNTS = {  # ../shared/datasets/README.md: per-class counts (train / test)
    "angry": (3995, 958), "disgust": (436, 111), "fear": (4097, 1024), "happy": (7215, 1774),
    "neutral": (4965, 1233), "sad": (4830, 1247), "surprise": (3171, 831),
}


@pytest.mark.realdata
def test_real_fer2013_official_splits(real_data):
    t0 = time.perf_counter()
    ds = load_fer2013(real_data)
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    ds = load_fer2013(real_data)
    cached = time.perf_counter() - t0
    counts = ds.counts()
    assert {s: sum(c.values()) for s, c in counts.items()} == {"Training": 28709, "PublicTest": 3589,
                                                                "PrivateTest": 3589}
    for cls, (train, test) in README_COUNTS.items():
        assert counts["Training"][cls] == train
        assert counts["PublicTest"][cls] + counts["PrivateTest"][cls] == test
    assert ds.images.shape == (35887, 48, 48) and ds.images.dtype == torch.uint8
    assert cached < 1.0, f"cached load took {cached:.2f}s (cold {cold:.1f}s)"
    assert SPLITS == ("Training", "PublicTest", "PrivateTest")


@pytest.mark.realdata
def test_real_fer2013_unleaked_test_splits_match_the_committed_audit(real_data):
    from fer_bench.config import DEFAULTS
    from fer_bench.training import FERDataModule

    audit = json.loads((Path(__file__).parents[1] / "results" / "data_audit" / "summary.json").read_text())["counts"]
    dm = FERDataModule(load_fer2013(real_data), {**DEFAULTS, "exclude_leaked": True})
    dm.setup()
    n = {name: len(ds) for name, ds in zip(dm.split_names, dm.test_sets)}
    for split in ("PrivateTest", "PublicTest"):
        leaked = audit[f"{split} images with a duplicate in Training"]
        assert dm.leaked[f"{split}_unleaked"] == leaked > 250
        assert n[split] == 3589 and n[f"{split}_unleaked"] == 3589 - leaked
