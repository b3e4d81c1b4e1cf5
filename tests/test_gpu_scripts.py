"""The prepared GPU scripts, dry-run on the CPU: they must work the first time a GPU session runs them."""

import json
import os
import subprocess

from conftest import ROOT


def test_gpu_check_dry_run_passes_every_check(tmp_path):
    r = subprocess.run(["bash", "scripts/gpu_check.sh", "--dry-run"], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "OUT": str(tmp_path)}, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((tmp_path / "gpu_check.json").read_text())
    assert res["accelerator"] == "cpu" and res["precision"]["capability"] is None
    assert res["determinism"]["identical"] is True
    assert res["compile"] == "n/a"  # inductor's C++ build takes minutes on a CPU: GPU only
    per_class, classes = 4, 7  # the synthetic set: 4 images of each class in each split
    assert res["tta"] == {s: {"n": per_class * classes, "views": 10} for s in ("PrivateTest", "PublicTest")}
    assert res["vgg16"].startswith("deterministic") and res["host_syncs"] == "n/a"
