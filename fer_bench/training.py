"""The shared LightningDataModule and LightningModule every paper is trained with.

Data stays a uint8 tensor; a batch is one index operation, moved to the device as uint8 and
only there turned into float, augmented and normalised (``fer_bench.augment.preprocess``). On a
GPU the whole uint8 dataset is moved there once, so no batch is copied from the host.
Evaluation batches split the images across ranks without padding, so under DDP every test
image is counted exactly once.
"""

from __future__ import annotations

import lightning as L
import torch
import torchmetrics
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn
from torch.utils.data import DataLoader, Sampler

from . import protocols, tta
from .augment import preprocess
from .data import CLASSES, FER2013, load_fer2013
from .data_audit import leaked_mask
from .errors import UserError
from .protocols import Split

EVAL_SPLITS = ("PrivateTest", "PublicTest")  # order of the test dataloaders
IMAGENET_GRAY = (0.449, 0.226)  # mean/std of ImageNet's RGB stats averaged over channels


class _Batches(Sampler):
    """Yields index tensors, one per batch. Training: reshuffled every epoch from (seed, epoch),
    this rank's share of a common permutation. Evaluation: this rank's share, in order, unpadded.
    The epoch is the one Lightning is training (the fit loop's processed-epoch count, read when iteration
    starts): a run resumed from an end-of-epoch checkpoint creates its first iterator before it advances
    trainer.current_epoch, which would replay the previous epoch's order.

    The permutation is drawn on the CPU generator (the same order on every machine) and moved to the data's device
    (``device_fn``) once per epoch; the batches are views of that one tensor. An index tensor on the host indexing
    images on a GPU is copied there with a blocking synchronisation at every step (issue 30)."""

    def __init__(self, n: int, batch_size: int, shuffle: bool, seed: int, rank: int, world: int, epoch_fn=None,
                 done_fn=None, device_fn=None):
        self.n, self.bs, self.shuffle, self.seed, self.rank, self.world = n, batch_size, shuffle, seed, rank, world
        self.epoch_fn = epoch_fn or (lambda: 0)
        self.done_fn = done_fn or (lambda: 0)  # training batches of the current epoch already trained
        self.device_fn = device_fn or (lambda: torch.device("cpu"))  # where the images are indexed
        self._resume: dict | None = None  # from a mid-epoch checkpoint (load_state_dict)

    def state_dict(self) -> dict:
        """Where training stands inside the epoch: saved in every checkpoint (Lightning asks each training loader)."""
        return {"epoch": int(self.epoch_fn()), "done": int(self.done_fn())}

    def load_state_dict(self, state: dict) -> None:
        self._resume = dict(state)

    def _indices(self) -> torch.Tensor:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch_fn())
            idx = torch.randperm(self.n, generator=g)
            idx = idx[: self.n - self.n % self.world]  # equal shares, so DDP ranks step together
        else:
            idx = torch.arange(self.n)
        return idx[self.rank :: self.world]

    def __iter__(self):
        idx = self._indices().to(self.device_fn())  # one copy per epoch, none per step
        stop = len(idx) - len(idx) % self.bs if self.shuffle and len(idx) >= self.bs else len(idx)
        batches = idx[:stop].split(self.bs) if stop else ()
        resume, self._resume = self._resume, None
        if resume and resume["epoch"] == self.epoch_fn() and 0 < resume["done"] < len(batches):
            batches = batches[resume["done"]:]  # a mid-epoch checkpoint: the same epoch order, from the next batch
        return iter(batches)

    def __len__(self) -> int:
        m = len(self._indices())
        return m // self.bs if self.shuffle and m >= self.bs else -(-m // self.bs)


class _ResumableLoader(DataLoader):
    """The training loader. Lightning saves its state_dict in every checkpoint and loads it before the first
    iteration of a resumed fit, so a run resumed from a mid-epoch checkpoint continues the epoch's batch order
    where it stopped (the sampler counts the batches Lightning finished, not those its fetcher prefetched)."""

    def state_dict(self) -> dict:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.sampler.load_state_dict(state)


class _TensorBatches(torch.utils.data.Dataset):
    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, idx: torch.Tensor):
        return self.images[idx], self.labels[idx]


