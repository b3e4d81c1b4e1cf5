"""Checks of fer-bench's GPU path, for the rare session that has a GPU (scripts/gpu_check.sh calls this).

Each check prints one line and goes into OUT/gpu_check.json:
  precision      the precision fer-bench picks for this GPU, and its compute capability
  resident       the uint8 dataset lives on the GPU (no batch is copied from the host)
  determinism    two --deterministic smoke runs give identical metrics
  compile        a smoke run with compile=true completes and its accuracy is within 3 points of eager (GPU)
  tta            a ten-crop evaluation counts every test image once (n equals the split size)
  vgg16          vgg16's forward and backward run under torch.use_deterministic_algorithms(True)
  host_syncs     CUDA synchronisations per training step (torch.cuda.set_sync_debug_mode), after warm-up
``--dry-run`` runs the same checks on the CPU with a tiny synthetic FER-2013 (the CUDA-only ones report "n/a"),
so the script is tested where no GPU is.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from fer_bench.data import CLASSES, SPLITS
from fer_bench.runner import default_precision, run


def tiny_csv(path: Path, per_class: int = 4) -> Path:
    rng = np.random.default_rng(0)
    rows = ["emotion,pixels,Usage"]
    for s in SPLITS:
        for c in range(len(CLASSES)):
            for _ in range(per_class):
                rows.append(f"{c},{' '.join(map(str, rng.integers(0, 256, 48 * 48)))},{s}")
    path.write_text("\n".join(rows) + "\n")
    return path


def smoke(paper: str, model: str, data, out: Path, accelerator: str, sets=(), deterministic=True) -> dict:
    (path,) = run(paper, model=model, profile="smoke", seed=0, data=data, out=out, accelerator=accelerator,
                  overrides=["pretrained=false", *sets], deterministic=deterministic, progress=False)
    return json.loads(path.read_text())


def host_syncs_per_step(accelerator: str, steps: int = 20) -> float | str:
    """Training steps of the smallest model with CUDA's sync debug mode on; the warnings it raises are counted."""
    if accelerator != "gpu":
        return "n/a"
    from papers import get_paper
    from fer_bench.runner import resolve_config
    from fer_bench.training import FERClassifier

    cfg = resolve_config("miao_presnet_vgg", "presnet", "paper", None, [])
    module = FERClassifier(get_paper("miao_presnet_vgg").build("presnet", cfg).cuda(), cfg, (0.5, 0.25)).cuda()
    opt = torch.optim.SGD(module.parameters(), lr=0.01)
    x = torch.randint(0, 256, (cfg["batch_size"], 48, 48), dtype=torch.uint8, device="cuda")
    y = torch.randint(0, 7, (cfg["batch_size"],), device="cuda")
    from fer_bench.augment import preprocess

    def step():
        loss = module.criterion(module.model(preprocess(x, cfg, True, 0.5, 0.25)), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    torch.cuda.set_sync_debug_mode("warn")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(steps):
            step()
    torch.cuda.set_sync_debug_mode(0)
    return sum("synchroniz" in str(w.message) for w in caught) / steps


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dry-run", action="store_true", help="on the CPU, with a tiny synthetic dataset")
    ap.add_argument("--data", default=None, help="FER-2013 (default: a synthetic set in its format)")
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    args = ap.parse_args()
    accelerator = "cpu" if args.dry_run else "gpu"
    if not args.dry_run and not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU here; use --dry-run on a CPU.", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp())
    # the real FER-2013 does not travel to the GPU machine (64 MiB): a synthetic one in its format stands in
    data = args.data or tiny_csv(tmp / "fer2013.csv", per_class=4 if args.dry_run else 40)
    small = ["input_size=32", "eval_batch_size=8", "batch_size=8"] if args.dry_run else []
    res, t0 = {"accelerator": accelerator, "torch": torch.__version__}, time.time()

    def note(key, value):
        res[key] = value
        print(f"{key:<12} {value}", flush=True)

    cap = torch.cuda.get_device_capability() if accelerator == "gpu" else None
    note("precision", {"default": default_precision(accelerator), "capability": cap})
    if accelerator == "gpu":
        from fer_bench.training import FERDataModule
        import lightning as L
        trainer = L.Trainer(accelerator="gpu", devices=1, logger=False)
        dm = FERDataModule(data, {**resolve_smoke(), "exclude_leaked": False}, 0)
        dm.trainer = trainer
        dm.setup()
        note("resident", str(dm.train_set.images.device))
    else:
        note("resident", "n/a")

    def check(key, measure):
        """One check; a failure is recorded as such and the other checks still run."""
        try:
            note(key, measure())
        except Exception as e:
            note(key, f"FAILED: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")

    runs = {}

    def determinism():
        runs["a"] = a = smoke("huang_fpn", "resnet50", data, tmp / "a", accelerator, small)
        b = smoke("huang_fpn", "resnet50", data, tmp / "b", accelerator, small)
        return {"identical": a["splits"] == b["splits"], "precision": a["hardware"]["precision"]}

    def compiled():
        if accelerator != "gpu":  # on a CPU inductor compiles C++ for minutes: the dry run leaves it out
            return "n/a"
        c = smoke("huang_fpn", "resnet50", data, tmp / "c", accelerator, [*small, "compile=true"],
                  deterministic=False)
        gap = abs(c["splits"]["PrivateTest"]["accuracy"] - runs["a"]["splits"]["PrivateTest"]["accuracy"])
        return {"completed": c["status"] == "completed", "accuracy_gap": round(gap, 4), "ok": gap <= 0.03}

    def tta():
        # the paper's 40-pixel ten crops of 48-pixel images; the dry run's 32-pixel images are taken whole
        sets = [*small, "tta=tencrop", "crop_size=0"] if args.dry_run else ["tta=tencrop"]
        t = smoke("nurmakhan_vgg", "vggnet", data, tmp / "t", accelerator, sets)
        return {s: {"n": v["n"], "views": v["tta"]["views"]} for s, v in t["splits"].items()}

    def vgg16():
        from papers.nurmakhan_vgg import VGG16
        dev = "cuda" if accelerator == "gpu" else "cpu"
        torch.use_deterministic_algorithms(True, warn_only=False)
        try:
            net = VGG16(width=1.0 if accelerator == "gpu" else 0.0625).to(dev)
            net(torch.randn(4, 3, 48, 48, device=dev)).sum().backward()
            return "deterministic forward and backward ok"
        finally:
            torch.use_deterministic_algorithms(False)

    check("determinism", determinism)
    check("compile", compiled)
    check("tta", tta)
    check("vgg16", vgg16)
    check("host_syncs", lambda: host_syncs_per_step(accelerator))
    res["seconds"] = round(time.time() - t0, 1)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "gpu_check.json").write_text(json.dumps(res, indent=2) + "\n")
    print(f"-> {Path(args.out) / 'gpu_check.json'} ({res['seconds']} s)")
    return 0


def resolve_smoke() -> dict:
    from fer_bench.runner import resolve_config
    return resolve_config("huang_fpn", "resnet50", "smoke", None, ["pretrained=false"])


if __name__ == "__main__":
    sys.exit(main())
