"""FER-2013: both public releases, decoded once into a uint8 tensor and cached.

Releases
- image folders: ``train/<class>/Training_<id>.jpg`` and ``test/<class>/{PublicTest,PrivateTest}_<id>.jpg``;
  the file-name prefix is the official ``Usage`` column, so the three splits are rebuilt exactly.
- ``fer2013.csv`` with columns ``emotion,pixels,Usage`` (also Kaggle's ``icml_face_data.csv``, whose header is
  ``emotion, Usage, pixels``).

Every reader returns the same thing: images (N x 48 x 48 uint8), labels (N, int64) in one label
order (0 Angry ... 6 Neutral) and the official split of each image.

The decoded tensors are cached (``$FER_BENCH_CACHE``, default ``~/.cache/fer-bench``) under a key from what the
reader reads (each file's identity, size and times, symlinks followed), with a checksum of the arrays that is
verified on every load. A cache that cannot be written is skipped with a warning.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import DataError, UserError

CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")  # FER-2013 label order
SPLITS = ("Training", "PublicTest", "PrivateTest")
SIZE = 48
OFFICIAL_SIZES = {"Training": 28709, "PublicTest": 3589, "PrivateTest": 3589}  # FER-2013 as released
CACHE_VERSION = 2  # bump when the decoded representation or the cache's contents change


@dataclass(frozen=True)
class FER2013:
    images: torch.Tensor  # N x 48 x 48, uint8
    labels: torch.Tensor  # N, int64, index into CLASSES
    splits: torch.Tensor  # N, int64, index into SPLITS
    format: str  # "folder" or "csv"
    fingerprint: str  # hash of the decoded pixels, labels and splits (same data -> same value)
    name = "fer2013"  # a class constant, as JAFFE's

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

    def not_official(self) -> list[str]:
        """Why this copy is not the official release (a partial copy trains and tests on other images): budget
        reasons of every run on it."""
        sizes = {s: sum(c.values()) for s, c in self.counts().items()}
        if sizes == OFFICIAL_SIZES:
            return []
        return ["dataset " + "/".join(f"{n:,}" for n in sizes.values()) + " images (Training/PublicTest/PrivateTest), "
                "not the official 28,709/3,589/3,589"]

    def check_classes(self) -> None:
        """A copy missing a whole class in a split would report that class as 0% accuracy: refused."""
        for split, per in self.counts().items():
            missing = [c for c, n in per.items() if n == 0]
            if missing:
                raise UserError(f"The dataset's {split} split has no image of {', '.join(missing)}: a partial copy "
                                "of FER-2013. Use the complete release (all seven classes in every split).")


def resolve_data_path(path: str | os.PathLike | None) -> Path:
    """--data, else $FER_BENCH_DATA, else ./data/fer2013."""
    return Path(path or os.environ.get("FER_BENCH_DATA") or "data/fer2013").expanduser()


def detect_format(path: Path) -> tuple[str, Path]:
    """Return ("csv", file) or ("folder", root) for a path holding either FER-2013 release."""
    if path.is_file():
        if path.suffix.lower() == ".csv":
            return "csv", path
        raise DataError(f"{path} is a file but not a .csv: give the fer2013.csv file or the folder "
                        "that holds train/ and test/ (unpack a .tar.gz or .zip download first).")
    if path.is_dir():
        for name in ("fer2013.csv", "icml_face_data.csv"):
            if (path / name).is_file():
                return "csv", path / name
        if (path / "train").is_dir() and (path / "test").is_dir():
            return "folder", path
        raise DataError(f"{path} holds neither fer2013.csv nor train/ and test/ folders. Point --data "
                        "(or $FER_BENCH_DATA) at one FER-2013 release; the README says where to get it.")
    raise DataError(f"FER-2013 not found at {path}. Download it (see README, 'Getting FER-2013') and "
                    "pass its location with --data PATH or $FER_BENCH_DATA.")


# ---------------------------------------------------------------- readers

# Files that operating systems and tools drop into folders; they are never images of the release.
_NOT_DATA = {"thumbs.db", "desktop.ini"}


def _listing(folder: Path | str) -> list[os.DirEntry]:
    """The entries of ``folder`` that can be data, sorted by name: hidden entries (.DS_Store, ._* AppleDouble files,
    .ipynb_checkpoints) and Thumbs.db/desktop.ini are left out."""
    try:
        with os.scandir(folder) as it:
            return sorted((e for e in it if not e.name.startswith(".") and e.name.lower() not in _NOT_DATA),
                          key=lambda e: e.name)
    except OSError as e:
        raise DataError(f"Cannot list the folder {folder}: {e.strerror or e}. Make it readable (e.g. chmod -R u+rX "
                        f"{folder}) or copy the dataset again.") from None


def _folder_files(root: Path) -> list[tuple[os.DirEntry, int, int]]:
    """(file, label, split) for every image of the image-folder release, in a stable order."""
    allowed = {"train": ("Training",), "test": ("PublicTest", "PrivateTest")}
    files = []
    for part, prefixes in allowed.items():
        for cls_dir in _listing(root / part):
            if not cls_dir.is_dir():
                continue
            if cls_dir.name.lower() not in CLASSES:
                raise DataError(f"Unknown class folder {cls_dir.path}: expected one of {', '.join(CLASSES)}.")
            label = CLASSES.index(cls_dir.name.lower())
            for f in _listing(cls_dir.path):
                if f.is_dir():
                    raise DataError(f"{f.path} is a folder inside a class folder, which holds only images: move it "
                                    "out.")
                prefix = f.name.split("_", 1)[0]
                if prefix not in prefixes:
                    raise DataError(
                        f"{f.path}: file names in {part}/ must start with {' or '.join(p + '_' for p in prefixes)} "
                        "(the official Usage). Without that prefix PublicTest cannot be told from "
                        "PrivateTest: use the fer2013.csv release instead.")
                files.append((f, label, SPLITS.index(prefix)))
    if not files:
        raise DataError(f"No images found under {root}/train and {root}/test.")
    present = {split for _, _, split in files}
    for s, name in enumerate(SPLITS):
        if s not in present:
            raise DataError(f"The {name} split is empty in {root}: the dataset is incomplete.")
    return files


def _first_line(e: BaseException) -> str:
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def read_folder(root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from torchvision.io import ImageReadMode, decode_image

    files = _folder_files(root)
    images = np.empty((len(files), SIZE, SIZE), dtype=np.uint8)
    for i, (entry, _, _) in enumerate(files):
        f = Path(entry.path)
        try:
            data = torch.frombuffer(bytearray(f.read_bytes()), dtype=torch.uint8)
        except OSError as e:
            raise DataError(f"Cannot read {f}: {e.strerror or e}. Make it readable, or copy the dataset "
                            "again.") from None
        try:
            img = decode_image(data, mode=ImageReadMode.GRAY)
        except (RuntimeError, ValueError) as e:
            raise DataError(f"Cannot decode image {f} ({_first_line(e)}). "
                            "Replace or delete the file, or re-download the dataset.") from None
        if img.dtype == torch.uint16:  # a 16-bit PNG: sample v means v/65535, so the 8-bit value is round(v/257)
            img = torch.div(img.to(torch.int32) + 128, 257, rounding_mode="floor").to(torch.uint8)
        elif img.dtype != torch.uint8:
            raise DataError(f"{f} has {img.dtype} pixels; FER-2013 images are 8-bit grayscale. Replace it with "
                            "the original file.")
        if img.shape[-2:] != (SIZE, SIZE):
            raise DataError(f"{f} is {img.shape[-1]}x{img.shape[-2]}; FER-2013 images are {SIZE}x{SIZE}. "
                            "Replace it with the original file.")
        images[i] = img[0].numpy()
    labels = np.array([lab for _, lab, _ in files], dtype=np.int64)
    splits = np.array([s for _, _, s in files], dtype=np.int64)
    return images, labels, splits


def _bad_pixel(values: list[str]) -> str:
    for v in values:
        try:
            if 0 <= int(v) <= 255:
                continue
        except ValueError:
            pass
        return v
    return "?"


_EMOTIONS = frozenset(str(k) for k in range(len(CLASSES)))


def _parse_row(emotion: str, pixels: str, usage: str) -> tuple[np.ndarray, int, int]:
    """(48 x 48 pixels, label, split) of one CSV row; ValueError says what is wrong with it."""
    if emotion.strip() not in _EMOTIONS:
        raise ValueError(f"emotion {emotion!r} is not an integer 0-6")
    if usage.strip() not in SPLITS:
        raise ValueError(f"Usage {usage!r} is not one of {', '.join(SPLITS)}")
    values = pixels.split()
    if len(values) != SIZE * SIZE:
        raise ValueError(f"{len(values)} pixel values, expected {SIZE * SIZE} (a truncated or corrupt row); "
                         "re-download fer2013.csv")
    try:
        px = np.array(values, dtype=np.int64)
        ok = px.min() >= 0 and px.max() <= 255
    except (ValueError, OverflowError):  # not an integer, or too large even for int64
        ok = False
    if not ok:
        raise ValueError(f"pixels must be integers 0-255, found {_bad_pixel(values)[:30]!r}")
    return px.reshape(SIZE, SIZE), int(emotion), SPLITS.index(usage.strip())


def read_csv(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import pandas as pd

    try:
        with open(path, "rb") as f:
            head = f.read(4)
            if f.seek(0, os.SEEK_END):
                f.seek(-1, os.SEEK_END)
            ends_in_newline = f.read(1) in (b"\n", b"\r")
    except OSError as e:
        raise DataError(f"Cannot read {path}: {e.strerror or e}. Check the path and its permissions.") from None
    if not head:
        raise DataError(f"{path} is empty (0 bytes): the download or copy did not finish. Re-download fer2013.csv.")
    if head.startswith(b"\x1f\x8b"):
        raise DataError(f"{path} is gzip-compressed although its name ends in .csv. Decompress it "
                        f"(gunzip -c {path} > fer2013.csv) and pass the decompressed file.")
    if head.startswith(b"PK\x03\x04"):
        raise DataError(f"{path} is a zip archive although its name ends in .csv. Unzip it and pass the "
                        "fer2013.csv inside.")
    try:  # skipinitialspace: the Kaggle icml_face_data.csv writes its header as 'emotion, Usage, pixels'
        df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig", skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as e:
        cut = " The file looks truncated." if "EOF" in str(e) else ""
        raise DataError(f"Cannot parse {path}: {_first_line(e).strip()}.{cut} Re-download fer2013.csv.") from None
    df.columns = [str(c).strip() for c in df.columns]
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
        try:
            images[i], labels[i], splits[i] = _parse_row(emotion, pixels, usage)
        except ValueError as e:
            line = i + 2  # 1-based, after the header
            if i == len(df) - 1 and not ends_in_newline:
                raise DataError(f"{path} ends in the middle of line {line} ({e}): the file was cut short, e.g. by an "
                                "interrupted download or copy. Re-download fer2013.csv.") from None
            raise DataError(f"{path}, line {line}: {e}.") from None
    for s, name in enumerate(SPLITS):
        if not (splits == s).any():
            raise DataError(f"The {name} split is empty in {path}: the file is incomplete.")
    return images, labels, splits


# ---------------------------------------------------------------- cache

def _source_key(fmt: str, src: Path) -> str:
    """Cheap key from what the reader will read, without reading it: for every file (a symlink followed to the
    file it points to) its place in the dataset, device, inode, size and modification and change times."""
    lines = [f"v{CACHE_VERSION}:{fmt}:{src.resolve()}"]
    for f, label, split in [(src, 0, 0)] if fmt == "csv" else _folder_files(src):
        st = f.stat()  # a DirEntry's stat() follows symlinks too
        lines.append(f"{os.fspath(f)}:{label}:{split}:{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:"
                     f"{st.st_ctime_ns}")
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:20]


def _checksum(images, labels, splits) -> str:
    """SHA-256 of the decoded arrays; its first 16 hex digits are the dataset fingerprint."""
    h = hashlib.sha256()
    for a in (images, labels, splits):
        h.update(memoryview(np.ascontiguousarray(a)))
    return h.hexdigest()


def cache_dir() -> Path:
    return Path(os.environ.get("FER_BENCH_CACHE") or Path.home() / ".cache" / "fer-bench")


def _warn(message: str) -> None:
    print(f"fer-bench: warning: {message}", file=sys.stderr)


def _read_cache(cached: Path) -> dict | None:
    """The cached tensors, or None when there is no cache; a damaged or altered cache is deleted, never trusted."""
    try:
        if not cached.is_file():
            return None
    except OSError:
        return None
    try:
        d = torch.load(cached, weights_only=True)
        images, labels, splits = d["images"], d["labels"], d["splits"]
        if (images.dtype == torch.uint8 and images.ndim == 3 and tuple(images.shape[1:]) == (SIZE, SIZE)
                and labels.dtype == splits.dtype == torch.int64 and labels.shape == splits.shape == images.shape[:1]
                and _checksum(images.numpy(), labels.numpy(), splits.numpy()) == d["checksum"]
                and d["fingerprint"] == d["checksum"][:16]):
            return d
    except Exception:  # unreadable, truncated, not a dict of tensors, ...
        pass
    _warn(f"the dataset cache {cached} is damaged or was altered: decoding the dataset again.")
    try:
        cached.unlink(missing_ok=True)
    except OSError:
        pass
    return None


def _remove_stale_temps(cached: Path) -> None:
    """The temporary files of cache writes whose process died (SIGKILL cannot clean up after itself)."""
    for tmp in cached.parent.glob(f".{cached.name}.*.tmp"):
        pid = tmp.name[len(cached.name) + 2:].split("-", 1)[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)  # the writer still runs (or belongs to someone else): leave it
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass


def _write_cache(d: dict, cached: Path) -> None:
    """Write the cache aside and rename it into place; a cache that cannot be written (read-only or full disk) is
    skipped with a warning, and no temporary file is left behind, also on Ctrl-C."""
    tmp = None
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temps(cached)
        tmp = cached.with_name(f".{cached.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
        with open(tmp, "xb") as f:
            torch.save(d, f)  # a failed write raises RuntimeError, not OSError
        os.replace(tmp, cached)
        tmp = None
    except (OSError, RuntimeError) as e:
        why = (e.strerror or str(e)) if isinstance(e, OSError) else "write failed: is the disk full?"
        _warn(f"cannot write the dataset cache {cached} ({why}); continuing without it. Free some space or set "
              "FER_BENCH_CACHE to a writable folder to load faster next time.")
    finally:
        if tmp is not None:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass


def load_fer2013(path: str | os.PathLike | None = None, use_cache: bool = True) -> FER2013:
    """Load FER-2013 from either release; the decoded tensors are cached under cache_dir()."""
    fmt, src = detect_format(resolve_data_path(path))
    try:
        key = _source_key(fmt, src)
    except OSError as e:
        raise DataError(f"Cannot read {e.filename or src}: {e.strerror or e}. Check the path and its "
                        "permissions.") from None
    cached = cache_dir() / f"fer2013-{fmt}-{key}.pt"
    d = _read_cache(cached) if use_cache else None
    if d is None:
        images, labels, splits = read_csv(src) if fmt == "csv" else read_folder(src)
        checksum = _checksum(images, labels, splits)
        d = {"images": torch.from_numpy(images), "labels": torch.from_numpy(labels),
             "splits": torch.from_numpy(splits), "fingerprint": checksum[:16], "checksum": checksum}
        if use_cache:
            _write_cache(d, cached)
    return FER2013(d["images"], d["labels"], d["splits"], fmt, d["fingerprint"])
