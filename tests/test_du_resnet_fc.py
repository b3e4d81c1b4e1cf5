"""du_resnet_fc: every fact the paper states (shapes, dropout, head, Adam), parameter counts, claims, CLI runs."""

import json
import re

import pytest
import torch
from torch import nn

from conftest import ROOT, cli
from papers import get_paper
from fer_bench.training import optimizers
from papers.du_resnet_fc import FCBlock, ImprovedResNet50, ResNet50

PAPER_ID = "du_resnet_fc"
# computed by hand, and what `fer-bench list --json` reports
BACKBONE = 23_508_032  # torchvision ResNet50 without avgpool/fc (25,557,032 - 2048 * 1000 - 1000)
HEAD = (8192 * 1024 + 1024) + 2 * 1024 + (1024 * 1024 + 1024) + 2 * 1024 + (1024 * 7 + 7)
PARAMS = {"improved_resnet50": 32_958_535, "resnet50": 23_522_375}


@pytest.fixture(scope="module")
def paper():
    return get_paper(PAPER_ID)


@pytest.fixture(scope="module")
def improved():
    torch.manual_seed(0)
    return ImprovedResNet50().eval()


def test_backbone_maps_48x48x3_to_2x2x2048(improved):
    with torch.no_grad():
        assert improved.features(torch.randn(2, 3, 48, 48)).shape == (2, 2048, 2, 2)  # §2.2


@pytest.mark.parametrize("name", ["improved_resnet50", "resnet50"])
def test_seven_finite_logits_on_48x48x3(paper, name):
    net = paper.build(name).eval()
    with torch.no_grad():
        out = net(torch.randn(3, 3, 48, 48))
    assert out.shape == (3, 7) and torch.isfinite(out).all()


def test_head_structure(improved):
    b1, b2 = improved.block1, improved.block2
    assert isinstance(b1.flatten, nn.Flatten) and isinstance(b2.flatten, nn.Identity)  # only block 1 flattens
    assert (b1.fc.in_features, b1.fc.out_features) == (2 * 2 * 2048, 1024)
    assert (b2.fc.in_features, b2.fc.out_features) == (1024, 1024)
    for b in (b1, b2):
        assert isinstance(b.bn, nn.BatchNorm1d) and b.bn.num_features == 1024
        assert isinstance(b.act, nn.ReLU)
    assert (b1.shortcut, b2.shortcut) == (False, True)
    assert (improved.classifier.in_features, improved.classifier.out_features) == (1024, 7)
    # the head holds exactly two dropouts, both p=0.5 (§2.2), and no dropout hides in the backbone
    drops = [m for m in improved.modules() if isinstance(m, nn.Dropout)]
    assert [d.p for d in drops] == [0.5, 0.5]
    assert drops == [b1.dropout, b2.dropout]


def test_block_order_and_identity_shortcut():
    torch.manual_seed(0)
    block = FCBlock(16, 16, shortcut=True).eval()
    x = torch.randn(4, 16)
    expected = torch.relu(block.bn(block.fc(x)) + x)  # eval: dropout is the identity
    assert torch.allclose(block(x), expected)
    # with the residual branch zeroed, the block passes a non-negative input through unchanged
    nn.init.zeros_(block.fc.weight), nn.init.zeros_(block.fc.bias)
    h = torch.rand(4, 16)
    assert torch.equal(block(h), h)
    with pytest.raises(ValueError):
        FCBlock(8, 16, shortcut=True)


def test_dense_and_batchnorm_layers_have_keras_defaults(paper, improved):
    """The paper is a Keras implementation: Dense = glorot_uniform with zero bias, BatchNormalization eps 1e-3 and
    momentum 0.99 (PyTorch 0.01), in both models' heads, as in rodrigues_cnn."""
    torch.manual_seed(0)
    heads = [improved.block1.fc, improved.block2.fc, improved.classifier, paper.build("resnet50").net.fc]
    for fc in heads:
        bound = (6 / (fc.in_features + fc.out_features)) ** 0.5  # glorot_uniform's limit
        assert fc.weight.abs().max() <= bound and fc.weight.abs().max() > 0.9 * bound
        assert torch.count_nonzero(fc.bias) == 0
    for b in (improved.block1, improved.block2):
        assert (b.bn.eps, b.bn.momentum) == (1e-3, 0.01)
    # the backbone keeps torchvision's own BatchNorm (eps 1e-5, momentum 0.1)
    assert (improved.features[0][1].eps, improved.features[0][1].momentum) == (1e-5, 0.1)


