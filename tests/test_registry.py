"""The registry refuses a paper whose recipes set a key that is neither shared (DEFAULTS) nor declared as its own."""

from __future__ import annotations

import pytest

from fer_bench.config import DEFAULTS
from fer_bench.registry import Model, Paper, _REGISTRY, check_recipe_keys, register
from papers import get_paper, list_papers


def toy(recipe=None, model_recipe=None, profiles=None, keys=(), datasets=None) -> Paper:
    return Paper(id="toy_keys", title="toy", seed="none", models={"net": Model(lambda cfg: None, model_recipe or {})},
                 recipe=recipe or {}, claims=[], interpretations={"x": "y"}, profiles=profiles or {}, keys=keys,
                 datasets=datasets or {})


@pytest.mark.parametrize("where, paper, key, near", [
    ("recipe", toy(recipe=dict(aug_hlip=True)), "aug_hlip", "aug_hflip"),  # the example
    ("model 'net' recipe", toy(model_recipe=dict(lr_hold=3, step_gama=0.5)), "step_gama", "step_gamma"),
    ("profile 'smoke'", toy(profiles={"smoke": dict(batchsize=8)}), "batchsize", "batch_size"),
    ("jaffe recipe", toy(datasets={"jaffe": {"epoch": 30}}), "epoch", "epochs"),  # a dataset's recipe too
    ("recipe", toy(recipe=dict(widht=0.5), keys=("width",), model_recipe=dict(width=1.0)), "widht", "width"),
])
def test_a_misspelt_recipe_key_is_refused_naming_the_nearest_valid_one(where, paper, key, near):
    with pytest.raises(ValueError) as e:
        register(paper)
    assert f"{where} sets an unknown recipe key {key!r}: did you mean {near!r}?" in str(e.value)
    assert "toy_keys" not in _REGISTRY  # refused: nothing registered


def test_declared_keys_and_dataset_keys_are_accepted():
    check_recipe_keys(toy(model_recipe=dict(fc_width=1024), keys=("fc_width",), datasets={"jaffe": {"epochs": 30}},
                          profiles={"smoke": dict(fc_width=8, epochs=1)}))
    with pytest.raises(ValueError, match="unknown dataset 'jafe'"):
        check_recipe_keys(toy(datasets={"jafe": {"epochs": 30}}))
    with pytest.raises(ValueError, match="unknown recipe key 'jaffe.epochs'"):  # the old dotted form is gone
        check_recipe_keys(toy(recipe={"jaffe.epochs": 30}))
    with pytest.raises(ValueError, match=r"keys \['lr'\] are fer_bench.config.DEFAULTS keys"):
        check_recipe_keys(toy(recipe=dict(lr=0.1), keys=("lr",)))
    with pytest.raises(ValueError, match=r"declared keys \['width'\] have no value"):
        check_recipe_keys(toy(keys=("width",)))


def test_every_registered_paper_declares_its_own_keys():
    # improved_resnet50's unstated width; which backbone stages its reading improved_resnet50_imagenet_frozen trains
    assert get_paper("du_resnet_fc").keys == ("fc_width", "trainable")
    assert get_paper("nurmakhan_vgg").keys == ("width", "dropout")
    for pid in list_papers():  # every key a resolved recipe carries is shared or declared
        paper = get_paper(pid)
        for model in [*paper.models, *paper.readings]:
            for profile in paper.profile_names():
                extra = set(paper.resolve(model, profile)) - set(DEFAULTS)
                assert extra <= set(paper.keys), (pid, model, profile, extra)
