"""Batched preprocessing and augmentation on whole tensors, on the training device.

torchvision.transforms.v2 draws one set of random parameters per call, so on a batch every
image would get the same flip and the same rotation. Here each image draws its own
parameters and the whole batch is warped by one ``grid_sample``: no PIL, no per-image Python.

A recipe becomes an ordered list of stages (``pipeline``): geometry at the stored 48x48, the resize to
``input_size``, normalisation, then the training views and erasing. Each stage is a small class, a callable
on an N x C x H x W batch, whose ``torchvision()`` names its per-image torchvision equivalent (what
``fer-bench bench``'s conventional pipeline runs). A new augmentation is one class and its line in ``pipeline``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torchvision.transforms as T

from .data import SIZE
from .errors import UserError


def _uniform(n: int, lo: float, hi: float, like: torch.Tensor) -> torch.Tensor:
    return torch.empty(n, device=like.device, dtype=torch.float32).uniform_(lo, hi)


# ---------------------------------------------------------------- stages, in the order pipeline() runs them

@dataclass(frozen=True)
class HFlip:
    """Each image mirrored with probability p."""
    p: float = 0.5

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        flip = torch.rand(x.shape[0], device=x.device) < self.p
        return torch.where(flip[:, None, None, None], x.flip(-1), x)

    def torchvision(self):
        return T.RandomHorizontalFlip(self.p)


@dataclass(frozen=True)
class ResizedCrop:
    """Per-image torchvision ``RandomResizedCrop`` back to the image's own size: area fraction drawn in
    ``scale``, aspect ratio log-uniform in ``ratio``, the first of ``attempts`` draws that fits the image
    (whole pixels, random position), else the whole image (torchvision's fallback for a square image)."""
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    attempts: int = 10

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        (n, _, h, w), (lo, hi), attempts = x.shape, self.ratio, self.attempts
        if n == 0:
            return x
        area = _uniform(n * attempts, self.scale[0], self.scale[1], x).view(n, attempts) * (h * w)
        r = torch.exp(_uniform(n * attempts, math.log(lo), math.log(hi), x)).view(n, attempts)
        cw, ch = torch.sqrt(area * r).round(), torch.sqrt(area / r).round()
        fits = (cw > 0) & (cw <= w) & (ch > 0) & (ch <= h)
        first = fits.float().argmax(1, keepdim=True)  # index of the first draw that fits (0 if none does)
        found = fits.any(1)
        cw = torch.where(found, cw.gather(1, first)[:, 0], float(w))
        ch = torch.where(found, ch.gather(1, first)[:, 0], float(h))
        top = (torch.rand(n, device=x.device) * (h - ch + 1)).floor()
        left = (torch.rand(n, device=x.device) * (w - cw + 1)).floor()
        theta = torch.zeros(n, 2, 3, device=x.device)  # output [-1, 1] -> the crop box, in grid units
        theta[:, 0, 0], theta[:, 0, 2] = cw / w, (2 * left + cw) / w - 1
        theta[:, 1, 1], theta[:, 1, 2] = ch / h, (2 * top + ch) / h - 1
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode="border", align_corners=False)

    def torchvision(self):
        return T.RandomResizedCrop(SIZE, scale=self.scale, ratio=self.ratio)  # geometry runs on the stored 48x48


@dataclass(frozen=True)
class Affine:
    """Per-image random rotation (+-deg), zoom (1 +- scale), translation (+- fraction of the side) and
    shear (+-deg), each image transformed with probability p; borders filled with 0."""
    rotation: float = 0.0
    scale: float = 0.0
    translate: float = 0.0
    shear: float = 0.0
    p: float = 1.0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        if n == 0 or not (self.rotation or self.scale or self.translate or self.shear) or self.p <= 0:
            return x
        a = torch.deg2rad(_uniform(n, -self.rotation, self.rotation, x))
        sh = torch.deg2rad(_uniform(n, -self.shear, self.shear, x))
        s = _uniform(n, 1 - self.scale, 1 + self.scale, x)
        t = _uniform(2 * n, -self.translate, self.translate, x).view(n, 2) * 2  # grid units span [-1, 1]
        keep = torch.rand(n, device=x.device) >= self.p  # these images stay untouched
        a, sh, t = a.masked_fill(keep, 0), sh.masked_fill(keep, 0), t.masked_fill(keep[:, None], 0)
        s = s.masked_fill(keep, 1)
        # forward map A = R(a) @ Shear(sh) @ S(s) + t; the sampling grid needs its inverse
        cos, sin, tan = torch.cos(a), torch.sin(a), torch.tan(sh)
        fwd = torch.zeros(n, 3, 3, device=x.device)
        fwd[:, 0, 0], fwd[:, 0, 1] = cos * s, (cos * tan - sin) * s
        fwd[:, 1, 0], fwd[:, 1, 1] = sin * s, (sin * tan + cos) * s
        fwd[:, :2, 2], fwd[:, 2, 2] = t, 1
        theta = torch.linalg.inv_ex(fwd).inverse[:, :2]  # no error check: no host sync on a GPU
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode="zeros", align_corners=False)

    def torchvision(self):
        t, s = self.translate, self.scale
        if t or s or self.shear:
            tf = T.RandomAffine(self.rotation, translate=(t, t) if t else None, scale=(1 - s, 1 + s) if s else None,
                                shear=self.shear or None)
        else:
            tf = T.RandomRotation(self.rotation)
        return T.RandomApply([tf], p=self.p) if self.p < 1 else tf


