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


# ---------------------------------------------------------------- the open reading: ImageNet-pretrained, frozen

def _backbone_state(net) -> dict:
    """Every parameter and BatchNorm buffer (running mean/var, batches tracked) of the backbone, copied."""
    return {k: v.detach().clone() for k, v in net.features.state_dict().items()}


def _head_state(net) -> dict:
    return {k: v.detach().clone() for k, v in net.state_dict().items() if not k.startswith("features.")}


@pytest.mark.parametrize("trainable, frozen", [("head", 5), ("layer4+head", 4), ("all", 0)])
def test_trainable_freezes_the_named_stages_over_an_adam_step(paper, trainable, frozen):
    """Frozen stages (stem = features.0, layer1-4 = features.1-4): requires_grad False, BatchNorm in inference mode
    even after .train(), and neither their weights nor their running statistics move over a training step with the
    recipe's own optimiser (fer_bench.training.optimizers over all parameters, as FERClassifier builds it); the
    stages above them and the head do move. Random weights: nothing is downloaded."""
    from papers.du_resnet_fc import READING

    torch.manual_seed(0)
    cfg = {**paper.resolve(READING), "pretrained": False, "trainable": trainable}
    net = paper.build(READING, cfg).train()
    stages = list(net.features)
    assert [all(not p.requires_grad for p in s.parameters()) for s in stages] == [i < frozen for i in range(5)]
    bns = lambda s: [m for m in s.modules() if isinstance(m, nn.BatchNorm2d)]  # noqa: E731
    assert all(not bn.training for s in stages[:frozen] for bn in bns(s))
    assert all(bn.training for s in stages[frozen:] for bn in bns(s)) and net.block1.bn.training
    assert sum(p.numel() for p in net.parameters() if p.requires_grad) == \
        HEAD + sum(p.numel() for s in stages[frozen:] for p in s.parameters())
    before, head = _backbone_state(net), _head_state(net)
    opt = optimizers(net.parameters(), cfg)["optimizer"]
    loss = nn.functional.cross_entropy(net(torch.randn(8, 3, 48, 48)), torch.arange(8) % 7)
    loss.backward()
    opt.step()
    after = _backbone_state(net)
    moved = {int(k.split(".")[0]) for k in before if not torch.equal(before[k], after[k])}
    assert moved == set(range(frozen, 5))  # every stage above the frozen ones moved, no frozen one did
    assert all(not torch.equal(v, net.state_dict()[k]) for k, v in head.items() if "num_batches" not in k)
    net.eval()
    assert not any(m.training for m in net.modules())  # eval() still puts everything in inference mode


def test_the_paper_models_are_unchanged_by_the_trainable_key(paper):
    """trainable exists only in the reading's recipe: du's models resolve as before (their run directories are
    named after the resolved recipe; tests/test_recipe.py pins the names) and freeze nothing."""
    for m in ("improved_resnet50", "resnet50"):
        assert "trainable" not in paper.resolve(m)
    net = paper.build("improved_resnet50", {**paper.resolve("improved_resnet50"), "pretrained": False}).train()
    assert all(p.requires_grad for p in net.parameters()) and all(m.training for m in net.modules())


def test_the_reading_is_a_frozen_pretrained_improved_resnet50_and_never_one_of_the_paper_models(paper):
    from fer_bench.plan import make_plan
    from fer_bench.errors import UserError
    from papers.du_resnet_fc import READING

    assert READING == "improved_resnet50_imagenet_frozen" and READING not in paper.models
    cfg, base = paper.resolve(READING), paper.resolve("improved_resnet50")
    changed = {k: (base.get(k), v) for k, v in cfg.items() if base.get(k) != v}
    assert changed == {"pretrained": (False, True), "trainable": (None, "head"), "normalize": ("none", "imagenet")}
    # not in --model all, nor in a plan's default (the campaign's plan names du without a model)
    assert [p.model for p in make_plan(PAPER_ID)] == ["improved_resnet50", "resnet50"]
    assert not any(c.model == READING or c.relative_to == READING for c in paper.claims)  # judged against nothing
    assert [(m["name"], m["params"]) for m in paper.to_json()["readings"]] == [(READING, PARAMS["improved_resnet50"])]
    with pytest.raises(UserError, match="trainable=some: choose one of all, layer4\\+head, head"):
        paper.build(READING, {**cfg, "pretrained": False, "trainable": "some"})
    text = paper.interpretations["open reading: pretrained, frozen"]
    assert f"fer-bench run --paper du_resnet_fc --model {READING}" in text
    why = paper.interpretations[f"{READING} (fer-bench's reading)"]  # each changed value with its source
    assert all(f"{k}={str(v).lower()} (" in why for k, (_, v) in changed.items())


