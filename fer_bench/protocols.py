"""Protocols: which images a run trains on, selects its checkpoint on, and reports.

A protocol turns a dataset into one or more :class:`Split` objects, index tensors into the dataset; the runner trains
one run per split, so every protocol goes through the same loop:

- canonical (FER-2013's official splits): one split. Train on Training, select on PublicTest, report PrivateTest
  and PublicTest.
- paper (a paper's own FER-2013 subsets, e.g. miao's 28,000 / 3,500): one split. Train on a seeded subset of
  Training, select on and report a seeded subset of PrivateTest (the selection those papers make); PublicTest is
  reported too and never selected on.
- k-fold cross-validation (a dataset without official splits, e.g. JAFFE): k splits. Each trains on the other
  folds, selects on and reports its own fold, and also reports its training images, unaugmented.

Subsets are drawn with ``split_seed``, never with the run's seed: every seed of a study sees the same images.
What cuts a budget (``train_subset``, ``val_subset``) is applied by the data module, not here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .data import SPLITS
from .errors import UserError

FOLDS_BY = ("expression", "subject")


@dataclass(frozen=True)
class Split:
    """The images of one run, as indices into the dataset. ``tests`` names the test dataloaders in order;
    ``selected_on`` is the split whose images select the checkpoint. When ``selects_on_reported``, ``val`` is
    exactly ``tests[selected_on]`` (the paper's own protocol, cross-validation), so a ``val_subset`` never applies."""
    protocol: str  # the name metrics.json records: canonical, paper, 5-fold, 5-fold-subject
    train: torch.Tensor
    val: torch.Tensor
    tests: dict[str, torch.Tensor]
    selected_on: str
    selects_on_reported: bool
    note: str = ""  # a sentence for the reader of metrics.json (protocol_note)
    fold: dict | None = field(default=None)  # index, of, by, split_seed, test_n, test_subjects


def _indices(data, split: str) -> torch.Tensor:
    return torch.nonzero(data.splits == SPLITS.index(split)).flatten()


def _seeded_subset(idx: torch.Tensor, n: int, g: torch.Generator, key: str, split: str) -> torch.Tensor:
    """``n`` of the indices, drawn by ``g`` (all of them when n is 0)."""
    if not n:
        return idx
    if n > len(idx):
        raise UserError(f"{key}={n}, but {split} has only {len(idx)} images: --set {key}=N with N <= {len(idx)} "
                        "(0 = all).")
    return idx[torch.randperm(len(idx), generator=g)[:n]]


def canonical(data) -> Split:
    public = _indices(data, "PublicTest")
    return Split("canonical", _indices(data, "Training"), public,
                 {"PrivateTest": _indices(data, "PrivateTest"), "PublicTest": public}, "PublicTest", False)


def paper_subsets(data, train_size: int, test_size: int, split_seed: int) -> Split:
    g = torch.Generator().manual_seed(split_seed)
    train = _seeded_subset(_indices(data, "Training"), train_size, g, "paper_train_size", "Training")
    private = _seeded_subset(_indices(data, "PrivateTest"), test_size, g, "paper_test_size", "PrivateTest")
    of = lambda n: f"a seeded {n:,}" if n else "all"  # noqa: E731
    note = (f"The paper's own protocol, not the canonical one: trained on {of(train_size)} of Training; the checkpoint "
            f"is selected on, and reported on, {of(test_size)} of PrivateTest (split_seed {split_seed}). It selects on "
            "the test set, as the paper does, so PrivateTest is optimistic; PublicTest (all of it) was never used "
            "for selection.")
    return Split("paper", train, private, {"PrivateTest": private, "PublicTest": _indices(data, "PublicTest")},
                 "PrivateTest", True, note)


def make_folds(labels: torch.Tensor, k: int, by: str = "expression", groups: torch.Tensor | None = None,
               seed: int = 0) -> list[torch.Tensor]:
    """The test indices of each of ``k`` folds (ascending); every image is in exactly one test fold.

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


def cross_validation(data, k: int, by: str, split_seed: int, monitor: str = "val/acc") -> list[Split]:
    """One split per fold: train on the other folds, select on and report the fold, report the training images."""
    name = f"{k}-fold" + ("-subject" if by == "subject" else "")
    how = "stratified by expression" if by == "expression" else "subject-independent"
    splits = []
    for i, test in enumerate(make_folds(data.labels, k, by, data.subjects, split_seed), start=1):
        in_test = torch.zeros(len(data.labels), dtype=torch.bool)
        in_test[test] = True
        train = torch.nonzero(~in_test).flatten()
        subjects = sorted({data.subject_names[s] for s in data.subjects[test].tolist()})
        note = (f"Fold {i} of a {k}-fold cross-validation ({how}, split_seed {split_seed}). The checkpoint with the "
                f"best {monitor} on this fold's test images is kept: selection on the test set, as the paper does, so "
                "'test' is optimistic. 'train' is the fold's training images, unaugmented.")
        fold = {"index": i, "of": k, "by": by, "split_seed": split_seed, "test_n": len(test),
                "test_subjects": subjects}
        splits.append(Split(name, train, test, {"test": test, "train": train}, "test", True, note, fold))
    return splits


def splits(data, cfg: dict, folds: int = 0) -> list[Split]:
    """The splits of a run of recipe ``cfg`` on ``data``: ``folds`` > 0 cross-validates (datasets without official
    splits), else FER-2013's canonical protocol or the paper's own subsets (``cfg['protocol']``)."""
    if folds:
        return cross_validation(data, folds, cfg["folds_by"], cfg["split_seed"], cfg["monitor"])
    if cfg["protocol"] == "paper":
        return [paper_subsets(data, cfg["paper_train_size"], cfg["paper_test_size"], cfg["split_seed"])]
    return [canonical(data)]


def reported(cfg: dict) -> tuple[list[str], str]:
    """The test splits a FER-2013 run of recipe ``cfg`` reports and the split it selects its checkpoint on, known
    before any data is loaded (a plan asks which claims a run will answer): as :func:`canonical` and
    :func:`paper_subsets` build them."""
    if cfg["protocol"] == "paper":
        return ["PrivateTest", "PublicTest"], "PrivateTest"
    return ["PrivateTest", "PublicTest"], "PublicTest"
