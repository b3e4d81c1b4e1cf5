"""Papers register themselves here: id, title, seed text, models, recipe, claims, interpretations.

A paper module in ``papers/`` builds one :class:`Paper` and calls :func:`register`. This module is a leaf of the
library: it knows no paper. Discovery lives in the ``papers`` package, whose ``__init__`` imports every module in
it (so adding a paper needs no change anywhere else); code above the library (the runner, the report, the CLI)
gets papers through ``papers.get_paper`` / ``papers.list_papers``.
"""

from __future__ import annotations

import datetime
import difflib
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
from torch import nn

from .config import DATASETS, DEFAULTS, KEYS, PROFILES
from .errors import UserError

_REGISTRY: dict[str, "Paper"] = {}

METRICS = ("accuracy", "loss", "macro_f1", "accuracy_gain", "per_class_accuracy", "confusion_matrix", "dataset_size",
           "train_time_hours", "accuracy_curve", "loss_curve", "trainable_params", "overfit_epoch", "accuracy_summary")
FRACTIONS = ("accuracy", "macro_f1", "accuracy_summary")  # claims whose value is a fraction in [0, 1]
MATRICES = ("per_class_accuracy", "confusion_matrix", "accuracy_curve", "loss_curve")  # value None, a matrix


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
    tta: str = ""  # the test-time views the number was measured with, when the paper says ("" = its recipe's)

    def __post_init__(self):
        """A claim that cannot be judged is refused when the paper module is imported, naming what is wrong."""
        def bad(why):
            raise ValueError(f"Claim {self.model}/{self.metric} ({self.source}): {why}")

        if self.metric not in METRICS:
            near = difflib.get_close_matches(self.metric, METRICS, n=1)
            bad(f"unknown metric {self.metric!r}" + (f"; did you mean {near[0]!r}?" if near else ""))
        if self.checkpoint not in ("selected", "last"):
            bad(f"checkpoint {self.checkpoint!r}: 'selected' or 'last'")
        if self.kind not in ("own", "cited"):
            bad(f"kind {self.kind!r}: 'own' or 'cited'")
        if self.tta not in ("", "none", "hflip", "tencrop"):
            bad(f"tta {self.tta!r}: '', none, hflip or tencrop")
        if not self.split or not self.protocol or not self.source:
            bad("split, protocol and source are required")
        if self.metric in MATRICES:
            if self.value is not None or not self.matrix:
                bad("a matrix claim has value None and its numbers in matrix")
            return
        if not isinstance(self.value, (int, float)) or isinstance(self.value, bool) or not math.isfinite(self.value):
            bad(f"value {self.value!r} is not a finite number")
        if self.metric in FRACTIONS and not 0 <= self.value <= 1:
            bad(f"value {self.value} is not a fraction in [0, 1] (write 73.2% as 0.732)")
        if self.metric == "accuracy_gain" and (not self.relative_to or not -1 <= self.value <= 1):
            bad("a gain names relative_to and is a fraction in [-1, 1]")
        if self.metric in ("loss", "dataset_size", "train_time_hours", "trainable_params", "overfit_epoch") \
                and self.value < 0:
            bad(f"value {self.value} cannot be negative")


@dataclass(frozen=True)
class Model:
    build: Callable[[dict], nn.Module]  # resolved recipe -> network producing 7 logits
    recipe: dict = field(default_factory=dict)  # this model's overrides of the paper's recipe
    summary: str = ""


@dataclass(frozen=True)
class Citation:
    """Where a paper without a text in shared/seeds was published: title, venue, year and a DOI or a URL (at least
    one). It checks itself when constructed, so a bad one stops the paper's import with a message naming it."""
    title: str
    venue: str
    year: int
    doi: str = ""  # e.g. 10.1109/ACCESS.2023.1234567 (no https://doi.org/ prefix)
    url: str = ""  # http(s)://... where the paper can be read

    def __post_init__(self):
        def bad(why):
            raise ValueError(f"Citation {self.title!r}: {why}")

        if not str(self.title).strip() or not str(self.venue).strip():
            bad("title and venue are required")
        if not isinstance(self.year, int) or isinstance(self.year, bool) \
                or not 1900 <= self.year <= datetime.date.today().year + 1:
            bad(f"year {self.year!r} is not a year (an int between 1900 and next year)")
        if not self.doi and not self.url:
            bad("give a doi or a url")
        if self.doi and not re.fullmatch(r"10\.\d{4,9}/\S+", self.doi):
            bad(f"doi {self.doi!r} is not a DOI (10.<registrant>/<suffix>, without https://doi.org/)")
        if self.url and not re.fullmatch(r"https?://[^\s/]+\.[^\s/]+(/\S*)?", self.url):
            bad(f"url {self.url!r} is not an http(s) address")

    def __str__(self) -> str:
        link = f"https://doi.org/{self.doi}" if self.doi else self.url
        return f"{self.title}. {self.venue}, {self.year}. {link}"


