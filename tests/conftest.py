"""Shared fixtures: tiny synthetic FER-2013 releases, the real one, and a CLI runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fer_bench.data import CLASSES, SPLITS

ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = os.environ.get("FER_BENCH_DATA")


def pytest_addoption(parser):
    parser.addoption("--sixth-paper", action="store_true",
                     help="register README's paper template as a temporary sixth paper for the whole run (through "
                          "$FER_BENCH_PAPERS, so subprocesses and the notebook see it too)")


def pytest_configure(config):
    if config.getoption("--sixth-paper"):
        import tempfile

        from sixth_paper import write_module

        path = write_module(Path(tempfile.mkdtemp(prefix="fer-bench-sixth-paper-")))
        os.environ["FER_BENCH_PAPERS"] = os.pathsep.join(filter(None, [os.environ.get("FER_BENCH_PAPERS"), str(path)]))
        assert "papers" not in sys.modules, "conftest must register the sixth paper before papers is imported"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own dataset cache, so no test depends on another's leftovers."""
    monkeypatch.setenv("FER_BENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
    torch.set_num_threads(2)


def synthetic_arrays(per_class: int = 2, seed: int = 0):
    """(images, labels, splits) with ``per_class`` images of every class in every split."""
    rng = np.random.default_rng(seed)
    n = per_class * len(CLASSES) * len(SPLITS)
    labels = np.tile(np.repeat(np.arange(len(CLASSES)), per_class), len(SPLITS))
    splits = np.repeat(np.arange(len(SPLITS)), per_class * len(CLASSES))
    images = rng.integers(0, 256, size=(n, 48, 48), dtype=np.uint8)
    return images, labels, splits


def write_folder(root: Path, per_class: int = 2, seed: int = 0, fmt: str = "png") -> tuple:
    """Write the image-folder release (PNG, lossless, so pixels round-trip exactly)."""
    images, labels, splits = synthetic_arrays(per_class, seed)
    for i, (img, lab, spl) in enumerate(zip(images, labels, splits)):
        part = "train" if SPLITS[spl] == "Training" else "test"
        d = root / part / CLASSES[lab]
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(d / f"{SPLITS[spl]}_{i}.{fmt}")
    return images, labels, splits


def write_csv(path: Path, per_class: int = 2, seed: int = 0) -> tuple:
    images, labels, splits = synthetic_arrays(per_class, seed)
    lines = ["emotion,pixels,Usage"]
    lines += [f"{lab},{' '.join(map(str, img.ravel()))},{SPLITS[spl]}" for img, lab, spl in zip(images, labels, splits)]
    path.write_text("\n".join(lines) + "\n")
    return images, labels, splits


@pytest.fixture
def tiny_folder(tmp_path) -> Path:
    write_folder(tmp_path / "fer2013", per_class=3)
    return tmp_path / "fer2013"


@pytest.fixture
def tiny_csv(tmp_path) -> Path:
    write_csv(tmp_path / "fer2013.csv", per_class=3)
    return tmp_path / "fer2013.csv"


@pytest.fixture(scope="session")
def _real_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("real-cache")


@pytest.fixture
def real_data(_real_cache, monkeypatch) -> Path:
    """The real FER-2013 from $FER_BENCH_DATA. In CI its absence is a failure, not a skip.
    Its decoded cache is shared by the session's real-data tests (decoding takes seconds)."""
    if not REAL_DATA or not Path(REAL_DATA).exists():
        if os.environ.get("CI"):
            pytest.fail("CI must run the real-data tests: set FER_BENCH_DATA to the FER-2013 folder.")
        pytest.skip("set FER_BENCH_DATA to the real FER-2013 to run this test")
    monkeypatch.setenv("FER_BENCH_CACHE", str(_real_cache))
    return Path(REAL_DATA)


def cli(*args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run `fer-bench ARGS` in a subprocess, as a user would."""
    return subprocess.run([sys.executable, "-m", "fer_bench.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, **(env or {})}, timeout=timeout)


def cli_here(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`fer-bench ARGS` run in this process, for commands that stop before they train (bad input): the same exit
    status, stdout and stderr as `cli` gives, without a new interpreter importing torch again (2-3 s a call on the
    2-core CI machine). A traceback would escape as the exception itself. Commands that train, or that depend on
    the environment at import time ($FER_BENCH_PAPERS) or on signals, use `cli`."""
    import contextlib
    import io

    from fer_bench.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved = dict(os.environ)
    os.environ.update(env or {})
    try:
        with contextlib.chdir(ROOT), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as e:  # argparse's usage errors
                code = e.code if isinstance(e.code, int) else 1
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return subprocess.CompletedProcess(["fer-bench", *args], code, out.getvalue(), err.getvalue())


def only_metrics(out: Path) -> dict:
    """The metrics.json of the one run under ``out`` (fails if there are none or several)."""
    (path,) = out.glob("runs/*/*/*/metrics.json")
    return json.loads(path.read_text())


@pytest.fixture
def offline(monkeypatch):
    """No network and no cached weights: every way torchvision fetches weights raises URLError, as it does without
    network (tests never download anything)."""
    import torchvision.models._api as tv_api

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    if hasattr(tv_api, "load_state_dict_from_url"):
        monkeypatch.setattr(tv_api, "load_state_dict_from_url", refuse)
