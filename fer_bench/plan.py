"""A reproduction plan: which runs `fer-bench reproduce` trains, and which claims each of them can answer.

A plan is a list of :class:`Planned` runs (paper, model, seed, profile, recipe overrides). A run costs hours; before
one is given them, :func:`judged_claims` asks the report's own rules (``verdicts.evaluate_claim``) which of the
paper's claims a completed full-budget run of that recipe could be compared with. A planned run that could answer
none (another protocol, split, checkpoint selection or test-time augmentation than every claim, or a reduced budget)
is refused, unless its plan entry says on purpose why it runs (``purpose = "..."``).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .config import DEFAULTS, EXECUTION, budget, same_recipe
from .data import CLASSES
from .errors import UserError
from .runner import resolve_config

RUN_PREFIX = "repro"
MIN_START_S = 300  # a run is not started (or resumed) with less time left than this before --time-limit
PLAN_KEYS = ("paper", "model", "seeds", "profile", "set", "purpose")


@dataclass(frozen=True)
class Planned:
    paper: str
    model: str
    seed: int
    profile: str = "paper"
    overrides: tuple[str, ...] = ()
    purpose: str = field(default="", compare=False)  # why a run that answers no claim is trained anyway

    def config(self) -> dict:
        return resolve_config(self.paper, self.model, self.profile, None, list(self.overrides))

    def key(self) -> str:
        """What the run trains: profile, dataset and the fully resolved recipe (``lr=0.1`` and ``lr=0.10`` alike)."""
        return json.dumps({"profile": self.profile, "dataset": "fer2013", "config": self.config()}, sort_keys=True)

    @property
    def name(self) -> str:
        return f"{self.paper}/{self.model} seed {self.seed} ({self.profile})"

    def run_dir(self, out: Path) -> Path:
        """The run directory: named after the paper, model, seed, profile and the fully resolved recipe when it is
        created; found again by that name, or by its run.json when a later fer-bench added recipe keys (which
        changes the name but not the recipe: see same_recipe)."""
        digest = hashlib.sha256(self.key().encode()).hexdigest()[:10]
        named = Path(out) / "runs" / self.paper / self.model / f"{RUN_PREFIX}-s{self.seed}-{digest}"
        if named.exists():
            return named
        cfg = self.config()
        for d in sorted(named.parent.glob(f"{RUN_PREFIX}-s{self.seed}-*")):
            info = _read_json(d / "run.json") or {}
            if (info.get("seed"), info.get("profile"), info.get("dataset")) == (self.seed, self.profile, "fer2013") \
                    and same_recipe(info.get("config") or {}, cfg):
                return d
        return named

    def differs(self, record: dict, execution: bool = True) -> list[str]:
        """What a run.json/metrics.json record trained that this planned run does not (empty: the same run). With
        ``execution=False`` the execution keys (config.EXECUTION: layout, compilation, evaluation batch, the extra
        unleaked subsets) are not compared: a run that trained the same recipe another way answers the same claims."""
        out = []
        if record.get("seed") != self.seed:
            out.append(f"seed {record.get('seed')} (planned: {self.seed})")
        if record.get("profile", self.profile) != self.profile:
            out.append(f"profile {record.get('profile')} (planned: {self.profile})")
        if (record.get("paper"), record.get("model")) != (self.paper, self.model):
            out.append(f"model {record.get('paper')}/{record.get('model')} (planned: {self.paper}/{self.model})")
        cfg, rec = self.config(), record.get("config") or {}
        ignore = frozenset() if execution else EXECUTION
        if rec and not same_recipe(rec, cfg, ignore):
            r, c = ({k: d.get(k, DEFAULTS.get(k)) for k in (set(rec) | set(cfg)) - ignore} for d in (rec, cfg))
            keys = sorted(k for k in r if r[k] != c[k])  # a key one of them lacks counts at its default
            out.append("recipe " + (", ".join(f"{k}={r[k]} (planned: {c[k]})" for k in keys) or "keys differ"))
        return out


def _read_json(path: Path) -> dict | None:
    try:
        d = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) else None


def parse_seeds(text: str) -> list[int]:
    parts = [s.strip() for s in str(text).split(",") if s.strip()]
    if not parts or not all(re.fullmatch(r"[0-9]+", s) for s in parts):
        raise UserError(f"--seeds {text}: give comma-separated integers, e.g. 0,1,2.")
    seeds = [int(s) for s in parts]
    if any(not 0 <= s < 2**32 for s in seeds) or len(set(seeds)) != len(seeds):
        raise UserError(f"--seeds {text}: give distinct seeds in [0, 2^32), e.g. 0,1,2.")
    return seeds


def make_plan(paper: str, model: str = "all", seeds: str | list[int] = "0", profile: str = "paper",
              overrides: list[str] = (), purpose: str = "") -> list[Planned]:
    """Every (model, seed) of one paper, models in the paper's order, seed by seed (seed 0 of every model first)."""
    from papers import get_paper

    p = get_paper(paper)
    models = list(p.models) if model == "all" else [model]
    for m in models:
        if m not in p.models:
            raise UserError(f"--model {m}: {p.id} has the models {', '.join(p.models)} (or 'all').")
    seed_list = parse_seeds(",".join(map(str, seeds))) if isinstance(seeds, list) else parse_seeds(seeds)
    plan = [Planned(p.id, m, s, profile, tuple(overrides), purpose) for s in seed_list for m in models]
    for item in plan:
        item.config()  # every override is checked before anything runs
    return plan


