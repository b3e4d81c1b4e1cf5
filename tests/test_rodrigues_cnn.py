"""rodrigues_cnn: every fact the paper states about its networks, recipe and claims, checked on CPU."""

import json
import re

import pytest
import torch
from torch import nn

from conftest import ROOT, cli
from fer_bench import UserError, runner
from papers import get_paper
from fer_bench.cli import main
from fer_bench.data import FER2013, SPLITS
from fer_bench.training import FERDataModule, optimizers

PAPER = get_paper("rodrigues_cnn")
SEED_TEXT = ROOT.parent / "shared" / "seeds" / PAPER.seed
# torchvision ResNet50 v1.5 without its top (23,508,032) + Dense(2048 -> 7) (14,343); Keras v1 would be 23,548,935
RESNET50_PARAMS = 23_522_375
CNN8_PARAMS = 7_212_871  # convs 4,684,224 + BN 3,712 + dense 2,359,808 + 131,328 + 32,896 + 903
EXPECTED_PARAMS = {"resnet50_scratch": RESNET50_PARAMS, "resnet50_imagenet": RESNET50_PARAMS, "cnn8": CNN8_PARAMS}


def build(model: str) -> nn.Module:
    return PAPER.build(model, {**PAPER.resolve(model), "pretrained": False})


def trainable(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


# ---------------------------------------------------------------- networks

@pytest.mark.parametrize("model", ["resnet50_scratch", "resnet50_imagenet"])
def test_resnet50_has_over_23_million_trainable_parameters(model):
    net = build(model)
    assert trainable(net) > 23_000_000  # §II.C.i "over 23 million trainable parameters"
    assert trainable(net) == RESNET50_PARAMS


def test_resnet50_without_top_then_gap_and_dense7():
    net = build("resnet50_scratch").eval()
    assert isinstance(net.features.fc, nn.Identity)  # include_top=False
    assert (net.head.in_features, net.head.out_features) == (2048, 7)
    seen = {}

    def keep_shape(module, inputs, output):
        seen["c5"] = output.shape

    net.features.layer4.register_forward_hook(keep_shape)
    with torch.no_grad():
        net(torch.zeros(1, 3, 48, 48))
    assert tuple(seen["c5"]) == (1, 2048, 2, 2)  # Keras' ResNet50 on (48, 48, 3) also ends 2x2x2048


def test_cnn8_has_exactly_eight_convolutions_in_pairs_followed_by_batchnorm():
    net = build("cnn8")
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 8  # §II.C.ii "a custom network with 8 convolutional layers"
    assert all(c.kernel_size == (3, 3) for c in convs)
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256, 512, 512]
    blocks = list(net.features)
    assert len(blocks) == 4
    kinds = [type(m) for m in blocks[0]]
    # "start with two convolutions, followed by a batch normalization"
    assert kinds[:5] == [nn.Conv2d, nn.ReLU, nn.Conv2d, nn.ReLU, nn.BatchNorm2d]
    for block in blocks:
        assert sum(isinstance(m, nn.Conv2d) for m in block) == 2
        assert isinstance(block[-3], nn.BatchNorm2d)  # the pair ends in batch normalisation
        assert isinstance(block[-2], nn.MaxPool2d) and block[-2].kernel_size == 3  # "one cluster of 3x3"
        assert isinstance(block[-1], nn.Dropout) and block[-1].p == 0.5
    linears = [m for m in net.classifier if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(4608, 512), (512, 256), (256, 128), (128, 7)]
    assert [m.p for m in net.classifier if isinstance(m, nn.Dropout)] == [0.4, 0.4, 0.5]
    assert trainable(net) == CNN8_PARAMS
    assert trainable(net) < RESNET50_PARAMS  # §III "a simpler model to train, with less parameters"