class FERDataModule(L.LightningDataModule):
    """The images of one run (``split``, a fer_bench.protocols.Split; by default the protocol ``cfg`` names, which
    for FER-2013 is one split): train = split.train, val = split.val (the checkpoint is selected on it), one test
    dataloader per entry of split.tests, in order (``split_names``).

    Budget cuts (profiles only), drawn with the run's ``seed``: ``train_subset`` trains on a slice of split.train
    (the normalisation statistics still come from all of it), ``val_subset`` validates on a slice of split.val
    unless the split selects on a reported test split (then selection is on exactly the reported images).
    ``exclude_leaked`` (FER-2013): each test set is followed by "<name>_unleaked", its images that have no exact or
    near duplicate in Training (fer_bench.data_audit); ``leaked`` counts the images each one leaves out."""

    def __init__(self, data: FER2013 | str | None, cfg: dict, seed: int = 0, split: Split | None = None):
        super().__init__()
        self.data = data if hasattr(data, "images") else load_fer2013(data)
        self.cfg, self.seed = cfg, seed
        self.split = split or protocols.splits(self.data, cfg)[0]
        self.split_names = tuple(self.split.tests)
        self.leaked: dict[str, int] = {}

    def setup(self, stage=None):
        self._build()
        device = self.trainer.strategy.root_device if self.trainer is not None else None
        if device is not None and device.type == "cuda":  # the whole uint8 dataset lives on the GPU (FER-2013: 83 MB)
            for ds in {id(d): d for d in (self.train_set, self.val_set, *self.test_sets)}.values():
                ds.images, ds.labels = ds.images.to(device), ds.labels.to(device)  # batches are indexed there

    def _build(self):
        g = torch.Generator().manual_seed(self.seed)
        split, images, labels = self.split, self.data.images, self.data.labels
        self.norm = self._norm_stats(images[split.train])
        train = split.train
        if self.cfg["train_subset"]:
            train = train[torch.randperm(len(train), generator=g)[: self.cfg["train_subset"]]]
        self.train_set = _TensorBatches(images[train], labels[train])
        self.test_sets = [_TensorBatches(images[idx], labels[idx]) for idx in split.tests.values()]
        if split.selects_on_reported:
            self.val_set = self.test_sets[list(split.tests).index(split.selected_on)]
        else:
            val = split.val
            if self.cfg["val_subset"]:
                val = val[torch.randperm(len(val), generator=g)[: self.cfg["val_subset"]]]
            self.val_set = _TensorBatches(images[val], labels[val])
        self.split_names = tuple(split.tests)
        if self.cfg["exclude_leaked"]:
            if split.fold is not None:
                raise UserError("--set exclude_leaked=true applies to FER-2013's official test splits, not to "
                                "cross-validation folds.")
            if not hasattr(self, "_leaked_mask"):
                self._leaked_mask = leaked_mask(self.data)  # setup runs once per stage: audit once
            masks = {f"{name}_unleaked": (idx, self._leaked_mask[idx]) for name, idx in split.tests.items()}
            self.test_sets += [_TensorBatches(images[idx[~m]], labels[idx[~m]]) for idx, m in masks.values()]
            self.split_names += tuple(masks)
            self.leaked = {name: int(m.sum()) for name, (_, m) in masks.items()}

    def _norm_stats(self, train_images: torch.Tensor) -> tuple[float, float]:
        """(mean, std) in [0, 1] units; 'dataset' is computed on Training only, never on test."""
        kind = self.cfg["normalize"]
        if kind == "dataset":
            x = train_images.float().div(255)
            return float(x.mean()), float(x.std())
        return {"imagenet": IMAGENET_GRAY, "half": (0.5, 0.5), "none": (0.0, 1.0)}[kind]

    def _loader(self, ds, batch_size, shuffle):
        t = self.trainer
        rank, world = (t.global_rank, t.world_size) if t is not None else (0, 1)
        if len(ds) < world:
            raise UserError(f"An evaluation or training split holds {len(ds)} image(s), fewer than the {world} "
                            "processes that would share it: use fewer devices or a larger split.")
        fit = t.fit_loop if t is not None else None
        sampler = _Batches(len(ds), batch_size, shuffle, self.seed, rank, world,
                           epoch_fn=(lambda: fit.epoch_progress.current.processed) if fit else None,
                           done_fn=(lambda: fit.epoch_loop.batch_progress.current.processed) if fit else None,
                           device_fn=lambda: ds.images.device)  # read when an epoch starts: after setup's move
        pin = ds.images.device.type == "cpu" and t is not None and t.strategy.root_device.type == "cuda"
        return (_ResumableLoader if shuffle else DataLoader)(ds, sampler=sampler, batch_size=None, num_workers=0,
                                                             pin_memory=pin)

    def train_dataloader(self):
        # the recipe's batch is the global batch: under DDP each of the ranks takes its share, so the optimiser sees
        # the paper's batch size at the paper's learning rate
        world = self.trainer.world_size if self.trainer is not None else 1
        if self.cfg["batch_size"] % world:
            raise UserError(f"batch_size={self.cfg['batch_size']} cannot be shared equally by {world} processes: "
                            f"use a number of devices that divides it.")
        return self._loader(self.train_set, self.cfg["batch_size"] // world, shuffle=True)

    def val_dataloader(self):
        return self._loader(self.val_set, self.cfg["eval_batch_size"], shuffle=False)

    def test_dataloader(self):
        return [self._loader(ds, self.cfg["eval_batch_size"], shuffle=False) for ds in self.test_sets]


COMPILE_MODES = {"default": {}, "reduce-overhead": {"mode": "reduce-overhead"}}  # compile_mode -> torch.compile's


def compile_mode(cfg: dict) -> str:
    """The recipe's compile_mode (an execution key); the older compile=true is compile_mode=default."""
    mode = cfg.get("compile_mode", "none")
    return "default" if mode == "none" and cfg.get("compile") else mode


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0] if text else ''}"


