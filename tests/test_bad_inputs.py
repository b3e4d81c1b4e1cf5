"""Bad inputs as a careless or unlucky user makes them. Each row: how to make the input (a function that writes
it into tmp_path and returns the command's arguments), the exit status, fragments of the message, and what must
and must not exist afterwards. No row may end in a traceback or leave a temporary file behind."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import ROOT, cli_here, write_csv, write_folder
from fer_bench.data import cache_dir, load_fer2013

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0  # permissions do not stop root


def info(path) -> list[str]:
    return ["data", "info", "--data", str(path)]


def _csv(tmp, edit=None, name="fer2013.csv"):
    """A 21-image fer2013.csv, its text passed through ``edit``."""
    p = tmp / name
    write_csv(p, per_class=1)
    if edit:
        p.write_text(edit(p.read_text()))
    return p


def _first_pixel(value: str):
    def edit(text):
        header, first, rest = text.split("\n", 2)
        emotion, pixels, usage = first.split(",")
        return f"{header}\n{emotion},{value} {pixels.split(' ', 1)[1]},{usage}\n{rest}"
    return lambda tmp: info(_csv(tmp, edit))


def empty_csv(tmp):
    (tmp / "fer2013.csv").write_bytes(b"")
    return info(tmp / "fer2013.csv")


def gzip_named_csv(tmp):
    p = _csv(tmp)
    p.write_bytes(gzip.compress(p.read_bytes()))
    return info(p)


def zip_named_csv(tmp):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("fer2013.csv", _csv(tmp).read_text())
    (tmp / "fer2013.csv").write_bytes(buf.getvalue())
    return info(tmp / "fer2013.csv")


def truncated_last_row(tmp):
    p = _csv(tmp)
    p.write_bytes(p.read_bytes()[:-3000])  # the download stopped inside the last row's pixels
    return info(p)


def icml_header(tmp):
    def edit(text):  # Kaggle's icml_face_data.csv: other column order, a space after each comma
        rows = [line.split(",") for line in text.splitlines()[1:]]
        return "emotion, Usage, pixels\n" + "".join(f"{e}, {u}, {p}\n" for e, p, u in rows)
    return info(_csv(tmp, edit, name="icml_face_data.csv"))


def system_files_in_class_folders(tmp):
    write_folder(tmp / "d", per_class=1)
    happy = tmp / "d" / "train" / "happy"
    (happy / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (happy / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (happy / "._Training_0.png").write_bytes(b"\0\5\26\7")  # macOS AppleDouble
    (happy / ".ipynb_checkpoints").mkdir()
    (happy / ".ipynb_checkpoints" / "Training_0-checkpoint.png").write_bytes(b"x")
    (tmp / "d" / "train" / ".ipynb_checkpoints").mkdir()
    (tmp / "d" / "test" / ".DS_Store").write_bytes(b"\0")
    return info(tmp / "d")


def png_16_bit(tmp):
    write_folder(tmp / "d", per_class=1)
    f = next((tmp / "d" / "train" / "sad").iterdir())
    Image.fromarray(np.asarray(Image.open(f)).astype(np.uint16) * 257).save(f)  # the same image, 16 bits deep
    return info(tmp / "d")


def unreadable_class_folder(tmp):
    write_folder(tmp / "d", per_class=1)
    (tmp / "d" / "test" / "sad").chmod(0)
    return info(tmp / "d")


def unreadable_image(tmp):
    write_folder(tmp / "d", per_class=1)
    next((tmp / "d" / "test" / "sad").iterdir()).chmod(0)
    return info(tmp / "d")


def cache_under_a_file(tmp):
    (tmp / "a-file").write_text("")  # FER_BENCH_CACHE=a-file/cache cannot be created, even by root
    return info(_csv(tmp))


def read_only_cache(tmp):
    (tmp / "cache").mkdir()
    (tmp / "cache").chmod(0o555)
    return info(_csv(tmp))


def altered_cache(tmp):
    p = _csv(tmp)
    load_fer2013(p)
    (cached,) = cache_dir().glob("*.pt")
    d = torch.load(cached, weights_only=True)
    d["images"][0, 0, 0] ^= 1  # one pixel changed; the stored checksum is not
    torch.save(d, cached)
    return info(p)


def report_with_bad_records(tmp):
    good = {"paper": "huang_fpn", "model": "resnet50", "status": "completed", "profile": "paper"}
    bad = {"acc": {"splits": {"PrivateTest": {"n": 3589, "accuracy": 1.5}}}, "list": {"splits": [0.7]}}
    for run, fields in bad.items():
        (tmp / "runs/huang_fpn/resnet50" / run).mkdir(parents=True)
        (tmp / "runs/huang_fpn/resnet50" / run / "metrics.json").write_text(json.dumps({**good, **fields}))
    return ["report", "--runs", str(tmp), "--out", str(tmp / "out")]


def audit_out_is_a_file(tmp):
    (tmp / "out").write_text("not a folder")
    return ["data", "audit", "--data", str(_csv(tmp)), "--out", str(tmp / "out")]


@dataclass
class Case:
    make: Callable  # tmp_path -> the command's arguments
    code: int
    says: tuple[str, ...]  # fragments of stdout + stderr
    exists: tuple[str, ...] = ()  # globs under tmp_path
    absent: tuple[str, ...] = ("cache/*.pt",)
    env: dict | None = None  # values formatted with {tmp}
    needs_permissions: bool = False  # meaningless as root


CACHED = {"exists": ("cache/*.pt",), "absent": ()}  # a good load leaves a cache
CASES = {
    "0-byte csv": Case(empty_csv, 2, ("empty (0 bytes)",)),
    "pixel too large for int64": Case(_first_pixel("99999999999999999999"), 2, ("line 2", "'99999999999999999999'")),
    "pixel above 255": Case(_first_pixel("256"), 2, ("line 2", "integers 0-255", "'256'")),
    "pixel not an integer": Case(_first_pixel("1.5"), 2, ("line 2", "'1.5'")),
    "gzip named .csv": Case(gzip_named_csv, 2, ("gzip-compressed",)),
    "zip named .csv": Case(zip_named_csv, 2, ("zip archive",)),
    "truncated last row": Case(truncated_last_row, 2, ("line 22", "cut short")),
    "icml_face_data.csv header": Case(icml_header, 0, ("format csv", "21 images"), **CACHED),
    ".DS_Store, Thumbs.db, ._*, .ipynb_checkpoints": Case(system_files_in_class_folders, 0, ("21 images",), **CACHED),
    "16-bit png": Case(png_16_bit, 0, ("21 images",), **CACHED),  # pixel values: tests/test_data.py
    "unreadable class folder": Case(unreadable_class_folder, 2, ("Cannot list the folder", "sad"),
                                    needs_permissions=True),
    "unreadable image": Case(unreadable_image, 2, ("Cannot read", "Permission denied"), needs_permissions=True),
    "cache location not creatable": Case(cache_under_a_file, 0, ("21 images", "warning: cannot write the dataset"),
                                         env={"FER_BENCH_CACHE": "{tmp}/a-file/cache"}),
    "read-only cache": Case(read_only_cache, 0, ("21 images", "warning: cannot write the dataset cache"),
                            needs_permissions=True),
    "altered cache": Case(altered_cache, 0, ("damaged or was altered", "21 images"), **CACHED),
    "metrics.json with accuracy 1.5 or splits a list": Case(
        report_with_bad_records, 0, ("warning: skipped", "accuracy is 1.5, not a number in [0, 1]",
                                     "splits is a list, not a mapping"), exists=("out/REPORT.md",), absent=()),
    "audit --out is a file": Case(audit_out_is_a_file, 2, ("Cannot write the audit",), absent=()),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_bad_input(case, tmp_path, monkeypatch):
    if case.needs_permissions and IS_ROOT:
        pytest.skip("file permissions do not stop root")
    monkeypatch.setenv("FER_BENCH_CACHE", str(tmp_path / "cache"))
    args = case.make(tmp_path)
    env = {"FER_BENCH_CACHE": str(tmp_path / "cache")}
    env.update({k: v.format(tmp=tmp_path) for k, v in (case.env or {}).items()})
    try:
        r = cli_here(*args, env=env)
    finally:
        for p in tmp_path.rglob("*"):  # let pytest delete what the row made unreadable
            p.chmod(0o755)
    output = r.stdout + r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == case.code, output
    for fragment in case.says:
        assert fragment in output, output
    if case.code == 2:
        assert "fer-bench: error:" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr  # one paragraph
    for pattern in case.exists:
        assert list(tmp_path.glob(pattern)), pattern
    for pattern in case.absent:
        assert not list(tmp_path.glob(pattern)), pattern
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]  # nothing half-written


def test_full_disk_while_caching_skips_the_cache(tmp_path):
    """A real failed write: the file-size limit makes torch.save fail as on a full disk (RuntimeError)."""
    p = tmp_path / "fer2013.csv"
    write_csv(p, per_class=3)  # a 145 kB cache
    script = ("import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
              "resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536)); "
              "from fer_bench.cli import main; sys.exit(main(sys.argv[1:]))")
    r = subprocess.run([sys.executable, "-c", script, *info(p)], capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, "FER_BENCH_CACHE": str(tmp_path / "cache")}, timeout=600)
    assert r.returncode == 0 and "63 images" in r.stdout, r.stderr
    assert "Traceback" not in r.stderr and "cannot write the dataset cache" in r.stderr
    assert list((tmp_path / "cache").iterdir()) == []  # neither a cache nor a temporary file


def test_full_disk_while_training_is_a_clear_error_and_leaves_no_partial_checkpoint(tmp_path):
    """--out on a full disk: a file-size limit (2 MB) makes the first checkpoint write fail, as a full disk would.
    The run ends with exit 2 and what to do, metrics.json records it as interrupted, and no checkpoint file (whole
    or partial) or temporary file is left."""
    p = tmp_path / "fer2013.csv"
    write_csv(p, per_class=3)
    script = ("import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
              "resource.setrlimit(resource.RLIMIT_FSIZE, (2 << 20, 2 << 20)); "
              "from fer_bench.cli import main; sys.exit(main(sys.argv[1:]))")
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-c", script, "run", "--paper", "huang_fpn", "--model", "resnet50",
                        "--profile", "smoke", "--data", str(p), "--out", str(out), "--no-progress"],
                       capture_output=True, text=True, cwd=ROOT, timeout=600,
                       env={**os.environ, "FER_BENCH_CACHE": str(tmp_path / "cache")})
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "Cannot write to" in r.stderr and "Free some space" in r.stderr and "run the command again" in r.stderr
    (metrics,) = out.glob("runs/huang_fpn/resnet50/*/metrics.json")
    assert json.loads(metrics.read_text())["status"] == "interrupted"
    left = [f.name for f in metrics.parent.rglob("*") if f.is_file()]
    assert not [f for f in left if f.endswith((".ckpt", ".part", ".tmp"))], left
