"""One Lightning Trainer path for every paper: fit, select a checkpoint, test, write metrics.json.

Every protocol (fer_bench.protocols) goes through one loop: one run per split. FER-2013's official splits
(``protocol`` canonical or paper) are one split; JAFFE (no official split) is cross-validated, ``--folds K``: one run
directory and metrics.json per fold, and a ``<cv_id>-cv/cv.json`` with the mean and spread over the folds.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from . import config, protocols
from .callbacks import (AtomicCheckpointIO, TimeLimitReached, _KeepLog, _LastCheckpoint, _Safepoints, _SigtermFlag,
                        _Signalled, _TrainTimer)
from .config import DATASETS, DEFAULTS, same_recipe
from .data import load_fer2013, resolve_data_path
from .jaffe import load_jaffe, resolve_jaffe_path
from .errors import UserError
from papers import get_paper
from .results import (SCHEMA, cv_summary, device_name, new_run_dir, run_lock, software, write_json_atomic,
                      write_metrics)
from .training import FERClassifier, FERDataModule

_RUN_DIRS_ENV = "FER_BENCH_RUN_DIRS"  # rank 0 -> DDP child processes: where each model's run lives
DEFAULT_FOLDS = {"jaffe": 5}  # datasets without an official split are cross-validated


def default_precision(accelerator: str) -> str:
    """bf16-mixed on GPUs that support it (Ampere+), 16-mixed on older GPUs; on CPUs bf16-mixed only
    where the CPU has native bf16 (AVX512-BF16 or AMX): on an AVX2-only CPU, bf16 autocast falls back to
    slow kernels (ResNet50 at 48x48 trained 20x slower than fp32 on the 2-core AMD EPYC CI machine)."""
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        # bf16 tensor cores from Ampere (sm_80) on; torch.cuda.is_bf16_supported() also counts emulation (T4, V100)
        ampere = torch.cuda.is_available() and torch.cuda.get_device_capability() >= (8, 0)
        return "bf16-mixed" if ampere else "16-mixed"
    native_bf16 = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return "bf16-mixed" if native_bf16 else "32-true"


ACCELERATORS = ("auto", "cpu", "gpu", "cuda")
PRECISIONS = ("32-true", "32", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "64-true")
STRATEGIES = ("auto", "ddp", "ddp_find_unused_parameters_true")
# ddp_spawn/ddp_fork/ddp_notebook run the test in worker processes whose results never reach the process that
# writes metrics.json: refused rather than recorded as a run with empty splits
SPAWNING = ("ddp_spawn", "ddp_fork", "ddp_notebook", "ddp_spawn_find_unused_parameters_true")


def on_gpu(accelerator: str) -> bool:
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def execution(accelerator: str, deterministic: bool) -> dict:
    """How a run executes on this accelerator, beside the recipe (none of it changes a result beyond floating-point
    order). On a GPU, where an epoch takes seconds and a step is bound by launches and host work (issue 30):
    cudnn.benchmark unless --deterministic; the training log every 50 steps (each row reads the loss back to the
    host, a synchronisation); last.ckpt by wall-clock time and at the end, not at every epoch's end. On a CPU, what
    it always was: a row every 10 steps, last.ckpt at every epoch's end."""
    gpu = on_gpu(accelerator)
    return {"benchmark": (not deterministic) if gpu else None, "log_every_n_steps": 50 if gpu else 10,
            "checkpoint_every_epoch": not gpu}


