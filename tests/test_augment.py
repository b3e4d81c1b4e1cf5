"""Augmentation as an ordered pipeline of batched stages (fer_bench.augment).

The stages must return bit for bit what the code before them returned (tests/augment_reference.py, frozen), for
every registered recipe, in training and evaluation: the smoke reference values (tests/test_check.py) were measured
with that code and cannot be re-measured on every CPU kind. Each stage also names its torchvision equivalent.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import augment_reference as reference
import papers  # noqa: F401  (registers every paper)
from fer_bench import UserError
from fer_bench.augment import (Affine, Erasing, HFlip, Normalize, PerView, RandomCrop, Resize, ResizedCrop, TenCrop,
                               pipeline, preprocess)
from fer_bench.bench import conventional_transforms
from fer_bench.registry import get_paper, list_papers

STAGES = (HFlip, ResizedCrop, Affine, Resize, Normalize, RandomCrop, TenCrop, Erasing)

# the keys preprocess reads, with DEFAULTS' values (kept here so that these tests do not move with config.py)
BASE = dict(input_size=48, channels=1, channels_last=False, aug_hflip=False, aug_rotation=0.0, aug_scale=0.0,
            aug_translate=0.0, aug_shear=0.0, aug_affine_p=1.0, aug_erasing=0.0, aug_resized_crop_min=0.0,
            aug_resized_crop_max=1.0, aug_rotation_p=0.0, crop_size=0, train_views="one")

# recipes no paper has (yet), for the branches the registered ones leave out
EXTRA = {
    "own rotation only": dict(aug_rotation=10.0, aug_rotation_p=0.5),
    "own rotation of 0, shear in the warp": dict(aug_rotation_p=0.5, aug_shear=5.0, aug_affine_p=0.7),
    "warp with p=0": dict(aug_translate=0.1, aug_affine_p=0.0),
    "every warp, smaller input": dict(aug_rotation=15.0, aug_scale=0.2, aug_translate=0.1, aug_shear=5.0,
                                      aug_affine_p=0.3, input_size=40, channels=3, channels_last=True),
    "resized crop, larger input, random crop": dict(aug_resized_crop_min=0.5, input_size=64, crop_size=56),
    "ten crops without crop_size": dict(train_views="tencrop", aug_hflip=True),
    "ten crops, erased, RGB": dict(train_views="tencrop", crop_size=44, aug_erasing=0.3, channels=3,
                                   channels_last=True),
    "erasing everything": dict(aug_erasing=1.0, aug_hflip=True, channels=3),
}


def _recipes() -> dict[str, dict]:
    out = {}
    for paper_id in list_papers():
        paper = get_paper(paper_id)
        for model in paper.models:
            for profile in ("paper", "smoke"):
                out[f"{paper_id}/{model}/{profile}"] = paper.resolve(model, profile)
    assert len(out) >= 20, sorted(out)  # every model of the five papers, twice
    return out | {name: {**BASE, **kw} for name, kw in EXTRA.items()}


RECIPES = _recipes()


def _run(fn, x, cfg, train, seed):
    """fn's output and the next random numbers after it (so that both drew exactly as many)."""
    torch.manual_seed(seed)
    out = fn(x, cfg, train, 0.5, 0.25)
    return out, torch.rand(4)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_preprocess_is_bit_identical_to_the_code_before_stages(name):
    cfg = RECIPES[name]
    g = torch.Generator().manual_seed(len(name))
    batches = [torch.randint(0, 256, (6, 48, 48), dtype=torch.uint8, generator=g),
               torch.randint(0, 256, (3, 1, 56, 56), dtype=torch.uint8, generator=g)]  # N x 1 x H x W, resized
    for x in batches:
        for train in (True, False):
            for seed in (0, 1, 7):
                old, old_next = _run(reference.preprocess, x, cfg, train, seed)
                new, new_next = _run(preprocess, x, cfg, train, seed)
                assert new.dtype == old.dtype and new.stride() == old.stride(), (name, train, seed)
                assert torch.equal(new, old), (name, train, seed)
                assert torch.equal(new_next, old_next), (name, train, seed)  # the same random numbers consumed


