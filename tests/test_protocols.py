"""Protocols as objects (fer_bench.protocols): which images train, select and report; the runner's one loop."""

import hashlib

import pytest
import torch

from fer_bench import protocols
from fer_bench.config import DEFAULTS
from fer_bench.data import FER2013, load_fer2013
from fer_bench.errors import UserError
from fer_bench.jaffe import load_jaffe
from fer_bench.training import FERDataModule
from test_jaffe import write_jaffe


def _tiny() -> FER2013:
    """70 images: split s of image i is i % 3 (0 Training, 1 PublicTest, 2 PrivateTest), label i % 7."""
    n = 70
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1).expand(n, 48, 48).contiguous()
    return FER2013(images, torch.arange(n) % 7, torch.arange(n) % 3, "csv", "x" * 16)


def _sha(t: torch.Tensor) -> str:
    return hashlib.sha256(t.numpy().tobytes()).hexdigest()[:16]


def test_canonical_is_the_official_splits_and_selects_on_public_test():
    d = _tiny()
    s = protocols.canonical(d)
    assert torch.equal(s.train, torch.arange(0, 70, 3)) and torch.equal(s.val, torch.arange(1, 70, 3))
    assert list(s.tests) == ["PrivateTest", "PublicTest"]
    assert torch.equal(s.tests["PrivateTest"], torch.arange(2, 70, 3))
    assert (s.protocol, s.selected_on, s.selects_on_reported, s.note, s.fold) == ("canonical", "PublicTest", False,
                                                                                  "", None)
    (only,) = protocols.splits(d, DEFAULTS)  # the default recipe: one canonical split
    assert only.protocol == "canonical" and torch.equal(only.train, s.train)
    (paper,) = protocols.splits(d, {**DEFAULTS, "protocol": "paper", "paper_train_size": 4})
    assert paper.protocol == "paper" and len(paper.train) == 4


def test_paper_subsets_follow_split_seed_and_are_reported_where_selected():
    d = _tiny()
    a = protocols.paper_subsets(d, 10, 8, split_seed=1)
    assert len(a.train) == 10 and set(a.train.tolist()) <= set(range(0, 70, 3))
    assert a.val is a.tests["PrivateTest"] and len(a.val) == 8 and set(a.val.tolist()) <= set(range(2, 70, 3))
    assert torch.equal(a.tests["PublicTest"], torch.arange(1, 70, 3))  # whole, never selected on
    assert (a.protocol, a.selected_on, a.selects_on_reported) == ("paper", "PrivateTest", True)
    assert "a seeded 10 of Training" in a.note and "a seeded 8 of PrivateTest (split_seed 1)" in a.note
    b = protocols.paper_subsets(d, 10, 8, split_seed=2)
    assert not torch.equal(a.train, b.train)
    assert torch.equal(protocols.paper_subsets(d, 10, 8, split_seed=1).train, a.train)
    whole = protocols.paper_subsets(d, 0, 0, split_seed=1)  # 0 = all of the split
    assert len(whole.train) == 24 and len(whole.val) == 23 and "trained on all of Training" in whole.note
    with pytest.raises(UserError, match="paper_test_size=30, but PrivateTest has only 23"):
        protocols.paper_subsets(d, 0, 30, split_seed=0)


def test_a_datamodule_trains_validates_and_tests_on_exactly_its_split():
    d = _tiny()
    cfg = {**DEFAULTS, "val_subset": 5, "normalize": "dataset"}
    split = protocols.paper_subsets(d, 12, 9, split_seed=0)
    dm = FERDataModule(d, cfg, seed=0, split=split)
    dm.setup()
    assert torch.equal(dm.train_set.images, d.images[split.train]) and torch.equal(dm.train_set.labels,
                                                                                   d.labels[split.train])
    assert dm.val_set is dm.test_sets[0] and len(dm.val_set) == 9  # val_subset never cuts a reported split
    assert dm.split_names == ("PrivateTest", "PublicTest")
    assert dm.norm[0] == pytest.approx(float(d.images[split.train].float().div(255).mean()))
    canon = FERDataModule(d, cfg, seed=0)  # canonical by default: val_subset cuts PublicTest's validation only
    canon.setup()
    assert len(canon.val_set) == 5 and len(canon.test_sets[1]) == 23


def test_cross_validation_folds_partition_the_dataset(tmp_path):
    write_jaffe(tmp_path / "jaffe", takes=2)
    d = load_jaffe(tmp_path / "jaffe")
    folds = protocols.splits(d, {**DEFAULTS, "folds_by": "subject", "split_seed": 4}, folds=5)
    assert [f.fold["index"] for f in folds] == [1, 2, 3, 4, 5] and {f.protocol for f in folds} == {"5-fold-subject"}
    seen = torch.cat([f.val for f in folds])
    assert sorted(seen.tolist()) == list(range(len(d.labels)))  # every image is tested exactly once
    for f in folds:
        assert not set(f.train.tolist()) & set(f.val.tolist())
        assert len(f.train) + len(f.val) == len(d.labels)
        assert not set(d.subjects[f.train].tolist()) & set(d.subjects[f.val].tolist())  # subject-independent
        assert f.val is f.tests["test"] and f.tests["train"] is f.train and f.selected_on == "test"
        assert f.fold["test_subjects"] == sorted({d.subject_names[s] for s in d.subjects[f.val].tolist()})
        assert "best val/acc on this fold's test images" in f.note


@pytest.mark.realdata
def test_real_fer2013_protocols_keep_their_images(real_data):
    """The images of the canonical and of miao's 28,000 / 3,500 protocol, pinned: a refactor that changed which
    images a protocol draws would silently change every run that follows it."""
    d = load_fer2013(real_data)
    c = protocols.canonical(d)
    assert [_sha(c.train), _sha(c.tests["PrivateTest"]), _sha(c.tests["PublicTest"])] == [
        "b38d962d0d041a0c", "bc75c161a0053681", "5d3021590c095ac9"]
    p = protocols.paper_subsets(d, 28000, 3500, split_seed=0)
    assert (len(p.train), len(p.tests["PrivateTest"]), len(p.tests["PublicTest"])) == (28000, 3500, 3589)
    assert [_sha(p.train), _sha(p.tests["PrivateTest"])] == ["909d83e277be420e", "3055e46b5d8a7b3e"]
