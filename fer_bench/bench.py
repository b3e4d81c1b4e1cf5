"""`fer-bench bench`: how close fer-bench's training path comes to what the hardware can do.

One process, one model, one batch size, three pipelines side by side:

1. ``pure``: a plain PyTorch loop (forward, cross-entropy, backward, the paper's optimiser step) on
   one batch of training images preprocessed once and held in memory: the upper bound;
2. ``fer_bench``: fer-bench's own path: Lightning's Trainer, FERDataModule on the real data and the
   paper's augmentation (fer_bench.augment), FERClassifier, the CSV logger, as ``fer-bench run`` trains;
3. ``conventional``: what published FER code does: torchvision ``ImageFolder`` (PIL) with per-image
   torchvision transforms of the same recipe in ``DataLoader`` worker processes, feeding loop (1).

Train and eval images/s are timed over ``steps`` batches after ``warmup`` batches (each interval from
the end of one batch to the end of the next, so data loading counts), in ``rounds`` rounds in which the
pipelines take turns; each rate is the median over the rounds. Eval is the paper's evaluation
(its test-time views included). FLOPs per image come from torch.utils.flop_counter on one batch.
Networks are built without pretrained weights (the same computation, nothing to download).
One row per model is appended to ``<out>/bench.csv`` with hardware, software and settings.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import platform
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from unittest import mock

import lightning as L
import torch
import torch.nn.functional as F
import torchvision
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from . import tta
from .augment import pipeline, preprocess
from .data import SPLITS, detect_format, load_fer2013, resolve_data_path
from .errors import UserError
from papers import get_paper
from .results import device_name, software
from .runner import default_precision, resolve_config
from .training import FERClassifier, FERDataModule, optimizers

PIPELINES = ("pure", "fer_bench", "conventional")
PRECISIONS = ("32-true", "bf16-mixed", "16-mixed")
COLUMNS = [
    "timestamp", "paper", "model", "input_size", "channels", "views_per_image", "batch_size", "eval_batch_size",
    "steps", "warmup", "rounds", "precision", "channels_last", "compile", "workers",
    *[f"{p}_{phase}_img_s" for p in PIPELINES for phase in ("train", "eval")],
    "train_ratio_fer_bench_to_pure", "eval_ratio_fer_bench_to_pure",
    "train_ratio_fer_bench_to_conventional", "eval_ratio_fer_bench_to_conventional",
    "train_gflop_per_img", "eval_gflop_per_img", "pure_train_gflop_s", "fer_bench_train_gflop_s",
    "augment_img_s", "cold_load_s", "cached_load_s", "data_format",
    "accelerator", "device", "cpu_threads", "python", "torch", "torchvision", "lightning", "fer_bench", "git_sha",
]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device, precision: str):
    if precision == "32-true":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16-mixed" else torch.float16)


class _Clock:
    """Images/s over the batches after ``warmup``: from the end of batch ``warmup`` to the end of the last."""

    def __init__(self, device: torch.device, warmup: int):
        self.device, self.warmup, self.ends, self.images = device, warmup, [], []

    def tick(self, images: int) -> None:
        _sync(self.device)
        self.ends.append(time.perf_counter())
        self.images.append(images)

    def rate(self) -> float | None:
        if len(self.ends) <= self.warmup:
            return None
        return sum(self.images[self.warmup:]) / (self.ends[-1] - self.ends[self.warmup - 1])


class _Plain:
    """The plain loop shared by pipelines 1 and 3: the paper's network and optimiser, nothing else."""

    def __init__(self, paper, model: str, cfg: dict, device: torch.device, precision: str):
        torch.manual_seed(0)
        self.net = paper.build(model, cfg).to(device)
        if cfg["channels_last"]:
            self.net = self.net.to(memory_format=torch.channels_last)
        if cfg["compile"]:
            self.net.compile()
        opt = optimizers(self.net.parameters(), cfg)
        self.opt = opt["optimizer"] if isinstance(opt, dict) else opt
        self.cfg, self.device, self.precision = cfg, device, precision
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision == "16-mixed")

    def resident(self, batches: list) -> list:
        """The pure loop's one batch, repeated, moved to the device in its memory format once: no timed step copies
        it from host memory (50 MB a step at 512x512), so `pure` stays the upper bound it is meant to be."""
        x, y = batches[0]
        return [(self._input(x), y.to(self.device))] * len(batches)

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        fmt = torch.channels_last if self.cfg["channels_last"] else torch.contiguous_format
        return x.to(self.device, non_blocking=True).contiguous(memory_format=fmt)

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        x, y = self._input(x), y.to(self.device, non_blocking=True)
        if len(y) != len(x):  # ten training views per image, adjacent
            y = y.repeat_interleave(len(x) // len(y))
        self.net.train()
        with _autocast(self.device, self.precision):
            loss = F.cross_entropy(self.net(x), y)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt)
        self.scaler.update()
        self.opt.zero_grad(set_to_none=True)

    @torch.no_grad()
    def eval_step(self, x: torch.Tensor) -> None:
        self.net.eval()
        with _autocast(self.device, self.precision):
            tta.evaluate(self.net, self._input(x), self.cfg)

    def time(self, train_batches, eval_batches, warmup: int) -> tuple[float | None, float | None]:
        rates = []
        for batches, step in ((train_batches, self.train_step), (eval_batches, lambda x, y: self.eval_step(x))):
            clock = _Clock(self.device, warmup)
            for x, y in batches:
                step(x, y)
                clock.tick(len(y))
            rates.append(clock.rate())
        return rates[0], rates[1]


