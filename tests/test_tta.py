"""Test-time augmentation and multi-view training as runner features any paper can use."""

from __future__ import annotations

import json

import lightning as L
import pytest
import torch
import torchvision.transforms as T
from torch import nn

from conftest import cli, synthetic_arrays
from fer_bench import UserError, tta
from fer_bench.augment import ResizedCrop, preprocess, ten_crop
from fer_bench.config import DEFAULTS, apply_overrides
from fer_bench.data import FER2013
from fer_bench.training import EVAL_SPLITS, FERClassifier, FERDataModule


class Recorder(nn.Module):
    """Seven logits that depend on what the view shows (its brightness and its left-right asymmetry); every
    batch it is given is kept, so a test can count and inspect the views."""

    def __init__(self):
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        mean, asym = x.mean(dim=(1, 2, 3)), (x - x.flip(-1)).mean(dim=(1, 2, 3))
        return torch.stack([mean * (k - 3) + asym * (k % 3) for k in range(7)], 1)


def recipe(**kw) -> dict:
    return {**DEFAULTS, "channels_last": False, **kw}


def test_ten_crop_is_torchvisions_tencrop():
    x = torch.rand(3, 1, 48, 48)
    ours = ten_crop(x, 40).unflatten(0, (3, 10))  # image-major: an image's ten crops are adjacent
    for i in range(3):
        assert torch.equal(ours[i], torch.stack(T.TenCrop(40)(x[i])))


def test_tencrop_tta_averages_exactly_the_ten_crops():
    x, net = torch.rand(5, 1, 48, 48), Recorder()
    plain, logits = tta.evaluate(net, x, recipe(crop_size=40, tta="tencrop"))
    assert len(net.seen) == 10  # ten views, the center crop (the plain view) not evaluated twice
    crops = ten_crop(x, 40).unflatten(0, (5, 10))
    for k, view in enumerate(net.seen):
        assert torch.equal(view, crops[:, k])
    outs = torch.stack([Recorder()(v) for v in net.seen])  # 10 x 5 x 7
    assert torch.allclose(logits, outs.softmax(-1).mean(0).log(), atol=1e-6)
    assert torch.equal(plain, outs[4])  # TenCrop's fifth crop is the center crop
    assert torch.allclose(logits.exp().sum(-1), torch.ones(5), atol=1e-6)  # a distribution per image, not per view


def test_tencrop_without_crop_size_uses_seven_eighths_crops_and_the_whole_image_as_plain():
    x, net = torch.rand(4, 1, 48, 48), Recorder()
    plain, logits = tta.evaluate(net, x, recipe(tta="tencrop"))
    assert len(net.seen) == 11 and all(v.shape == (4, 1, 48, 48) for v in net.seen)
    assert torch.equal(net.seen[-1], x) and torch.equal(plain, Recorder()(x))
    first = torch.nn.functional.interpolate(x[:, :, :42, :42], size=(48, 48), mode="bilinear", align_corners=False)
    assert torch.allclose(net.seen[0], first)
    assert torch.allclose(logits, torch.stack([Recorder()(v) for v in net.seen[:10]]).softmax(-1).mean(0).log(),
                          atol=1e-6)


def test_hflip_tta_averages_the_plain_view_and_its_mirror_image():
    x, net = torch.rand(4, 1, 48, 48), Recorder()
    plain, logits = tta.evaluate(net, x, recipe(crop_size=40, tta="hflip"))
    assert len(net.seen) == 2 and torch.equal(net.seen[0], x[..., 4:44, 4:44])
    assert torch.equal(net.seen[1], net.seen[0].flip(-1))
    assert torch.allclose(logits, torch.stack([plain, Recorder()(net.seen[1])]).softmax(-1).mean(0).log(), atol=1e-6)


