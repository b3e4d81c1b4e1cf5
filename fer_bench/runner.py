"""One Lightning Trainer path for every paper: fit, select on PublicTest, test, write metrics.json."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from .config import apply_overrides
from .data import load_fer2013, resolve_data_path
from .errors import UserError
from .registry import get_paper
from .results import SCHEMA, device_name, new_run_dir, software, write_json_atomic
from .training import FERClassifier, FERDataModule

_RUN_DIRS_ENV = "FER_BENCH_RUN_DIRS"  # rank 0 -> DDP child processes: where each model's run lives


class _TrainTimer(Callback):
    """Wall time and images of the training epochs only (validation excluded)."""

    def __init__(self):
        self.seconds, self.images, self._t = 0.0, 0, None

    def on_train_epoch_start(self, trainer, pl_module):
        self._t = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.images += len(batch[1]) * trainer.world_size

    def on_train_epoch_end(self, trainer, pl_module):
        self.seconds += time.perf_counter() - self._t
        self._t = None

    def on_exception(self, trainer, pl_module, exception):
        if self._t is not None:
            self.seconds += time.perf_counter() - self._t


def default_precision(accelerator: str) -> str:
    """bf16-mixed on GPUs that support it (Ampere+), 16-mixed on older GPUs; on CPUs bf16-mixed only
    where the CPU has native bf16 (AVX512-BF16 or AMX): on an AVX2-only CPU, bf16 autocast falls back to
    slow kernels (ResNet50 at 48x48 trained 20x slower than fp32 on the 2-core AMD EPYC CI machine)."""
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return "bf16-mixed" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "16-mixed"
    native_bf16 = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return "bf16-mixed" if native_bf16 else "32-true"


def resolve_config(paper_id: str, model: str, profile: str, epochs: int | None, overrides: list[str]) -> dict:
    paper = get_paper(paper_id)
    cfg = paper.resolve(model, profile)
    if epochs is not None:
        if epochs < 1:
            raise UserError(f"--epochs {epochs}: give at least 1 epoch.")
        cfg["epochs"] = epochs
    return apply_overrides(cfg, overrides)


def budget(paper_id: str, model: str, profile: str, cfg: dict, epochs_completed: int) -> dict:
    """Whether this run had the paper's full budget; the reasons when it did not."""
    full_cfg = get_paper(paper_id).resolve(model, "paper")
    reasons = []
    if profile != "paper":
        reasons.append(f"profile {profile}")
    for key in ("epochs", "train_subset", "input_size", "batch_size"):
        if cfg[key] != full_cfg[key]:
            reasons.append(f"{key}={cfg[key]} (paper: {full_cfg[key]})")
    if epochs_completed < cfg["epochs"]:
        reasons.append(f"stopped after {epochs_completed} of {cfg['epochs']} epochs")
    return {"full": not reasons, "reasons": reasons}


def _find_resumable(out: Path, paper: str, model: str) -> Path | None:
    """The newest run of this paper/model that did not complete and has a last checkpoint."""
    for run_dir in sorted((out / "runs" / paper / model).glob("*"), reverse=True):
        metrics = run_dir / "metrics.json"
        done = metrics.is_file() and json.loads(metrics.read_text()).get("status") == "completed"
        if not done and (run_dir / "checkpoints" / "last.ckpt").is_file() and (run_dir / "run.json").is_file():
            return run_dir
    return None


def run(paper_id: str, model: str = "all", profile: str = "paper", seed: int = 0, data=None,
        out: str | Path = "results", epochs: int | None = None, max_time: str | None = None,
        accelerator: str = "auto", devices: int | str = 1, num_nodes: int = 1, strategy: str = "auto",
        precision: str | None = None, overrides: list[str] = (), resume: bool = False,
        deterministic: bool = False, progress: bool = True) -> list[Path]:
    """Train and evaluate one model (or all) of a paper; return the metrics.json paths written."""
    paper = get_paper(paper_id)
    models = list(paper.models) if model == "all" else [model]
    out = Path(out)
    # everything a user can get wrong is checked before any training starts
    cfgs = {m: resolve_config(paper_id, m, profile, epochs, list(overrides)) for m in models}
    data_path = resolve_data_path(data)
    dataset = load_fer2013(data_path)
    precision = precision or default_precision(accelerator)

    run_dirs = json.loads(os.environ.get(_RUN_DIRS_ENV, "{}"))  # set when we are a DDP child
    if not run_dirs:
        for m in models:
            prior = _find_resumable(out, paper_id, m) if resume else None
            if resume and prior is None:
                raise UserError(f"--resume: no interrupted run of {paper_id}/{m} with a checkpoint under {out}.")
            run_dirs[m] = str(prior or new_run_dir(out, paper_id, m, seed))
        os.environ[_RUN_DIRS_ENV] = json.dumps(run_dirs)
    written = []
    for m in models:
        run_dir = Path(run_dirs[m])
        info = {"paper": paper_id, "model": m, "profile": profile, "seed": seed, "config": cfgs[m]}
        if resume:
            info = json.loads((run_dir / "run.json").read_text())  # a resumed run keeps its own recipe
        elif "LOCAL_RANK" not in os.environ or os.environ["LOCAL_RANK"] == "0":
            write_json_atomic(run_dir / "run.json", info)
        path = _run_one(paper, info, dataset, run_dir, resume=resume, max_time=max_time, accelerator=accelerator,
                        devices=devices, num_nodes=num_nodes, strategy=strategy, precision=precision,
                        deterministic=deterministic, progress=progress)
        if path:
            written.append(path)
    return written


