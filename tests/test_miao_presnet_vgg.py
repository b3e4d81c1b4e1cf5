"""miao_presnet_vgg: every fact the paper states (blocks, channels, RReLU, recipe, schedule), its claims,
the paper's own FER-2013 protocol, and a real-data smoke run."""

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import synthetic_arrays
from fer_bench import UserError
from papers import get_paper
from fer_bench.cli import main
from fer_bench.data import FER2013
from fer_bench.registry import count_params
from fer_bench.runner import resolve_config
from fer_bench.training import optimizers, step_factor
from papers.miao_presnet_vgg import CutVGG, PreActBottleneck, PResNetVGG

PAPER = get_paper("miao_presnet_vgg")
PARAMS = {"presnet": 869831, "presnet_vgg": 5780167}


@pytest.fixture(scope="module")
def nets():
    torch.manual_seed(0)
    return {m: PAPER.build(m) for m in PAPER.models}


def test_bottleneck_is_preactivated_1x1_3x3_1x1(nets):
    """§3.1: 1x1 -> 3x3 -> 1x1, BN and RReLU before each convolution, in every block of both models."""
    for name, net in nets.items():
        blocks = [b for b in net.modules() if isinstance(b, PreActBottleneck)]
        assert len(blocks) == 6, name
        for b in blocks:
            kinds = [type(m) for m in b.residual]
            assert kinds == [nn.BatchNorm2d, nn.RReLU, nn.Conv2d] * 3
            convs = [m for m in b.residual if isinstance(m, nn.Conv2d)]
            assert [c.kernel_size for c in convs] == [(1, 1), (3, 3), (1, 1)]
            bns = [m for m in b.residual if isinstance(m, nn.BatchNorm2d)]
            assert [bn.num_features for bn in bns] == [c.in_channels for c in convs]
            assert convs[0].out_channels == convs[1].out_channels < convs[2].out_channels  # a bottleneck


def test_identity_block_adds_the_residual_to_its_input():
    """Eq. (3): x_{l+1} = x_l + F(x_l), nothing applied after the sum (pre-activation)."""
    torch.manual_seed(0)
    block = PreActBottleneck(128, 32, 128).eval()
    x = torch.randn(2, 128, 6, 6)
    assert block.project is None
    assert torch.allclose(block(x), x + block.residual(x))
    down = PreActBottleneck(64, 32, 128, stride=2).eval()
    assert down(torch.randn(2, 64, 24, 24)).shape == (2, 128, 12, 12)


def test_vgg_channel_is_five_conv_rrelu_pool_stages_of_64_128_256_512_512():
    """§3.3: 3x3 kernels with zero padding, RReLU, max pooling halving the map; 64, 128, 256, 512, 512."""
    vgg = CutVGG().eval()
    convs = [s[0] for s in vgg.stages]
    assert [c.out_channels for c in convs] == [64, 128, 256, 512, 512] and convs[0].in_channels == 1
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) and c.stride == (1, 1) for c in convs)
    for s in vgg.stages:
        assert [type(m) for m in s] == [nn.Conv2d, nn.RReLU, nn.MaxPool2d] and s[2].kernel_size == 2
    sizes, fused = {}, {}

    def record(store, key):
        def hook(module, inp, out):  # returns None: the output is left alone
            store[key] = tuple(out.shape[1:])
        return hook
    for i, s in enumerate(vgg.stages):
        s[0].register_forward_hook(record(sizes, f"conv{i}"))
        s.register_forward_hook(record(sizes, f"stage{i}"))
    vgg.fuse1.register_forward_hook(record(fused, 1))
    vgg.fuse2.register_forward_hook(record(fused, 2))
    assert vgg(torch.randn(2, 1, 48, 48)).shape == (2, 512)
    assert [sizes[f"conv{i}"][1] for i in range(5)] == [48, 24, 12, 6, 3]  # zero padding keeps the size
    assert [sizes[f"stage{i}"] for i in range(5)] == [(64, 24, 24), (128, 12, 12), (256, 6, 6), (512, 3, 3),
                                                      (512, 1, 1)]
    assert fused == {1: sizes["stage2"], 2: sizes["stage3"]}  # shallow features brought to deep ones' size


def test_fusion_network_concatenates_two_channels_then_dropout_and_fc(nets):
    net = nets["presnet_vgg"]
    assert isinstance(net, PResNetVGG)
    assert net.vgg_fc[0].out_features == net.presnet_fc[0].out_features == 256
    assert net.fc.in_features == 512 and net.fc.out_features == 7 and isinstance(net.dropout, nn.Dropout)


