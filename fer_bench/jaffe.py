"""JAFFE (Lyons et al. 1998), read from the original files the user supplies, and k-fold splits.

JAFFE may not be redistributed, so fer-bench ships none of it: point ``--data`` (or
``$FER_BENCH_JAFFE``) at the folder of the original release. Its 213 images are 256x256
grayscale TIFFs (some stored as palette images with a gray palette) named
``SUBJECT.EXPRn.ID.tiff``, e.g. ``KA.AN1.39.tiff``: 10 subjects, expression codes
AN DI FE HA SA SU NE. Every image is decoded to 8-bit gray, resized to 48x48 and labelled in
the FER-2013 order (0 angry ... 6 neutral), so every network and the shared datamodule apply
unchanged.

JAFFE has no official split: it is evaluated by k-fold cross-validation (:func:`make_folds`),
stratified by expression or subject-independent (no subject in both train and test of a fold).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .data import CLASSES, SIZE
from .errors import DataError, UserError

# expression code of the file name -> FER-2013 label (fer_bench.data.CLASSES)
CODES = {"AN": 0, "DI": 1, "FE": 2, "HA": 3, "SA": 4, "SU": 5, "NE": 6}
NAME = re.compile(r"^(?P<subject>[A-Za-z]{2})\.(?P<code>[A-Za-z]{2})(?P<take>\d+)\.(?P<id>\d+)\.tiff?$", re.I)
FOLDS_BY = ("expression", "subject")


@dataclass(frozen=True)
class JAFFE:
    images: torch.Tensor  # N x 48 x 48, uint8
    labels: torch.Tensor  # N, int64, index into fer_bench.data.CLASSES
    subjects: torch.Tensor  # N, int64, index into subject_names
    subject_names: tuple[str, ...]  # e.g. ("KA", "KL", ...), sorted
    files: tuple[str, ...]  # file names, in the order of the tensors (sorted)
    fingerprint: str  # hash of the decoded pixels, labels and subjects
    format: str = "tiff"
    name: str = "jaffe"

    def not_official(self) -> list[str]:  # JAFFE has no official split to differ from: cross-validated
        return []

    def check_classes(self) -> None:  # the folds are stratified or subject-wise over all 213 images
        pass


def resolve_jaffe_path(path: str | os.PathLike | None) -> Path:
    """--data, else $FER_BENCH_JAFFE, else ./data/jaffe ($FER_BENCH_DATA names FER-2013, not JAFFE)."""
    return Path(path or os.environ.get("FER_BENCH_JAFFE") or "data/jaffe").expanduser()


def _tiff_files(root: Path) -> list[Path]:
    if root.is_file():
        raise DataError(f"{root} is a file: give the folder that holds the JAFFE .tiff files "
                        "(e.g. jaffedbase/).")
    if not root.is_dir():
        raise DataError(f"JAFFE not found at {root}. JAFFE cannot be shipped with fer-bench: obtain it from its "
                        "authors (https://zenodo.org/record/3451524) and pass the folder of its .tiff files with "
                        "--data PATH or $FER_BENCH_JAFFE.")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in (".tif", ".tiff")
                   and not p.name.startswith("."))
    if not files:
        raise DataError(f"No .tiff files under {root}. Point --data at the folder of the original JAFFE release, "
                        "whose files are named like KA.AN1.39.tiff.")
    return files


def parse_name(name: str) -> tuple[str, int]:
    """``KA.AN1.39.tiff`` -> ("KA", 0): subject and FER-2013 label; DataError for other names."""
    m = NAME.match(name)
    if not m or m["code"].upper() not in CODES:
        raise DataError(f"{name}: JAFFE files are named SUBJECT.EXPRn.ID.tiff, e.g. KA.AN1.39.tiff, with EXPR one of "
                        f"{' '.join(CODES)}. Rename the file back to its original name, or move it out of the "
                        "JAFFE folder.")
    return m["subject"].upper(), CODES[m["code"].upper()]


def read_image(path: Path) -> np.ndarray:
    """One JAFFE file -> 48 x 48 uint8 gray. Palette TIFFs are mapped through their palette."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            gray = img.convert("L")  # 'P' (gray palette), 'RGB', 'I;16' ... -> 8-bit luminance
            gray = gray.resize((SIZE, SIZE), Image.Resampling.BILINEAR)  # §4.1: "unified to 48x48"
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"Cannot decode {path} ({reason}). Replace it with the original JAFFE file, or remove "
                        "it from the folder.") from None
    return np.asarray(gray, dtype=np.uint8)