def _compile_error(e: BaseException) -> bool:
    """An error of torch.compile's capture or code generation (dynamo, inductor, a failed C++ build), not of the
    model: those fall back to eager execution."""
    return type(e).__module__.startswith(("torch._dynamo", "torch._inductor"))


def _split_metrics() -> torchmetrics.MetricCollection:
    k = len(CLASSES)
    return torchmetrics.MetricCollection({
        "accuracy": torchmetrics.classification.MulticlassAccuracy(k, average="micro", validate_args=False),
        "macro_f1": torchmetrics.classification.MulticlassF1Score(k, average="macro", validate_args=False),
        "per_class_accuracy": torchmetrics.classification.MulticlassAccuracy(k, average="none", validate_args=False),
        "confusion_matrix": torchmetrics.classification.MulticlassConfusionMatrix(k, validate_args=False),
    }, compute_groups=False)


class FERClassifier(L.LightningModule):
    """Cross-entropy training of any 7-way network, with the paper's optimiser and schedule. ``test_names`` names
    the test dataloaders (FERDataModule.split_names); ``test_results`` holds their metrics by these names."""

    def __init__(self, model: nn.Module, cfg: dict, norm: tuple[float, float] = (0.0, 1.0),
                 seed: int | None = None, test_names: tuple[str, ...] = EVAL_SPLITS):
        super().__init__()
        self.model, self.cfg, self.norm, self.seed, self.test_names = model, cfg, norm, seed, tuple(test_names)
        self._plateau_metrics: dict = {}
        self.criterion = nn.CrossEntropyLoss(label_smoothing=cfg["label_smoothing"])
        self.val_acc = torchmetrics.classification.MulticlassAccuracy(len(CLASSES), average="micro",
                                                                      validate_args=False)
        self.val_loss = torchmetrics.MeanMetric()
        # the training epoch's running means, kept here (not in Lightning's log) so that checkpoints carry them
        self.train_loss_epoch = torchmetrics.MeanMetric(nan_strategy="disable")
        self.train_acc_epoch = torchmetrics.MeanMetric(nan_strategy="disable")
        self._epoch_sums: dict | None = None  # from a mid-epoch checkpoint, put back at the next training batch
        self.test_metrics = nn.ModuleList([_split_metrics() for _ in self.test_names])
        self.test_loss = nn.ModuleList([torchmetrics.MeanMetric() for _ in self.test_names])
        self.test_loss_sq = nn.ModuleList([torchmetrics.MeanMetric() for _ in self.test_names])  # per-image loss^2
        self.test_results: dict = {}
        # how the network was executed: metrics.json records it (compile_mode, whether it ran compiled, and why not)
        self.execution = {"compile_mode": compile_mode(cfg), "compiled": False, "fallback": None}
        self._checked: set[bool] = set()  # the modes (training or not) whose first compiled call succeeded

    def forward(self, x):
        return self.model(x)

    def setup(self, stage):
        if self.cfg["channels_last"]:
            self.model.to(memory_format=torch.channels_last)
        mode = self.execution["compile_mode"]
        if mode != "none" and not getattr(self, "_compiled", False):
            # dropout draws eager's random numbers (inductor has its own generator): the same draws from (seed, step)
            # whether or not the network is compiled, so a compiled run is the eager run up to floating-point order
            import torch._inductor.config as inductor_config
            inductor_config.fallback_random = True
            # in place: the state_dict keys (and so the checkpoints) stay the same
            self.model.compile(**COMPILE_MODES[mode])
            self._compiled = True
            self.execution["compiled"] = True

    def _call(self, fn, *args):
        """fn(*args), through the compiled network when there is one. torch.compile captures and builds at the first
        call in each mode (training, evaluation) and at a new batch shape: if that fails, the network runs eagerly
        from then on, the reason is logged and recorded, and the call is repeated eagerly with the random state it
        began with (so the step draws what an eager step draws)."""
        if not self.execution["compiled"]:
            return fn(*args)
        if self.execution["compile_mode"] == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()  # a new step: the graphs' previous outputs may be reused
        training = self.model.training
        if training in self._checked and training:  # training shapes never change after the first step
            return fn(*args)
        rng = torch.get_rng_state(), torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
        try:
            out = fn(*args)
        except Exception as e:
            if not _compile_error(e):
                raise
            reason = _first_line(e)
            root = e
            while (inner := getattr(root, "inner_exception", None) or root.__cause__) is not None:
                root = inner  # the backend's own error, which torch wraps ("backend='...' raised:")
            reason = (reason if root is e else f"{reason} {_first_line(root)}")[:500]
            rank_zero_warn(f"compile_mode={self.execution['compile_mode']}: the network could not be compiled "
                           f"({reason}); it runs eagerly.")
            self.model._compiled_call_impl = None  # nn.Module.compile's hook: eager from now on
            self.execution.update(compiled=False, fallback=reason)
            torch.set_rng_state(rng[0])
            if rng[1] is not None:
                torch.cuda.set_rng_state_all(rng[1])
            return fn(*args)
        self._checked.add(training)
        return out

    def on_after_batch_transfer(self, batch, dataloader_idx):
        x, y = batch
        train = self.trainer is not None and self.trainer.training
        if train and self.seed is not None:
            # before the step's first random draw: its augmentation and dropout come from (seed, step) alone, the
            # same whether or not the run was interrupted and resumed before it
            # (and the rank: DDP ranks draw different augmentation and dropout; rank 0 draws what one process would)
            torch.manual_seed(self.seed * 1_000_003 + self.trainer.global_step + self.trainer.global_rank * 2**40)
        return preprocess(x, self.cfg, train, *self.norm), y

    _EPOCH_MEANS = ("train_loss_epoch", "train_acc_epoch")

    def _save_epoch_sums(self, checkpoint) -> None:
        """Inside an epoch, the running sums of its train/loss_epoch and train/acc (over every rank: rank 0 puts them
        back on resume), so that the resumed epoch logs the means over all its batches, as an uninterrupted one does;
        averaged over the batches after the resume only, they were off (issue 29)."""
        fit = self.trainer.fit_loop
        sums = torch.stack([s for name in self._EPOCH_MEANS
                            for s in (getattr(self, name).mean_value, getattr(self, name).weight)]).double()
        sums = self.all_gather(sums)
        checkpoint["epoch_sums"] = {"epoch": fit.epoch_progress.current.processed,
                                    "batch": fit.epoch_loop.batch_progress.current.processed,
                                    "sums": (sums.sum(0) if sums.dim() > 1 else sums).tolist()}

    def on_train_batch_start(self, batch, batch_idx):
        saved, self._epoch_sums = self._epoch_sums, None
        fit = self.trainer.fit_loop
        if saved and self.trainer.is_global_zero and saved["epoch"] == fit.epoch_progress.current.processed and \
                saved["batch"] == fit.epoch_loop.batch_progress.current.processed:  # the epoch it was saved in
            for i, name in enumerate(self._EPOCH_MEANS):
                metric = getattr(self, name)
                metric.mean_value += saved["sums"][2 * i]
                metric.weight += saved["sums"][2 * i + 1]

    def on_save_checkpoint(self, checkpoint):
        epochs = self.trainer.fit_loop.epoch_progress.current
        if self.trainer.training and epochs.processed == epochs.completed:  # inside an epoch (_Safepoints)
            self._save_epoch_sums(checkpoint)
        # an end-of-epoch checkpoint is saved before Lightning steps ReduceLROnPlateau on that epoch's metrics, and
        # a run resumed from it does not replay that step: keep the metrics, on_train_start replays it
        if epochs.processed > epochs.completed:
            metrics = self.trainer.callback_metrics
            checkpoint["plateau_metrics"] = {c.monitor: float(metrics[c.monitor])
                                             for c in self.trainer.lr_scheduler_configs
                                             if c.reduce_on_plateau and c.monitor in metrics}

    def on_load_checkpoint(self, checkpoint):
        self._plateau_metrics = checkpoint.get("plateau_metrics", {})
        self._epoch_sums = checkpoint.get("epoch_sums")

    def on_train_start(self):
        for c in self.trainer.lr_scheduler_configs:
            if c.reduce_on_plateau and c.monitor in self._plateau_metrics:
                self.lr_scheduler_step(c.scheduler, self._plateau_metrics[c.monitor])
        self._plateau_metrics = {}

    def predict_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Evaluation logits of the plain view (the image, or its center ``crop_size`` crop), or under
        ``tta`` the log of the softmax averaged over the test-time views (fer_bench.tta)."""
        return tta.evaluate(self.model, x, self.cfg)[1]

    def training_step(self, batch, batch_idx):
        x, y = batch
        if len(x) != len(y):  # train_views=tencrop: each image's views are adjacent rows, each a sample
            y = y.repeat_interleave(len(x) // len(y))
        logits = self._call(self.model, x)
        loss = self.criterion(logits, y)
        # not in the progress bar: reading it every step would sync the host with a GPU at every step
        self.log("train/loss_step", loss, on_step=True, on_epoch=False, batch_size=len(y))
        # the epoch means: Lightning computes and resets the metrics at the epoch's end (names as Lightning's own).
        # The weight is made on the loss's device: a Python number would be copied there (torchmetrics'
        # torch.as_tensor), a blocking host-to-GPU copy at every step
        weight = loss.detach().new_full((), float(len(y)), dtype=torch.float32)
        self.train_loss_epoch.update(loss.detach(), weight=weight)
        self.train_acc_epoch.update((logits.argmax(-1) == y).float().mean(), weight=weight)
        self.log("train/loss_epoch", self.train_loss_epoch, on_step=False, on_epoch=True)
        self.log("train/acc", self.train_acc_epoch, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self._call(self.predict_logits, x)
        self.val_loss.update(self.criterion(logits.float(), y), weight=len(y))
        self.val_acc.update(logits, y)
        self.log("val/loss", self.val_loss, prog_bar=True, on_epoch=True, on_step=False)
        self.log("val/acc", self.val_acc, prog_bar=True, on_epoch=True, on_step=False)

    def test_step(self, batch, batch_idx, dataloader_idx=0):
        x, y = batch
        plain, logits = self._call(tta.evaluate, self.model, x, self.cfg)  # the same tensor without TTA
        per_image = nn.functional.cross_entropy(logits.float(), y, reduction="none")
        self.test_loss[dataloader_idx].update(per_image)  # means over every image of the split
        self.test_loss_sq[dataloader_idx].update(per_image ** 2)
        self.test_metrics[dataloader_idx].update(logits, y)
        if self.cfg["tta"] != "none":  # the plain view's metrics too, so TTA's effect can be read off
            tta.plain_metrics(self, len(self.test_metrics), len(CLASSES))[dataloader_idx].update(plain, y)

    def on_test_epoch_end(self):
        # compute() syncs the metric states across DDP ranks: each rank saw a disjoint share
        self.test_results = {}
        for i, (name, metrics, loss) in enumerate(zip(self.test_names, self.test_metrics, self.test_loss)):
            m = metrics.compute()
            cm = m["confusion_matrix"].long()
            mean_loss, mean_sq = float(loss.compute()), float(self.test_loss_sq[i].compute())
            self.test_results[name] = {
                "n": int(cm.sum()),
                "accuracy": float(m["accuracy"]),
                "macro_f1": float(m["macro_f1"]),
                "loss": mean_loss,
                "loss_sd": max(0.0, mean_sq - mean_loss ** 2) ** 0.5,  # per-image spread: the loss's test-set interval
                "per_class_accuracy": {c: float(a) for c, a in zip(CLASSES, m["per_class_accuracy"])},
                "confusion_matrix": cm.tolist(),
            }
            if self.cfg["tta"] != "none":  # the numbers above average the views; "plain" is the single view
                plain = tta.plain_metrics(self, len(self.test_metrics), len(CLASSES))[i]
                self.test_results[name]["tta"] = {"mode": self.cfg["tta"], "views": tta.NUM_VIEWS[self.cfg["tta"]]}
                self.test_results[name]["plain"] = plain.compute()
                plain.reset()
            metrics.reset()
            loss.reset()
            self.test_loss_sq[i].reset()

    def configure_optimizers(self):
        return optimizers(self.parameters(), self.cfg)


# the recipe's optimizer and scheduler keys name one of these small callables each (``kw``: execution only, e.g.
# fused=True, never a hyper-parameter)
OPTIMIZERS = {
    "sgd": lambda params, cfg, **kw: torch.optim.SGD(params, lr=cfg["lr"], momentum=cfg["momentum"],
                                                     nesterov=cfg["nesterov"], weight_decay=cfg["weight_decay"], **kw),
    "adam": lambda params, cfg, **kw: torch.optim.Adam(params, lr=cfg["lr"], betas=(cfg["adam_beta1"],
                                                       cfg["adam_beta2"]), eps=cfg["adam_eps"],
                                                       weight_decay=cfg["weight_decay"], **kw),
    "adamw": lambda params, cfg, **kw: torch.optim.AdamW(params, lr=cfg["lr"], betas=(cfg["adam_beta1"],
                                                         cfg["adam_beta2"]), eps=cfg["adam_eps"],
                                                         weight_decay=cfg["weight_decay"], **kw),
}
FUSED_DEVICES = ("cuda",)  # where the optimisers run fused; on CPUs the for-loop kernels of before (same numbers)


def fused_kwargs(params: list) -> dict:
    """{"fused": True} when every parameter lives on a device of FUSED_DEVICES: one kernel updates every tensor (and
    under 16-mixed the inf check of the grad scaler stays on the device), instead of a kernel per tensor and a Python
    loop. The same update rule and hyper-parameters (tests/test_training.py: equal within float tolerance)."""
    devices = {p.device.type for p in params}
    return {"fused": True} if devices and devices <= set(FUSED_DEVICES) else {}


def _plateau(opt, cfg):
    """PyTorch's ReduceLROnPlateau: the lr is multiplied by plateau_factor once plateau_monitor has not improved
    (by a relative 1e-4) for plateau_patience + 1 epochs in a row, the count restarting after each cut. Keras'
    ReduceLROnPlateau(patience=p) cuts after p such epochs: a Keras paper's p is plateau_patience = p - 1."""
    mode = "min" if cfg["plateau_monitor"] == "val/loss" else "max"
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode=mode, factor=cfg["plateau_factor"],
                                                       patience=cfg["plateau_patience"])
    return {"scheduler": sched, "monitor": cfg["plateau_monitor"]}