@dataclass(frozen=True)
class Resize:
    """To ``size`` x ``size`` (bilinear, antialiased when shrinking); images already that size pass as they are."""
    size: int

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] == self.size and x.shape[-2] == self.size:
            return x
        return F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False,
                             antialias=self.size < x.shape[-1])

    def torchvision(self):
        return T.Resize(self.size)


@dataclass(frozen=True)
class Normalize:
    """(x - mean) / std, on pixels in [0, 1]."""
    mean: float
    std: float

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def torchvision(self):
        return T.Compose([T.ToTensor(), T.Normalize([self.mean], [self.std])])  # the PIL image becomes a tensor here


@dataclass(frozen=True)
class RandomCrop:
    """One size x size window per image, at a random position of its own."""
    size: int

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        n, side, crop = x.shape[0], x.shape[-1], self.size
        top = torch.randint(0, side - crop + 1, (n,), device=x.device)
        left = torch.randint(0, side - crop + 1, (n,), device=x.device)
        rows = (top[:, None] + torch.arange(crop, device=x.device))[:, :, None]  # n x crop x 1
        cols = (left[:, None] + torch.arange(crop, device=x.device))[:, None, :]  # n x 1 x crop
        pick = x.permute(0, 2, 3, 1)[torch.arange(n, device=x.device)[:, None, None], rows, cols]
        return pick.permute(0, 3, 1, 2)

    def torchvision(self):
        return T.RandomCrop(self.size)


@dataclass(frozen=True)
class TenCrop:
    """All ten crops of each image as training samples (N*10, image-major): ``ten_crop_views`` of side ``crop``,
    or with crop=0 of 7/8 of ``size``, resized back to ``size``."""
    crop: int
    size: int

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return ten_crop_views(x, self.crop)

    def torchvision(self):
        tf = [T.TenCrop(self.crop or int(round(self.size * 7 / 8))), T.Lambda(torch.stack)]  # 10 x C x s x s
        return T.Compose(tf if self.crop else tf + [T.Resize(self.size)])


@dataclass(frozen=True)
class Erasing:
    """Per-image random erasing (Zhong et al. 2017, torchvision's defaults): one rectangle set to 0,
    drawn per view (each crop of a ten-crop draws its own)."""
    p: float = 0.5
    area: tuple[float, float] = (0.02, 0.33)
    ratio: tuple[float, float] = (0.3, 3.3)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        if n == 0 or self.p <= 0:
            return x
        ar = _uniform(n, self.area[0], self.area[1], x) * h * w
        r = torch.exp(_uniform(n, math.log(self.ratio[0]), math.log(self.ratio[1]), x))
        eh = torch.sqrt(ar * r).clamp(1, h).round()
        ew = torch.sqrt(ar / r).clamp(1, w).round()
        top = (torch.rand(n, device=x.device) * (h - eh + 1)).floor()
        left = (torch.rand(n, device=x.device) * (w - ew + 1)).floor()
        rows = torch.arange(h, device=x.device)[None, :, None]
        cols = torch.arange(w, device=x.device)[None, None, :]
        box = ((rows >= top[:, None, None]) & (rows < (top + eh)[:, None, None])
               & (cols >= left[:, None, None]) & (cols < (left + ew)[:, None, None]))
        box &= (torch.rand(n, device=x.device) < self.p)[:, None, None]
        return x.masked_fill(box[:, None], 0)

    def torchvision(self):
        return PerView(T.RandomErasing(self.p, scale=self.area, ratio=self.ratio))


class PerView:
    """A per-image torchvision transform applied to one image (C x H x W) or to each of a stack of views
    (V x C x H x W, TenCrop's), each drawing its own parameters."""

    def __init__(self, transform):
        self.transform = transform

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.transform(v) for v in x]) if x.dim() == 4 else self.transform(x)

    def __repr__(self) -> str:
        return f"PerView({self.transform!r})"