def _entry(path, i: int, e) -> dict:
    """One [[run]] table, its types checked (a TOML `seeds = [1.5]` or `set = "epochs=2"` is refused, not coerced)."""
    where = f"--plan {path}: [[run]] number {i}"
    if not isinstance(e, dict):
        raise UserError(f"--plan {path}: `run` must be [[run]] tables, found {type(e).__name__} {e!r}.")
    unknown = set(e) - set(PLAN_KEYS)
    if "paper" not in e or unknown:
        raise UserError(f"{where} needs `paper` and may have model, seeds, profile, set, purpose"
                        + (f" (unknown: {', '.join(sorted(unknown))})" if unknown else "") + ".")
    for k in ("paper", "model", "profile", "purpose"):
        if k in e and not isinstance(e[k], str):
            raise UserError(f"{where}: {k} must be a string, e.g. {k} = \"...\" (found {e[k]!r}).")
    seeds = e.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(type(s) is int for s in seeds):
        raise UserError(f"{where}: seeds must be a list of integers, e.g. seeds = [0, 1, 2] (found {seeds!r}).")
    sets = e.get("set", [])
    if not isinstance(sets, list) or not all(isinstance(s, str) and "=" in s for s in sets):
        raise UserError(f"{where}: set must be a list of \"key=value\" strings, e.g. set = [\"protocol=paper\"] "
                        f"(found {sets!r}).")
    return {"paper": e["paper"], "model": e.get("model", "all"), "seeds": seeds, "profile": e.get("profile", "paper"),
            "overrides": sets, "purpose": e.get("purpose", "").strip()}


def load_plan(path: Path) -> list[Planned]:
    """A TOML plan file: ``[[run]]`` tables with paper, model (default "all"), seeds (default [0]), profile
    (default "paper"), set (a list of "key=value") and purpose (why a run that answers no claim runs), carried out in
    the file's order."""
    try:
        doc = tomllib.loads(Path(path).read_bytes().decode("utf-8"))
    except OSError as e:
        raise UserError(f"--plan {path}: cannot read it ({e.strerror}).") from None
    except UnicodeDecodeError:
        raise UserError(f"--plan {path}: not UTF-8 text (a TOML file must be).") from None
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"--plan {path}: not valid TOML ({e}).") from None
    entries = doc.get("run")
    if not isinstance(entries, list) or not entries:
        raise UserError(f"--plan {path}: expected one or more [[run]] tables with at least `paper = \"...\"`.")
    plan = []
    for i, e in enumerate(entries, 1):
        plan += make_plan(**_entry(path, i, e))
    seen = {}
    for item in plan:  # the same run twice, however its overrides are written (lr=0.1 and lr=0.10)
        k = (item.paper, item.model, item.seed, item.key())
        if k in seen:
            raise UserError(f"--plan {path}: {item.name} is planned twice ({' '.join(seen[k].overrides) or 'recipe'} "
                            f"and {' '.join(item.overrides) or 'recipe'} resolve to the same recipe).")
        seen[k] = item
    return plan


def parse_time_limit(text: str, minimum: float | None = None) -> float:
    """H:MM:SS (or MM:SS) -> seconds; at least ``minimum`` (default MIN_START_S), since a shorter limit could never
    start a run."""
    minimum = MIN_START_S if minimum is None else minimum
    parts = str(text).split(":")
    if not 2 <= len(parts) <= 3 or not all(re.fullmatch(r"[0-9]+", p) for p in parts):
        raise UserError(f"--time-limit {text!r}: write it as H:MM:SS, e.g. 2:45:00.")
    seconds = 0
    for p in parts:
        seconds = seconds * 60 + int(p)
    if seconds < max(minimum, 1):
        raise UserError(f"--time-limit {text}: a run is not started with less than {_mmss(minimum)} left, so this "
                        f"limit could never train anything; give at least {_mmss(max(minimum, 1))}.")
    return float(seconds)


