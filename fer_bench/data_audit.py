"""`fer-bench data audit`: duplicates, near-duplicates, label conflicts and blank images in FER-2013.

- exact duplicates: identical pixels (SHA-1 of the 48x48 bytes);
- near-duplicates: identical 64-bit difference hash (dHash: the image area-resized to 9x8, one bit
  per horizontal gradient sign), which survives small changes of brightness, contrast and
  compression, and are not already exact duplicates;
- label conflicts: exact duplicates with different labels;
- blank images: a constant image, or one whose pixels span fewer than ``blank_range`` levels.

Pairs are reported within and across Training, PublicTest and PrivateTest. Beside the pairs, images and groups are
counted (``image_counts``), each image or group once however many pairs it is in:
- test images (PublicTest, PrivateTest each) with an exact copy in Training, and those with only a near copy there
  (equal dHash with a Training image, no exact copy in Training); together, the images with a duplicate in
  Training that ``exclude_leaked`` leaves out;
- groups of identical images (two or more, anywhere), the images in them, and the groups whose labels conflict.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import secrets
from collections import defaultdict
from itertools import combinations
from pathlib import Path

import torch
import torch.nn.functional as F

from .data import CLASSES, SPLITS, FER2013


def dhash(images: torch.Tensor) -> torch.Tensor:
    """64-bit difference hash of each N x H x W uint8 image, as int64."""
    small = F.interpolate(images[:, None].float(), size=(8, 9), mode="area")[:, 0]
    bits = (small[:, :, 1:] > small[:, :, :-1]).reshape(len(images), 64).long()
    return (bits << torch.arange(64)).sum(1)  # bit 63 wraps to the sign: still a unique key


def _groups(keys) -> list[list[int]]:
    by_key = defaultdict(list)
    for i, k in enumerate(keys):
        by_key[k].append(i)
    return [g for g in by_key.values() if len(g) > 1]


# the keys image_counts adds to the summary, in the order `fer-bench data audit` prints them
IMAGE_COUNT_KEYS = tuple(f"{s} images with {what} in Training" for s in SPLITS[1:]
                         for what in ("a duplicate", "an exact copy", "only a near copy")) + (
    "groups of identical images", "images in groups of identical images",
    "groups of identical images with conflicting labels")


def image_counts(ds: FER2013, digests: list, hashes: list, exact: list[list[int]]) -> dict:
    """Images and groups, each counted once (the keys of IMAGE_COUNT_KEYS): ``digests`` and ``hashes`` are each
    image's SHA-1 and dHash, ``exact`` the groups of identical images."""
    splits, labels = ds.splits.tolist(), ds.labels.tolist()
    train = SPLITS.index("Training")
    train_digests = {d for d, s in zip(digests, splits) if s == train}
    train_hashes = {h for h, s in zip(hashes, splits) if s == train}
    out = {}
    for s in SPLITS[1:]:
        test = [i for i, x in enumerate(splits) if x == SPLITS.index(s)]
        exact_copy = sum(1 for i in test if digests[i] in train_digests)
        near_only = sum(1 for i in test if digests[i] not in train_digests and hashes[i] in train_hashes)
        out[f"{s} images with a duplicate in Training"] = exact_copy + near_only
        out[f"{s} images with an exact copy in Training"] = exact_copy
        out[f"{s} images with only a near copy in Training"] = near_only
    out["groups of identical images"] = len(exact)
    out["images in groups of identical images"] = sum(len(g) for g in exact)
    out["groups of identical images with conflicting labels"] = sum(1 for g in exact if len({labels[i] for i in g}) > 1)
    return out


def audit(ds: FER2013, blank_range: int = 8) -> tuple[list[dict], dict]:
    """(rows, summary): one row per pair or blank image; summary counts pairs by kind and split pair, and images and
    groups (``image_counts``)."""
    digests = [hashlib.sha1(img.numpy().tobytes()).digest() for img in ds.images]
    hashes = dhash(ds.images).tolist()
    exact = _groups(digests)
    exact_id = {i: g for g, members in enumerate(exact) for i in members}
    near = _groups(hashes)
    rows = []

    def pair(kind, a, b):
        rows.append({"kind": kind, "index_a": a, "split_a": SPLITS[ds.splits[a]], "label_a": CLASSES[ds.labels[a]],
                     "index_b": b, "split_b": SPLITS[ds.splits[b]], "label_b": CLASSES[ds.labels[b]]})

    for g in exact:
        for a, b in combinations(g, 2):
            pair("exact_duplicate", a, b)
            if ds.labels[a] != ds.labels[b]:
                pair("label_conflict", a, b)
    for g in near:
        for a, b in combinations(g, 2):
            if exact_id.get(a, -1) != exact_id.get(b, -2):  # not the same exact group
                pair("near_duplicate", a, b)
    span = ds.images.amax(dim=(1, 2)).int() - ds.images.amin(dim=(1, 2)).int()
    for i in torch.nonzero(span < blank_range).flatten().tolist():
        rows.append({"kind": "blank" if span[i] == 0 else "near_blank", "index_a": i,
                     "split_a": SPLITS[ds.splits[i]], "label_a": CLASSES[ds.labels[i]],
                     "index_b": "", "split_b": "", "label_b": ""})
    summary: dict = defaultdict(int)
    for r in rows:
        where = r["split_a"] if not r["split_b"] else "/".join(sorted({r["split_a"], r["split_b"]}))
        summary[f"{r['kind']} {where}"] += 1
        summary[r["kind"]] += 1
    summary.update(image_counts(ds, digests, hashes, exact))
    return rows, dict(sorted(summary.items()))


def _leaked(rows: list[dict]) -> set[int]:
    """Dataset indices of PublicTest/PrivateTest images that have an exact or near duplicate in Training."""
    return {r["index_a"] if r["split_b"] == "Training" else r["index_b"]
            for r in rows if r["kind"] in ("exact_duplicate", "near_duplicate")
            and (r["split_a"] == "Training") != (r["split_b"] == "Training")}


def leaked_mask(ds: FER2013) -> torch.Tensor:
    """A bool per dataset image: True for the PublicTest/PrivateTest images with an exact or near duplicate in
    Training (the images `fer-bench data audit` counts as leaked), which ``--set exclude_leaked=true`` leaves out
    of its extra evaluation."""
    mask = torch.zeros(len(ds.labels), dtype=torch.bool)
    mask[sorted(_leaked(audit(ds)[0]))] = True
    return mask


def write_audit(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["kind", "index_a", "split_a", "label_a", "index_b", "split_b", "label_b"])
        w.writeheader()
        w.writerows(rows)


def save_audit(out: Path, rows: list[dict], summary: dict) -> None:
    """OUT/pairs.csv and OUT/summary.json, both or neither: each is written aside, and both are renamed into place
    only when both are written, so a failure (full disk, Ctrl-C) leaves the previous audit whole."""
    out.mkdir(parents=True, exist_ok=True)
    tag = f"{os.getpid()}-{secrets.token_hex(4)}"
    tmps = {name: out / f".{name}.{tag}.tmp" for name in ("pairs.csv", "summary.json")}
    try:
        write_audit(rows, tmps["pairs.csv"])
        with open(tmps["summary.json"], "x") as f:
            f.write(json.dumps(summary, indent=2) + "\n")
        for name, tmp in tmps.items():
            os.replace(tmp, out / name)
    finally:
        for tmp in tmps.values():
            tmp.unlink(missing_ok=True)
