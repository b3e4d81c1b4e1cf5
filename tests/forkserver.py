"""The tests' `fer-bench` process server (conftest.cli): it imports torch, torchvision, torchmetrics and Lightning
once, runs no torch operation (so no OpenMP pool exists to be copied), and forks one child per request. Each child
is a `python -m fer_bench.cli ARGS` of its own: its working directory, environment, stdin (/dev/null), stdout and
stderr (files) and exit status; fer_bench and papers are imported in the child, from the working directory, as a
new interpreter would, and it exits through the interpreter's normal shutdown (atexit handlers, flushed files).

Protocol, one JSON object a line: request {"args", "cwd", "env", "stdout", "stderr", "code"} on stdin (code: run
as `python -c CODE ARGS` instead of `python -m fer_bench.cli ARGS`); replies
{"pid": pid} when the child has started, then {"returncode": code} (negative: killed by that signal)."""

import json
import os
import runpy
import sys
import tempfile

import lightning.pytorch  # noqa: F401  (the imports every child would otherwise pay for)
import numpy as np
import torch  # noqa: F401
import torchmetrics  # noqa: F401
import torchvision  # noqa: F401


def child(req: dict) -> None:
    os.chdir(req["cwd"])
    os.environ.clear()
    os.environ.update(req["env"])
    for fd, path, flags in ((0, os.devnull, os.O_RDONLY), (1, req["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                            (2, req["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
        f = os.open(path, flags, 0o600)
        os.dup2(f, fd)
        os.close(f)
    np.random.seed()  # a new process draws its own numpy seed (Python's random reseeds itself after a fork)
    tempfile.tempdir = None  # ... and finds its temporary directory from its own $TMPDIR
    if req.get("code") is not None:  # python -c CODE ARGS
        sys.path[0] = ""
        sys.argv = ["-c", *req["args"]]
        exec(compile(req["code"], "<string>", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
    else:  # python -m fer_bench.cli ARGS
        sys.path[0] = os.getcwd()
        sys.argv = ["fer-bench", *req["args"]]
        runpy.run_module("fer_bench.cli", run_name="__main__", alter_sys=True)  # its __main__ block exits


def serve() -> None:
    for line in sys.stdin:
        req = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            child(req)
            sys.exit(0)  # (cli's __main__ block exits itself; a module that returns exits 0, as `python -m`)
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}), flush=True)


if __name__ == "__main__":
    serve()
