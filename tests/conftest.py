"""Shared fixtures: tiny synthetic FER-2013 releases, the real one, and a CLI runner."""

from __future__ import annotations

import atexit
import json
import os
import signal
import subprocess
import sys
import threading
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


# variables torch, its libraries or Lightning read when imported: a process that sets one must start afresh
IMPORT_TIME_ENV = ("OMP_", "MKL_", "KMP_", "OPENBLAS", "GOMP", "TORCH", "PYTORCH", "CUDA", "NVIDIA", "PL_",
                   "LIGHTNING", "PYTHON", "LD_", "MALLOC")


def cli(*args: str, env: dict | None = None, timeout: int = 600, fresh: bool = False,
        code: str | None = None) -> subprocess.CompletedProcess:
    """Run `fer-bench ARGS` in a process of its own, as a user would: its own address space, working directory
    (the checkout), environment, stdout, stderr and exit status. It is forked from tests/forkserver.py, which has
    imported torch, torchvision, torchmetrics and Lightning once: a new interpreter spends about 6 s of CPU on them
    before it does anything, on the two cores the campaign trains on. ``fresh=True``, or a variable those
    libraries read at import (IMPORT_TIME_ENV), starts a new interpreter instead: for tests that compare two
    processes' results (forked children share the server's hash seed) or time a process's start. ``code``: run
    `python -c CODE ARGS` instead (e.g. a CLI whose saves a test sabotages)."""
    env = {**os.environ, **(env or {})}
    if fresh or not _FORKS.suits(env):
        how = ["-c", code] if code is not None else ["-m", "fer_bench.cli"]
        return subprocess.run([sys.executable, *how, *args], capture_output=True, text=True, cwd=ROOT, env=env,
                              timeout=timeout)
    return _FORKS.run(list(args), env, timeout, code)


class _ForkServer:
    """conftest's end of tests/forkserver.py: started at the first `cli` call, one request at a time."""

    def __init__(self):
        self.proc, self.env = None, {}

    def suits(self, env: dict) -> bool:
        """Whether a child forked from the server imported what a new interpreter with ``env`` would: the same
        value of every variable the server's libraries read at import (the server starts with the first caller's)."""
        if self.proc is None or self.proc.poll() is not None:
            return True
        return all(env.get(k) == self.env.get(k) for k in set(env) | set(self.env) if k.startswith(IMPORT_TIME_ENV))

    def run(self, args: list[str], env: dict, timeout: float, code: str | None = None) -> subprocess.CompletedProcess:
        import tempfile

        if self.proc is None or self.proc.poll() is not None:
            self.env = dict(env)
            self.proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "forkserver.py")], cwd=ROOT,
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                         text=True, env=self.env)
        with tempfile.TemporaryDirectory() as tmp:
            out, err = Path(tmp) / "stdout", Path(tmp) / "stderr"
            self.proc.stdin.write(json.dumps({"args": args, "cwd": str(ROOT), "env": env, "stdout": str(out),
                                              "stderr": str(err), "code": code}) + "\n")
            self.proc.stdin.flush()
            pid = json.loads(self._line())["pid"]
            fired = []
            timer = threading.Timer(timeout, lambda: (fired.append(True), os.kill(pid, signal.SIGKILL)))
            timer.start()
            try:
                code = json.loads(self._line())["returncode"]
            finally:
                timer.cancel()
            if fired:
                raise subprocess.TimeoutExpired(["fer-bench", *args], timeout)
            return subprocess.CompletedProcess(["fer-bench", *args], code, out.read_text(errors="replace"),
                                               err.read_text(errors="replace"))

    def _line(self) -> str:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("tests/forkserver.py stopped (it could not import torch or Lightning?)")
        return line

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)


_FORKS = _ForkServer()
atexit.register(_FORKS.close)


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