def check_hardware(accelerator: str, devices, num_nodes: int, strategy: str, precision: str | None) -> None:
    """Every Trainer argument a user gives, checked before any directory, dataset or process is created."""
    if accelerator not in ACCELERATORS:
        raise UserError(f"--accelerator {accelerator}: choose one of {', '.join(ACCELERATORS)}.")
    gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise UserError(f"--accelerator {accelerator}: no CUDA GPU is visible here; use --accelerator cpu (or auto).")
    if precision is not None and precision not in PRECISIONS:
        raise UserError(f"--precision {precision}: choose one of {', '.join(PRECISIONS)}.")
    if strategy in SPAWNING:
        raise UserError(f"--strategy {strategy}: its test results stay in the worker processes, so no metrics.json "
                        "could record them; use --strategy ddp (one process per device, or torchrun / srun).")
    if strategy not in STRATEGIES:
        raise UserError(f"--strategy {strategy}: choose one of {', '.join(STRATEGIES)}.")
    if num_nodes < 1:
        raise UserError(f"--num-nodes {num_nodes}: give at least 1.")
    if devices == "auto":
        return
    available = torch.cuda.device_count() if gpu else (os.cpu_count() or 1)
    if not isinstance(devices, int) or devices < 1:
        raise UserError(f"--devices {devices}: give a positive number (or auto).")
    if devices > available:
        kind = "GPUs" if gpu else "CPU cores (one training process each)"
        raise UserError(f"--devices {devices}: this machine has {available} {kind}.")


def launch_id() -> str | None:
    """torchrun and srun start every rank themselves (fer-bench's own DDP children get their directories from rank
    0): the ranks of one launch agree on a run directory named after it, instead of one directory per rank."""
    env = os.environ
    if env.get("TORCHELASTIC_RUN_ID") and int(env.get("WORLD_SIZE", "1")) > 1:
        return f"torchrun-{env['TORCHELASTIC_RUN_ID']}"
    if env.get("SLURM_JOB_ID") and int(env.get("SLURM_NTASKS", "1")) > 1:
        return f"slurm-{env['SLURM_JOB_ID']}.{env.get('SLURM_STEP_ID', '0')}"
    return None


def is_rank0() -> bool:
    """Global rank 0: torchrun's RANK, srun's SLURM_PROCID (srun sets no LOCAL_RANK), else Lightning's own children
    (LOCAL_RANK and NODE_RANK), else a single process."""
    for key in ("RANK", "SLURM_PROCID"):
        if key in os.environ:
            return os.environ[key] == "0"
    return os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0"


def resolve_config(paper_id: str, model: str, profile: str, epochs: int | None, overrides: list[str],
                   dataset: str = "fer2013") -> dict:
    """The recipe of one run of a registered paper (fer_bench.config.resolve)."""
    return config.resolve(get_paper(paper_id), model, profile, dataset, epochs, overrides)


def _ddp_reasons(trainer) -> list[str]:
    bn = torch.nn.modules.batchnorm._BatchNorm
    if trainer.world_size > 1 and any(isinstance(m, bn) and not isinstance(m, torch.nn.SyncBatchNorm)
                                      for m in trainer.lightning_module.modules()):
        return [f"BatchNorm statistics over each of {trainer.world_size} ranks' share of the batch "
                "(no SyncBatchNorm on CPUs)"]
    return []


def _find_resumable(out: Path, paper: str, model: str) -> Path | None:
    """The newest run of this paper/model that did not complete and has a last checkpoint."""
    for run_dir in sorted((out / "runs" / paper / model).glob("*"), reverse=True):
        metrics = run_dir / "metrics.json"
        done = metrics.is_file() and json.loads(metrics.read_text()).get("status") == "completed"
        if not done and (run_dir / "checkpoints" / "last.ckpt").is_file() and (run_dir / "run.json").is_file():
            return run_dir
    return None


def load_dataset(name: str, path=None):
    """FER-2013 (--data, $FER_BENCH_DATA, ./data/fer2013) or JAFFE (--data, $FER_BENCH_JAFFE, ./data/jaffe)."""
    if name == "jaffe":
        return load_jaffe(resolve_jaffe_path(path))
    return load_fer2013(resolve_data_path(path))