def test_crop_larger_than_the_input_is_refused_as_before():
    cfg = {**BASE, "crop_size": 50}
    with pytest.raises(UserError, match="crop_size=50 is larger than input_size=48"):
        preprocess(torch.zeros(2, 48, 48, dtype=torch.uint8), cfg, True, 0.0, 1.0)
    assert preprocess(torch.zeros(2, 48, 48, dtype=torch.uint8), cfg, False, 0.0, 1.0).shape == (2, 1, 48, 48)


def test_vggnet_pipeline_reads_like_its_transform_code():
    cfg = get_paper("nurmakhan_vgg").resolve("vggnet", "paper")
    assert pipeline(cfg, True) == [
        HFlip(0.5),  # RandomHorizontalFlip()
        ResizedCrop((0.8, 1.2)),  # RandomResizedCrop(48, scale=(0.8, 1.2))
        Affine(translate=0.2, p=0.5),  # RandomApply([RandomAffine(0, translate=(0.2, 0.2))], p=0.5)
        Affine(rotation=10.0, p=0.5),  # RandomApply([RandomRotation(10)], p=0.5)
        Resize(48), Normalize(0.0, 1.0),
        TenCrop(40, 48),  # TenCrop(40), every crop a sample
        Erasing(0.5),  # RandomErasing() on each crop
    ]
    assert pipeline(cfg, False) == [Resize(48), Normalize(0.0, 1.0)]  # fer_bench.tta cuts the ten crops


@pytest.mark.parametrize("train", [True, False])
def test_every_stage_names_a_torchvision_equivalent_that_gives_the_same_shapes(train):
    img = Image.fromarray(torch.randint(0, 256, (48, 48), dtype=torch.uint8).numpy())
    x = torch.from_numpy(np.array(img))[None]
    seen = set()
    for name, cfg in RECIPES.items():
        stages = pipeline(cfg, train, 0.5, 0.25)
        seen |= {type(s) for s in stages}
        for stage in stages:
            tv = stage.torchvision()
            inner = tv.transform if isinstance(tv, PerView) else tv
            assert callable(tv) and type(inner).__module__.startswith("torchvision."), (name, stage, tv)
        if cfg["input_size"] > 64:
            continue  # huang's 512x512: the same stages, only slower in PIL
        ours = preprocess(x, cfg, train, 0.5, 0.25)
        theirs = conventional_transforms(cfg, train)(img)
        assert theirs.shape == (ours.shape if len(ours) > 1 else ours.shape[1:]), name
    assert seen == (set(STAGES) if train else {Resize, Normalize})  # the recipes above use every stage


def test_erasing_equivalent_draws_per_view():
    stack = torch.ones(10, 1, 40, 40)
    erased = Erasing(1.0).torchvision()(stack)
    holes = {tuple((v == 0).flatten().nonzero().flatten().tolist()) for v in erased}
    assert len(holes) > 5  # one rectangle of its own per crop, as the batched stage draws them


def test_no_host_synchronisation_in_augmentation_or_metrics(monkeypatch):
    """GPU steps must not wait for the host: the affine warp inverts without torch.linalg.inv's error check (a
    device-to-host sync), and the evaluation metrics skip torchmetrics' argument validation (another)."""
    from fer_bench import training, tta
    from fer_bench.augment import preprocess
    from papers import get_paper

    def refuse(*a, **k):
        raise AssertionError("torch.linalg.inv checks its result on the host")

    monkeypatch.setattr(torch.linalg, "inv", refuse)
    cfg = get_paper("huang_fpn").resolve("resnet50", "smoke")  # rotation, scale: the affine warp
    assert cfg["aug_rotation"] and cfg["aug_scale"]
    preprocess(torch.randint(0, 256, (4, 48, 48), dtype=torch.uint8), cfg, True, 0.5, 0.25)
    metrics = [*training._split_metrics().values(), *tta.PlainMetrics(7).children()]
    checked = [m for m in metrics if hasattr(m, "validate_args")]
    assert len(checked) == 6 and not any(m.validate_args for m in checked)
