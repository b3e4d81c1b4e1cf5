"""nurmakhan_vgg: the facts the proposal and the cited VGGNet code state, and a real-data smoke run."""

from __future__ import annotations

import json
import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from conftest import cli
from fer_bench import UserError
from papers import get_paper
from papers.nurmakhan_vgg import VGG16, VGG16_LAYOUT, VGGNet

PAPER = get_paper("nurmakhan_vgg")
SEED = Path(__file__).resolve().parents[2] / "shared" / "seeds" / PAPER.seed


def count(net: nn.Module, kind: type) -> int:
    return sum(isinstance(m, kind) for m in net.modules())


def cfg(model: str, profile: str = "paper", **overrides) -> dict:
    return {**PAPER.resolve(model, profile), "pretrained": False, **overrides}


# ---------------------------------------------------------------- vgg16 (§III.a)

def test_vgg16_has_13_conv_5_maxpool_3_fc_and_a_7_way_head():
    with torch.device("meta"):
        net = PAPER.build("vgg16", cfg("vgg16"))
    assert (count(net, nn.Conv2d), count(net, nn.MaxPool2d), count(net, nn.Linear)) == (13, 5, 3)
    assert [m.out_channels for m in net.modules() if isinstance(m, nn.Conv2d)] == [v for v in VGG16_LAYOUT if v != "M"]
    assert all(m.kernel_size == (3, 3) for m in net.modules() if isinstance(m, nn.Conv2d))
    fcs = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert [(f.in_features, f.out_features) for f in fcs] == [(512 * 7 * 7, 4096), (4096, 4096), (4096, 7)]
    assert PAPER.num_params("vgg16") == 138_357_544 - (4096 * 1000 + 1000) + (4096 * 7 + 7) == 134_289_223


def test_vgg16_on_48x48_the_adaptive_pool_repeats_a_1x1_map():
    with torch.device("meta"):  # shapes only: no 134M-parameter initialisation
        net = VGG16()
        assert net(torch.empty(2, 3, 48, 48)).shape == (2, 7)
    net.features.to_empty(device="cpu")
    for p in net.features.parameters():
        nn.init.normal_(p, 0.0, 0.05)
    with torch.no_grad():
        f = net.features(torch.randn(2, 3, 48, 48))
        pooled = net.avgpool(f)
    assert f.shape == (2, 512, 1, 1) and pooled.shape == (2, 512, 7, 7)  # five pools: 48 -> 1
    assert torch.equal(pooled, f.expand(-1, -1, 7, 7)) and f.abs().sum() > 0


def test_vgg16_pretrained_offline_fails_with_a_clear_message(monkeypatch):
    calls = []

    def offline(url, *args, **kwargs):
        calls.append(url)
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline, raising=False)
    assert PAPER.resolve("vgg16")["pretrained"] is True  # §III.a: ImageNet weights, fine-tuned
    with pytest.raises(UserError, match="pretrained=false"):
        PAPER.build("vgg16", {**PAPER.resolve("vgg16"), "pretrained": True})
    assert calls and "vgg16" in calls[0]
    with pytest.raises(UserError, match="width=1"):  # no ImageNet weights for a narrowed VGG16, and no download
        VGG16(pretrained=True, width=0.5)
    assert len(calls) == 1


def test_vgg16_recipe_has_the_proposed_augmentation():
    c = PAPER.resolve("vgg16")
    assert c["aug_hflip"] and c["aug_rotation"] > 0 and c["aug_translate"] > 0 and c["aug_scale"] > 0
    assert c["aug_shear"] > 0  # §IV: rotation, translation, zoom, shear, horizontal flip
    assert (c["channels"], c["normalize"], c["optimizer"], c["tta"]) == (3, "imagenet", "adam", "none")


# ---------------------------------------------------------------- vggnet (Khaireddin & Chen 2021)

def vggnet_params() -> int:
    conv = sum(9 * a * b + b for a, b in [(1, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256),
                                          (256, 512), (512, 512)])
    bn = 2 * 2 * (64 + 128 + 256 + 512)
    fc = (512 * 2 * 2 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * 7 + 7)
    return conv + bn + fc


