"""FER-2013: both public releases, decoded once into a uint8 tensor and cached.

Releases
- image folders: ``train/<class>/Training_<id>.jpg`` and ``test/<class>/{PublicTest,PrivateTest}_<id>.jpg``;
  the file-name prefix is the official ``Usage`` column, so the three splits are rebuilt exactly.
- ``fer2013.csv`` with columns ``emotion,pixels,Usage``.

Every reader returns the same thing: images (N x 48 x 48 uint8), labels (N, int64) in one label
order (0 Angry ... 6 Neutral) and the official split of each image.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import DataError

CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")  # FER-2013 label order
SPLITS = ("Training", "PublicTest", "PrivateTest")
SIZE = 48
CACHE_VERSION = 1  # bump when the decoded representation changes


@dataclass(frozen=True)
class FER2013:
    images: torch.Tensor  # N x 48 x 48, uint8
    labels: torch.Tensor  # N, int64, index into CLASSES
    splits: torch.Tensor  # N, int64, index into SPLITS
    format: str  # "folder" or "csv"
    fingerprint: str  # hash of the decoded pixels, labels and splits (same data -> same value)

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        keep = self.splits == SPLITS.index(name)
        return self.images[keep], self.labels[keep]

    def counts(self) -> dict[str, dict[str, int]]:
        """Images per split and class, e.g. counts()["Training"]["happy"]."""
        out = {}
        for s, name in enumerate(SPLITS):
            per = torch.bincount(self.labels[self.splits == s], minlength=len(CLASSES))
            out[name] = {c: int(n) for c, n in zip(CLASSES, per)}
        return out


def resolve_data_path(path: str | os.PathLike | None) -> Path:
    """--data, else $FER_BENCH_DATA, else ./data/fer2013."""
    return Path(path or os.environ.get("FER_BENCH_DATA") or "data/fer2013").expanduser()


def detect_format(path: Path) -> tuple[str, Path]:
    """Return ("csv", file) or ("folder", root) for a path holding either FER-2013 release."""
    if path.is_file():
        if path.suffix.lower() == ".csv":
            return "csv", path
        raise DataError(f"{path} is a file but not a .csv: give the fer2013.csv file or the folder "
                        "that holds train/ and test/.")
    if path.is_dir():
        if (path / "fer2013.csv").is_file():
            return "csv", path / "fer2013.csv"
        if (path / "train").is_dir() and (path / "test").is_dir():
            return "folder", path
        raise DataError(f"{path} holds neither fer2013.csv nor train/ and test/ folders. Point --data "
                        "(or $FER_BENCH_DATA) at one FER-2013 release; the README says where to get it.")
    raise DataError(f"FER-2013 not found at {path}. Download it (see README, 'Getting FER-2013') and "
                    "pass its location with --data PATH or $FER_BENCH_DATA.")


# ---------------------------------------------------------------- readers

def _folder_files(root: Path) -> list[tuple[Path, int, int]]:
    """(file, label, split) for every image of the image-folder release, in a stable order."""
    allowed = {"train": ("Training",), "test": ("PublicTest", "PrivateTest")}
    files = []
    for part, prefixes in allowed.items():
        for cls_dir in sorted((root / part).iterdir()):
            if not cls_dir.is_dir():
                continue
            if cls_dir.name.lower() not in CLASSES:
                raise DataError(f"Unknown class folder {cls_dir}: expected one of {', '.join(CLASSES)}.")
            label = CLASSES.index(cls_dir.name.lower())
            for f in sorted(cls_dir.iterdir()):
                prefix = f.name.split("_", 1)[0]
                if prefix not in prefixes:
                    raise DataError(
                        f"{f}: file names in {part}/ must start with {' or '.join(p + '_' for p in prefixes)} "
                        "(the official Usage). Without that prefix PublicTest cannot be told from "
                        "PrivateTest: use the fer2013.csv release instead.")
                files.append((f, label, SPLITS.index(prefix)))
    if not files:
        raise DataError(f"No images found under {root}/train and {root}/test.")
    for s, name in enumerate(SPLITS):
        if not any(split == s for _, _, split in files):
            raise DataError(f"The {name} split is empty in {root}: the dataset is incomplete.")
    return files


def read_folder(root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from torchvision.io import ImageReadMode, decode_image

    files = _folder_files(root)
    images = np.empty((len(files), SIZE, SIZE), dtype=np.uint8)
    for i, (f, _, _) in enumerate(files):
        try:
            data = torch.frombuffer(bytearray(f.read_bytes()), dtype=torch.uint8)
            img = decode_image(data, mode=ImageReadMode.GRAY)
        except (OSError, RuntimeError, ValueError) as e:
            raise DataError(f"Cannot decode image {f} ({str(e).splitlines()[0] if str(e) else type(e).__name__}). "
                            "Replace or delete the file, or re-download the dataset.") from None
        if img.shape[-2:] != (SIZE, SIZE):
            raise DataError(f"{f} is {img.shape[-1]}x{img.shape[-2]}; FER-2013 images are {SIZE}x{SIZE}. "
                            "Replace it with the original file.")
        images[i] = img[0].numpy()
    labels = np.array([lab for _, lab, _ in files], dtype=np.int64)
    splits = np.array([s for _, _, s in files], dtype=np.int64)
    return images, labels, splits


def read_csv(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import pandas as pd

    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False).fillna("")
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as e:
        raise DataError(f"Cannot parse {path}: {str(e).strip()}. Re-download fer2013.csv.") from None
    missing = {"emotion", "pixels", "Usage"} - set(df.columns)
    if missing:
        raise DataError(f"{path} lacks the column(s) {', '.join(sorted(missing))}; expected the header "
                        "'emotion,pixels,Usage' of the Kaggle fer2013.csv.")
    if df.empty:
        raise DataError(f"{path} has a header but no rows.")
    images = np.empty((len(df), SIZE, SIZE), dtype=np.uint8)
    labels = np.empty(len(df), dtype=np.int64)
    splits = np.empty(len(df), dtype=np.int64)
    for i, (emotion, pixels, usage) in enumerate(zip(df.emotion, df.pixels, df.Usage)):
        line = i + 2  # 1-based, after the header
        if emotion.strip() not in {str(k) for k in range(len(CLASSES))}:
            raise DataError(f"{path}, line {line}: emotion {emotion!r} is not an integer 0-6.")
        if usage.strip() not in SPLITS:
            raise DataError(f"{path}, line {line}: Usage {usage!r} is not one of {', '.join(SPLITS)}.")
        values = pixels.split()
        if len(values) != SIZE * SIZE:
            raise DataError(f"{path}, line {line}: {len(values)} pixel values, expected {SIZE * SIZE} "
                            "(a truncated or corrupt row). Re-download fer2013.csv.")
        try:
            px = np.array(values, dtype=np.int64)
        except ValueError:
            raise DataError(f"{path}, line {line}: pixels must be integers 0-255.") from None
        if px.min() < 0 or px.max() > 255:
            raise DataError(f"{path}, line {line}: pixel values must lie in 0-255.")
        images[i] = px.reshape(SIZE, SIZE)
        labels[i] = int(emotion)
        splits[i] = SPLITS.index(usage.strip())
    for s, name in enumerate(SPLITS):
        if not (splits == s).any():
            raise DataError(f"The {name} split is empty in {path}: the file is incomplete.")
    return images, labels, splits


# ---------------------------------------------------------------- cache

def _source_key(fmt: str, src: Path) -> str:
    """Cheap key from file names, sizes and modification times: a changed source is re-read."""
    h = hashlib.sha256(f"v{CACHE_VERSION}:{fmt}:{src.resolve()}".encode())
    if fmt == "csv":
        st = src.stat()
        h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
        return h.hexdigest()[:20]
    for root, dirs, files in os.walk(src):
        dirs.sort()
        for name in sorted(files):
            st = os.stat(os.path.join(root, name))
            h.update(f"{root}/{name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


def cache_dir() -> Path:
    return Path(os.environ.get("FER_BENCH_CACHE") or Path.home() / ".cache" / "fer-bench")


def load_fer2013(path: str | os.PathLike | None = None, use_cache: bool = True) -> FER2013:
    """Load FER-2013 from either release; the decoded tensors are cached under cache_dir()."""
    fmt, src = detect_format(resolve_data_path(path))
    try:
        key = _source_key(fmt, src)
    except OSError as e:
        raise DataError(f"Cannot read {src}: {e}. Check the path and its permissions.") from None
    cached = cache_dir() / f"fer2013-{fmt}-{key}.pt"
    if use_cache and cached.is_file():
        try:
            d = torch.load(cached, weights_only=True)
            return FER2013(d["images"], d["labels"], d["splits"], fmt, d["fingerprint"])
        except Exception:  # a damaged cache is rebuilt, never trusted
            cached.unlink(missing_ok=True)
    images, labels, splits = read_csv(src) if fmt == "csv" else read_folder(src)
    h = hashlib.sha256()
    for a in (images, labels, splits):
        h.update(np.ascontiguousarray(a).tobytes())
    d = {"images": torch.from_numpy(images), "labels": torch.from_numpy(labels),
         "splits": torch.from_numpy(splits), "fingerprint": h.hexdigest()[:16]}
    if use_cache:
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_suffix(f".tmp{os.getpid()}")
            torch.save(d, tmp)
            os.replace(tmp, cached)
        except OSError:
            pass  # a read-only cache location only costs time
    return FER2013(d["images"], d["labels"], d["splits"], fmt, d["fingerprint"])