def test_rrelu_is_the_only_activation(nets, monkeypatch):
    """§2.1/§3.3: R-ReLU wherever an activation is named: no ReLU module, no functional relu call."""
    others = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid)
    for name, net in nets.items():
        assert not [m for m in net.modules() if isinstance(m, others)], name
        assert sum(isinstance(m, nn.RReLU) for m in net.modules()) == {"presnet": 19, "presnet_vgg": 28}[name]

    def forbidden(*a, **k):
        raise AssertionError("relu called")
    monkeypatch.setattr(F, "relu", forbidden)
    monkeypatch.setattr(torch, "relu", forbidden)
    for net in nets.values():
        out = net.train()(torch.randn(2, 1, 48, 48))
        assert out.shape == (2, 7) and torch.isfinite(out).all()


def test_parameter_counts_as_fer_bench_list_reports(nets, capsys):
    assert main(["list", "--json"]) == 0  # `fer-bench list --json`, in this process
    (paper,) = [p for p in json.loads(capsys.readouterr().out) if p["id"] == "miao_presnet_vgg"]
    assert {m["name"]: m["params"] for m in paper["models"]} == PARAMS
    assert {m: count_params(n) for m, n in nets.items()} == PARAMS
    assert PARAMS["presnet"] < 11_000_000  # "parameters greatly reduced": fewer than ResNet-18's 11.2M
    claims = paper["claims"]
    own = {(c["model"], c["dataset"], c["metric"]): c for c in claims if c["kind"] == "own" and c["model"] != "*"}
    assert own[("presnet", "fer2013", "accuracy")]["value"] == pytest.approx(0.7247)
    assert own[("presnet_vgg", "fer2013", "accuracy")]["value"] == pytest.approx(0.7367)
    assert own[("presnet", "jaffe", "accuracy")]["value"] == pytest.approx(0.9725)
    assert own[("presnet_vgg", "jaffe", "accuracy")]["value"] == pytest.approx(0.9879)
    table2_jaffe = own[("presnet_vgg", "jaffe", "per_class_accuracy")]
    assert table2_jaffe["labels"] == ["Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Normal"]
    assert table2_jaffe["matrix"] == [pytest.approx([0.9766, 0.9851, 0.9922, 1.0, 0.9921, 0.9841, 0.9855])]
    assert own[("presnet", "fer2013", "per_class_accuracy")]["matrix"][0][1] == pytest.approx(0.6943)
    assert all(c["selected_on"] == "test" for c in own.values())
    assert own[("presnet", "fer2013", "accuracy")]["protocol"] == "paper"
    cited = sorted((c["dataset"], c["as_printed"]) for c in claims if c["kind"] == "cited")
    assert cited == [("ck+", "81.5%"), ("ck+", "97.45%"), ("fer2013", "70.86%"), ("fer2013", "71.80%"),
                     ("fer2013", "71.91%"), ("jaffe", "92.81%"), ("jaffe", "96.70%"), ("jaffe", "98.14%")]
    assert all("Table" in c["source"] for c in claims if c["metric"] != "dataset_size" and c["kind"] == "own")


def test_cited_numbers_carry_no_protocol_the_paper_does_not_give():
    cited = [c for c in PAPER.claims if c.kind == "cited"]
    # Tables 3-4 quote other work beside the paper's own rows: not under the paper's protocol or split
    assert all((c.protocol, c.split, c.selected_on) == ("unknown", "test", "") for c in cited)
    tables = {c.model: c for c in cited if "Table" in c.source}
    assert {m: c.value for m, c in tables.items()} == {
        "guo2016_relativity": 0.7086, "zhou2016_multiscale_cnn": 0.718, "hua2019_hero": 0.7191,
        "zhang2019_stacked_hybrid_autoencoder": 0.967, "kommineni2020_hybrid_features": 0.9814,
        "kola2020_adaptive_lbp": 0.9281}
    ck = {c.model: c for c in cited if c.dataset == "ck+"}  # §1: the CK+ numbers of [8] and [9]
    assert {m: (c.value, c.as_printed) for m, c in ck.items()} == {"chu_attention": (0.9745, "97.45%"),
                                                                  "lu_7layer_cnn": (0.815, "81.5%")}
    seed = Path(__file__).resolve().parents[2] / "shared" / "seeds" / PAPER.seed
    if seed.is_file():
        text = " ".join(seed.read_text().split())
        assert all(c.quote in text for c in ck.values())


def test_choices_the_paper_leaves_open_are_recorded():
    cfg = PAPER.resolve("presnet")
    assert cfg["normalize"] == "dataset" and "normalize" in PAPER.recipe  # explicit, not inherited silently
    assert cfg["label_smoothing"] == 0  # eq. (5) reads binary; categorical cross-entropy over the 7-way softmax
    for key in ("normalize=dataset", "categorical cross-entropy", "activation after the addition", "last batch"):
        assert key in PAPER.interpretations  # eq. (2)'s RReLU after the sum: see test_identity_block_adds_...