# ---------------------------------------------------------------- the recipe as stages

def pipeline(cfg: dict, train: bool = True, mean: float = 0.0, std: float = 1.0) -> list:
    """The recipe's stages in the order they run. Training: geometry at the stored resolution (flip, resized
    crop, affine warp, rotation with a probability of its own), the resize to ``input_size``, normalisation,
    then the training views (``crop_size``: one random crop per image; ``train_views=tencrop``: all ten crops,
    N*10 rows) and random erasing per view. Evaluation: the resize and normalisation only; ``fer_bench.tta``
    cuts the network's views (the center crop, the test-time views) from the whole image.
    Stages that would change nothing are left out (they would draw no random numbers either)."""
    size, crop = cfg["input_size"], cfg.get("crop_size", 0)
    stages = []
    if train:
        if cfg["aug_hflip"]:
            stages.append(HFlip())
        if cfg.get("aug_resized_crop_min", 0.0) > 0:
            stages.append(ResizedCrop((cfg["aug_resized_crop_min"], cfg["aug_resized_crop_max"])))
        own_rotation = cfg.get("aug_rotation_p", 0.0) > 0  # rotation drawn apart from the other affine components
        affine = Affine(0.0 if own_rotation else cfg["aug_rotation"], cfg["aug_scale"], cfg["aug_translate"],
                        cfg["aug_shear"], cfg["aug_affine_p"])
        if (affine.rotation or affine.scale or affine.translate or affine.shear) and affine.p > 0:
            stages.append(affine)
        if own_rotation and cfg["aug_rotation"]:
            stages.append(Affine(rotation=cfg["aug_rotation"], p=cfg["aug_rotation_p"]))
    stages += [Resize(size), Normalize(mean, std)]
    if train:
        if crop > size:
            raise UserError(f"crop_size={crop} is larger than input_size={size}: --set crop_size=N with "
                            f"N <= input_size (0 = no cropping).")
        if cfg.get("train_views", "one") == "tencrop":
            stages.append(TenCrop(crop, size))
        elif crop:
            stages.append(RandomCrop(crop))
        if cfg["aug_erasing"] > 0:
            stages.append(Erasing(cfg["aug_erasing"]))
    return stages


def preprocess(x: torch.Tensor, cfg: dict, train: bool, mean: float, std: float) -> torch.Tensor:
    """uint8 N x 48 x 48 (or N x 1 x H x W) -> normalised float N x C x S x S, augmented if train: the
    ``pipeline`` stages, then the gray channel replicated to ``channels`` (training with ``train_views=tencrop``:
    N*10 rows, an image's ten crops adjacent)."""
    if x.dim() == 3:
        x = x.unsqueeze(1)
    x = x.float().div_(255)
    for stage in pipeline(cfg, train, mean, std):
        x = stage(x)
    if cfg["channels"] != 1:
        x = x.expand(-1, cfg["channels"], -1, -1)
    return x.contiguous(memory_format=torch.channels_last if cfg["channels_last"] else torch.contiguous_format)


# ---------------------------------------------------------------- crops (also fer_bench.tta's test-time views)

def five_crop_offsets(size: int, crop: int) -> list[tuple[int, int]]:
    """(top, left) of torchvision's FiveCrop: top-left, top-right, bottom-left, bottom-right, center."""
    m, c = size - crop, int(round((size - crop) / 2.0))
    return [(0, 0), (0, m), (m, 0), (m, m), (c, c)]


def ten_crop(x: torch.Tensor, crop: int) -> torch.Tensor:
    """N x C x S x S -> N*10 x C x crop x crop, image-major (an image's ten crops are adjacent), each image's
    crops in torchvision's TenCrop order: the five crops of the image, then the five of its mirror image."""
    views = [img[..., t:t + crop, l:l + crop] for img in (x, x.flip(-1))
             for t, l in five_crop_offsets(x.shape[-1], crop)]
    return torch.stack(views, 1).flatten(0, 1)


def center_crop(x: torch.Tensor, crop: int) -> torch.Tensor:
    t, l = five_crop_offsets(x.shape[-1], crop)[4]
    return x[..., t:t + crop, l:l + crop]


def ten_crop_views(x: torch.Tensor, crop: int = 0) -> torch.Tensor:
    """``ten_crop`` of side ``crop``; with crop=0, of side round(7/8 S), each resized back to S x S."""
    if crop:
        return ten_crop(x, crop)
    size = x.shape[-1]
    views = ten_crop(x, int(round(size * 7 / 8)))
    return F.interpolate(views, size=(size, size), mode="bilinear", align_corners=False)