def test_cnn8_feature_maps_halve_to_3x3():
    net = build("cnn8").eval()
    x, sides = torch.zeros(1, 1, 48, 48), []
    with torch.no_grad():
        for block in net.features:
            x = block(x)
            sides.append(x.shape[-1])
    assert sides == [24, 12, 6, 3] == [-(-n // 2) for n in (48, 24, 12, 6)]  # Keras 'same': ceil(n / 2)


def keras_same_max_pool(x: torch.Tensor, k: int = 3, s: int = 2) -> torch.Tensor:
    """TensorFlow's 'same' max pooling written out: out = ceil(n / s); the window of output i starts at
    i * s - pad_top, pad_top = total // 2 of the total = (out - 1) * s + k - n padding; padding never wins."""
    n = x.shape[-1]
    out = -(-n // s)
    top = max((out - 1) * s + k - n, 0) // 2
    res = torch.empty(*x.shape[:-2], out, out)
    for i in range(out):
        for j in range(out):
            r, c = i * s - top, j * s - top
            res[..., i, j] = x[..., max(r, 0):r + k, max(c, 0):c + k].amax(dim=(-2, -1))
    return res


@pytest.mark.parametrize("n", [48, 24, 12, 6, 3, 7])
def test_cnn8_pooling_is_keras_same_padding_bottom_right(n):
    from fer_bench.keras import MaxPool2dSame

    pools = [m for m in build("cnn8").modules() if isinstance(m, nn.MaxPool2d)]
    assert len(pools) == 4 and all(isinstance(p, MaxPool2dSame) and p.padding == 0 for p in pools)
    x = torch.randn(2, 3, n, n) - 5  # all negative: zero padding would win at the border, -inf never does
    out = pools[0](x)
    assert out.shape[-1] == -(-n // 2)
    assert torch.equal(out, keras_same_max_pool(x))
    if n % 2 == 0:  # an even side pads one row/column at the bottom/right only: the first window is x[0:3, 0:3]
        assert torch.equal(out[..., 0, 0], x[..., :3, :3].amax(dim=(-2, -1)))
        assert torch.equal(out[..., -1, -1], x[..., -2:, -2:].amax(dim=(-2, -1)))  # last window: 2x2 real + padding
        torch_pad = nn.MaxPool2d(3, stride=2, padding=1)(x)  # PyTorch's padding=1: same size, other windows
        assert torch_pad.shape == out.shape and not torch.equal(torch_pad, out)


@pytest.mark.parametrize("model", list(EXPECTED_PARAMS))
def test_seven_logits_at_the_recipe_input(model):
    cfg = PAPER.resolve(model)
    net = build(model).train()
    x = torch.randn(2, cfg["channels"], cfg["input_size"], cfg["input_size"])
    out = net(x)
    assert out.shape == (2, 7) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


def test_list_json_reports_exact_parameter_counts_and_claims():
    res = cli("list", "--json", timeout=120)
    assert res.returncode == 0, res.stderr
    paper = next(p for p in json.loads(res.stdout) if p["id"] == "rodrigues_cnn")
    assert {m["name"]: m["params"] for m in paper["models"]} == EXPECTED_PARAMS
    acc = {c["model"]: c["value"] for c in paper["claims"] if c["metric"] == "accuracy" and c["kind"] == "own"}
    assert acc == {"resnet50_scratch": 0.6294, "resnet50_imagenet": 0.6372, "cnn8": 0.6492}


# ---------------------------------------------------------------- recipe

def test_recipe_as_written():
    for model in EXPECTED_PARAMS:
        cfg = PAPER.resolve(model)
        assert cfg["normalize"] == "dataset"  # §II.B mean/std standardisation
        assert cfg["aug_hflip"] and cfg["aug_scale"] > 0 and cfg["aug_rotation"] > 0  # §II.B flip, zoom, rotation
        assert cfg["aug_translate"] == cfg["aug_shear"] == cfg["aug_erasing"] == 0  # nothing else
        assert cfg["epochs"] == 150  # §III
        assert cfg["label_smoothing"] == 0  # plain cross-entropy
        assert (cfg["optimizer"], cfg["lr"], cfg["adam_eps"], cfg["scheduler"]) == ("adam", 1e-3, 1e-7, "none")
        assert cfg["input_size"] == 48
    assert PAPER.resolve("resnet50_scratch")["channels"] == PAPER.resolve("resnet50_imagenet")["channels"] == 3
    assert PAPER.resolve("cnn8")["channels"] == 1
    opt = optimizers(nn.Linear(2, 2).parameters(), PAPER.resolve("cnn8"))
    assert type(opt) is torch.optim.Adam  # no scheduler: the optimiser alone
    group = opt.param_groups[0]
    assert (group["lr"], group["betas"], group["eps"], group["weight_decay"]) == (1e-3, (0.9, 0.999), 1e-7, 0.0)
    assert [m for m in EXPECTED_PARAMS if PAPER.resolve(m)["pretrained"]] == ["resnet50_imagenet"]
    assert {PAPER.resolve(m)["batch_size"] for m in EXPECTED_PARAMS} == {32}  # Keras' default, for all three ...
    assert "batch 64" in PAPER.interpretations["batch_size=32"]  # ... not the Kaggle network's: recorded why
    assert "last batch" in PAPER.interpretations


def test_normalisation_statistics_come_from_training_only():
    """Training pixels in [0, 60], the test splits all 250: the stats must be Training's alone."""
    g = torch.Generator().manual_seed(0)
    n = {"Training": 70, "PublicTest": 35, "PrivateTest": 35}
    images = torch.cat([torch.randint(0, 61, (n["Training"], 48, 48), generator=g, dtype=torch.uint8),
                        torch.full((n["PublicTest"] + n["PrivateTest"], 48, 48), 250, dtype=torch.uint8)])
    splits = torch.cat([torch.full((k,), SPLITS.index(s)) for s, k in n.items()])
    labels = torch.arange(len(splits)) % 7
    data = FER2013(images, labels, splits, format="synthetic", fingerprint="synthetic")
    dm = FERDataModule(data, PAPER.resolve("cnn8"), seed=0)
    dm.setup()
    train = images[: n["Training"]].float() / 255
    mean, std = dm.norm
    assert mean == pytest.approx(float(train.mean()), rel=1e-5)
    assert std == pytest.approx(float(train.std()), rel=1e-5)
    assert mean < 0.13 < float(images.float().mean() / 255)  # all splits together would give ~0.55


# ---------------------------------------------------------------- ImageNet weights: never downloaded in tests

def test_imagenet_model_offline_raises_a_clear_error(offline):
    with pytest.raises(UserError, match=r"Cannot load ImageNet weights.*--set pretrained=false"):
        PAPER.build("resnet50_imagenet")


def test_imagenet_model_offline_cli_exits_2_with_the_message(offline, tiny_folder, tmp_path, capsys, monkeypatch):
    # runner.run() leaves its run directories in os.environ (for DDP children): undo that after the test
    monkeypatch.setenv(runner._RUN_DIRS_ENV, "{}")
    rc = main(["run", "--paper", "rodrigues_cnn", "--model", "resnet50_imagenet", "--profile", "smoke",
               "--data", str(tiny_folder), "--out", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "Cannot load ImageNet weights" in err and "--set pretrained=false" in err
    assert "Traceback" not in err


# ---------------------------------------------------------------- claims

def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("*", "").replace("\\", "")).strip().lower()


def test_claims_carry_the_papers_numbers():
    own = {(c.model, c.metric): c for c in PAPER.claims if c.kind == "own"}
    assert {(m, own[(m, "loss")].value) for m in EXPECTED_PARAMS} == {
        ("resnet50_scratch", 0.9717), ("resnet50_imagenet", 0.9715), ("cnn8", 0.9407)}
    disgust = own[("resnet50_imagenet", "per_class_accuracy")]
    assert (disgust.labels, disgust.matrix, disgust.value) == (["disgust"], [[0.62]], None)
    assert own[("resnet50_scratch", "train_time_hours")].value == 1.5
    cited = {c.model: c for c in PAPER.claims if c.kind == "cited"}
    assert cited["resnet50 [8] Savoiu & Wong"].value == 0.651
    assert cited["PCCPCCPCFFF CNN [3]"].relative_to == "cnn8"
    for c in PAPER.claims:
        assert c.source and c.quote
        assert c.value is None or c.metric in ("dataset_size", "train_time_hours", "trainable_params",
                                               "overfit_epoch") or 0 <= c.value <= 1


def test_over_23_million_trainable_parameters_holds_for_both_resnet50_models():
    claims = {c.model: c for c in PAPER.claims if c.metric == "trainable_params"}
    assert set(claims) == {"resnet50_scratch", "resnet50_imagenet"}
    for model, c in claims.items():
        assert (c.value, c.as_printed, c.source) == (23e6, "over 23 million", "§II.C.i, citing [7]")
        assert trainable(build(model)) == PAPER.num_params(model) == RESNET50_PARAMS > c.value  # a lower bound
    assert 23_534_592 > 23e6  # Keras' ResNet50 without top, the paper's own network, also holds it


def test_all_models_round_to_65_percent_and_overfitting_starts_around_55_epochs():
    summary = next(c for c in PAPER.claims if c.metric == "accuracy_summary")
    assert (summary.model, summary.value, summary.as_printed, summary.source) == ("*", 0.65, "rounds up to 65%", "§IV")
    accs = [c.value for c in PAPER.claims if c.metric == "accuracy" and c.kind == "own"]
    assert sorted(accs) == [0.6294, 0.6372, 0.6492]
    assert all(round(a * 100 / 5) * 5 == 65 for a in accs)  # true to the nearest 5 points ...
    assert [round(a * 100) for a in sorted(accs)] == [63, 64, 65]  # ... not to the nearest point
    onset = {c.model: c for c in PAPER.claims if c.metric == "overfit_epoch"}
    assert {m: c.value for m, c in onset.items()} == {"resnet50_scratch": 55, "resnet50_imagenet": 55}
    assert {c.source for c in onset.values()} == {"§III (Figure 5)", "§III (Figure 6)"}
    assert all(c.value < PAPER.resolve(m)["epochs"] == 150 for m, c in onset.items())  # trained well past it


@pytest.mark.skipif(not SEED_TEXT.is_file(), reason="the paper's text (shared/seeds) is not on this machine")
def test_every_quote_is_in_the_paper():
    text = _squash(SEED_TEXT.read_text())
    for c in PAPER.claims:
        assert _squash(c.quote) in text, c.quote


def test_accuracy_and_loss_claims_are_the_model_after_150_epochs():

    own = [c for c in get_paper("rodrigues_cnn").claims if c.metric in ("accuracy", "loss") and c.kind == "own"]
    assert len(own) == 6 and all(c.checkpoint == "last" for c in own)


@pytest.mark.realdata
def test_stated_dataset_sizes_are_the_real_fer2013s(real_data):
    """§II.A's split sizes are those of the FER-2013 every run evaluates (fer-bench check asserts that each smoke run
    tests every image of each split once); its total, 35,685, is not: the release holds 35,887 images."""
    from fer_bench.data import load_fer2013

    counts = {split: sum(c.values()) for split, c in load_fer2013(real_data).counts().items()}
    sizes = {c.split: c.value for c in PAPER.claims if c.metric == "dataset_size"}
    assert {s: n for s, n in sizes.items() if s != "all"} == counts == {"Training": 28709, "PublicTest": 3589,
                                                                       "PrivateTest": 3589}
    assert sizes["all"] == 35685 != sum(counts.values()) == 35887