@dataclass(frozen=True)
class Paper:
    id: str
    title: str
    seed: str = field(default="", kw_only=True)  # file name in shared/seeds, or "" with a citation
    models: dict[str, Model]
    recipe: dict  # overrides of fer_bench.config.DEFAULTS (and of its own ``keys``)
    claims: list[Claim]
    interpretations: dict[str, str]  # choice -> one-line reason, for every gap the paper left
    profiles: dict[str, dict] = field(default_factory=dict)  # per-profile overrides of PROFILES
    # per-dataset changes of the recipe (e.g. {"jaffe": {"epochs": 30}}), below the profile and the command line
    datasets: dict[str, dict] = field(default_factory=dict)
    # recipe keys of the paper's own, beyond DEFAULTS (e.g. an unstated layer width made --set-able); every key a
    # recipe, model recipe or profile sets must be one of these or of DEFAULTS, else register() refuses the paper
    keys: tuple[str, ...] = ()
    # readings of the paper that its text leaves open and that need a network of their own (e.g. an ImageNet-
    # pretrained, frozen backbone): run by name (`fer-bench run --model NAME`), never by --model all or a plan's
    # default, and judged against no claim (a claim names one of ``models``); the report lists them with their command
    readings: dict[str, Model] = field(default_factory=dict)
    # where the paper was published, for a paper whose text is not in shared/seeds (one added from a PDF)
    citation: Citation | None = field(default=None, kw_only=True)

    def __post_init__(self):
        """A paper names its source: a seed text file, or a Citation."""
        if self.citation is not None and not isinstance(self.citation, Citation):
            raise ValueError(f"{self.id}: citation must be a fer_bench.Citation(title, venue, year, doi or url)")
        if not self.seed and self.citation is None:
            raise ValueError(f"{self.id}: name the paper's source: seed=<its text file in shared/seeds> or "
                             "citation=Citation(title=..., venue=..., year=..., doi=... or url=...)")

    @property
    def source(self) -> str:
        """The paper's source as the report names it: its seed file, or its citation."""
        return self.seed or str(self.citation)

    def resolve(self, model: str, profile: str = "paper", dataset: str = "fer2013") -> dict:
        """The paper's recipe of one model on one dataset under one profile (fer_bench.config's layering; the
        command line's --epochs/--set come on top in ``fer_bench.config.resolve``)."""
        spec = self.spec(model)
        if spec is None:
            readings = f"; readings of it: {', '.join(self.readings)}" if self.readings else ""
            raise UserError(f"Paper {self.id} has no model {model!r}. Its models: {', '.join(self.models)}{readings}.")
        if profile not in PROFILES and profile not in self.profiles:
            raise UserError(f"Unknown profile {profile!r}. Profiles: {', '.join(self.profile_names())}.")
        if dataset not in DATASETS:
            raise UserError(f"--dataset {dataset}: choose one of {', '.join(DATASETS)}.")
        return {**DEFAULTS, **self.recipe, **spec.recipe, **self.datasets.get(dataset, {}),
                **PROFILES.get(profile, {}), **self.profiles.get(profile, {})}

    def profile_names(self) -> list[str]:
        return list(dict.fromkeys([*PROFILES, *self.profiles]))

    def spec(self, model: str) -> Model | None:
        """One of the paper's models or of its readings, by name (None if neither)."""
        return self.models.get(model) or self.readings.get(model)

    def build(self, model: str, cfg: dict | None = None) -> nn.Module:
        cfg = cfg or self.resolve(model)
        return self.spec(model).build(cfg)

    def num_params(self, model: str) -> int:
        with torch.device("meta"):  # no memory, no init: a count is all we need
            return count_params(self.build(model, {**self.resolve(model), "pretrained": False}))

    def to_json(self) -> dict:
        return {
            "id": self.id, "title": self.title, "seed": self.seed,
            "citation": asdict(self.citation) if self.citation else None,
            "models": [self._model_json(m) for m in self.models],
            "readings": [self._model_json(m) for m in self.readings],
            "claims": [asdict(c) for c in self.claims],
            "interpretations": self.interpretations,
            "profiles": self.profile_names(),
        }


    def _model_json(self, model: str) -> dict:
        """One model for `fer-bench list --json`: its parameter count, its resolved recipe (profile paper, FER-2013)
        and what each of its recipe's documented choices does (e.g. normalize=none: pixels / 255)."""
        recipe = self.resolve(model)
        return {"name": model, "params": self.num_params(model), "summary": self.spec(model).summary,
                "recipe": recipe, "meanings": {k: f"{v}: {KEYS[k].meaning(v)}" for k, v in recipe.items()
                                               if k in KEYS and KEYS[k].meaning(v)}}


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def check_recipe_keys(paper: Paper) -> None:
    """Refuse a recipe key that is neither in DEFAULTS nor declared in ``paper.keys`` (a misspelt ``aug_hlip=True``
    would otherwise be a silent key of its own while ``aug_hflip`` stays False), naming the nearest valid key;
    and a per-dataset recipe for an unknown dataset."""
    shared = [k for k in paper.keys if k in DEFAULTS]
    if shared:
        raise ValueError(f"{paper.id}: keys {shared} are fer_bench.config.DEFAULTS keys; declare only keys of its own")
    valid = [*DEFAULTS, *paper.keys]
    unknown = [d for d in paper.datasets if d not in DATASETS]
    if unknown:
        raise ValueError(f"{paper.id}: a recipe for an unknown dataset {unknown[0]!r} (datasets: {', '.join(DATASETS)}).")
    specs = {**paper.models, **paper.readings}
    recipes = {"recipe": paper.recipe, **{f"model {m!r} recipe": spec.recipe for m, spec in specs.items()},
               **{f"{d} recipe": overrides for d, overrides in paper.datasets.items()},
               **{f"profile {p!r}": overrides for p, overrides in paper.profiles.items()}}
    for where, recipe in recipes.items():
        for key in recipe:
            if KEYS.get(key) is not None and KEYS[key].group == "budget" and not where.startswith("profile"):
                raise ValueError(f"{paper.id}: {where} sets {key!r}, a budget key: only profiles may cut a budget.")
            if key not in valid:
                near = difflib.get_close_matches(key, valid, n=1)
                hint = f"did you mean {near[0]!r}? " if near else ""
                raise ValueError(f"{paper.id}: {where} sets an unknown recipe key {key!r}: {hint}A key of the "
                                 "paper's own must be declared in Paper(keys=...).")
    unset = [k for k in paper.keys if k not in paper.recipe and not any(k in s.recipe for s in specs.values())]
    if unset:
        raise ValueError(f"{paper.id}: declared keys {unset} have no value in the recipe or any model recipe.")


def register(paper: Paper) -> Paper:
    if paper.id in _REGISTRY and _REGISTRY[paper.id] is not paper:
        raise ValueError(f"paper id {paper.id!r} registered twice")
    check_recipe_keys(paper)
    names = set(paper.models)
    if names & set(paper.readings):
        raise ValueError(f"{paper.id}: {sorted(names & set(paper.readings))} named both a model and a reading")
    for c in paper.claims:
        if c.kind == "own" and c.model not in names and c.model != "*":
            raise ValueError(f"{paper.id}: claim on unknown model {c.model!r}")
    _REGISTRY[paper.id] = paper
    return paper


def list_papers() -> list[str]:
    """The registered papers' ids (``papers.list_papers`` first imports every paper module)."""
    return sorted(_REGISTRY)


def get_paper(paper_id: str) -> Paper:
    if paper_id not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY)) or "none (import the papers package first: papers.get_paper)"
        raise UserError(f"Unknown paper {paper_id!r}. Registered papers: {known} (see `fer-bench list`).")
    return _REGISTRY[paper_id]