def test_improved_forward_is_the_two_blocks_then_the_classifier(improved):
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        f = improved.features(x)
        h1 = improved.block1(f)
        h2 = improved.block2(h1)
        assert h1.shape == h2.shape == (2, 1024)
        assert torch.allclose(improved(x), improved.classifier(h2))
        assert torch.allclose(h2, torch.relu(improved.block2.bn(improved.block2.fc(h1)) + h1))


def test_baseline_is_classical_resnet50():
    net = ResNet50().net
    assert isinstance(net.avgpool, nn.AdaptiveAvgPool2d)
    assert (net.fc.in_features, net.fc.out_features) == (2048, 7)
    assert not any(isinstance(m, (nn.Dropout, nn.BatchNorm1d)) for m in net.modules())


def test_parameter_counts(paper):
    assert BACKBONE + HEAD == PARAMS["improved_resnet50"]
    assert BACKBONE + 2048 * 7 + 7 == PARAMS["resnet50"]
    assert {m["name"]: m["params"] for m in paper.to_json()["models"]} == PARAMS
    assert sum(p.numel() for p in ImprovedResNet50().features.parameters()) == BACKBONE


@pytest.mark.parametrize("name", ["improved_resnet50", "resnet50"])
def test_recipe_and_adam(paper, name):
    cfg = paper.resolve(name)
    assert (cfg["optimizer"], cfg["adam_beta1"], cfg["adam_beta2"], cfg["adam_eps"]) == ("adam", 0.9, 0.999, 1e-8)
    assert (cfg["lr"], cfg["epochs"], cfg["input_size"], cfg["channels"]) == (1e-3, 30, 48, 3)
    assert (cfg["label_smoothing"], cfg["pretrained"]) == (0.0, False)
    built = optimizers(nn.Linear(2, 2).parameters(), cfg)
    opt, sched = built["optimizer"], built["lr_scheduler"]
    assert type(opt) is torch.optim.Adam
    group = opt.param_groups[0]
    assert (group["betas"], group["eps"], group["lr"], group["weight_decay"]) == ((0.9, 0.999), 1e-8, 1e-3, 0.0)
    assert isinstance(sched["scheduler"], torch.optim.lr_scheduler.ReduceLROnPlateau)
    assert (sched["monitor"], sched["scheduler"].factor, sched["scheduler"].patience) == ("val/loss", 0.1, 10)


def test_same_callbacks_for_both_models(paper):
    a, b = paper.resolve("improved_resnet50"), paper.resolve("resnet50")
    assert a.pop("fc_width") == 1024
    assert a == b  # §4 "with 30 epochs and the same callback methods"


def test_claims_complete(paper):
    by = {(c.model, c.metric, c.split): c for c in paper.claims}
    expected = {("improved_resnet50", "accuracy"): (0.5731, "57.31%"),
                ("improved_resnet50", "loss"): (1.15563, "1.15563"),
                ("resnet50", "accuracy"): (0.44, "44.00%"), ("resnet50", "loss"): (1.47082, "1.47082"),
                ("improved_resnet50", "accuracy_gain"): (0.1331, "13.31%")}
    for (model, metric), (value, printed) in expected.items():
        c = by[(model, metric, "PublicTest")]
        assert (c.value, c.as_printed, c.kind) == (value, printed, "own")
    gain = by[("improved_resnet50", "accuracy_gain", "PublicTest")]
    assert gain.relative_to == "resnet50" and gain.value == pytest.approx(0.5731 - 0.44)
    assert by[("improved_resnet50", "accuracy_curve", "PublicTest")].matrix == [[0.4173, 0.5731]]
    assert by[("improved_resnet50", "loss_curve", "PublicTest")].matrix == [[5.3601, 1.1556]]
    sizes = {c.split: c for c in paper.claims if c.metric == "dataset_size"}
    assert {s: c.value for s, c in sizes.items()} == {"all": 35887, "Training": 287039, "PublicTest": 3589,
                                                      "PrivateTest": 3589}
    assert "28,709" in sizes["Training"].note  # the typo is recorded with the official count
    for c in paper.claims:
        assert c.source and c.quote and c.as_printed
        if c.metric == "accuracy":
            assert 0 <= c.value <= 1


