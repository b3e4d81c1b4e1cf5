"""JAFFE (Lyons et al. 1998), read from the original files the user supplies.

JAFFE may not be redistributed, so fer-bench ships none of it: point ``--data`` (or
``$FER_BENCH_JAFFE``) at the folder of the original release. Its 213 images are 256x256
grayscale TIFFs (some stored as palette images with a gray palette) named
``SUBJECT.EXPRn.ID.tiff``, e.g. ``KA.AN1.39.tiff``: 10 subjects, expression codes
AN DI FE HA SA SU NE. Every image is decoded to 8-bit gray, resized to 48x48 and labelled in
the FER-2013 order (0 angry ... 6 neutral), so every network and the shared datamodule apply
unchanged.

JAFFE has no official split: it is evaluated by k-fold cross-validation
(:func:`fer_bench.protocols.cross_validation`), stratified by expression or subject-independent
(no subject in both train and test of a fold).
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
from .errors import DataError

# expression code of the file name -> FER-2013 label (fer_bench.data.CLASSES)
CODES = {"AN": 0, "DI": 1, "FE": 2, "HA": 3, "SA": 4, "SU": 5, "NE": 6}
NAME = re.compile(r"^(?P<subject>[A-Za-z]{2})\.(?P<code>[A-Za-z]{2})(?P<take>\d+)\.(?P<id>\d+)\.tiff?$", re.I)


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