def load_jaffe(path: str | os.PathLike | None = None) -> JAFFE:
    """Read every ``SUBJECT.EXPRn.ID.tiff`` under ``path`` (see :func:`resolve_jaffe_path`)."""
    files = _tiff_files(resolve_jaffe_path(path))
    parsed = [parse_name(f.name) for f in files]  # every name is checked before any decoding
    subject_names = tuple(sorted({s for s, _ in parsed}))
    images = np.stack([read_image(f) for f in files])
    labels = np.array([lab for _, lab in parsed], dtype=np.int64)
    subjects = np.array([subject_names.index(s) for s, _ in parsed], dtype=np.int64)
    h = hashlib.sha256()
    for a in (images, labels, subjects):
        h.update(np.ascontiguousarray(a).tobytes())
    return JAFFE(torch.from_numpy(images), torch.from_numpy(labels), torch.from_numpy(subjects), subject_names,
                 tuple(f.name for f in files), h.hexdigest()[:16])


def counts(data: JAFFE) -> dict[str, int]:
    """Images per expression, in FER-2013 label order."""
    per = torch.bincount(data.labels, minlength=len(CLASSES))
    return {c: int(n) for c, n in zip(CLASSES, per)}


# ---------------------------------------------------------------- cross-validation folds

def make_folds(labels: torch.Tensor, k: int, by: str = "expression", groups: torch.Tensor | None = None,
               seed: int = 0) -> list[torch.Tensor]:
    """The test indices of each of ``k`` folds; every image is in exactly one test fold.

    by="expression": stratified, each class's images are shuffled (seeded) and dealt round-robin,
    so every fold holds each class in proportion (counts differ by at most one).
    by="subject": subject-independent, whole subjects (``groups``) are dealt to folds, largest
    first onto the smallest fold; no subject is in both the train and the test part of a fold.
    """
    if by not in FOLDS_BY:
        raise UserError(f"folds_by={by!r}: choose one of {', '.join(FOLDS_BY)}.")
    n = len(labels)
    if k < 2:
        raise UserError(f"--folds {k}: cross-validation needs at least 2 folds.")
    if k > n:
        raise UserError(f"--folds {k}: more folds than the {n} images.")
    g = torch.Generator().manual_seed(seed)
    fold_of = torch.empty(n, dtype=torch.int64)
    if by == "expression":
        start = 0  # continue the deal where the previous class stopped, so fold sizes stay balanced too
        for c in torch.unique(labels):
            idx = torch.nonzero(labels == c).flatten()
            idx = idx[torch.randperm(len(idx), generator=g)]
            fold_of[idx] = (torch.arange(len(idx)) + start) % k
            start = (start + len(idx)) % k
    else:
        if groups is None:
            raise UserError("folds_by=subject needs the subject of every image; this dataset has none.")
        names = torch.unique(groups)
        if k > len(names):
            raise UserError(f"--folds {k} with folds_by=subject: only {len(names)} subjects, so at most "
                            f"{len(names)} subject-independent folds.")
        names = names[torch.randperm(len(names), generator=g)]  # seeded order breaks ties between equal sizes
        sizes = torch.stack([(groups == s).sum() for s in names])
        load = [0] * k
        for j in torch.argsort(sizes, descending=True, stable=True).tolist():
            f = min(range(k), key=lambda i: (load[i], i))
            fold_of[groups == names[j]] = f
            load[f] += int(sizes[j])
    return [torch.nonzero(fold_of == f).flatten() for f in range(k)]