def test_numbers_quoted_from_others_are_cited_claims(paper):
    cited = {c.model: c for c in paper.claims if c.kind == "cited"}
    expected = {"feng2004_lbp": (0.77, "77%", "jaffe"), "miyakoshi2011_bayesian_eyes": (0.671, "67.1%", "unspecified"),
                "miyakoshi2011_bayesian_brows": (0.56, "56.0%", "unspecified"),
                "miyakoshi2011_bayesian_mouth": (0.495, "49.5%", "unspecified"),
                "zahara2020_xception_cnn": (0.6597, "65.97%", "fer2013")}
    assert {m: (c.value, c.as_printed, c.dataset) for m, c in cited.items()} == expected
    assert all(c.metric == "accuracy" and c.protocol == "unknown" and c.source.startswith("§1, citing [")
               for c in cited.values())
    assert "fc_width" in paper.keys  # improved_resnet50's own recipe key, declared


def test_claims_quote_the_paper_verbatim(paper):
    seed = ROOT.parent / "shared" / "seeds" / paper.seed
    if not seed.is_file():
        pytest.skip(f"{seed} not present")
    text = re.sub(r"\s+", " ", seed.read_text())
    for c in paper.claims:
        assert c.quote in text, c.quote
        assert c.as_printed in c.quote or c.as_printed in text, c.as_printed


def _metrics(out) -> dict:
    (path,) = list(out.glob("runs/du_resnet_fc/*/*/metrics.json"))
    return json.loads(path.read_text())


def test_smoke_baseline_on_tiny_data_through_cli(tiny_folder, tmp_path):
    r = cli("run", "--paper", PAPER_ID, "--model", "resnet50", "--profile", "smoke", "--data", str(tiny_folder),
            "--out", str(tmp_path / "out"), "--no-progress", "--set", "eval_batch_size=16")
    assert r.returncode == 0, r.stderr[-3000:]
    m = _metrics(tmp_path / "out")
    assert (m["status"], m["model"], m["epochs_completed"]) == ("completed", "resnet50", 1)
    assert {s: v["n"] for s, v in m["splits"].items()} == {"PrivateTest": 21, "PublicTest": 21}
    assert m["config"]["adam_eps"] == 1e-8 and m["budget"]["full"] is False


def test_table1_claims_are_last_epoch_claims(paper):
    """Table 1 repeats the ends of Figure 4's curves: the model after epoch 30, not a selected checkpoint."""
    last = {(c.model, c.metric) for c in paper.claims if c.checkpoint == "last"}
    assert last == {("improved_resnet50", "accuracy"), ("improved_resnet50", "loss"), ("resnet50", "accuracy"),
                    ("resnet50", "loss"), ("improved_resnet50", "accuracy_gain")}


@pytest.mark.parametrize("model, best, cut, keras_cut", [("resnet50", 16, 27, 26), ("improved_resnet50", 19, 30, 29)])
def test_plateau_deviation_from_keras_is_recorded_with_its_effect_on_the_committed_runs(paper, model, best, cut,
                                                                                        keras_cut):
    """du keeps PyTorch's rule with patience 10 (the committed runs' recipe): a cut after 11 epochs without
    improvement where Keras' default cuts after 10. The interpretation states when the committed seed-0 runs were
    cut and when Keras would have cut them; these are recomputed from their logged validation losses."""
    import pandas as pd
    from test_plateau import cut_epochs, keras_cut_epochs

    (log,) = (ROOT / "results" / "runs" / PAPER_ID / model).glob("repro-s0-*/logs/metrics.csv")
    losses = pd.read_csv(log).dropna(subset=["val/loss"]).groupby("epoch")["val/loss"].last().tolist()
    cfg = paper.resolve(model)
    assert len(losses) == 30 and 1 + losses.index(min(losses)) == best
    assert cut_epochs(cfg, losses) == [cut] and keras_cut_epochs(losses, patience=10) == [keras_cut]
    text = paper.interpretations["plateau_patience=10 (PyTorch's rule)"]
    assert f"{model} seed 0 (best at epoch {best})" in text and f"after epoch {cut}" in text
    assert f"after {keras_cut}" in text or f"epoch {keras_cut + 1} at 1e-4" in text
    assert "Keras' ReduceLROnPlateau" not in paper.interpretations["callbacks"]  # no longer claims Keras' default
