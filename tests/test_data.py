"""FER-2013 readers (both releases), the cache, and the real dataset's official splits."""

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

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
    ("2," + " ".join(["99999999999999999999"] * 2304) + ",Training", "integers 0-255, found '9999"),  # > int64
    ("2," + " ".join(["1.5"] * 2304) + ",Training", "found '1.5'"),
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


def test_16_bit_png_is_converted_not_wrapped(tmp_path):
    write_folder(tmp_path / "d", per_class=1)
    files = sorted((tmp_path / "d").glob("*/*/*.png"))
    expected = _records(*synthetic_arrays(per_class=1))
    for f in files[:2]:  # the same images, 16 bits deep (8-bit v is 257 v in 16 bits)
        Image.fromarray(np.asarray(Image.open(f)).astype(np.uint16) * 257).save(f)
    assert Image.open(files[0]).mode == "I;16"
    ds = load_fer2013(tmp_path / "d")
    assert _records(ds.images.numpy(), ds.labels, ds.splits) == expected
    Image.fromarray(np.full((48, 48), 300, dtype=np.uint16)).save(files[0])  # 300/65535: dark, not 300 % 256 = 44
    assert (load_fer2013(tmp_path / "d").images == 1).all(dim=(1, 2)).sum() == 1


def test_system_files_in_class_folders_are_skipped(tmp_path):
    write_folder(tmp_path / "d", per_class=1)
    for cls in ("train/happy", "test/sad"):
        folder = tmp_path / "d" / cls
        for junk in (".DS_Store", "Thumbs.db", "desktop.ini", "._Training_0.png", "._PublicTest_9.png"):
            (folder / junk).write_bytes(b"\0\5\26\7 not an image")
        (folder / ".ipynb_checkpoints").mkdir()
        (folder / ".ipynb_checkpoints" / "Training_0-checkpoint.png").write_bytes(b"x")
    (tmp_path / "d" / "train" / ".ipynb_checkpoints").mkdir()
    ds = load_fer2013(tmp_path / "d")
    assert _records(ds.images.numpy(), ds.labels, ds.splits) == _records(*synthetic_arrays(per_class=1))


def test_kaggle_icml_face_data_header(tmp_path):
    write_csv(tmp_path / "fer2013.csv", per_class=1)
    rows = [line.split(",") for line in (tmp_path / "fer2013.csv").read_text().splitlines()[1:]]
    icml = tmp_path / "icml_face_data.csv"
    icml.write_text("emotion, Usage, pixels\n" + "".join(f"{e}, {u}, {p}\n" for e, p, u in rows))
    for path in (icml, tmp_path):  # the file, or a folder holding it
        ds = load_fer2013(path)
        assert _records(ds.images.numpy(), ds.labels, ds.splits) == _records(*synthetic_arrays(per_class=1))


