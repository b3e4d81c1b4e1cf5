"""Test-time augmentation (``--set tta=...``): every paper's evaluation can average several views.

The network's plain view of an image is the whole ``input_size`` image, or its center crop when the
recipe sets ``crop_size``. Under ``tta`` the views are combined as ``tta_average`` says: ``softmax``
(the default) averages the network's probabilities and the log of that mean stands in for the logits
(so accuracy, F1 and the cross-entropy loss are those of the averaged probabilities); ``logits``
averages the raw outputs and uses the mean as the logits, as code that writes
``outputs.view(bs, ncrops, -1).sum(1) / ncrops`` does (usef-kh/fer, for nurmakhan_vgg's vggnet):

- ``hflip``: the plain view and its mirror image (2 views);
- ``tencrop``: torchvision's TenCrop, the four corner crops and the center crop of the image and of
  its mirror image (10 views), of side ``crop_size``; without ``crop_size``, of side 7/8 of the image,
  each resized back to ``input_size``.

Each image is still counted once: the views of a batch are evaluated view by view and their
probabilities averaged per image. The plain view's predictions are kept too, so metrics.json can
report both (``PlainMetrics``). With ``eval_fp32`` the evaluation runs outside the autocast that a
``*-mixed`` precision applies, i.e. in fp32 (a ``*-true`` precision keeps its weights' dtype).
"""

from __future__ import annotations

import torch
import torchmetrics
from torch import nn

from .augment import center_crop, ten_crop_views
from .errors import UserError

NUM_VIEWS = {"none": 1, "hflip": 2, "tencrop": 10}


def _crop(cfg: dict, size: int) -> int:
    crop = cfg.get("crop_size", 0)
    if crop > size:
        raise UserError(f"crop_size={crop} is larger than input_size={size}: --set crop_size=N with N <= input_size "
                        "(0 = no cropping).")
    return crop


def plain_view(x: torch.Tensor, cfg: dict) -> torch.Tensor:
    """The single view a network is evaluated on without TTA: the image, or its center crop."""
    crop = _crop(cfg, x.shape[-1])
    return center_crop(x, crop) if crop else x


def views(x: torch.Tensor, cfg: dict) -> list[torch.Tensor]:
    """The test-time views of a preprocessed batch (N x C x S x S), each N x C x s x s, for ``cfg['tta']``."""
    mode = cfg["tta"]
    if mode == "none":
        return [plain_view(x, cfg)]
    if mode == "hflip":
        v = plain_view(x, cfg)
        return [v, v.flip(-1)]
    if mode == "tencrop":
        n = x.shape[0]
        crops = ten_crop_views(x, _crop(cfg, x.shape[-1]))  # N*10, image-major
        return list(crops.unflatten(0, (n, 10)).transpose(0, 1))
    raise UserError(f"tta={mode!r}: choose one of {', '.join(NUM_VIEWS)}.")


def _plain_index(cfg: dict) -> int | None:
    """Which TTA view is the plain view itself (so it need not be evaluated twice)."""
    return {"none": 0, "hflip": 0, "tencrop": 4 if cfg.get("crop_size", 0) else None}[cfg["tta"]]


def average(logits: list[torch.Tensor], how: str = "softmax") -> torch.Tensor:
    """V tensors N x K -> N x K: the log of the views' mean softmax, or (``how="logits"``) their mean logits."""
    stacked = torch.stack([v.float() for v in logits])
    if how == "logits":
        return stacked.mean(0)
    if how == "softmax":
        return stacked.softmax(-1).mean(0).log()
    raise UserError(f"tta_average={how!r}: choose softmax or logits.")


def evaluate(model: nn.Module, x: torch.Tensor, cfg: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(plain logits, TTA logits) of a preprocessed evaluation batch; without TTA both are the plain ones."""
    if cfg.get("eval_fp32", False):  # .get: a run.json written before the key existed resumes as it was
        with torch.autocast(x.device.type, enabled=False):
            return _evaluate(model, x, cfg)
    return _evaluate(model, x, cfg)


def _evaluate(model: nn.Module, x: torch.Tensor, cfg: dict) -> tuple[torch.Tensor, torch.Tensor]:
    vs = views(x, cfg)
    fmt = torch.channels_last if cfg["channels_last"] else torch.contiguous_format
    logits = [model(v.contiguous(memory_format=fmt)) for v in vs]
    if cfg["tta"] == "none":
        return logits[0], logits[0]
    i = _plain_index(cfg)
    plain = logits[i] if i is not None else model(plain_view(x, cfg).contiguous(memory_format=fmt))
    return plain, average(logits, cfg.get("tta_average", "softmax"))


class PlainMetrics(nn.Module):
    """n, accuracy, macro F1 and loss of the plain view, recorded beside the TTA metrics."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.accuracy = torchmetrics.classification.MulticlassAccuracy(num_classes, average="micro",
                                                                       validate_args=False)
        self.macro_f1 = torchmetrics.classification.MulticlassF1Score(num_classes, average="macro", validate_args=False)
        self.loss = torchmetrics.MeanMetric()
        self.n = torchmetrics.SumMetric()

    def update(self, logits: torch.Tensor, y: torch.Tensor) -> None:
        self.accuracy.update(logits, y)
        self.macro_f1.update(logits, y)
        self.loss.update(nn.functional.cross_entropy(logits.float(), y), weight=len(y))
        self.n.update(torch.tensor(float(len(y)), device=y.device))

    def compute(self) -> dict:  # syncs across DDP ranks, like the other test metrics
        return {"n": int(self.n.compute()), "accuracy": float(self.accuracy.compute()),
                "macro_f1": float(self.macro_f1.compute()), "loss": float(self.loss.compute())}

    def reset(self) -> None:
        for m in (self.accuracy, self.macro_f1, self.loss, self.n):
            m.reset()


def plain_metrics(module: nn.Module, num_splits: int, num_classes: int) -> nn.ModuleList:
    """The module's PlainMetrics, one per test split, created on its device the first time they are needed."""
    if "test_plain" not in module._modules:
        module.test_plain = nn.ModuleList([PlainMetrics(num_classes) for _ in range(num_splits)]).to(module.device)
    return module.test_plain
