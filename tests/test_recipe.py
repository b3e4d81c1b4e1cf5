"""The recipe (fer_bench.config): keys declared once with their group, resolution in one place, the budget and
variant rules the runner and the report share, Claims that validate themselves, and a registry that knows no paper."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fer_bench import config
from fer_bench.config import DEFAULTS, GROUPS, KEYS, NEUTRAL
from fer_bench.registry import Claim
from papers import get_paper

from conftest import ROOT


def test_every_key_has_a_group_type_and_valid_default():
    assert set(DEFAULTS) == set(KEYS)
    for name, key in KEYS.items():
        assert key.group in GROUPS, name
        assert isinstance(key.default, (bool, int, float, str)), name
        assert not key.choices or key.default in key.choices, name
    # one list of budget-neutral keys, for the runner's budget and the report's groups alike
    assert NEUTRAL == {"protocol", "split_seed", "folds_by", "tta", "eval_batch_size", "channels_last", "compile",
                       "compile_mode", "exclude_leaked"}  # protocol=paper's subset sizes are not: other sizes, other images
    assert {k for k, key in KEYS.items() if key.group == "budget"} == {"train_subset", "val_subset"}


def test_budget_counts_every_changed_key_but_the_neutral_ones():
    paper = get_paper("du_resnet_fc")
    cfg = paper.resolve("improved_resnet50")
    assert config.budget(paper, "improved_resnet50", "paper", cfg, 30) == {"full": True, "reasons": []}
    neutral = {**cfg, "compile": True, "exclude_leaked": True, "eval_batch_size": 7, "channels_last": False}
    assert config.budget(paper, "improved_resnet50", "paper", neutral, 30)["full"]
    cut = {**cfg, "epochs": 5, "fc_width": 8}
    assert config.budget(paper, "improved_resnet50", "paper", cut, 3) == {"full": False, "reasons": [
        "epochs=5 (paper: 30)", "fc_width=8 (paper: 1024)", "stopped after 3 of 5 epochs"]}
    smoke = paper.resolve("improved_resnet50", "smoke")
    assert config.budget(paper, "improved_resnet50", "smoke", smoke, 1)["reasons"][0] == "profile smoke"


def test_variant_names_the_recipe_changes_against_the_profile_and_ignores_neutral_keys():
    paper = get_paper("du_resnet_fc")
    smoke = paper.resolve("resnet50", "smoke")
    assert config.variant(paper, "resnet50", "smoke", smoke) == ""
    assert config.variant(paper, "resnet50", "smoke", {**smoke, "compile": True, "exclude_leaked": True}) == ""
    assert config.variant(paper, "resnet50", "paper", {**paper.resolve("resnet50"), "epochs": 5, "lr": 0.01}) == \
        "epochs=5, lr=0.01"
    # a key recorded by an older fer-bench, or added since, counts at its default
    old = {k: v for k, v in paper.resolve("resnet50").items() if k != "eval_fp32"}
    assert config.variant(paper, "resnet50", "paper", old) == ""


def test_per_dataset_recipes_are_data_on_the_paper_below_profile_and_command_line():
    paper = get_paper("miao_presnet_vgg")
    assert paper.datasets == {"jaffe": {"epochs": 30, "monitor": "val/loss", "batch_size": 16}}
    jaffe = config.resolve(paper, "presnet", "paper", "jaffe")
    assert (jaffe["epochs"], jaffe["monitor"], jaffe["batch_size"]) == (30, "val/loss", 16)
    assert config.resolve(paper, "presnet", "paper")["epochs"] == 200  # FER-2013 keeps the paper's 200
    assert config.resolve(paper, "presnet", "smoke", "jaffe")["epochs"] == 1  # the profile wins: smoke stays short
    assert config.resolve(paper, "presnet", "paper", "jaffe", epochs=3, overrides=["batch_size=8"])["batch_size"] == 8


def test_the_resolved_recipes_of_the_campaign_are_unchanged():
    """`fer-bench reproduce` finds a run again by a hash of its resolved recipe: a refactor that changed a recipe
    would silently start the campaign's runs again. These are the names every plan run had before the recipe
    became typed (commit 75d05a0); change them only with a deliberate change of a paper's recipe."""
    from fer_bench.reproduce import Planned

    expected = {("du_resnet_fc", "improved_resnet50"): "bf06afd1f4", ("du_resnet_fc", "resnet50"): "f1b16ae33b",
                ("miao_presnet_vgg", "presnet"): "c2478b1c26", ("rodrigues_cnn", "cnn8"): "f7fe3cc00b",
                ("rodrigues_cnn", "resnet50_scratch"): "8d8ea42194"}
    for (paper, model), digest in expected.items():
        assert Planned(paper, model, 0).run_dir(Path("/nonexistent")).name == f"repro-s0-{digest}", (paper, model)


@pytest.mark.parametrize("run", sorted((ROOT / "results" / "runs").glob("*/*/repro-s*")), ids=lambda d: str(d)[-40:])
def test_the_committed_runs_are_found_again_with_their_recorded_recipe(run):
    """Each committed run directory is the one `fer-bench reproduce` finds for its (paper, model, seed) with the
    code as it is now, and its recorded recipe is the one the code resolves today (docs and new choices of a key
    change neither): nothing committed would be trained again."""
    import json

    from fer_bench.config import same_recipe
    from fer_bench.reproduce import Planned

    info = json.loads((run / "run.json").read_text())
    planned = Planned(info["paper"], info["model"], info["seed"], info["profile"])
    assert planned.run_dir(ROOT / "results") == run
    assert same_recipe(info["config"], planned.config())