SCHEDULES = {  # (optimizer, recipe) -> Lightning's lr_scheduler config
    "plateau": _plateau,
    "cosine": lambda opt, cfg: {"scheduler": torch.optim.lr_scheduler.CosineAnnealingLR(
        opt, T_max=max(cfg["epochs"], 1)), "interval": "epoch"},
    "step": lambda opt, cfg: {"scheduler": torch.optim.lr_scheduler.LambdaLR(opt, lambda e: step_factor(e, cfg)),
                              "interval": "epoch"},  # step after a hold (fer_bench.training.step_factor)
}


def optimizers(params, cfg: dict):
    """The optimiser and LR schedule the recipe's ``optimizer`` and ``scheduler`` keys name."""
    params = list(params)
    opt = OPTIMIZERS[cfg["optimizer"]](params, cfg, **fused_kwargs(params))
    if cfg["scheduler"] == "none":
        return opt
    return {"optimizer": opt, "lr_scheduler": SCHEDULES[cfg["scheduler"]](opt, cfg)}


def step_factor(epoch: int, cfg: dict) -> float:
    """LR multiplier of the 'step' schedule at a 0-based epoch: constant for lr_hold epochs, then
    x step_gamma every step_size epochs counted from the end of the hold (StepLR when lr_hold=0)."""
    return cfg["step_gamma"] ** (max(0, epoch - cfg["lr_hold"]) // cfg["step_size"])
