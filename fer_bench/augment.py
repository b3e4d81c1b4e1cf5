"""Batched preprocessing and augmentation on whole tensors, on the training device.

torchvision.transforms.v2 draws one set of random parameters per call, so on a batch every
image would get the same flip and the same rotation. Here each image draws its own
parameters and the whole batch is warped by one ``grid_sample``: no PIL, no per-image Python.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _uniform(n: int, lo: float, hi: float, like: torch.Tensor) -> torch.Tensor:
    return torch.empty(n, device=like.device, dtype=torch.float32).uniform_(lo, hi)


def random_affine(x: torch.Tensor, rotation: float = 0.0, scale: float = 0.0, translate: float = 0.0,
                  shear: float = 0.0, p: float = 1.0) -> torch.Tensor:
    """Per-image random rotation (+-deg), zoom (1 +- scale), translation (+- fraction of the
    side) and shear (+-deg), each image transformed with probability p; borders filled with 0."""
    n = x.shape[0]
    if n == 0 or not (rotation or scale or translate or shear) or p <= 0:
        return x
    a = torch.deg2rad(_uniform(n, -rotation, rotation, x))
    sh = torch.deg2rad(_uniform(n, -shear, shear, x))
    s = _uniform(n, 1 - scale, 1 + scale, x)
    t = _uniform(2 * n, -translate, translate, x).view(n, 2) * 2  # grid units span [-1, 1]
    keep = torch.rand(n, device=x.device) >= p  # these images stay untouched
    a, sh, t = a.masked_fill(keep, 0), sh.masked_fill(keep, 0), t.masked_fill(keep[:, None], 0)
    s = s.masked_fill(keep, 1)
    # forward map A = R(a) @ Shear(sh) @ S(s) + t; the sampling grid needs its inverse
    cos, sin, tan = torch.cos(a), torch.sin(a), torch.tan(sh)
    fwd = torch.zeros(n, 3, 3, device=x.device)
    fwd[:, 0, 0], fwd[:, 0, 1] = cos * s, (cos * tan - sin) * s
    fwd[:, 1, 0], fwd[:, 1, 1] = sin * s, (sin * tan + cos) * s
    fwd[:, :2, 2], fwd[:, 2, 2] = t, 1
    theta = torch.linalg.inv(fwd)[:, :2]
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode="zeros", align_corners=False)


def random_hflip(x: torch.Tensor, p: float = 0.5) -> torch.Tensor:
    flip = torch.rand(x.shape[0], device=x.device) < p
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def random_erasing(x: torch.Tensor, p: float = 0.5, area: tuple[float, float] = (0.02, 0.33),
                   ratio: tuple[float, float] = (0.3, 3.3)) -> torch.Tensor:
    """Per-image random erasing (Zhong et al. 2017, torchvision's defaults): one rectangle set to 0."""
    n, _, h, w = x.shape
    if n == 0 or p <= 0:
        return x
    ar = _uniform(n, area[0], area[1], x) * h * w
    r = torch.exp(_uniform(n, math.log(ratio[0]), math.log(ratio[1]), x))
    eh = torch.sqrt(ar * r).clamp(1, h).round()
    ew = torch.sqrt(ar / r).clamp(1, w).round()
    top = (torch.rand(n, device=x.device) * (h - eh + 1)).floor()
    left = (torch.rand(n, device=x.device) * (w - ew + 1)).floor()
    rows = torch.arange(h, device=x.device)[None, :, None]
    cols = torch.arange(w, device=x.device)[None, None, :]
    box = ((rows >= top[:, None, None]) & (rows < (top + eh)[:, None, None])
           & (cols >= left[:, None, None]) & (cols < (left + ew)[:, None, None]))
    box &= (torch.rand(n, device=x.device) < p)[:, None, None]
    return x.masked_fill(box[:, None], 0)


def preprocess(x: torch.Tensor, cfg: dict, train: bool, mean: float, std: float) -> torch.Tensor:
    """uint8 N x 48 x 48 (or N x 1 x H x W) -> normalised float N x C x S x S, augmented if train.

    Geometry is augmented at the stored resolution, then resized to ``input_size`` (the
    paper's input), normalised and replicated to ``channels``.
    """
    if x.dim() == 3:
        x = x.unsqueeze(1)
    x = x.float().div_(255)
    if train:
        if cfg["aug_hflip"]:
            x = random_hflip(x)
        x = random_affine(x, cfg["aug_rotation"], cfg["aug_scale"], cfg["aug_translate"], cfg["aug_shear"],
                          cfg["aug_affine_p"])
    size = cfg["input_size"]
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                          antialias=size < x.shape[-1])
    x = (x - mean) / std
    if train and cfg["aug_erasing"] > 0:
        x = random_erasing(x, cfg["aug_erasing"])
    if cfg["channels"] != 1:
        x = x.expand(-1, cfg["channels"], -1, -1)
    return x.contiguous(memory_format=torch.channels_last if cfg["channels_last"] else torch.contiguous_format)