@pytest.mark.parametrize("kw, why", [
    (dict(metric="acuracy"), "did you mean 'accuracy'"),
    (dict(value=73.2), "not a fraction in [0, 1]"),
    (dict(value=float("nan")), "not a finite number"),
    (dict(value=None), "not a finite number"),
    (dict(kind="quoted"), "kind 'quoted'"),
    (dict(checkpoint="best"), "checkpoint 'best'"),
    (dict(tta="fivecrop"), "tta 'fivecrop'"),
    (dict(split=""), "split, protocol and source are required"),
    (dict(metric="confusion_matrix"), "a matrix claim has value None"),
    (dict(metric="accuracy_gain", value=0.1), "names relative_to"),
    (dict(metric="loss", value=-1.0), "cannot be negative"),
])
def test_a_claim_that_cannot_be_judged_is_refused_at_construction(kw, why):
    base = dict(model="net", metric="accuracy", value=0.732, as_printed="73.2%", split="PrivateTest",
                protocol="canonical", source="Table 1", quote="73.2%")
    Claim(**base)  # the valid one
    with pytest.raises(ValueError, match=f"Claim net/.*{why}".replace("[", r"\[").replace("]", r"\]")
                       .replace("(", r"\(").replace(")", r"\)")):
        Claim(**{**base, **kw})


def test_the_registry_is_a_leaf_and_discovery_lives_in_the_papers_package():
    code = ("import sys, fer_bench.registry as r; assert 'papers' not in sys.modules; assert r.list_papers() == []; "
            "import papers; assert 'du_resnet_fc' in papers.list_papers()")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_only_profiles_cut_a_budget():
    from fer_bench.registry import Model, Paper, check_recipe_keys

    toy = Paper(id="toy_budget", title="t", seed="none", models={"net": Model(lambda cfg: None)},
                recipe={"train_subset": 512}, claims=[], interpretations={"x": "y"})
    with pytest.raises(ValueError, match="'train_subset', a budget key: only profiles may cut a budget"):
        check_recipe_keys(toy)


def test_pooled_cross_validation_pools_the_last_epoch_too():
    from fer_bench.results import pool_folds

    def fold(i, right, last_right):
        def split(r):
            cm = [[r, 10 - r] + [0] * 5] + [[0] * 7 for _ in range(6)]
            return {"n": 10, "accuracy": r / 10, "loss": 1.0, "confusion_matrix": cm,
                    "per_class_accuracy": {"angry": r / 10}}
        return {"paper": "p", "model": "m", "run_id": f"x-f{i}", "status": "completed", "_path": f"/r/x-f{i}/m.json",
                "fold": {"cv_id": "x", "index": i, "of": 2}, "splits": {"test": split(right)},
                "last_epoch": {"epoch": 3, "splits": {"test": split(last_right)}}}

    (cv,) = pool_folds([fold(1, 8, 6), fold(2, 6, 4)])
    assert cv["splits"]["test"]["accuracy"] == 0.7 and cv["last_epoch"]["splits"]["test"]["accuracy"] == 0.5


def test_unknown_set_key_names_the_nearest_keys_with_their_meaning():
    from fer_bench.config import apply_overrides
    from fer_bench.errors import UserError
    with pytest.raises(UserError) as e:
        apply_overrides(dict(DEFAULTS), ["channel_last=true"])
    assert f"Did you mean: channels_last ({KEYS['channels_last'].doc})" in str(e.value)
    with pytest.raises(UserError, match="Did you mean: aug_hflip"):  # a key without a doc: its name alone
        apply_overrides(dict(DEFAULTS), ["aug_flip=true"])
    with pytest.raises(UserError) as e:
        apply_overrides(dict(DEFAULTS), ["zzzz=1"])
    assert "Did you mean" not in str(e.value) and "Valid keys: " in str(e.value)


def test_normalize_none_divides_by_255_and_says_so_where_a_newcomer_looks(capsys):
    """normalize=none is pixels / 255: the key's doc and its choices say so, `fer-bench list --json` names it for
    each model whose recipe uses it, and the pipeline does exactly that."""
    import json

    import torch

    from fer_bench.augment import preprocess
    from fer_bench.cli import main

    key = KEYS["normalize"]
    assert key.choices == ("dataset", "imagenet", "half", "none")  # the recorded values are unchanged
    assert "none: pixels / 255" in key.doc and key.meaning("none").startswith("pixels / 255")
    assert main(["list", "--json"]) == 0
    models = {(p["id"], m["name"]): m for p in json.loads(capsys.readouterr().out) for m in p["models"]}
    du = models[("du_resnet_fc", "resnet50")]
    assert du["recipe"]["normalize"] == "none" and du["meanings"]["normalize"].startswith("none: pixels / 255")
    assert all(m["meanings"].get("normalize", "").startswith(f"{m['recipe']['normalize']}: ") for m in models.values())
    x = torch.randint(0, 256, (4, 48, 48), dtype=torch.uint8)
    cfg = {**DEFAULTS, "normalize": "none", "channels_last": False}
    assert torch.allclose(preprocess(x, cfg, False, 0.0, 1.0), x.float().unsqueeze(1) / 255)