def _check_folds(dataset: str, folds: int | None, resume: bool) -> int:
    """The number of cross-validation folds (0: the dataset's official splits)."""
    if folds is None:
        folds = DEFAULT_FOLDS.get(dataset, 0)
    elif dataset not in DEFAULT_FOLDS:
        raise UserError(f"--folds: {dataset} has official splits and is not cross-validated; --folds applies to "
                        f"{', '.join(DEFAULT_FOLDS)}.")
    elif folds < 2:
        raise UserError(f"--folds {folds}: {dataset} has no official split; cross-validate it with at least 2 "
                        f"folds (the default is {DEFAULT_FOLDS[dataset]}).")
    if folds and resume:
        raise UserError("--resume does not continue a cross-validation; run it again without --resume.")
    return folds


def run(paper_id: str, model: str = "all", profile: str = "paper", seed: int = 0, data=None,
        out: str | Path = "results", epochs: int | None = None, max_time: str | None = None,
        accelerator: str = "auto", devices: int | str = 1, num_nodes: int = 1, strategy: str = "auto",
        precision: str | None = None, overrides: list[str] = (), resume: bool = False,
        deterministic: bool = False, progress: bool = True, dataset: str = "fer2013",
        folds: int | None = None, checkpoint_every_s: float | None = 300.0, deadline: float | None = None,
        run_dir: Path | None = None) -> list[Path]:
    """Train and evaluate one model (or all) of a paper; return the metrics.json paths written (with ``folds``,
    one per fold; each cross-validation's summary is in cv_summary_path(metrics.json of a fold)).

    ``checkpoint_every_s``: seconds of training between resumable checkpoints inside an epoch (None: epoch ends
    only). ``deadline`` (time.time()): stop cleanly before it, raising TimeLimitReached after writing metrics.json
    with status 'interrupted'; it bounds training: the final evaluation starts if training ended before it, and
    may end after it. ``run_dir`` (one model, no folds): use this directory, resuming it with ``resume``
    (fer_bench.reproduce names its run directories after the recipe)."""
    check_hardware(accelerator, devices, num_nodes, strategy, precision)
    if not 0 <= seed < 2**32:
        raise UserError(f"--seed {seed}: give a seed in [0, 2^32).")
    paper = get_paper(paper_id)
    models = list(paper.models) if model == "all" else [model]
    out = Path(out)
    # everything a user can get wrong is checked before any training starts
    if dataset not in DATASETS:
        raise UserError(f"--dataset {dataset}: choose one of {', '.join(DATASETS)}.")
    folds = _check_folds(dataset, folds, resume)
    cfgs = {m: resolve_config(paper_id, m, profile, epochs, list(overrides), dataset) for m in models}
    if dataset != "fer2013" and any(c["exclude_leaked"] for c in cfgs.values()):
        raise UserError(f"--set exclude_leaked=true: only FER-2013's official test splits have a Training split to "
                        f"leak from; drop it for --dataset {dataset}.")
    dataset_name, dataset = dataset, load_dataset(dataset, data)
    dataset.check_classes()
    # the images of every run: also checks that a paper's subsets fit the data and that the folds can be built
    splits = {m: protocols.splits(dataset, cfgs[m], folds) for m in models}
    for m in models:  # pretrained weights must be at hand before any model trains
        if cfgs[m].get("pretrained"):
            paper.build(m, cfgs[m])
    precision = precision or default_precision(accelerator)

    ddp_child = _RUN_DIRS_ENV in os.environ
    launch = launch_id()
    run_dirs = json.loads(os.environ.get(_RUN_DIRS_ENV, "{}"))  # set when we are a DDP child
    if not ddp_child:
        for m in models:
            if folds:
                run_dirs[m] = [str(d) for d in _new_cv_dirs(out, paper_id, m, seed, folds, launch)]
                continue
            if run_dir is not None:
                run_dirs[m] = [str(run_dir)]
                continue
            prior = _find_resumable(out, paper_id, m) if resume else None
            if resume and prior is None:
                raise UserError(f"--resume: no interrupted run of {paper_id}/{m} with a checkpoint under {out}.")
            if prior is None and launch:  # every rank of a torchrun/srun launch names the same directory
                prior = out / "runs" / paper_id / m / f"{launch}-s{seed}"
                prior.mkdir(parents=True, exist_ok=True)
            run_dirs[m] = [str(prior or new_run_dir(out, paper_id, m, seed))]
        os.environ[_RUN_DIRS_ENV] = json.dumps(run_dirs)  # inherited by the DDP processes Lightning starts
    try:
        return _run_models(paper, models, cfgs, run_dirs, dataset_name, dataset, profile, seed, resume, splits, dict(
                               max_time=max_time, accelerator=accelerator, devices=devices, num_nodes=num_nodes,
                               strategy=strategy, precision=precision, deterministic=deterministic,
                               progress=progress, checkpoint_every_s=checkpoint_every_s, deadline=deadline))
    finally:
        if not ddp_child:  # a later run() in this process (fer-bench check) draws its own directories
            os.environ.pop(_RUN_DIRS_ENV, None)


