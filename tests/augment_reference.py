"""fer_bench/augment.py as it was before its stages (git 75d05a0), frozen: tests/test_augment.py checks that the
staged pipeline returns exactly what this returned. Do not edit; do not import from the library but UserError."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from fer_bench.errors import UserError


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


def random_resized_crop(x: torch.Tensor, scale: tuple[float, float] = (0.08, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3), attempts: int = 10) -> torch.Tensor:
    """Per-image torchvision ``RandomResizedCrop`` back to the image's own size: area fraction drawn in
    ``scale``, aspect ratio log-uniform in ``ratio``, the first of ``attempts`` draws that fits the image
    (whole pixels, random position), else the whole image (torchvision's fallback for a square image)."""
    n, _, h, w = x.shape
    if n == 0:
        return x
    area = _uniform(n * attempts, scale[0], scale[1], x).view(n, attempts) * (h * w)
    r = torch.exp(_uniform(n * attempts, math.log(ratio[0]), math.log(ratio[1]), x)).view(n, attempts)
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


def random_crop(x: torch.Tensor, crop: int) -> torch.Tensor:
    """One crop x crop window per image, at a random position of its own."""
    n, size = x.shape[0], x.shape[-1]
    top = torch.randint(0, size - crop + 1, (n,), device=x.device)
    left = torch.randint(0, size - crop + 1, (n,), device=x.device)
    rows = (top[:, None] + torch.arange(crop, device=x.device))[:, :, None]  # n x crop x 1
    cols = (left[:, None] + torch.arange(crop, device=x.device))[:, None, :]  # n x 1 x crop
    return x.permute(0, 2, 3, 1)[torch.arange(n, device=x.device)[:, None, None], rows, cols].permute(0, 3, 1, 2)


def train_views(x: torch.Tensor, cfg: dict) -> torch.Tensor:
    """The training samples cut from a batch of ``input_size`` images: the images themselves, or with
    ``crop_size`` one random crop each; ``train_views=tencrop``: all ten crops of each (N*10, image-major;
    without ``crop_size`` crops of 7/8 of the side resized back, as ``tta=tencrop`` cuts them)."""
    crop = cfg.get("crop_size", 0)
    if crop > x.shape[-1]:
        raise UserError(f"crop_size={crop} is larger than input_size={x.shape[-1]}: --set crop_size=N with "
                        f"N <= input_size (0 = no cropping).")
    if cfg.get("train_views", "one") == "tencrop":
        return ten_crop_views(x, crop)
    return random_crop(x, crop) if crop else x


def ten_crop_views(x: torch.Tensor, crop: int = 0) -> torch.Tensor:
    """``ten_crop`` of side ``crop``; with crop=0, of side round(7/8 S), each resized back to S x S."""
    if crop:
        return ten_crop(x, crop)
    size = x.shape[-1]
    views = ten_crop(x, int(round(size * 7 / 8)))
    return F.interpolate(views, size=(size, size), mode="bilinear", align_corners=False)


def preprocess(x: torch.Tensor, cfg: dict, train: bool, mean: float, std: float) -> torch.Tensor:
    """uint8 N x 48 x 48 (or N x 1 x H x W) -> normalised float N x C x S x S, augmented if train.

    Geometry is augmented at the stored resolution, then resized to ``input_size`` (the
    paper's input), normalised and replicated to ``channels``. Training batches are then cut into
    the training views (``train_views``: with ``crop_size`` one random crop per image, or all ten crops,
    N*10 rows); at evaluation the whole ``input_size`` image is returned and ``fer_bench.tta`` cuts the
    network's views from it (the center crop, and the test-time views of ``tta``).
    """
    if x.dim() == 3:
        x = x.unsqueeze(1)
    x = x.float().div_(255)
    if train:
        if cfg["aug_hflip"]:
            x = random_hflip(x)
        if cfg.get("aug_resized_crop_min", 0.0) > 0:
            x = random_resized_crop(x, (cfg["aug_resized_crop_min"], cfg["aug_resized_crop_max"]))
        own_rotation = cfg.get("aug_rotation_p", 0.0) > 0  # rotation drawn apart from the other affine components
        x = random_affine(x, 0.0 if own_rotation else cfg["aug_rotation"], cfg["aug_scale"], cfg["aug_translate"],
                          cfg["aug_shear"], cfg["aug_affine_p"])
        if own_rotation:
            x = random_affine(x, rotation=cfg["aug_rotation"], p=cfg["aug_rotation_p"])
    size = cfg["input_size"]
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                          antialias=size < x.shape[-1])
    x = (x - mean) / std
    if train:
        x = train_views(x, cfg)
        if cfg["aug_erasing"] > 0:
            x = random_erasing(x, cfg["aug_erasing"])  # per view: each crop draws its own rectangle
    if cfg["channels"] != 1:
        x = x.expand(-1, cfg["channels"], -1, -1)
    return x.contiguous(memory_format=torch.channels_last if cfg["channels_last"] else torch.contiguous_format)