def _run_one(paper, info, dataset, run_dir: Path, *, resume, max_time, accelerator, devices, num_nodes, strategy,
             precision, deterministic, progress) -> Path | None:
    m, cfg, seed, profile = info["model"], info["config"], info["seed"], info["profile"]
    L.seed_everything(seed, workers=True, verbose=False)
    dm = FERDataModule(dataset, cfg, seed)
    dm.setup()
    net = paper.build(m, cfg)
    module = FERClassifier(net, cfg, dm.norm, paper.configure_optimizers)
    best = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best-{epoch:03d}", monitor=cfg["monitor"],
                           mode="max" if cfg["monitor"] == "val/acc" else "min", save_top_k=1,
                           auto_insert_metric_name=False, save_weights_only=True)
    last = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="last", save_top_k=1, monitor=None,
                           save_on_exception=True, enable_version_counter=False)
    timer = _TrainTimer()
    trainer = L.Trainer(
        accelerator=accelerator, devices=devices, num_nodes=num_nodes, strategy=strategy, precision=precision,
        max_epochs=cfg["epochs"], max_time=max_time, deterministic=deterministic or None,
        logger=CSVLogger(run_dir, name="", version="logs"), callbacks=[best, last, timer],
        use_distributed_sampler=False,  # FERDataModule shards itself, without padding the test sets
        enable_progress_bar=progress, enable_model_summary=False, num_sanity_val_steps=0,
        log_every_n_steps=10)
    ckpt = str(run_dir / "checkpoints" / "last.ckpt") if resume else None
    status = "completed"
    try:
        trainer.fit(module, datamodule=dm, ckpt_path=ckpt)
    except (KeyboardInterrupt, SystemExit):  # Ctrl-C (Lightning exits) or SIGTERM (SIGTERMException)
        status = "interrupted"
    if trainer.interrupted:
        status = "interrupted"
    epochs_done = trainer.current_epoch  # epochs whose training finished
    splits, eval_s = {}, 0.0
    if status == "completed":
        t0 = time.perf_counter()
        trainer.test(module, datamodule=dm, ckpt_path=best.best_model_path or None, verbose=False)
        eval_s = time.perf_counter() - t0
        splits = module.test_results
    if not trainer.is_global_zero:
        return None
    match = re.search(r"best-(\d+)\.ckpt$", best.best_model_path or "")
    result = {
        "schema": SCHEMA, "paper": info["paper"], "model": m, "profile": profile, "protocol": cfg["protocol"],
        "seed": seed, "run_id": run_dir.name, "status": status,
        "epochs_planned": cfg["epochs"], "epochs_completed": epochs_done,
        "best_epoch": int(match.group(1)) + 1 if match else None,  # 1-based, like epochs_completed
        "selected_on": "PublicTest" if cfg["protocol"] == "canonical" else "PrivateTest",
        "budget": budget(info["paper"], m, profile, cfg, epochs_done),
        "splits": splits,
        "timing": {"train_s": round(timer.seconds, 3),
                   "train_img_per_s": round(timer.images / timer.seconds, 2) if timer.seconds else None,
                   "eval_s": round(eval_s, 3)},
        "hardware": {"accelerator": "cuda" if trainer.strategy.root_device.type == "cuda" else
                     trainer.strategy.root_device.type,
                     "device_name": device_name(trainer.strategy.root_device.type),
                     "devices": trainer.num_devices, "num_nodes": trainer.num_nodes,
                     "precision": str(trainer.precision)},
        "software": software(),
        "dataset": {"name": "fer2013", "format": dataset.format, "fingerprint": dataset.fingerprint},
        "config": cfg,
    }
    path = run_dir / "metrics.json"
    write_json_atomic(path, result)
    if status == "interrupted":
        raise UserError(f"Run interrupted after {epochs_done} epoch(s); {path} records it as 'interrupted' and "
                        f"the last checkpoint is in {run_dir / 'checkpoints'}. Continue it with the same command "
                        "plus --resume.")
    return path