def _run_models(paper, models, cfgs, run_dirs, dataset_name, dataset, profile, seed, resume, splits,
                hw) -> list[Path]:
    """One run per split of each model (one for FER-2013's protocols, one per fold of a cross-validation, whose
    run_dirs begin with the <cv_id>-cv directory that receives cv.json)."""
    written = []
    for m in models:
        dirs = [Path(d) for d in run_dirs[m]]
        cv_dir = dirs.pop(0) if splits[m][0].fold else None  # a cross-validation: its cv.json directory first
        base = {"paper": paper.id, "model": m, "profile": profile, "seed": seed, "dataset": dataset_name,
                "config": cfgs[m]}
        done = []
        for split, run_dir in zip(splits[m], dirs):
            info = {**base, **({"fold": {"cv_id": cv_dir.name.removesuffix("-cv"), **split.fold}} if cv_dir else {})}
            rank0, run_hw = is_rank0(), hw
            if resume:
                recorded = json.loads((run_dir / "run.json").read_text())  # a resumed run keeps its own recipe ...
                _check_resume(recorded, info, dataset, run_dir)
                info = recorded
                run_hw = {**hw, "precision": info.get("precision", hw["precision"])}  # ... and precision
            else:
                info |= {"precision": hw["precision"], "data_fingerprint": dataset.fingerprint,
                         "started_with": software()["git_sha"]}  # the code a resume must continue with
                if rank0:
                    write_json_atomic(run_dir / "run.json", info)
            with run_lock(run_dir) if rank0 else contextlib.nullcontext():
                path = _run_one(paper, info, dataset, run_dir, split, resume=resume, **run_hw)
            if path:
                done.append(path)
        if cv_dir and done:  # rank 0 only
            summary = cv_summary([json.loads(p.read_text()) for p in done])
            write_json_atomic(cv_dir / "cv.json", {**summary, "cv_id": cv_dir.name.removesuffix("-cv"),
                                                   "runs": [p.parent.name for p in done]})
        written += done
    return written


def _check_resume(recorded: dict, requested: dict, dataset, run_dir: Path) -> None:
    """A resume continues the run as it was started: a different seed, profile, recipe or dataset is refused."""
    def refuse(what):
        raise UserError(f"--resume: {run_dir} was started with {what}; a resumed run keeps what it was started "
                        "with. Repeat the original command with --resume, or start a new run without it.")

    for key in ("seed", "profile"):
        if recorded.get(key) != requested[key]:
            refuse(f"{key} {recorded.get(key)}, not {requested[key]}")
    if not same_recipe(recorded.get("config") or {}, requested["config"]):
        diff = sorted(k for k in set(recorded["config"]) | set(requested["config"])
                      if recorded["config"].get(k, DEFAULTS.get(k)) != requested["config"].get(k, DEFAULTS.get(k)))
        refuse("another recipe (" + ", ".join(f"{k}={recorded['config'].get(k, DEFAULTS.get(k))!r}, now "
                                              f"{requested['config'].get(k, DEFAULTS.get(k))!r}" for k in diff) + ")")
    if recorded.get("data_fingerprint", dataset.fingerprint) != dataset.fingerprint:
        refuse(f"the dataset with fingerprint {recorded['data_fingerprint']}, not this one ({dataset.fingerprint})")