def test_unreadable_class_folder_or_image_is_named(tiny_folder, monkeypatch):
    """chmod 0 does not stop root (tests/test_bad_inputs.py does it for other users): the errors are simulated."""
    victim = tiny_folder / "test" / "sad"
    image = next((tiny_folder / "train" / "fear").iterdir())
    scandir, read_bytes = os.scandir, Path.read_bytes

    def denied(path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(Path, "read_bytes", lambda self: denied(self) if self == image else read_bytes(self))
    with pytest.raises(DataError, match=f"Cannot read {image}: Permission denied"):
        load_fer2013(tiny_folder)
    monkeypatch.setattr(os, "scandir", lambda path: denied(path) if Path(path) == victim else scandir(path))
    with pytest.raises(DataError, match=f"Cannot list the folder {victim}: Permission denied"):
        load_fer2013(tiny_folder)


@pytest.mark.parametrize("error", [RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos"),
                                   OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_a_cache_that_cannot_be_written_is_skipped_and_leaves_nothing(tiny_csv, monkeypatch, capsys, error):
    """A full disk makes torch.save raise RuntimeError; Ctrl-C stops the load; neither leaves a temporary file."""
    from fer_bench.data import cache_dir

    def save(obj, f):
        f.write(b"PK\3\4 half a cache")
        raise error

    monkeypatch.setattr(torch, "save", save)
    if isinstance(error, KeyboardInterrupt):
        with pytest.raises(KeyboardInterrupt):
            load_fer2013(tiny_csv)
    else:
        assert load_fer2013(tiny_csv).images.shape[0] == 63
        assert capsys.readouterr().err.count("warning: cannot write the dataset cache") == 1
    assert list(cache_dir().iterdir()) == []


def test_a_killed_writers_temporary_cache_file_is_removed_by_the_next_write(tiny_csv):
    """SIGKILL leaves the writer's temporary file; the next cache write removes it, not a live writer's."""
    import subprocess
    import sys

    from fer_bench.data import cache_dir

    load_fer2013(tiny_csv)
    (cached,) = cache_dir().glob("*.pt")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that no longer runs
    stale = cached.with_name(f".{cached.name}.{dead.pid}-0123abcd.tmp")
    live = cached.with_name(f".{cached.name}.{os.getpid()}-4567ef01.tmp")
    for f in (stale, live):
        f.write_bytes(b"half a cache")
    cached.unlink()
    assert load_fer2013(tiny_csv).images.shape[0] == 63  # rebuilt and written again
    assert not stale.exists() and live.exists() and cached.exists()
    live.unlink()


def test_folder_reached_through_symlinks_is_reread_when_its_files_change(tmp_path, monkeypatch):
    """train/ and test/ are symlinks (e.g. to a shared copy): the cache key follows them to the files read."""
    import shutil

    write_folder(tmp_path / "real", per_class=1)
    (tmp_path / "d").mkdir()
    for part in ("train", "test"):
        (tmp_path / "d" / part).symlink_to(tmp_path / "real" / part, target_is_directory=True)
    first = load_fer2013(tmp_path / "d")
    f = next((tmp_path / "real" / "train" / "fear").iterdir())
    st = f.stat()
    Image.fromarray(np.full((48, 48), 7, dtype=np.uint8)).save(f)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))  # even with its old modification time
    changed = load_fer2013(tmp_path / "d")
    assert changed.fingerprint != first.fingerprint and (changed.images == 7).all(dim=(1, 2)).sum() == 1
    shutil.copytree(tmp_path / "real" / "test", tmp_path / "copy")  # a copy with one image changed, times kept
    g = next((tmp_path / "copy" / "sad").iterdir())
    st = g.stat()
    Image.fromarray(np.full((48, 48), 9, dtype=np.uint8)).save(g)
    os.utime(g, ns=(st.st_atime_ns, st.st_mtime_ns))
    (tmp_path / "d" / "test").unlink()
    (tmp_path / "d" / "test").symlink_to(tmp_path / "copy", target_is_directory=True)
    assert (load_fer2013(tmp_path / "d").images == 9).all(dim=(1, 2)).sum() == 1


def test_altered_cache_is_not_trusted(tiny_folder, monkeypatch, capsys):
    import fer_bench.data as data

    first = load_fer2013(tiny_folder)
    (cached,) = data.cache_dir().glob("*.pt")
    d = torch.load(cached, weights_only=True)
    d["images"][5, 10, 10] ^= 1  # one pixel; the stored checksum and fingerprint stay as they were
    torch.save(d, cached)
    calls = []
    real = data.read_folder
    monkeypatch.setattr(data, "read_folder", lambda root: calls.append(root) or real(root))
    again = load_fer2013(tiny_folder)
    assert calls == [tiny_folder] and torch.equal(again.images, first.images)
    assert again.fingerprint == first.fingerprint and "damaged or was altered" in capsys.readouterr().err
    assert torch.equal(load_fer2013(tiny_folder).images, first.images) and len(calls) == 1  # rewritten, trusted


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
