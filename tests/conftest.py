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


# variables torch, its libraries, matplotlib or Lightning read when imported (Lightning's seed variables are read
# when a run seeds, not at import: a forked child sees them as a new interpreter would)
IMPORT_TIME_ENV = ("OMP_", "MKL_", "KMP_", "OPENBLAS", "GOMP", "TORCH", "PYTORCH", "CUDA", "NVIDIA", "PL_",
                   "LIGHTNING", "PYTHON", "LD_", "MALLOC", "MPL", "XDG_", "LC_", "LANG", "HOME")
RUNTIME_ENV = ("PL_GLOBAL_SEED", "PL_SEED_WORKERS")


def _import_time(env: dict) -> dict:
    return {k: v for k, v in env.items() if k.startswith(IMPORT_TIME_ENV) and k not in RUNTIME_ENV}


def cli(*args: str, env: dict | None = None, timeout: int = 600, fresh: bool = False,
        code: str | None = None) -> subprocess.CompletedProcess:
    """Run `fer-bench ARGS` in a process of its own, as a user would: its own address space, working directory
    (the checkout), environment, stdout, stderr and exit status. It is forked from tests/forkserver.py, which has
    imported torch, torchvision, torchmetrics and Lightning once: a new interpreter spends about 6 s of CPU on them
    before it does anything, on the two cores the campaign trains on. A new interpreter is started instead for
    ``fresh=True`` (tests that compare two processes' results: forked children share the server's hash seed),
    an ``env`` that sets a variable those libraries read at import (IMPORT_TIME_ENV), and runs on several
    devices (Lightning's DDP ranks outlive the process that started them; a pipe waits for all of them).
    ``code``: run `python -c CODE ARGS` instead (e.g. a CLI whose saves a test sabotages)."""
    full = {**os.environ, **(env or {})}
    ddp = any(a in ("--devices", "--strategy", "--num-nodes") for a in args)
    if fresh or ddp or _import_time(env or {}):
        how = ["-c", code] if code is not None else ["-m", "fer_bench.cli"]
        return subprocess.run([sys.executable, *how, *args], capture_output=True, text=True, cwd=ROOT, env=full,
                              timeout=timeout)
    return _FORKS.run(list(args), full, timeout, code)


class _ForkServer:
    """conftest's end of tests/forkserver.py: started at the first `cli` call, and again whenever this process's
    import-time environment has changed since (a test's monkeypatch), one request at a time."""

    def __init__(self):
        self.proc, self.env, self.log = None, {}, None

    def _start(self, env: dict) -> None:
        import tempfile

        self.close()
        self.env = _import_time(env)
        self.log = tempfile.NamedTemporaryFile(prefix="forkserver-", suffix=".log", delete=False)
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "forkserver.py")], cwd=ROOT,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True,
                                     env=env)

    def run(self, args: list[str], env: dict, timeout: float, code: str | None = None) -> subprocess.CompletedProcess:
        import tempfile

        if self.proc is None or self.proc.poll() is not None or _import_time(env) != self.env:
            self._start(env)
        pid = None
        with tempfile.TemporaryDirectory() as tmp:
            out, err = Path(tmp) / "stdout", Path(tmp) / "stderr"
            try:
                self.proc.stdin.write(json.dumps({"args": args, "cwd": str(ROOT), "env": env, "stdout": str(out),
                                                  "stderr": str(err), "code": code}) + "\n")
                self.proc.stdin.flush()
                pid = json.loads(self._line())["pid"]
                fired = []
                timer = threading.Timer(timeout, lambda: (fired.append(True), _kill(pid)))
                timer.start()
                try:
                    code_ = json.loads(self._line())["returncode"]
                finally:
                    timer.cancel()
            except BaseException:  # interrupted while waiting: leave no child running, and no stale reply behind
                _kill(pid)
                self.close(kill=True)
                raise
            if fired and code_ == -signal.SIGKILL:
                raise subprocess.TimeoutExpired(["fer-bench", *args], timeout)
            return subprocess.CompletedProcess(["fer-bench", *args], code_, out.read_text(errors="replace"),
                                               err.read_text(errors="replace"))

    def _line(self) -> str:
        line = self.proc.stdout.readline()
        if not line:
            tail = Path(self.log.name).read_text(errors="replace")[-2000:] if self.log else ""
            raise RuntimeError(f"tests/forkserver.py stopped; its stderr ends:\n{tail}")
        return line

    def close(self, kill: bool = False):
        if self.proc is not None and self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                self.proc.stdin.close()
            self.proc.wait(timeout=30)
        self.proc = None
        if self.log is not None:
            self.log.close()
            Path(self.log.name).unlink(missing_ok=True)
            self.log = None


def _kill(pid: int | None) -> None:
    if pid is not None:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:  # it ended (and was reaped) meanwhile
            pass


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