@pytest.mark.parametrize("mode", ["none", "hflip", "tencrop"])
def test_each_test_image_is_counted_once_and_plain_metrics_are_kept(mode):
    images, labels, splits = synthetic_arrays(per_class=3)  # 21 images per split
    data = FER2013(torch.from_numpy(images), torch.from_numpy(labels), torch.from_numpy(splits), "csv", "synthetic")
    cfg = recipe(crop_size=40, tta=mode, eval_batch_size=8)  # 8, 8, 5: the last batch is partial
    dm = FERDataModule(data, cfg)
    dm.setup()
    net = Recorder()
    module = FERClassifier(net, cfg, dm.norm)
    L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
              enable_checkpointing=False).test(module, datamodule=dm, verbose=False)
    views = tta.NUM_VIEWS[mode]
    assert sum(len(v) for v in net.seen) == views * 21 * len(EVAL_SPLITS)
    for split in EVAL_SPLITS:
        r = module.test_results[split]
        assert r["n"] == 21 == sum(map(sum, r["confusion_matrix"]))
        x, y = data.split(split)
        plain, logits = tta.evaluate(Recorder(), preprocess(x, cfg, False, *dm.norm), cfg)
        assert r["accuracy"] == pytest.approx((logits.argmax(-1) == y).float().mean().item())
        if mode == "none":
            assert "plain" not in r and "tta" not in r
        else:
            assert r["tta"] == {"mode": mode, "views": views}
            assert r["plain"]["n"] == 21
            assert r["plain"]["accuracy"] == pytest.approx((plain.argmax(-1) == y).float().mean().item())
            assert r["plain"]["loss"] == pytest.approx(nn.functional.cross_entropy(plain, y).item(), rel=1e-5)
            assert r["loss"] == pytest.approx(nn.functional.cross_entropy(logits, y).item(), rel=1e-5)


def test_logits_averaging_is_the_mean_of_the_raw_outputs_as_usef_kh_fer_computes_it():
    x, net = torch.rand(5, 1, 48, 48), Recorder()
    plain, logits = tta.evaluate(net, x, recipe(crop_size=40, tta="tencrop", tta_average="logits"))
    outs = torch.stack([Recorder()(v) for v in net.seen])  # 10 views x 5 images x 7
    assert torch.allclose(logits, outs.mean(0), atol=1e-6)
    fused = outs.transpose(0, 1).reshape(50, 7)  # their batch: an image's ten crops adjacent, fused into the batch
    assert torch.allclose(logits, torch.sum(fused.view(5, 10, -1), dim=1) / 10, atol=1e-6)  # utils/loops.py
    assert torch.equal(plain, outs[4])  # the plain (center-crop) view is the same under either averaging


def test_logits_and_softmax_averaging_can_disagree():
    views = [torch.tensor([[0.0, 30.0]]), torch.tensor([[2.0, 0.0]]), torch.tensor([[2.0, 0.0]])]
    mean = tta.average(views, "logits")
    assert torch.allclose(mean, torch.tensor([[4 / 3, 10.0]])) and mean.argmax().item() == 1  # one confident view
    soft = tta.average(views, "softmax").exp()
    p0 = 2 * torch.tensor([2.0, 0.0]).softmax(0)[0] / 3  # 0.587: two views out of three for class 0
    assert torch.allclose(soft, torch.tensor([[p0, 1 - p0]]), atol=1e-6) and soft.argmax().item() == 0
    assert DEFAULTS["tta_average"] == "softmax"  # the default, unchanged for every paper that does not set it
    assert apply_overrides(DEFAULTS, ["tta_average=logits"])["tta_average"] == "logits"
    with pytest.raises(UserError, match="softmax, logits"):
        apply_overrides(DEFAULTS, ["tta_average=mean"])


def test_eval_fp32_evaluates_outside_a_mixed_precision_autocast():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(40 * 40, 7))
    x = torch.rand(3, 1, 48, 48)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed, _ = tta.evaluate(net, x, recipe(crop_size=40))
        fp32, tencrop = tta.evaluate(net, x, recipe(crop_size=40, eval_fp32=True, tta="tencrop"))
    assert mixed.dtype == torch.bfloat16 and fp32.dtype == tencrop.dtype == torch.float32
    assert torch.equal(fp32, net(x[..., 4:44, 4:44]))  # exactly the fp32 forward of the center crop
    old = {k: v for k, v in recipe(crop_size=40).items() if k not in ("tta_average", "eval_fp32")}
    assert torch.equal(tta.evaluate(net, x, old)[0], fp32)  # a run.json from before these keys resumes as it was


def test_tta_is_a_checked_override():
    assert apply_overrides(DEFAULTS, ["tta=tencrop"])["tta"] == "tencrop"
    with pytest.raises(UserError, match="tencrop"):
        apply_overrides(DEFAULTS, ["tta=fivecrop"])
    with pytest.raises(UserError, match="crop_size"):
        tta.evaluate(Recorder(), torch.rand(2, 1, 48, 48), recipe(crop_size=50))


# ---------------------------------------------------------------- training views and their augmentation

