"""Papers register themselves here: id, title, seed text, models, recipe, claims, interpretations.

A paper module in ``papers/`` builds one :class:`Paper` and calls :func:`register`. The
registry imports every module of the ``papers`` package on first use, so adding a paper
needs no change anywhere else.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
from torch import nn

from .config import DATASETS, DEFAULTS, PROFILES
from .errors import UserError

_REGISTRY: dict[str, "Paper"] = {}
_loaded = False


@dataclass(frozen=True)
class Claim:
    """One number (or one printed matrix/table) a paper states. Accuracies are fractions; ``as_printed``
    keeps the paper's text. Metric vocabulary, shared with the report and audit:
      accuracy, loss, macro_f1          value = the number (fractions for accuracies)
      accuracy_gain                     value = difference in accuracy, ``relative_to`` the other model
      per_class_accuracy                value = None, matrix = [[one fraction per class]], labels = class names
      confusion_matrix                  value = None, matrix = rows true / columns predicted, labels = order
      dataset_size                      value = number of images of ``split`` ("all" for the whole set)
      train_time_hours                  value = hours of training the paper reports
      accuracy_curve, loss_curve        value = None, matrix = [[first, last]] (or a bound) of a training curve
      trainable_params                  value = the number of trainable parameters the paper states for ``model``
      overfit_epoch                     value = the epoch after which the paper says validation and training diverge
      accuracy_summary                  value = one number the paper says all its models' accuracies round to
    A dataset_size claim with one class in ``labels`` counts that class's images of ``split``.
    """
    model: str  # a registered model name, or a name of the paper's own for cited/unrun models
    metric: str  # accuracy, loss, macro_f1, accuracy_gain, per_class_accuracy, confusion_matrix, ...
    value: float | None  # None for claims that are a matrix or a table
    as_printed: str
    split: str  # PrivateTest, PublicTest, validation (unspecified), train, ...
    protocol: str  # canonical, or the paper's own protocol name
    source: str  # section / table / figure
    quote: str
    kind: str = "own"  # own | cited (a number the paper quotes from others)
    dataset: str = "fer2013"
    matrix: list | None = None  # the numbers a matrix/table claim prints, kept whole
    labels: list | None = None  # row/column labels of ``matrix`` in the paper's order
    relative_to: str = ""  # for differences (accuracy_gain): the model the difference is taken against
    selected_on: str = ""  # the split the paper chose its checkpoint on, when it says ("test" = the reported split)
    note: str = ""
    # which weights the number describes: "selected" (the checkpoint chosen on the selection split) or "last" (the
    # model after the final epoch, e.g. the end of a training curve); compared with metrics.json's splits or last_epoch
    checkpoint: str = "selected"

    def __post_init__(self):
        if self.checkpoint not in ("selected", "last"):
            raise ValueError(f"Claim checkpoint {self.checkpoint!r}: 'selected' or 'last'")


@dataclass(frozen=True)
class Model:
    build: Callable[[dict], nn.Module]  # resolved recipe -> network producing 7 logits
    recipe: dict = field(default_factory=dict)  # this model's overrides of the paper's recipe
    summary: str = ""


@dataclass(frozen=True)
class Paper:
    id: str
    title: str
    seed: str  # file name in shared/seeds
    models: dict[str, Model]
    recipe: dict  # overrides of fer_bench.config.DEFAULTS (and of its own ``keys``)
    claims: list[Claim]
    interpretations: dict[str, str]  # choice -> one-line reason, for every gap the paper left
    profiles: dict[str, dict] = field(default_factory=dict)  # per-profile overrides of PROFILES
    configure_optimizers: Callable | None = None  # (module, cfg) -> Lightning optimizer config
    # recipe keys of the paper's own, beyond DEFAULTS (e.g. an unstated layer width made --set-able); every key a
    # recipe, model recipe or profile sets must be one of these or of DEFAULTS, else register() refuses the paper
    keys: tuple[str, ...] = ()

    def resolve(self, model: str, profile: str = "paper") -> dict:
        """The fully resolved recipe of one model under one profile."""
        if model not in self.models:
            raise UserError(f"Paper {self.id} has no model {model!r}. Its models: {', '.join(self.models)}.")
        if profile not in PROFILES and profile not in self.profiles:
            raise UserError(f"Unknown profile {profile!r}. Profiles: {', '.join(self.profile_names())}.")
        cfg = {**DEFAULTS, **self.recipe, **self.models[model].recipe}
        return {**cfg, **PROFILES.get(profile, {}), **self.profiles.get(profile, {})}

    def profile_names(self) -> list[str]:
        return list(dict.fromkeys([*PROFILES, *self.profiles]))

    def build(self, model: str, cfg: dict | None = None) -> nn.Module:
        return self.models[model].build(cfg or self.resolve(model))

    def num_params(self, model: str) -> int:
        with torch.device("meta"):  # no memory, no init: a count is all we need
            return count_params(self.build(model, {**self.resolve(model), "pretrained": False}))

    def to_json(self) -> dict:
        return {
            "id": self.id, "title": self.title, "seed": self.seed,
            "models": [{"name": m, "params": self.num_params(m), "summary": spec.summary}
                       for m, spec in self.models.items()],
            "claims": [asdict(c) for c in self.claims],
            "interpretations": self.interpretations,
            "profiles": self.profile_names(),
        }


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def check_recipe_keys(paper: Paper) -> None:
    """Refuse a recipe key that is neither in DEFAULTS nor declared in ``paper.keys`` (a misspelt ``aug_hlip=True``
    would otherwise be a silent key of its own while ``aug_hflip`` stays False), naming the nearest valid key.
    A key "DATASET.KEY" (e.g. "jaffe.epochs") is checked as KEY, and DATASET must be a known dataset."""
    shared = [k for k in paper.keys if k in DEFAULTS]
    if shared:
        raise ValueError(f"{paper.id}: keys {shared} are fer_bench.config.DEFAULTS keys; declare only keys of its own")
    valid = [*DEFAULTS, *paper.keys]
    recipes = {"recipe": paper.recipe, **{f"model {m!r} recipe": spec.recipe for m, spec in paper.models.items()},
               **{f"profile {p!r}": overrides for p, overrides in paper.profiles.items()}}
    for where, recipe in recipes.items():
        for key in recipe:
            dataset, dot, base = key.rpartition(".")
            if dot and dataset not in DATASETS:
                raise ValueError(f"{paper.id}: {where} sets {key!r}, for an unknown dataset {dataset!r} "
                                 f"(datasets: {', '.join(DATASETS)}).")
            if base not in valid:
                near = difflib.get_close_matches(base, valid, n=1)
                hint = f"did you mean {near[0]!r}? " if near else ""
                raise ValueError(f"{paper.id}: {where} sets an unknown recipe key {key!r}: {hint}A key of the "
                                 "paper's own must be declared in Paper(keys=...).")
    unset = [k for k in paper.keys if k not in paper.recipe and not any(k in s.recipe for s in paper.models.values())]
    if unset:
        raise ValueError(f"{paper.id}: declared keys {unset} have no value in the recipe or any model recipe.")


def register(paper: Paper) -> Paper:
    if paper.id in _REGISTRY and _REGISTRY[paper.id] is not paper:
        raise ValueError(f"paper id {paper.id!r} registered twice")
    check_recipe_keys(paper)
    names = set(paper.models)
    for c in paper.claims:
        if c.kind == "own" and c.model not in names and c.model != "*":
            raise ValueError(f"{paper.id}: claim on unknown model {c.model!r}")
    _REGISTRY[paper.id] = paper
    return paper


def _load() -> None:
    global _loaded
    if not _loaded:
        import papers
        for info in pkgutil.iter_modules(papers.__path__):
            if not info.name.startswith("_"):
                importlib.import_module(f"papers.{info.name}")
        _loaded = True


def list_papers() -> list[str]:
    _load()
    return sorted(_REGISTRY)


def get_paper(paper_id: str) -> Paper:
    _load()
    if paper_id not in _REGISTRY:
        raise UserError(f"Unknown paper {paper_id!r}. Registered papers: {', '.join(sorted(_REGISTRY))} "
                        "(see `fer-bench list`).")
    return _REGISTRY[paper_id]
