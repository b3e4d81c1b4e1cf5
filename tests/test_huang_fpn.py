"""huang_fpn: every architectural and recipe fact the paper states (§2.2-§2.3, Figure 6)."""


import pytest
import torch
from torch import nn

from fer_bench import UserError
from papers import get_paper
from fer_bench.training import optimizers
from papers.huang_fpn import FIG6_FPN_PRINTED, FIG6_LABELS, ResNet50, ResNet50FPN

PAPER = get_paper("huang_fpn")


@pytest.fixture(scope="module")
def fpn():
    torch.manual_seed(0)
    return ResNet50FPN().eval()


@pytest.mark.parametrize("size, maps", [
    (48, [6, 3, 2, 1, 1]),  # §2.2.1 "input size set at 48x48"
    (512, [64, 32, 16, 8, 4]),  # §2.2.1 "resizing to 512x512": strides 8, 16, 32, 64, 128
])
def test_pyramid_levels_are_256_channels_at_strides_8_to_128(fpn, size, maps):
    with torch.no_grad():
        levels = fpn.pyramid(torch.randn(1, 3, size, size))
    assert [p.shape[1] for p in levels] == [256] * 5  # "reduces the number of channels ... to 256"
    assert [p.shape[-1] for p in levels] == maps


def test_pyramid_reads_c3_c4_c5_of_resnet50(fpn):
    assert [fpn.lateral3.in_channels, fpn.lateral4.in_channels, fpn.lateral5.in_channels] == [512, 1024, 2048]
    assert all(c.kernel_size == (1, 1) for c in (fpn.lateral3, fpn.lateral4, fpn.lateral5))
    assert all(c.kernel_size == (3, 3) for c in (fpn.smooth3, fpn.smooth4, fpn.smooth5))
    # "P6 is obtained through a 3x3 convolution with a stride of 2 on C5"
    assert (fpn.p6.in_channels, fpn.p6.kernel_size, fpn.p6.stride) == (2048, (3, 3), (2, 2))
    # "P7 is computed by applying ReLU followed by a 3x3 convolution with a stride of 2 on P6"
    assert (fpn.p7.in_channels, fpn.p7.kernel_size, fpn.p7.stride) == (256, (3, 3), (2, 2))


def test_p7_sees_p6_through_a_relu(fpn):
    seen = []
    hook = fpn.p7.register_forward_pre_hook(lambda m, args: seen.append(args[0].clone()))
    with torch.no_grad():
        fpn(torch.randn(2, 3, 64, 64))
    hook.remove()
    assert len(seen) == 1 and seen[0].min() == 0  # ReLU output: clipped at zero, and some values were negative


def test_prediction_layers_concatenate_five_levels_to_seven_logits(fpn):
    assert fpn.head.in_features == 5 * 256 and fpn.head.out_features == 7
    with torch.no_grad():
        out = fpn(torch.randn(4, 3, 48, 48))
    assert out.shape == (4, 7) and torch.isfinite(out).all()


def test_resnet50_baseline_is_standard_with_a_seven_way_head():
    net = ResNet50()
    assert net.net.fc.out_features == 7
    assert sum(isinstance(m, nn.Conv2d) for m in net.modules()) == 53  # 49 + 4 projection shortcuts
    assert sum(p.numel() for p in net.parameters()) == 23522375  # 25.56M ImageNet ResNet50 - 1000-way fc + 7-way
    assert ResNet50()(torch.randn(2, 3, 48, 48)).shape == (2, 7)


def test_parameter_counts_match_the_registry():
    assert PAPER.num_params("resnet50") == 23522375
    fpn_extra = (512 + 1024 + 2048) * 256 + 3 * 256 + 3 * (9 * 256 * 256 + 256) + (9 * 2048 * 256 + 256) \
        + (9 * 256 * 256 + 256) + (5 * 256 * 7 + 7)
    backbone = 23522375 - (2048 * 7 + 7)
    assert PAPER.num_params("resnet50_fpn") == backbone + fpn_extra == 31514439