def test_tencrop_training_views_are_all_ten_crops_of_each_image():
    x = torch.randint(0, 256, (4, 48, 48), dtype=torch.uint8)
    out = preprocess(x, recipe(crop_size=40, train_views="tencrop"), True, 0.5, 0.25)
    assert out.shape == (40, 1, 40, 40)
    assert torch.allclose(out, ten_crop((x[:, None].float() / 255 - 0.5) / 0.25, 40))
    one = preprocess(x, recipe(crop_size=40), True, 0.0, 1.0)  # train_views=one: a random 40x40 window each
    assert one.shape == (4, 1, 40, 40)
    full = x[:, None].float() / 255
    for i in range(4):
        assert any(torch.equal(one[i], full[i, :, t:t + 40, l:l + 40]) for t in range(9) for l in range(9))
    erased = preprocess(x, recipe(crop_size=40, train_views="tencrop", aug_erasing=1.0), True, -1.0, 1.0)
    holes = (erased == 0).flatten(1)  # pixels are >= 1 after (x + 1): only the erased rectangles are 0
    assert holes.any(1).all() and len({tuple(h.nonzero().flatten().tolist()) for h in holes}) > 30  # one per crop


def test_random_resized_crop_geometry():
    ramp = torch.arange(48.0).expand(48, 48)  # value = column index
    x = torch.stack([ramp, ramp.T]).repeat(50, 1, 1)[:, None]  # column ramps and row ramps
    assert torch.allclose(ResizedCrop((1.0, 1.0), (1.0, 1.0))(x), x, atol=1e-4)  # the whole image
    assert torch.allclose(ResizedCrop((2.0, 2.0), (1.0, 1.0))(x), x, atol=1e-4)  # never fits: fallback
    out = ResizedCrop((0.25, 0.25), (1.0, 1.0))(x)  # a 24x24 box, resized back to 48x48
    profile = torch.cat([out[0::2, 0, 24, 4:44], out[1::2, 0, 4:44, 24]])
    assert torch.allclose(profile.diff(dim=-1), torch.full((100, 39), 0.5), atol=1e-4)  # zoom x2
    start = profile[:, 0] - 1.75  # output pixel 4 samples input (4 + 0.5) / 2 - 0.5 = 1.75 past the box's edge
    assert torch.allclose(start, start.round(), atol=1e-4)  # whole-pixel boxes ...
    assert start.min() >= 0 and start.max() <= 24 and start.unique().numel() > 5  # ... at random positions


def test_rotation_has_its_own_probability():
    x = torch.randint(0, 256, (400, 48, 48), dtype=torch.uint8)
    cfg = recipe(aug_rotation=10.0, aug_rotation_p=0.5, aug_translate=0.2, aug_affine_p=0.0)
    out = preprocess(x, cfg, True, 0.0, 1.0)
    unchanged = ((out - x[:, None].float() / 255).abs() < 1e-4).flatten(1).all(1).float().mean()
    assert 0.4 < unchanged < 0.6  # rotated with p=0.5 although the translation's p is 0


# ---------------------------------------------------------------- through the CLI, any paper

@pytest.mark.parametrize("paper,model,mode,extra", [
    ("nurmakhan_vgg", "vgg16", "tencrop", []),  # no crop_size: 7/8 crops resized back, the whole image as plain
    ("nurmakhan_vgg", "vggnet", "hflip", ["--set", "train_views=tencrop"]),  # 40x40 crops, ten-crop training
])
def test_tta_through_the_cli_records_plain_and_tta_metrics(tiny_folder, tmp_path, paper, model, mode, extra):
    r = cli("run", "--paper", paper, "--model", model, "--profile", "smoke", "--data", str(tiny_folder),
            "--out", str(tmp_path), "--no-progress", "--set", f"tta={mode}", *extra)
    assert r.returncode == 0, r.stderr[-3000:]
    (path,) = tmp_path.glob(f"runs/{paper}/{model}/*/metrics.json")
    m = json.loads(path.read_text())
    assert m["config"]["tta"] == mode
    for split in ("PrivateTest", "PublicTest"):
        s = m["splits"][split]
        assert s["n"] == s["plain"]["n"] == 21  # 3 images per class, each counted once
        assert s["tta"] == {"mode": mode, "views": tta.NUM_VIEWS[mode]}
        assert set(s["plain"]) == {"n", "accuracy", "macro_f1", "loss"}
        assert 0 <= s["accuracy"] <= 1 and 0 <= s["plain"]["accuracy"] <= 1 and s["plain"]["loss"] > 0