def test_vggnet_stages_channels_and_4096_wide_fc():
    net = PAPER.build("vggnet", cfg("vggnet"))
    assert isinstance(net, VGGNet) and len(net.stages) == 4
    for stage, ch in zip(net.stages, (64, 128, 256, 512)):
        a, b, pool = stage
        assert isinstance(pool, nn.MaxPool2d) and pool.kernel_size == 2
        for block in (a, b):  # conv3x3 -> BN -> ReLU
            conv, bn, relu = block
            assert (type(conv), type(bn), type(relu)) == (nn.Conv2d, nn.BatchNorm2d, nn.ReLU)
            assert conv.out_channels == bn.num_features == ch and conv.kernel_size == (3, 3) and conv.padding == (1, 1)
    fcs = [m for m in net.classifier if isinstance(m, nn.Linear)]
    assert [(f.in_features, f.out_features) for f in fcs] == [(2048, 4096), (4096, 4096), (4096, 7)]
    assert [m.p for m in net.classifier if isinstance(m, nn.Dropout)] == [0.2, 0.2]
    with torch.no_grad():
        assert net.stages(torch.zeros(2, 1, 40, 40)).shape == (2, 512, 2, 2)  # 40x40 crop -> 512 x 2 x 2


def test_parameter_counts_as_fer_bench_list_reports():
    r = cli("list", "--json")
    assert r.returncode == 0, r.stderr
    paper = next(p for p in json.loads(r.stdout) if p["id"] == "nurmakhan_vgg")
    params = {m["name"]: m["params"] for m in paper["models"]}
    assert params == {"vgg16": 134_289_223, "vggnet": 29_890_759}
    assert vggnet_params() == 29_890_759
    # a proposal: every accuracy it states is cited; its own claims are its dataset statements
    assert {c["kind"] for c in paper["claims"] if c["metric"] == "accuracy"} == {"cited"}
    assert {c["metric"] for c in paper["claims"] if c["kind"] == "own"} == {"dataset_size"}


def test_vggnet_recipe_follows_the_cited_code():
    c = PAPER.resolve("vggnet")
    assert (c["optimizer"], c["lr"], c["momentum"], c["nesterov"], c["weight_decay"]) == ("sgd", 0.01, 0.9, True, 1e-4)
    assert (c["scheduler"], c["plateau_monitor"], c["plateau_factor"], c["plateau_patience"]) == \
        ("plateau", "val/acc", 0.75, 5)
    assert (c["epochs"], c["batch_size"], c["dropout"]) == (300, 64, 0.2)
    assert (c["input_size"], c["crop_size"], c["train_views"], c["tta"]) == (48, 40, "tencrop", "tencrop")
    assert (c["aug_resized_crop_min"], c["aug_resized_crop_max"]) == (0.8, 1.2)
    assert (c["aug_translate"], c["aug_affine_p"], c["aug_rotation"], c["aug_rotation_p"]) == (0.2, 0.5, 10.0, 0.5)
    assert c["aug_hflip"] and c["aug_erasing"] == 0.5
    # utils/loops.py: evaluate() averages the ten crops' raw outputs, outside the training step's autocast
    assert (c["tta_average"], c["eval_fp32"]) == ("logits", True)
    assert (PAPER.resolve("vgg16")["tta_average"], PAPER.resolve("vgg16")["eval_fp32"]) == ("softmax", False)


def test_vggnet_normalize_none_is_their_pixels_exactly():
    """data/fer2013.py: a float64 48x48 array -> PIL mode 'F' -> TenCrop(40) -> ToTensor (no rescaling of a float
    image) -> Normalize(0, 255): pixels in [0, 1], the crops fer-bench's normalize=none evaluates."""
    import numpy as np
    import torchvision.transforms as T
    from PIL import Image

    from fer_bench import tta
    from fer_bench.augment import preprocess

    c = PAPER.resolve("vggnet")
    assert c["normalize"] == "none"
    x = torch.randint(0, 256, (3, 48, 48), dtype=torch.uint8)
    ours = tta.views(preprocess(x, c, False, 0.0, 1.0), c)  # normalize=none: mean 0, std 1 on pixels / 255
    for i in range(3):
        img = Image.fromarray(x[i].numpy().astype(np.float64))
        assert img.mode == "F"
        theirs = [T.Normalize((0,), (255,))(T.ToTensor()(crop)) for crop in T.TenCrop(40)(img)]
        for k in range(10):
            assert torch.allclose(ours[k][i], theirs[k], atol=1e-6)
        assert 0 <= theirs[0].min() and theirs[0].max() <= 1 and theirs[0].max() > 1 / 255  # [0, 1], not [0, 1/255]


def test_vggnet_rejects_an_input_that_does_not_leave_2x2():
    with pytest.raises(UserError, match="crop_size=40"):
        PAPER.build("vggnet", cfg("vggnet", crop_size=0))  # 48 -> 3x3, not the 512*2*2 the FC reads


# ---------------------------------------------------------------- claims