def _mmss(seconds: float) -> str:
    return f"{int(seconds) // 60}:{int(seconds) % 60:02d}"


def check_minutes(minutes: float) -> float:
    if not math.isfinite(minutes) or minutes <= 0:
        raise UserError(f"--checkpoint-minutes {minutes}: give a positive, finite number of minutes.")
    return minutes


# ---------------------------------------------------------------- what a planned run can answer

def _as_if_measured(item: Planned, model: str) -> dict:
    """A completed full-budget metrics.json of ``item``'s recipe (for ``model``) as the runner would write it, with
    placeholder numbers: only its protocol, splits, selection, test-time views and budget matter here."""
    from . import protocols

    cfg = item.config() if model == item.model else \
        resolve_config(item.paper, model, item.profile, None, list(item.overrides))
    tests, selected_on = protocols.reported(cfg)
    cm = [[50 if i == j else 0 for j in range(len(CLASSES))] for i in range(len(CLASSES))]
    split = {"accuracy": 0.5, "macro_f1": 0.5, "loss": 1.0, "loss_sd": 1.0, "n": 350, "confusion_matrix": cm,
             "per_class_accuracy": {c: 0.5 for c in CLASSES}}
    return {"paper": item.paper, "model": model, "seed": item.seed, "profile": item.profile, "config": cfg,
            "dataset": {"name": "fer2013", "fingerprint": "planned"}, "protocol": cfg["protocol"],
            "status": "completed", "epochs_planned": cfg["epochs"], "epochs_completed": cfg["epochs"],
            "selected_on": selected_on, "best_epoch": cfg["epochs"], "run_id": f"planned-{model}",
            "budget": {"full": True, "reasons": []}, "splits": {s: split for s in tests},
            "last_epoch": {"epoch": cfg["epochs"], "same_as_selected": True, "splits": {s: split for s in tests}},
            "_path": f"planned/{model}/metrics.json"}


def judged_claims(item: Planned) -> tuple[list, list[str]]:
    """The claims of ``item``'s paper that a completed run of it could be compared with, by the report's own rules
    (a gain also needs the model it is taken against, assumed run with the same recipe); and, when there are none,
    why each claim about this model cannot be."""
    from papers import get_paper

    from . import rules, verdicts

    paper = get_paper(item.paper)
    cfg = item.config()
    cut = budget(paper, item.model, item.profile, cfg, cfg["epochs"])
    if not cut["full"]:
        return [], [f"a reduced budget ({'; '.join(cut['reasons'])}) is never judged as a reproduction"]
    records = {item.model: _as_if_measured(item, item.model)}
    for c in paper.claims:
        if c.metric == "accuracy_gain" and item.model in (c.model, c.relative_to):
            for m in (c.model, c.relative_to):
                if m in paper.models and m not in records:
                    records[m] = _as_if_measured(item, m)
    units = verdicts.units(list(records.values()), {paper.id: paper})
    judged, why = [], []
    for c in paper.claims:
        if item.model not in (c.model, c.relative_to if c.metric == "accuracy_gain" else None):
            continue
        row = rules.evaluate_claim(paper, c, units)
        if row is None:
            continue
        if row["verdict"] in ("not yet run", "not comparable"):
            why.append(f"{c.metric} {c.as_printed} ({c.split}, {c.protocol}): {row['reason']}")
        else:
            judged.append(c)
    return judged, why


def claim_label(c) -> str:
    what = {"accuracy": "acc", "accuracy_gain": "gain", "per_class_accuracy": "per-class", "loss": "loss",
            "confusion_matrix": "matrix"}.get(c.metric, c.metric)
    printed = str(c.as_printed)
    return f"{what} " + ("(table)" if c.matrix and len(printed) > 12 else printed if len(printed) <= 24
                         else printed[:21] + "...")


def check_judgeable(plan: list[Planned]) -> dict[Planned, list]:
    """The claims each planned run answers; a run that answers none and has no ``purpose`` is refused (exit 2)."""
    out, refused = {}, []
    for item in plan:
        judged, why = judged_claims(item)
        if not judged and not item.purpose:
            refused.append(f"{item.name} {' '.join(item.overrides)}".rstrip() + ": it can be compared with no claim "
                           "of the paper:\n    " + "\n    ".join(why or ["the paper has no claim about this model"]))
        out[item] = judged
    if refused:
        raise UserError("The plan trains runs that no claim can be judged on (hours for nothing); change their "
                        "recipe (e.g. set = [\"protocol=paper\"]) or say why they run (purpose = \"...\"):\n  "
                        + "\n  ".join(refused))
    return out