def _new_cv_dirs(out: Path, paper: str, model: str, seed: int, k: int, launch: str | None = None) -> list[Path]:
    """<cv_id>-cv (the summary) and <cv_id>-f1 ... -fK (one run each), siblings under <out>/runs/<paper>/<model>."""
    if launch:  # the ranks of one torchrun/srun launch share them
        cv_dir = out / "runs" / paper / model / f"{launch}-s{seed}-cv"
        cv_dir.mkdir(parents=True, exist_ok=True)
    else:
        cv_dir = new_run_dir(out, paper, model, seed, suffix="-cv")  # exclusive: a concurrent run draws another id
    cv_id = cv_dir.name.removesuffix("-cv")
    dirs = [cv_dir] + [cv_dir.parent / f"{cv_id}-f{i}" for i in range(1, k + 1)]
    for d in dirs[1:]:
        d.mkdir(exist_ok=bool(launch))
    return dirs


def _sync_batchnorm(accelerator: str, devices, num_nodes: int) -> bool:
    """BatchNorm over the global batch (SyncBatchNorm) when several GPUs share it; PyTorch has no CPU SyncBatchNorm,
    so DDP on CPUs normalises over each rank's share (recorded in the budget)."""
    gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    several = num_nodes > 1 or devices == "auto" or (isinstance(devices, int) and devices > 1)
    return gpu and several


def _cluster_plugins() -> list:
    """Under SLURM, Lightning's own requeue (an hpc_ckpt_*.ckpt that later runs would silently load) is off:
    fer-bench resumes from its run directory's checkpoints instead (`fer-bench reproduce` under sbatch --requeue)."""
    from lightning.pytorch.plugins.environments import SLURMEnvironment

    return [SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else []


def _last_epoch_metrics(trainer, module, dm, best, last_path: Path, selected: dict) -> dict:
    """The test splits of the weights after the last epoch (what papers that report their final epoch measured),
    beside the selected checkpoint's; the same numbers when the last epoch is the one selected."""
    match = re.search(r"best-(\d+)\.ckpt$", best.best_model_path or "")
    epoch = trainer.current_epoch
    if match and int(match.group(1)) + 1 == epoch or not last_path.is_file():
        return {"epoch": epoch, "same_as_selected": True, "splits": selected}
    trainer.test(module, datamodule=dm, ckpt_path=str(last_path), verbose=False)
    return {"epoch": epoch, "same_as_selected": False, "splits": module.test_results}


def _budget(paper, model, profile, cfg, epochs_done, dataset_name, dataset, trainer) -> dict:
    """fer_bench.config.budget, plus what the recipe cannot show: a partial dataset, DDP BatchNorm on CPUs."""
    b = config.budget(paper, model, profile, cfg, epochs_done, dataset_name)
    reasons = b["reasons"] + dataset.not_official() + _ddp_reasons(trainer)
    return {"full": not reasons, "reasons": reasons}


_DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS)


class RunInterrupted(UserError):
    """A run that stopped before it completed (SIGTERM, Ctrl-C, a full disk); its metrics.json says 'interrupted'.
    How to continue depends on the command: `run` repeats itself with --resume, `reproduce` just repeats itself."""

    def __init__(self, what: str, resumable: bool):
        self.what, self.resumable = what, resumable
        super().__init__(self.advice("the same command plus --resume"))

    def advice(self, how: str) -> str:
        return self.what + (f" Continue it with {how}." if self.resumable else " Then run the command again.")