def test_claims_are_cited_with_sources_and_quotes():
    claims = {(c.model, c.value): c for c in PAPER.claims}
    assert all(c.source and c.quote for c in PAPER.claims)
    assert all(c.kind == "cited" for c in PAPER.claims if c.metric != "dataset_size")
    v = claims[("vggnet", 0.7328)]
    assert (v.as_printed, v.split, v.selected_on, v.protocol) == ("73.28 %", "PublicTest", "PrivateTest", "paper")
    assert {(m, x) for m, x in claims} >= {("pramerdorfer_vgg", 0.727), ("pramerdorfer_resnet", 0.724),
                                           ("pramerdorfer_inception", 0.716), ("cnn_variants", 0.65),
                                           ("cnn_variants", 0.727)}
    patt, lethe = claims[("patt_lite", 0.925)], claims[("lethesec_resnet18", 0.737)]
    assert (patt.as_printed, patt.protocol, lethe.as_printed, lethe.protocol) == ("92.5%", "unknown", "73.70 %",
                                                                                  "unknown")
    assert lethe.split == "PrivateTest" and "ambiguous" in lethe.note  # its README's label, its code's other split
    if SEED.is_file():  # every quote is the proposal's own text
        text = " ".join(SEED.read_text().split())
        for c in PAPER.claims:
            assert " ".join(c.quote.split()) in text, c.quote


def test_dataset_statements_are_fer2013s_official_counts():
    from fer_bench.audit import FER2013_COUNTS, audit, canonical_class

    sizes = [c for c in PAPER.claims if c.metric == "dataset_size"]
    assert all(c.kind == "own" and c.model == "*" and c.source == "§II" for c in sizes)
    whole = {c.split: c.value for c in sizes if not c.labels}
    assert whole == {"all": 35887, "Training": 28709, "PublicTest": 3589}
    classes = {canonical_class(c.labels[0]): c.value for c in sizes if c.labels}
    assert classes == {"angry": 4953, "disgust": 547, "fear": 5121, "happy": 8989, "sad": 6077, "surprise": 4002,
                       "neutral": 6198} == FER2013_COUNTS["all"]
    assert sum(classes.values()) == 35887
    found = [f for f in audit([PAPER]) if f["check"] == "dataset size"]
    assert len(found) == 10 and all(f["severity"] == "info" for f in found)
    assert sum("class" in f["finding"] for f in found) == 7


# ---------------------------------------------------------------- real FER-2013, through the CLI

@pytest.mark.realdata
@pytest.mark.slow
def test_vggnet_smoke_on_real_fer2013_counts_every_test_image_once(real_data, tmp_path):
    r = cli("run", "--paper", "nurmakhan_vgg", "--model", "vggnet", "--profile", "smoke", "--data", str(real_data),
            "--out", str(tmp_path), "--no-progress", "--set", "tta=hflip")
    assert r.returncode == 0, r.stderr[-3000:]
    (path,) = tmp_path.glob("runs/nurmakhan_vgg/vggnet/*/metrics.json")
    m = json.loads(path.read_text())
    assert m["status"] == "completed" and not m["budget"]["full"]
    for split in ("PrivateTest", "PublicTest"):
        s = m["splits"][split]
        assert s["n"] == s["plain"]["n"] == 3589 == sum(map(sum, s["confusion_matrix"]))
        assert s["tta"] == {"mode": "hflip", "views": 2} and 0 <= s["plain"]["accuracy"] <= 1
    assert m["config"]["crop_size"] == 40 and m["config"]["width"] == 0.0625


def test_vgg16_pool_repeats_a_1x1_map_with_a_deterministic_backward():
    """At 48x48 the 7x7 adaptive pool only repeats the 1x1 map: the same values and gradients as torchvision's
    AdaptiveAvgPool2d(7), through expand (deterministic on CUDA); other sizes keep the adaptive pool."""
    from papers.nurmakhan_vgg import Pool7

    for shape in ((2, 5, 1, 1), (2, 5, 3, 3)):
        x = torch.randn(*shape, requires_grad=True)
        x2 = x.detach().clone().requires_grad_(True)
        w = torch.randn(2, 5, 7, 7)
        (Pool7()(x) * w).sum().backward()
        (torch.nn.AdaptiveAvgPool2d(7)(x2) * w).sum().backward()
        assert torch.allclose(Pool7()(x), torch.nn.AdaptiveAvgPool2d(7)(x2))
        assert torch.allclose(x.grad, x2.grad, atol=1e-6)
    with torch.device("meta"):
        assert isinstance(VGG16().avgpool, Pool7) and isinstance(VGG16(width=0.0625).avgpool, Pool7)