def _synthetic(cfg: dict, n: int, train: bool, norm) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of ``n`` random images, preprocessed as the training or evaluation tensors are (for counting)."""
    g = torch.Generator().manual_seed(0)
    x = preprocess(torch.randint(0, 256, (n, 48, 48), dtype=torch.uint8, generator=g), cfg, train, *norm)
    return x, torch.randint(0, 7, (n,), generator=g)


def views_per_image(cfg: dict) -> int:
    """Training samples one image becomes (10 with train_views=tencrop)."""
    return len(preprocess(torch.zeros(1, 48, 48, dtype=torch.uint8), cfg, True, 0.0, 1.0))


def _in_memory(data, cfg: dict, n: int, steps: int, train: bool, norm) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``steps`` times the same batch of ``n`` Training images, preprocessed once: the pure loop's input (real
    images, so that the only difference from the other pipelines is how batches are made)."""
    x, y = data.split("Training")
    return [(preprocess(x[:n], cfg, train, *norm), y[:n])] * steps


class _OpCounter(TorchDispatchMode):
    """Counts the ATen operators dispatched: on a GPU in eager mode each is at least one kernel launch."""

    def __init__(self):
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops += 1
        return func(*args, **(kwargs or {}))


def step_costs(paper, model: str, cfg: dict, norm, n: int = 2) -> dict:
    """FLOPs per image, and ATen operators per batch, of a training step (forward and backward of the training
    views, then the optimiser step) and of an evaluation batch (forward of the test-time views)."""
    net = paper.build(model, cfg)
    opt = optimizers(net.parameters(), cfg)
    opt = opt["optimizer"] if isinstance(opt, dict) else opt
    for group in opt.param_groups:  # the multi-tensor optimiser step PyTorch picks on a GPU (on a CPU: one per tensor)
        group["foreach"] = True
    x, y = _synthetic(cfg, n, True, norm)
    y = y.repeat_interleave(len(x) // len(y))
    x_eval, _ = _synthetic(cfg, n, False, norm)

    def train():
        net.train()
        F.cross_entropy(net(x), y).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    @torch.no_grad()
    def evaluate():
        net.eval()
        tta.evaluate(net, x_eval, cfg)

    out = {}
    for phase, fn in (("train", train), ("eval", evaluate)):
        with FlopCounterMode(display=False) as flops:
            fn()
        with _OpCounter() as ops:
            fn()
        out[f"{phase}_flops_per_img"], out[f"{phase}_ops_per_batch"] = flops.get_total_flops() / n, ops.ops
    return out


class _BatchClock(Callback):
    def __init__(self, device, warmup):
        self.train, self.eval = _Clock(device, warmup), _Clock(device, warmup)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.train.tick(len(batch[1]))

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self.eval.tick(len(batch[1]))


def _fer_bench(paper, model: str, cfg: dict, data, steps: int, warmup: int, device: torch.device, precision: str):
    n = steps + warmup
    cfg = {**cfg, "train_subset": cfg["batch_size"] * n, "val_subset": cfg["eval_batch_size"] * n}
    dm = FERDataModule(data, cfg, seed=0)
    dm.setup()
    torch.manual_seed(0)
    module = FERClassifier(paper.build(model, cfg), cfg, dm.norm, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        clock = _BatchClock(device, warmup)
        trainer = L.Trainer(accelerator=device.type, devices=1, precision=precision, max_epochs=1,
                            logger=CSVLogger(tmp, name="", version="logs"), enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                            log_every_n_steps=10, callbacks=[clock])
        trainer.fit(module, datamodule=dm)
    return clock.train.rate(), clock.eval.rate()


def conventional_transforms(cfg: dict, train: bool):
    """The recipe as the usual per-image torchvision transforms (PIL, then tensors after ToTensor): the gray
    image with ``channels`` channels, then each stage of ``fer_bench.augment.pipeline``'s own torchvision
    equivalent, in the same order (an image's ten crops come out as one 10 x C x s x s tensor)."""
    T = torchvision.transforms
    return T.Compose([T.Grayscale(cfg["channels"])] + [stage.torchvision() for stage in pipeline(cfg, train, 0.5, 0.5)])


def _conventional_loaders(data_path: Path, cfg: dict, steps: int, warmup: int, workers: int, pin: bool):
    root = detect_format(data_path)[1]
    ImageFolder = torchvision.datasets.ImageFolder
    n = steps + warmup
    loaders = []
    for part, train, bs in (("train", True, cfg["batch_size"]), ("test", False, cfg["eval_batch_size"])):
        ds = ImageFolder(root / part, transform=conventional_transforms(cfg, train))
        ds = torch.utils.data.Subset(ds, torch.randperm(len(ds), generator=torch.Generator().manual_seed(0))[: bs * n])
        loaders.append(torch.utils.data.DataLoader(ds, batch_size=bs, shuffle=train, num_workers=workers,
                                                   pin_memory=pin, drop_last=train))
    return loaders


def _flat(loader):
    for x, y in loader:
        yield (x.flatten(0, 1) if x.dim() == 5 else x), y  # TenCrop: N x 10 x C x H x W -> image-major views


def augment_rate(cfg: dict, device: torch.device, n: int = 1024, repeats: int = 5) -> float:
    """Images/s of the batched training preprocessing (augmentation, resize, views) alone, on the device."""
    x = torch.randint(0, 256, (n, 48, 48), dtype=torch.uint8, device=device)
    preprocess(x, cfg, True, 0.5, 0.25)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        preprocess(x, cfg, True, 0.5, 0.25)
    _sync(device)
    return n * repeats / (time.perf_counter() - t0)


def _load_timings(path: Path) -> tuple[float, float]:
    """(cold, cached) seconds of loading FER-2013, the cold load decoding into a fresh temporary cache."""
    times = []
    with tempfile.TemporaryDirectory() as tmp, mock.patch.dict(os.environ, {"FER_BENCH_CACHE": tmp}):
        for _ in range(2):
            t0 = time.perf_counter()
            load_fer2013(path)
            times.append(time.perf_counter() - t0)
    return times[0], times[1]


def bench(paper_id: str, model: str = "all", batch_size: int | None = None, steps: int = 10, warmup: int = 2,
          precision: str | None = None, channels_last: bool | None = None, compile: bool = False,
          overrides: list[str] = (), data=None, out: str | Path = "results/bench", accelerator: str = "auto",
          workers: int | None = None, pipelines: tuple[str, ...] = PIPELINES,
          data_timings: bool = False, rounds: int = 3) -> list[dict]:
    """Benchmark one model (or all of a paper); append one row per model to ``<out>/bench.csv``; return the rows."""
    paper = get_paper(paper_id)
    models = list(paper.models) if model == "all" else [model]
    if steps < 1 or warmup < 1 or rounds < 1:
        raise UserError(f"--steps {steps} --warmup {warmup} --rounds {rounds}: time at least 1 step after at least 1 "
                        "warm-up step, in at least 1 round.")
    if batch_size is not None and batch_size < 1:
        raise UserError(f"--batch-size {batch_size}: give a positive batch size.")
    unknown = set(pipelines) - set(PIPELINES)
    if unknown or not pipelines:
        raise UserError(f"--pipelines {','.join(pipelines)}: choose among {', '.join(PIPELINES)}.")
    # built without pretrained weights: the same computation, and nothing to download
    cfgs = {m: {**resolve_config(paper_id, m, "paper", None, list(overrides)), "pretrained": False} for m in models}
    device = torch.device("cuda" if accelerator in ("gpu", "cuda") or (
        accelerator == "auto" and torch.cuda.is_available()) else "cpu")
    precision = precision or default_precision(device.type)
    if precision not in PRECISIONS:
        raise UserError(f"--precision {precision}: choose one of {', '.join(PRECISIONS)}.")
    data_path = resolve_data_path(data)
    dataset = load_fer2013(data_path)
    if "conventional" in pipelines and dataset.format != "folder":
        raise UserError(f"{data_path}: the conventional pipeline reads the image-folder release (train/<class>/...) "
                        "with torchvision's ImageFolder; give --data the folder, or --pipelines pure,fer_bench.")
    cold, cached = _load_timings(data_path) if data_timings else (None, None)
    workers = (os.cpu_count() or 1) if workers is None else workers
    n_train, n_val = (int((dataset.splits == SPLITS.index(s)).sum()) for s in ("Training", "PublicTest"))
    for m in models:
        cfg = cfgs[m]
        need = {"training": ((batch_size or cfg["batch_size"]) * (steps + warmup), n_train),
                "PublicTest": (cfg["eval_batch_size"] * (steps + warmup), n_val)}
        for split, (want, have) in need.items():
            if want > have:
                raise UserError(f"{m}: {steps} + {warmup} batches need {want} {split} images, the data has {have}: "
                                "lower --steps, --warmup, --batch-size or --set eval_batch_size.")
    out = Path(out)
    rows = []
    for m in models:
        cfg = {**cfgs[m], "compile": compile or cfgs[m]["compile"]}
        if batch_size:
            cfg["batch_size"] = batch_size
        if channels_last is not None:
            cfg["channels_last"] = channels_last
        dm = FERDataModule(dataset, cfg)
        dm.setup()
        norm = dm.norm

        def measure(pipeline: str) -> tuple[float | None, float | None]:
            if pipeline == "pure":
                plain = _Plain(paper, m, cfg, device, precision)
                return plain.time(plain.resident(_in_memory(dataset, cfg, cfg["batch_size"], steps + warmup, True, norm)),
                                  plain.resident(_in_memory(dataset, cfg, cfg["eval_batch_size"], steps + warmup, False,
                                                            norm)), warmup)
            if pipeline == "fer_bench":
                return _fer_bench(paper, m, cfg, dataset, steps, warmup, device, precision)
            train, test = _conventional_loaders(data_path, cfg, steps, warmup, workers, device.type == "cuda")
            return _Plain(paper, m, cfg, device, precision).time(_flat(train), _flat(test), warmup)

        # the pipelines take turns, round after round, so a drift of the machine's speed (a shared host) hits
        # them alike; each rate is the median over the rounds
        measured = {p: [] for p in PIPELINES if p in pipelines}
        for _ in range(rounds):
            for p in measured:
                measured[p].append(measure(p))
        rate = {p: tuple(_median([r[i] for r in runs]) for i in (0, 1)) for p, runs in measured.items()}
        costs = step_costs(paper, m, cfg, norm)
        train_flops, eval_flops = costs["train_flops_per_img"], costs["eval_flops_per_img"]
        row = {"timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"), "paper": paper_id, "model": m,
               "input_size": cfg["input_size"], "channels": cfg["channels"], "views_per_image": views_per_image(cfg),
               "batch_size": cfg["batch_size"], "eval_batch_size": cfg["eval_batch_size"], "steps": steps,
               "warmup": warmup, "rounds": rounds, "precision": precision, "channels_last": cfg["channels_last"],
               "compile": cfg["compile"], "workers": workers if "conventional" in pipelines else None}
        for p in PIPELINES:
            row[f"{p}_train_img_s"], row[f"{p}_eval_img_s"] = rate.get(p, (None, None))
        for phase in ("train", "eval"):
            for other in ("pure", "conventional"):
                a, b = row[f"fer_bench_{phase}_img_s"], row[f"{other}_{phase}_img_s"]
                row[f"{phase}_ratio_fer_bench_to_{other}"] = a / b if a and b else None
        row["train_gflop_per_img"], row["eval_gflop_per_img"] = train_flops / 1e9, eval_flops / 1e9
        for p in ("pure", "fer_bench"):
            r = row[f"{p}_train_img_s"]
            row[f"{p}_train_gflop_s"] = r * train_flops / 1e9 if r else None
        row["augment_img_s"] = augment_rate(cfg, device)
        row["cold_load_s"], row["cached_load_s"], row["data_format"] = cold, cached, dataset.format
        sw = software()
        row |= {"accelerator": device.type, "device": device_name(device.type), "cpu_threads": torch.get_num_threads(),
                "python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
                "lightning": L.__version__, "fer_bench": sw["fer_bench"], "git_sha": sw["git_sha"]}
        _append(out / "bench.csv", row)
        rows.append(row)
    return rows


# ---------------------------------------------------------------- GPU epoch-time estimates (not measurements)

GPU = "one NVIDIA H100 SXM"
GPU_PEAK_FLOPS = 989e12  # dense bf16 tensor-core peak (NVIDIA's data sheet, without sparsity)
ASSUMED_UTILISATION = 0.2  # sustained fraction of the peak on the FLOPs
ASSUMED_OP_OVERHEAD_S = 10e-6  # host time per operator launched in eager mode (Python, dispatcher, launch)
FER2013_TRAIN, FER2013_VAL = 28_709, 3_589  # official Training / PublicTest sizes


def gpu_estimates(paper_ids: list[str]) -> list[dict]:
    """Estimated epoch time of every model of these papers on one GPU, from counts alone: the FLOPs at
    ASSUMED_UTILISATION of the peak, plus ASSUMED_OP_OVERHEAD_S per operator per batch (what bounds small
    48x48 networks), for the training images and one validation pass. An estimate, not a measurement."""
    rows = []
    for pid in paper_ids:
        paper = get_paper(pid)
        for m in paper.models:
            cfg = resolve_config(pid, m, "paper", None, ["pretrained=false"])
            c = step_costs(paper, m, cfg, (0.5, 0.25))
            paper_split = cfg["protocol"] == "paper"
            n_train = cfg["paper_train_size"] if paper_split and cfg["paper_train_size"] else FER2013_TRAIN
            n_val = cfg["paper_test_size"] if paper_split and cfg["paper_test_size"] else FER2013_VAL
            flop_s = (n_train * c["train_flops_per_img"] + n_val * c["eval_flops_per_img"]) / (
                GPU_PEAK_FLOPS * ASSUMED_UTILISATION)
            launch_s = ASSUMED_OP_OVERHEAD_S * (math.ceil(n_train / cfg["batch_size"]) * c["train_ops_per_batch"]
                                                + math.ceil(n_val / cfg["eval_batch_size"]) * c["eval_ops_per_batch"])
            size = cfg["input_size"]
            rows.append({"paper": pid, "model": m, "input": f"{size}x{size}x{cfg['channels']}",
                         "views_per_image": views_per_image(cfg), "batch_size": cfg["batch_size"],
                         "train_gflop_per_img": c["train_flops_per_img"] / 1e9,
                         "eval_gflop_per_img": c["eval_flops_per_img"] / 1e9,
                         "train_ops_per_batch": c["train_ops_per_batch"], "eval_ops_per_batch": c["eval_ops_per_batch"],
                         "train_images": n_train, "val_images": n_val, "epochs": cfg["epochs"],
                         "estimated_flop_s": flop_s, "estimated_launch_s": launch_s,
                         "estimated_epoch_s": flop_s + launch_s,
                         "estimated_recipe_h": (flop_s + launch_s) * cfg["epochs"] / 3600,
                         "assumption": f"{GPU}: {ASSUMED_UTILISATION:.0%} of {GPU_PEAK_FLOPS / 1e12:.0f} TFLOP/s, "
                                       f"{ASSUMED_OP_OVERHEAD_S * 1e6:.0f} us per operator, eager, bf16"})
    return rows


def estimates_markdown(rows: list[dict]) -> str:
    head = ("Estimates from counts, not measurements (`fer-bench bench --paper all --estimate`), for "
            f"{GPU} in eager bf16: the FLOPs (torch.utils.flop_counter) at {ASSUMED_UTILISATION:.0%} of its "
            f"{GPU_PEAK_FLOPS / 1e12:.0f} TFLOP/s dense bf16 peak, plus {ASSUMED_OP_OVERHEAD_S * 1e6:.0f} us of "
            "host time per ATen operator a batch dispatches (what bounds the small 48x48 networks; torch.compile "
            "or CUDA graphs cut it), with the paper's recipe (input size, batch, training and test-time views, "
            f"epochs) on the {FER2013_TRAIN:,} training images plus a PublicTest validation per epoch.\n\n")
    lines = ["| paper / model | input | views | batch | train GFLOP/img | ops/train batch | est. epoch | epochs "
             "| est. recipe |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['paper']} / {r['model']} | {r['input']} | {r['views_per_image']} | {r['batch_size']} | "
                     f"{r['train_gflop_per_img']:.3g} | {r['train_ops_per_batch']:,} | "
                     f"{_duration(r['estimated_epoch_s'])} | {r['epochs']} | "
                     f"{_duration(r['estimated_recipe_h'] * 3600)} |")
    return head + "\n".join(lines) + "\n"


def _duration(seconds: float) -> str:
    return f"{seconds:.2g} s" if seconds < 120 else f"{seconds / 60:.0f} min" if seconds < 7200 else \
        f"{seconds / 3600:.1f} h"


def _median(values: list[float | None]) -> float | None:
    return None if any(v is None for v in values) else statistics.median(values)


def _append(path: Path, row: dict) -> None:
    """Add a row to the table at ``path`` (made if missing)."""
    old = []
    if path.is_file():
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames != COLUMNS:
                raise UserError(f"{path} has other columns than this version writes: move it aside, or pass "
                                "another --out.")
            old = list(reader)
    write_csv(path, COLUMNS, old + [row])


def write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    """Write the table atomically (a crash leaves the previous file whole); floats with 4 significant digits."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=columns)
            w.writeheader()
            w.writerows({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows)
        os.replace(tmp, path)
    except OSError as e:
        raise UserError(f"Cannot write {path}: {e.strerror}. Choose a writable --out.") from None