def _disk_full(e: OSError, run_dir: Path, last_path: Path) -> RunInterrupted:
    """A run that could not write its results (full disk, quota, file-size limit, read-only). Checkpoints are
    written in the run directory itself (AtomicCheckpointIO, never via $TMPDIR), so the full disk is --out's; the
    partial one is removed, so only complete checkpoints remain."""
    for part in (run_dir / "checkpoints").glob(".*.tmp"):
        part.unlink(missing_ok=True)
    return RunInterrupted(f"Cannot write to {run_dir} ({e.strerror}). Free some space (or choose --out on another "
                          "disk).", resumable=last_path.is_file())


def _time_limit(trainer, run_dir: Path) -> TimeLimitReached:
    return TimeLimitReached(f"Stopped at the time limit after {trainer.current_epoch} epoch(s); the checkpoint is in "
                            f"{run_dir / 'checkpoints'}.")


def _run_one(paper, info, dataset, run_dir: Path, split: protocols.Split, *, resume, max_time, accelerator, devices,
             num_nodes, strategy, precision, deterministic, progress, checkpoint_every_s=None,
             deadline=None) -> Path | None:
    m, cfg, seed, profile = info["model"], info["config"], info["seed"], info["profile"]
    L.seed_everything(seed, workers=True, verbose=False)
    dm = FERDataModule(dataset, cfg, seed, split)
    dm.setup()
    net = paper.build(m, cfg)
    module = FERClassifier(net, cfg, dm.norm, seed=seed, test_names=dm.split_names)
    best = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best-{epoch:03d}", monitor=cfg["monitor"],
                           mode="max" if cfg["monitor"] == "val/acc" else "min", save_top_k=1,
                           auto_insert_metric_name=False, save_weights_only=True)
    last_path = run_dir / "checkpoints" / "last.ckpt"
    timer, sigterm = _TrainTimer(), _SigtermFlag()
    ex = execution(accelerator, deterministic)
    safepoints = _Safepoints(last_path, checkpoint_every_s, deadline, timer, sigterm, ex["checkpoint_every_epoch"])
    # resumable state at every epoch end (CPU) or by wall-clock time and at the end (GPU), and inside long epochs
    last = _LastCheckpoint(dirpath=run_dir / "checkpoints", filename="last", save_top_k=1, monitor=None,
                           enable_version_counter=False, safepoints=safepoints)
    keep_log = _KeepLog(run_dir / "logs" / "metrics.csv") if resume else None
    trainer = L.Trainer(
        accelerator=accelerator, devices=devices, num_nodes=num_nodes, strategy=strategy, precision=precision,
        max_epochs=cfg["epochs"], max_time=max_time, deterministic=deterministic or None, benchmark=ex["benchmark"],
        logger=CSVLogger(run_dir, name="", version="logs"),
        callbacks=[best, last, timer, sigterm, safepoints, *([keep_log] if keep_log else [])],
        use_distributed_sampler=False,  # FERDataModule shards itself, without padding the test sets
        enable_progress_bar=progress, enable_model_summary=False, num_sanity_val_steps=0,
        log_every_n_steps=ex["log_every_n_steps"], default_root_dir=run_dir, plugins=[*_cluster_plugins(), AtomicCheckpointIO()],
        sync_batchnorm=_sync_batchnorm(accelerator, devices, num_nodes))
    status, stop = "completed", None  # stop: what the command raises once metrics.json records the stop
    splits, last_epoch, eval_s = {}, None, 0.0
    try:
        trainer.fit(module, datamodule=dm, ckpt_path=str(last_path) if resume else None)
        if trainer.interrupted or sigterm.shared(trainer):
            status = "interrupted"
        elif deadline is not None and time.time() >= deadline:
            status, stop = "interrupted", _time_limit(trainer, run_dir)  # the evaluation comes on resume
        else:
            t0 = time.perf_counter()
            trainer.test(module, datamodule=dm, ckpt_path=best.best_model_path or None, verbose=False)
            splits = module.test_results
            last_epoch = _last_epoch_metrics(trainer, module, dm, best, last_path, splits)
            eval_s = time.perf_counter() - t0
            if sigterm.shared(trainer):
                status = "interrupted"
    except TimeLimitReached:
        status, stop = "interrupted", _time_limit(trainer, run_dir)
    except (KeyboardInterrupt, SystemExit, _Signalled):  # Ctrl-C (Lightning exits), SIGTERM (_SigtermFlag), in fit
        status = "interrupted"  # or test
    except OSError as e:
        if e.errno not in _DISK_FULL:
            raise
        status, stop = "interrupted", _disk_full(e, run_dir, last_path)
    finally:
        if keep_log is not None and trainer.is_global_zero:
            keep_log.put_back()
    if trainer.interrupted:
        status = "interrupted"
    if status != "completed":
        splits, last_epoch = {}, None
    epochs_done = trainer.current_epoch  # epochs whose training finished
    if not trainer.is_global_zero:
        if status == "interrupted":
            raise stop or UserError("Run interrupted on another rank.")
        return None
    match = re.search(r"best-(\d+)\.ckpt$", best.best_model_path or "")
    result = {
        "schema": SCHEMA, "paper": info["paper"], "model": m, "profile": profile, "protocol": split.protocol,
        "seed": seed, "run_id": run_dir.name, "status": status,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),  # UTC; of a repeated seed the latest counts
        "epochs_planned": cfg["epochs"], "epochs_completed": epochs_done,
        "best_epoch": int(match.group(1)) + 1 if match else None,  # 1-based, like epochs_completed
        "selected_on": split.selected_on,
        **({"protocol_note": split.note} if split.note else {}),
        **({"fold": info["fold"]} if "fold" in info else {}),
        **({"leak_check": {"excluded": dm.leaked, "rule": "a test image with an exact (identical pixels) or near "
                           "(equal 64-bit dHash) duplicate in Training is left out of <split>_unleaked; see "
                           "`fer-bench data audit`"}} if dm.leaked else {}),
        "budget": _budget(paper, m, profile, cfg, epochs_done, info.get("dataset", "fer2013"), dataset, trainer),
        "splits": splits,
        **({"last_epoch": last_epoch} if last_epoch else {}),
        "timing": {"train_s": round(timer.seconds, 3),
                   "train_img_per_s": round(timer.images / timer.seconds, 2) if timer.seconds else None,
                   "eval_s": round(eval_s, 3)},
        "hardware": {"accelerator": "cuda" if trainer.strategy.root_device.type == "cuda" else
                     trainer.strategy.root_device.type,
                     "device_name": device_name(trainer.strategy.root_device.type),
                     "devices": trainer.num_devices, "num_nodes": trainer.num_nodes,
                     "precision": str(trainer.precision)},
        # how it executed (not the recipe): compile_mode, whether the network ran compiled, and why not
        "execution": {**module.execution, "cudnn_benchmark": bool(ex["benchmark"]),
                      "checkpoint_every_epoch": ex["checkpoint_every_epoch"]},
        "software": software(),
        "dataset": {"name": getattr(dataset, "name", "fer2013"), "format": dataset.format,
                    "fingerprint": dataset.fingerprint, "n": len(dataset.labels)},
        "config": cfg,
    }
    try:
        path = write_metrics(run_dir, result)
    except OSError as e:  # the disk filled up before, or just now: nothing half-written stays (atomic writes)
        if e.errno not in _DISK_FULL:
            raise
        raise (stop if isinstance(stop, RunInterrupted) else _disk_full(e, run_dir, last_path)) from None
    if stop is not None:
        raise stop
    if status == "interrupted":
        raise RunInterrupted(f"Run interrupted after {epochs_done} epoch(s); {path} records it as 'interrupted' and "
                             f"the last checkpoint is in {run_dir / 'checkpoints'}.", resumable=last_path.is_file())
    return path