def test_recipe_is_section_4_3():
    cfg = PAPER.resolve("presnet_vgg", "paper")
    assert (cfg["optimizer"], cfg["lr"], cfg["batch_size"], cfg["epochs"]) == ("sgd", 0.01, 128, 200)
    assert (cfg["scheduler"], cfg["lr_hold"], cfg["step_size"], cfg["step_gamma"]) == ("step", 50, 5, 0.9)
    assert cfg["aug_hflip"] is True and 0 < cfg["aug_rotation"] <= 15  # mirroring, slight rotation
    assert (cfg["input_size"], cfg["channels"], cfg["protocol"]) == (48, 1, "canonical")
    jaffe = resolve_config("miao_presnet_vgg", "presnet_vgg", "paper", None, [], dataset="jaffe")
    assert (jaffe["epochs"], jaffe["monitor"]) == (30, "val/loss")  # §4.3: 30 epochs, lowest test loss kept
    assert not [k for k in jaffe if "." in k]
    assert resolve_config("miao_presnet_vgg", "presnet", "smoke", None, [], dataset="jaffe")["epochs"] == 1
    assert resolve_config("miao_presnet_vgg", "presnet", "paper", None, [])["epochs"] == 200
    with pytest.raises(UserError, match="unknown key"):
        resolve_config("miao_presnet_vgg", "presnet", "paper", None, ["jaffe.epochs=3"], dataset="jaffe")


def test_lr_schedule_holds_50_epochs_then_decays_x09_every_5():
    cfg = PAPER.resolve("presnet", "paper")
    expected = {0: 1.0, 49: 1.0, 50: 1.0, 54: 1.0, 55: 0.9, 60: 0.81, 199: 0.9 ** 29}
    assert {e: step_factor(e, cfg) for e in expected} == pytest.approx(expected)
    sched = optimizers([nn.Parameter(torch.zeros(1))], cfg)["lr_scheduler"]["scheduler"]
    lrs = []
    for _ in range(200):  # what Lightning does: one scheduler step per epoch
        lrs.append(sched.optimizer.param_groups[0]["lr"])
        sched.optimizer.step()
        sched.step()
    assert [lrs[e] for e in (0, 49, 50, 55, 199)] == pytest.approx([0.01, 0.01, 0.01, 0.009, 0.01 * 0.9 ** 29])


def tiny_fer(per_class: int) -> FER2013:
    images, labels, splits = synthetic_arrays(per_class)
    return FER2013(torch.from_numpy(images), torch.from_numpy(labels), torch.from_numpy(splits), "csv", "x" * 16)


def test_paper_protocol_selects_on_a_seeded_test_subset():
    from fer_bench.training import FERDataModule
    data = tiny_fer(per_class=10)  # 70 images per split
    cfg = {**PAPER.resolve("presnet", "paper"), "protocol": "paper", "paper_train_size": 50, "paper_test_size": 30}
    dm = FERDataModule(data, cfg, seed=0)
    dm.setup()
    assert len(dm.train_set) == 50 and len(dm.val_set) == 30
    assert dm.test_sets[0] is dm.val_set and len(dm.test_sets[1]) == 70  # PublicTest whole, never selected on
    private = {bytes(x.numpy()) for x in data.split("PrivateTest")[0]}
    assert all(bytes(x.numpy()) in private for x in dm.val_set.images)
    again = FERDataModule(data, cfg, seed=7)  # the split follows split_seed, not the run's seed
    again.setup()
    assert torch.equal(again.val_set.images, dm.val_set.images)
    with pytest.raises(UserError, match="paper_train_size=28000"):
        FERDataModule(data, {**cfg, "paper_train_size": 28000}, seed=0).setup()


def test_paper_protocol_through_the_cli_says_it_selects_on_the_test_set(tmp_path, tiny_csv, capsys):
    args = ["run", "--paper", "miao_presnet_vgg", "--model", "presnet", "--profile", "smoke", "--data", str(tiny_csv),
            "--out", str(tmp_path), "--no-progress", "--set", "protocol=paper", "--set", "paper_test_size=14"]
    assert main(args) == 2  # the paper's 28,000 training images do not exist in this tiny set: a clear error
    assert "paper_train_size=28000, but Training has only 21 images" in capsys.readouterr().err
    assert not list(tmp_path.glob("runs/*/*/*"))  # refused before any run directory was made
    assert main([*args, "--set", "paper_train_size=15"]) == 0
    (path,) = tmp_path.glob("runs/miao_presnet_vgg/presnet/*/metrics.json")
    d = json.loads(path.read_text())
    assert d["protocol"] == "paper" and d["selected_on"] == "PrivateTest"
    assert "selects on the test set" in d["protocol_note"] and "not the canonical" in d["protocol_note"]
    assert d["splits"]["PrivateTest"]["n"] == 14 and d["splits"]["PublicTest"]["n"] == 21
    assert d["budget"]["full"] is False