def test_recipe_is_section_2_3():
    cfg = PAPER.resolve("resnet50_fpn", "paper")
    assert (cfg["optimizer"], cfg["lr"], cfg["batch_size"], cfg["epochs"]) == ("adam", 1e-3, 16, 100)
    assert (cfg["scheduler"], cfg["plateau_monitor"], cfg["plateau_factor"]) == ("plateau", "val/loss", 0.1)
    assert cfg["input_size"] == 512 and cfg["aug_hflip"] and cfg["aug_rotation"] > 0 and cfg["aug_scale"] > 0
    assert cfg["weight_decay"] > 0  # §2.2.3 L2 regularisation
    conf = optimizers(nn.Linear(2, 2).parameters(), cfg)
    assert isinstance(conf["optimizer"], torch.optim.Adam)
    sched = conf["lr_scheduler"]["scheduler"]
    assert isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau) and sched.factor == pytest.approx(0.1)
    assert conf["lr_scheduler"]["monitor"] == "val/loss"
    assert PAPER.resolve("resnet50_fpn", "smoke")["input_size"] == 48
    assert {"input_size=512", "prediction layer", "weight_decay=1e-4", "last batch"} <= set(PAPER.interpretations)
    # §2.2.3 "a penalty proportional to the square of the magnitude of the model parameters": all of them
    net = ResNet50FPN()
    opt = optimizers(net.parameters(), cfg)["optimizer"]
    assert len(opt.param_groups) == 1 and opt.param_groups[0]["weight_decay"] == 1e-4
    assert sum(p.numel() for p in opt.param_groups[0]["params"]) == sum(p.numel() for p in net.parameters())
    assert any(p is net.to_c3[0][1].weight for p in opt.param_groups[0]["params"])  # a BatchNorm scale too
    # ImageNet statistics averaged over the channels, so the replicated gray channels stay equal
    from fer_bench.training import IMAGENET_GRAY
    assert cfg["normalize"] == "imagenet"
    assert IMAGENET_GRAY == (round(sum((0.485, 0.456, 0.406)) / 3, 3), round(sum((0.229, 0.224, 0.225)) / 3, 3))


def test_claims_and_figure_6_as_printed():
    acc = [c for c in PAPER.claims if c.metric == "accuracy"]
    assert [(c.model, c.value, c.as_printed) for c in acc] == [("resnet50_fpn", 0.93, "93%")]
    gain = next(c for c in PAPER.claims if c.metric == "accuracy_gain")
    assert (gain.value, gain.relative_to) == (0.25, "resnet50")
    mats = {c.model: c for c in PAPER.claims if c.metric == "confusion_matrix"}
    assert set(mats) == {"resnet50_fpn", "resnet50"}
    a = mats["resnet50_fpn"]
    assert a.labels == FIG6_LABELS == ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
    assert a.matrix[0] == [89, 3, 180, 170, 150, 120, 91] and a.matrix[6][6] == 74
    assert a.as_printed.split("; ")[3] == " ".join(FIG6_FPN_PRINTED[3])
    assert mats["resnet50"].matrix[1] == [19, 0, 2, 30, 16, 12, 8]
    # the printed entries' totals: 5,742 in (a), 5,748 in (b) (two significant digits), each note saying its own
    assert [sum(map(sum, mats[m].matrix)) for m in ("resnet50_fpn", "resnet50")] == [5742, 5748]
    assert "5,742" in mats["resnet50_fpn"].note and "5,748" not in mats["resnet50_fpn"].note
    assert "total 5,748" in mats["resnet50"].note
    for c in PAPER.claims:
        assert c.source and c.quote


def test_pretrained_offline_fails_clearly(offline):
    with pytest.raises(UserError, match="pretrained=false"):
        PAPER.build("resnet50_fpn", {**PAPER.resolve("resnet50_fpn"), "pretrained": True})


@pytest.mark.parametrize("model", ["resnet50_fpn", "resnet50"])
def test_paper_profile_starts_from_imagenet_weights_and_smoke_from_scratch(offline, model):
    # §3 "pre-training of the ResNet50 backbone is a key step": both models, the baseline too
    assert PAPER.resolve(model, "paper")["pretrained"] is True
    assert "pretrained=true" in PAPER.interpretations and "TrivialAugment" in PAPER.interpretations["pretrained=true"]
    # the paper profile asks for torchvision's default weights (IMAGENET1K_V2): offline, the clear error
    with pytest.raises(UserError, match=r"Cannot load ImageNet weights for resnet50 \(ResNet50_Weights.IMAGENET1K_V2"):
        PAPER.build(model)
    smoke = PAPER.resolve(model, "smoke")
    assert smoke["pretrained"] is False  # CI and `fer-bench check` stay offline
    assert PAPER.build(model, smoke)(torch.randn(1, 3, 48, 48)).shape == (1, 7)  # builds without any download
    assert PAPER.build(model, {**PAPER.resolve(model), "pretrained": False}) is not None  # --set pretrained=false


def test_plateau_cuts_after_10_epochs_without_improvement_as_keras_default():
    """The rationale is Keras' ReduceLROnPlateau default (patience=10: a cut after 10 epochs without improvement);
    fer-bench runs PyTorch's rule, so the recipe's plateau_patience is 9."""
    from test_plateau import cut_epochs, keras_cut_epochs

    cfg = PAPER.resolve("resnet50_fpn", "paper")
    flat = [1.0] * 40
    assert cut_epochs(cfg, flat) == keras_cut_epochs(flat, patience=10) == [11, 21, 31]
    assert cfg["plateau_patience"] == 9 and "plateau_patience=9" in PAPER.interpretations