def test_the_reading_offline_names_the_file_to_download_and_where(paper, offline, monkeypatch, tmp_path):
    from fer_bench.errors import UserError
    from papers.du_resnet_fc import READING

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(UserError) as e:
        paper.build(READING)
    text = str(e.value)
    assert "https://download.pytorch.org/models/resnet50-11ad3fa6.pth" in text
    assert f"into {tmp_path / 'torch' / 'hub'}/checkpoints/" in text and READING in text


def test_the_reading_offline_through_cli_exits_2_without_a_traceback(tiny_folder, tmp_path):
    """As a user without network sees it: an unreachable proxy stands in for no network, an empty TORCH_HOME for no
    cached weights (nothing is downloaded)."""
    from papers.du_resnet_fc import READING

    dead = "http://127.0.0.1:9"
    r = cli("run", "--paper", PAPER_ID, "--model", READING, "--profile", "smoke", "--data", str(tiny_folder),
            "--out", str(tmp_path / "out"), "--no-progress",
            env={"TORCH_HOME": str(tmp_path / "torch"), "https_proxy": dead, "HTTPS_PROXY": dead, "http_proxy": dead,
                 "HTTP_PROXY": dead, "no_proxy": "", "NO_PROXY": ""}, timeout=300)
    assert r.returncode == 2, r.stderr[-3000:]
    assert "Traceback" not in r.stderr and "resnet50-11ad3fa6.pth" in r.stderr and "hub/checkpoints" in r.stderr
    assert not list((tmp_path / "out").glob("runs/*/*/*"))  # refused before any run directory exists


def test_lightning_training_keeps_the_frozen_backbone_and_its_batchnorm_statistics(paper, tiny_folder):
    """The reading (random weights) trained by FERClassifier under Lightning for one epoch with validation: the
    frozen backbone's weights and BatchNorm statistics are bit for bit those it started with, the head moved."""
    import lightning as L

    from fer_bench.training import FERClassifier, FERDataModule
    from papers.du_resnet_fc import READING

    cfg = {**paper.resolve(READING, "smoke"), "pretrained": False, "eval_batch_size": 16, "batch_size": 8}
    torch.manual_seed(0)
    net = paper.build(READING, cfg)
    before, head = _backbone_state(net), _head_state(net)
    dm = FERDataModule(str(tiny_folder), cfg, seed=0)
    dm.setup()
    module = FERClassifier(net, cfg, dm.norm, seed=0, test_names=dm.split_names)
    trainer = L.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(module, dm)
    after = _backbone_state(net)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not torch.equal(head["block1.fc.weight"], net.block1.fc.weight)
    assert not torch.equal(head["block1.bn.running_mean"], net.block1.bn.running_mean)


def test_the_report_lists_the_reading_with_its_command_and_judges_no_claim_on_its_runs(paper, tmp_path):
    """A run of the reading (the committed improved_resnet50 seed-0 record, relabelled) shows in du's section with
    the command, and du's verdicts are those without it."""
    from fer_bench import report as rp
    from papers.du_resnet_fc import READING

    src = next((ROOT / "results" / "runs" / PAPER_ID / "improved_resnet50").glob("repro-s0-*/metrics.json"))
    for model in ("improved_resnet50", "resnet50"):
        d = next((ROOT / "results" / "runs" / PAPER_ID / model).glob("repro-s0-*"))
        (tmp_path / "runs" / PAPER_ID / model / d.name).mkdir(parents=True)
        (tmp_path / "runs" / PAPER_ID / model / d.name / "metrics.json").write_bytes((d / "metrics.json").read_bytes())
    plain = rp.build(tmp_path, [paper])
    text = rp.to_markdown(plain, {}, tmp_path / "md")
    command = f"`fer-bench run --paper {PAPER_ID} --model {READING}`"
    assert f"`{READING}` (" in text and f"run with {command}: not yet run" in text
    assert command.strip("`") in text.split("## Summary")[0]  # named in the findings' open readings
    d = json.loads(src.read_text())
    d |= {"model": READING, "config": {**d["config"], **{k: v for k, v in paper.resolve(READING).items()}}}
    (tmp_path / "runs" / PAPER_ID / READING / "r1").mkdir(parents=True)
    (tmp_path / "runs" / PAPER_ID / READING / "r1" / "metrics.json").write_text(json.dumps(d))
    with_reading = rp.build(tmp_path, [paper])
    cols = ["model", "metric", "split", "verdict", "measured_display"]
    assert with_reading.summary[cols].equals(plain.summary[cols])
    assert READING in set(with_reading.units.model) and READING not in set(with_reading.summary.model)
    text = rp.to_markdown(with_reading, {}, tmp_path / "md")
    assert f"run with {command}: 1 run(s) below" in text and f"reading `{READING}` has 1 run(s)" in text
