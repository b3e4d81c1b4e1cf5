"""Claims against runs: the data layer of the report (figures and markdown are built from what this returns).

``build(runs_dir)`` reads every run through ``fer_bench.results.load_runs`` (cross-validation folds pooled into one
unit), recomputes each run's budget from its recorded recipe (``fer_bench.config.budget``: the file's flag alone is
never trusted), groups the runs by paper, model, dataset, protocol, TTA, profile, recipe variant and budget, and
judges each claim of each registered paper by ``VERDICT_RULES``. The question every verdict answers is ``QUESTION``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import config
from .audit import audit, canonical_class, matrix_summary, per_class_rows, printed_tolerance
from .audit_facts import official_split, pct
from .data import CLASSES, SPLITS
from .errors import UserError
from .results import load_runs
from .stats import LEVEL, MIN_SEEDS, SEED_ALLOWANCE, compare, difference, predict, summarize

GROUP = ["paper", "model", "dataset", "protocol", "tta", "profile", "variant", "full"]
VERDICTS = ("consistent", "below", "above", "mixed", "not comparable", "inconclusive", "not yet run")
MAX_HALF_WIDTH = {"accuracy": 0.03, "loss": 0.10}  # the precision a "consistent" needs (accuracy: 3 points)
PROXY_SPLITS = {"validation": "PublicTest", "val": "PublicTest", "test": "PrivateTest"}  # claim split -> ours

QUESTION = (
    "Each verdict answers: *could one run of the paper's recipe, trained and evaluated as fer-bench does, have "
    "produced the paper's number?* A paper's number is one run, so the measured seeds give a 95% prediction "
    "interval for one new run: mean +- sqrt(h_seed^2 + h_test^2 [+ h_paper^2]), where h_seed = t(0.975, n-1) * sd "
    f"* sqrt(1 + 1/n) with n >= {MIN_SEEDS} seeds, and with fewer seeds a stated allowance of "
    f"{100 * SEED_ALLOWANCE:.0f} accuracy points (the seed-to-seed spread is not estimated from one or two runs; "
    "a run that far from a claim would need a seed sd over 2.5 points); h_test is the Wilson half-width on our test "
    "images (a loss: z * its per-image sd / sqrt(N)); h_paper the Wilson half-width of the claimed value on the "
    "paper's own test images when they are not ours. The mean over seeds with its confidence interval is shown "
    "beside it ('Measured').")

VERDICT_RULES = [
    ("not yet run", "no completed run of the claim's model exists (for a gain: of either model); also every cited "
                    "claim on a model fer-bench does not implement."),
    ("not comparable", "runs exist, but none matches the claim's protocol, dataset and test-time augmentation (the "
                       "claim's own, else that of the paper's recipe for the model; a single-view claim can use a TTA "
                       "run's recorded single-view numbers), or has its split; also claims fer-bench cannot measure "
                       "the same way (training time on other hardware, curves)."),
    ("inconclusive", "comparable runs exist but the evidence is weak, with the reason: only reduced-budget runs (the "
                     "budget recomputed from the recipe: profile, every recipe key, epochs completed; a file without "
                     "a budget counts as reduced), unless the "
                     "lower-bound rule below decides; no measured value for the claim (never 'consistent' without a "
                     "number); no test-set interval (a loss without its per-image spread, macro-F1); or too "
                     f"imprecise: the claim lies inside the prediction interval but fewer than {MIN_SEEDS} distinct "
                     f"seeds ran or the interval is wider than +-{100 * MAX_HALF_WIDTH['accuracy']:.0f} points "
                     f"(a loss: +-{MAX_HALF_WIDTH['loss']}); what would fix it is named."),
    ("consistent", f"at least {MIN_SEEDS} distinct seeds, the prediction interval within the precision above, and "
                   "it overlaps the claimed value +- the rounding of its printed digits. A printed confusion matrix is "
                   "judged by the accuracy it implies (its range under the printed rounding)."),
    ("below", "the whole prediction interval lies below the claimed value (minus its rounding)."),
    ("above", "the whole prediction interval lies above it (plus its rounding). Lower-bound rule: a run cut only in "
              "epochs, whose schedule does not depend on the number of epochs (not cosine) and which selects on "
              "accuracy, is the first k epochs of the paper's run, so its best selection-split accuracy is a lower "
              "bound of the full run's: when "
              "even that bound's interval lies above a claim on the selection split, the verdict is 'above, "
              "already after k of N epochs'."),
    ("mixed", "per-class claims: some classes below and some above. Seven classes are compared at once, so each "
              "class's prediction interval is at the Bonferroni level 1 - 0.05/7 (each on its own test images; the "
              f"paper's test-set noise is not added per class); 'consistent' needs every class within and >= "
              f"{MIN_SEEDS} seeds."),
]
CONVENTIONS = (
    "Splits: a claim on 'validation' is compared with PublicTest and one on 'test' with PrivateTest. When the "
    "paper's test images are not ours (its own protocol, or a 'validation' hold-out it carved itself, as Huang's "
    "5,742 images), PublicTest/PrivateTest is a held-out proxy and the paper's own test-set noise is added (its "
    "stated test size, else ours): Huang's 93% and its Figure 6 matrices alike. Gains: when the paper's own "
    "accuracies show whether a gain is in points or relative, that reading is judged; otherwise both are, and "
    "the verdict stands only if they agree. A claim of the paper's final epoch ('last epoch') is compared with "
    "each run's last-epoch weights, every other claim with the checkpoint selected on the selection split. Seeds "
    "are counted once (a repeated seed keeps one run, the last to finish, and the repeat is named); a group that "
    "mixes dataset "
    "fingerprints or code versions says so. When several full-budget groups match, the paper profile with the "
    "unmodified recipe is used first, then the group with the most seeds.")


# ---------------------------------------------------------------- runs as units

def _recomputed_budget(d: dict, paper) -> dict:
    """The file's budget reasons plus those the recipe shows (the file's `full` is never believed alone)."""
    recorded = d.get("budget") if isinstance(d.get("budget"), dict) else {}
    reasons = list(recorded.get("reasons") or [])
    if not recorded:
        reasons.append("no budget recorded")
    cfg, model = d.get("config") or {}, d["model"]
    if paper is not None and model in paper.models:
        try:
            again = config.budget(paper, model, d.get("profile", "?"), cfg, int(d.get("epochs_completed") or 0),
                                  (d.get("dataset") or {}).get("name", "fer2013"))["reasons"]
        except UserError as e:  # a profile or dataset the paper no longer has
            again = [str(e)]
        named = {r.split("=", 1)[0] for r in reasons if "=" in r}  # the file's "epochs=5 (paper: 30)" stays
        reasons += [r for r in again if r not in reasons and not ("=" in r and r.split("=", 1)[0] in named)]
    full = recorded.get("full") is True and not reasons
    return {"full": full, "reasons": reasons}


def _variant(d: dict, paper) -> str:
    if paper is None or d["model"] not in paper.models:
        return "(unregistered)"
    try:
        return config.variant(paper, d["model"], d.get("profile", "paper"), d.get("config") or {},
                              (d.get("dataset") or {}).get("name", "fer2013"))
    except UserError:
        return f"(profile {d.get('profile')} unknown)"


UNIT_COLUMNS = GROUP + ["budget_reasons", "seed", "run_id", "finished", "status", "folds", "epochs_planned",
                        "epochs_completed", "best_epoch", "selected_on", "accelerator", "device", "devices", "precision",
                        "git_sha", "fingerprint", "train_s", "config", "path", "logs", "splits", "last_splits"]


def units(runs: list[dict], papers: dict) -> pd.DataFrame:
    """One row per run (or pooled cross-validation)."""
    rows = []
    for d in runs:
        cfg, hw, sw = d.get("config") or {}, d.get("hardware") or {}, d.get("software") or {}
        budget = _recomputed_budget(d, papers.get(d["paper"]))
        rows.append({
            "paper": d["paper"], "model": d["model"], "dataset": (d.get("dataset") or {}).get("name", "fer2013"),
            "protocol": d.get("protocol") or cfg.get("protocol", "canonical"), "tta": cfg.get("tta", "none"),
            "profile": d.get("profile", "?"), "variant": _variant(d, papers.get(d["paper"])),
            "full": budget["full"], "budget_reasons": "; ".join(budget["reasons"]),
            "seed": d.get("seed"), "run_id": d.get("run_id", Path(d["_path"]).parent.name),
            "finished": d.get("finished") or "",  # older records have none: they count as the earliest
            "status": d.get("status", "?"), "folds": len(d.get("folds", [])) or None,
            "epochs_planned": d.get("epochs_planned"), "epochs_completed": d.get("epochs_completed"),
            "best_epoch": d.get("best_epoch"), "selected_on": d.get("selected_on", ""),
            "accelerator": hw.get("accelerator", "?"), "device": hw.get("device_name", "?"),
            "devices": hw.get("devices"), "precision": hw.get("precision", "?"),
            "git_sha": sw.get("git_sha", "unknown"), "fingerprint": (d.get("dataset") or {}).get("fingerprint", "?"),
            "train_s": (d.get("timing") or {}).get("train_s"), "config": cfg, "path": d["_path"],
            "logs": d.get("_logs") or [str(Path(d["_path"]).parent / "logs" / "metrics.csv")],
            "splits": d.get("splits") or {}, "last_splits": (d.get("last_epoch") or {}).get("splits") or {},
        })
    return pd.DataFrame(rows, columns=UNIT_COLUMNS)


def measurements(units: pd.DataFrame) -> pd.DataFrame:
    """Long table: one row per completed unit, split and metric (per-class accuracies as 'class:<name>')."""
    rows = []
    for u in units[units.status == "completed"].itertuples():
        for split, m in u.splits.items():
            base = {k: getattr(u, k) for k in GROUP} | {"run_id": u.run_id, "finished": u.finished, "seed": u.seed,
                                                        "split": split}
            for metric in ("accuracy", "macro_f1", "loss"):
                if m.get(metric) is not None:
                    rows.append(base | {"metric": metric, "value": float(m[metric]), "n_test": m.get("n")})
            cm = np.asarray(m.get("confusion_matrix") or [])
            for c, acc in (m.get("per_class_accuracy") or {}).items():
                i = CLASSES.index(c) if c in CLASSES else len(cm)
                n_c = int(cm[i].sum()) if cm.ndim == 2 and i < len(cm) else None
                if n_c != 0:
                    rows.append(base | {"metric": f"class:{c}", "value": float(acc), "n_test": n_c})
    return pd.DataFrame(rows, columns=GROUP + ["run_id", "finished", "seed", "split", "metric", "value", "n_test"])


def _latest_per_seed(g: pd.DataFrame) -> pd.DataFrame:
    """A seed run more than once counts once: the run that finished last (metrics.json ``finished``; by run id
    among records that have none)."""
    return g.sort_values(["finished", "run_id"], kind="stable").drop_duplicates("seed", keep="last")


def summaries(long: pd.DataFrame) -> pd.DataFrame:
    """mean, std, n (distinct seeds) and the mean's interval per group, split and metric."""
    rows = []
    for key, g in long.groupby(GROUP + ["split", "metric"], sort=False, dropna=False):
        g = _latest_per_seed(g)
        n_test = int(g.n_test.median()) if g.n_test.notna().any() else None
        st = summarize(g.value.tolist(), n_test, key[-1] == "accuracy" or key[-1].startswith("class:"))
        rows.append(dict(zip(GROUP + ["split", "metric"], key)) | st | {"n_test": n_test, "runs": " ".join(g.run_id)})
    return pd.DataFrame(rows, columns=GROUP + ["split", "metric", "mean", "std", "n", "lo", "hi", "method", "n_test",
                                               "runs"])


# ---------------------------------------------------------------- which runs a claim is judged on

def resolve_split(claim_split: str, available) -> str | None:
    """The measured split a claim's split is compared with, if the run has it."""
    if claim_split in available:
        return claim_split
    split = official_split(claim_split) or PROXY_SPLITS.get(re.sub(r"[^a-z]", "", str(claim_split).lower()))
    return split if split in available else None


def claim_tta(claim, paper=None) -> str:
    """The test-time views a claim was measured with: the claim's own ``tta``, else that of the paper's recipe for
    the model (the paper evaluated as its recipe says), else none."""
    tta = claim.tta
    if not tta and paper is not None and claim.model in paper.models:
        tta = paper.resolve(claim.model).get("tta", "")
    return tta or "none"


def _mismatch(claim, u, need_split: bool, tta: str) -> list[str]:
    out = []
    if u.protocol != claim.protocol:
        out.append(f"protocol {u.protocol} (claim: {claim.protocol})")
    if u.dataset != claim.dataset:
        out.append(f"dataset {u.dataset} (claim: {claim.dataset})")
    if u.tta != tta:
        out.append(f"TTA {u.tta} (claim: {tta})")
    if need_split and resolve_split(claim.split, u.splits) is None:
        out.append(f"splits {'/'.join(u.splits) or 'none'} (claim: {claim.split})")
    return out


def _single_view(units: pd.DataFrame) -> pd.DataFrame:
    """TTA runs seen through their recorded single-view ('plain') numbers."""
    keep = [all("plain" in m for m in u.splits.values()) and bool(u.splits) for u in units.itertuples()]
    u = units[keep].copy()
    u["splits"] = [{s: m["plain"] for s, m in splits.items()} for splits in u.splits]
    u["last_splits"] = [{} for _ in range(len(u))]
    u["tta"] = "none"
    return u


@dataclass
class Pick:
    """The runs a claim is judged on."""
    verdict: str | None  # set when no judgement is possible: not yet run / not comparable / inconclusive
    reason: str
    units: pd.DataFrame = field(default_factory=pd.DataFrame)
    group: str = ""
    split: str | None = None
    reduced: bool = False
    notes: list = field(default_factory=list)  # repeated seeds, mixed code versions or datasets


def group_label(g) -> str:
    label = f"{g.profile} profile" + (f", {g.variant}" if g.variant else "")
    return label + ("" if g.full else " (reduced budget)")


def best_group(units: pd.DataFrame, preferences: list[tuple[str, object]]) -> pd.Series:
    """The group (GROUP columns + n) that best meets ``preferences`` (column, wanted value) in order, then has the
    most runs."""
    sizes = units.groupby(GROUP, sort=False, dropna=False).seed.nunique().rename("n").reset_index()
    keys = []
    for i, (col, wanted) in enumerate(preferences):
        sizes[f"_p{i}"] = sizes[col] != wanted
        keys.append(f"_p{i}")
    return sizes.sort_values([*keys, "n"], ascending=[True] * len(keys) + [False], kind="stable").iloc[0]


def _seeds_once(sel: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    latest = _latest_per_seed(sel)
    notes = [f"seed {s} ran {k} times, counted once ({latest[latest.seed == s].run_id.iloc[0]})"
             for s, k in sel.seed.value_counts().items() if k > 1]
    sel = sel[sel.index.isin(latest.index)]
    shas = sorted({str(s).removesuffix("-dirty")[:12] for s in sel.git_sha})
    if len(shas) > 1:
        notes.append(f"mixes code versions {', '.join(shas)}")
    if sel.fingerprint.nunique() > 1:
        notes.append(f"mixes dataset fingerprints {', '.join(sorted(map(str, sel.fingerprint.unique())))}")
    return sel, notes


def pick_runs(claim, units: pd.DataFrame, paper, model: str, need_split: bool = True) -> Pick:
    """not yet run -> not comparable -> the group to judge (full budget if any; see VERDICT_RULES)."""
    mine = units[(units.paper == paper.id) & (units.model == model) & (units.status == "completed")]
    if mine.empty:
        return Pick("not yet run", f"no completed run of {model}")
    tta = claim_tta(claim, paper)
    ok = mine[[not _mismatch(claim, u, need_split, tta) for u in mine.itertuples()]]
    if ok.empty and tta == "none":
        plain = _single_view(mine)
        ok = plain[[not _mismatch(claim, u, need_split, tta) for u in plain.itertuples()]]
    if ok.empty:
        seen = sorted({"; ".join(_mismatch(claim, u, need_split, tta)) for u in mine.itertuples()})
        return Pick("not comparable", f"{model} was measured only with " + " | ".join(seen))
    full = ok[ok.full]
    pool = full if not full.empty else ok
    best = best_group(pool, [("profile", "paper"), ("variant", "")])
    sel = pool[np.logical_and.reduce([pool[k] == best[k] for k in GROUP])]
    if claim.checkpoint == "last":  # the paper's number is its final epoch: judge the last-epoch weights only
        sel = sel[[bool(s) for s in sel.last_splits]]
        if sel.empty:
            return Pick("inconclusive", "the claim is the paper's last epoch, and no run of this group recorded "
                        "last-epoch metrics (metrics.json without last_epoch)")
        sel = sel.assign(splits=sel.last_splits)
    sel, notes = _seeds_once(sel)
    split = resolve_split(claim.split, sel.iloc[0].splits) if need_split else None
    reduced = full.empty
    reason = ("only reduced-budget runs (" + ("; ".join(sorted(set(sel.budget_reasons))) or "budget.full is false")
              + ")") if reduced else ""
    return Pick("inconclusive" if reduced else None, reason, sel, group_label(best), split, reduced, notes)


def _values(units: pd.DataFrame, split: str, metric: str) -> tuple[list[float], int | None]:
    """Per-run values of a metric on a split and the median test size."""
    vals, ns = [], []
    for s in units.splits:
        m = s.get(split) or {}
        if metric.startswith("class:"):
            c = metric.split(":", 1)[1]
            cm = np.asarray(m.get("confusion_matrix") or [])
            if c in (m.get("per_class_accuracy") or {}):
                vals.append(float(m["per_class_accuracy"][c]))
                ns.append(int(cm[CLASSES.index(c)].sum()) if cm.ndim == 2 and c in CLASSES else None)
        elif m.get(metric) is not None:
            vals.append(float(m[metric]))
            ns.append(m.get("n"))
    ns = [n for n in ns if n]
    return vals, int(np.median(ns)) if ns else None


def _loss_sd(units: pd.DataFrame, split: str) -> tuple[float | None, int]:
    """The mean per-image loss sd over the runs that recorded one (None when none did: runs before fer-bench
    recorded it) and how many did. The spread is a property of the recipe on that split, so the runs that recorded
    it stand in for those that did not."""
    sds = [s[split]["loss_sd"] for s in units.splits if (s.get(split) or {}).get("loss_sd") is not None]
    return (float(np.mean(sds)) if sds else None), len(sds)


def paper_test_n(paper, claim, split: str | None, n_ours: int | None) -> int | None:
    """The size of the paper's own test images when they are not ours (None when they are): its stated size for
    that split if it states one, else the total of a count matrix it prints for that split, else ours."""
    ours = claim.protocol == "canonical" and (claim.split in SPLITS or claim.split.lower() == "test")
    if ours or claim.dataset != "fer2013":
        return None
    stated = [c.value for c in paper.claims if c.metric == "dataset_size" and c.split == claim.split
              and not c.labels and c.value]
    printed = [matrix_summary(c)["total"] for c in paper.claims if c.metric == "confusion_matrix" and c.matrix
               and c.split == claim.split and not matrix_summary(c)["normalised"]]
    return int(stated[0]) if stated else int(min(printed)) if printed else n_ours


# ---------------------------------------------------------------- one claim

def fmt_measured(st: dict, pct: bool = True) -> str:
    if not st or not st.get("n"):
        return ""
    f = (lambda v: f"{100 * v:.2f}") if pct else (lambda v: f"{v:.4f}")
    out = f"{f(st['mean'])}{'%' if pct else ''}"
    if not math.isnan(st.get("lo", math.nan)):
        out += f" [{f(st['lo'])}, {f(st['hi'])}]"
    return out


SUMMARY_FIELDS = ["paper", "model", "kind", "metric", "as_printed", "claimed", "claimed_tol", "claimed_display",
                  "split", "protocol", "dataset", "tta", "selected_on", "source", "refers_to", "measured", "lo", "hi",
                  "std", "n", "n_test", "method", "pred_lo", "pred_hi", "pred_method", "measured_split",
                  "measured_display", "predicted_display", "reduced", "unleaked", "gap", "gap_display", "verdict",
                  "reason", "group", "runs"]


def _row(paper, claim, **kw) -> dict:
    tta = claim_tta(claim, paper)
    refers = f"{claim.split}, {claim.protocol} protocol, {claim.dataset}" + (f", TTA {tta}" if tta != "none" else "")
    refers += (f", selected on {claim.selected_on}" if claim.selected_on else "")
    refers += ", last epoch" if claim.checkpoint == "last" else ""
    row = dict.fromkeys(SUMMARY_FIELDS, "") | {
        "paper": paper.id, "model": claim.model, "kind": claim.kind, "metric": claim.metric,
        "as_printed": claim.as_printed, "claimed": claim.value, "claimed_tol": 0.0, "split": claim.split,
        "protocol": claim.protocol, "dataset": claim.dataset, "tta": tta, "selected_on": claim.selected_on,
        "source": claim.source, "refers_to": refers, "n": 0, "n_test": None, "reduced": False}
    for k in ("measured", "lo", "hi", "std", "pred_lo", "pred_hi", "gap"):
        row[k] = math.nan
    return row | kw


def _with_stats(row: dict, st: dict, pred: dict, pct: bool, reduced: bool) -> dict:
    gap = st["mean"] - row["claimed"] if row["claimed"] is not None else math.nan
    mark = " (reduced budget)" if reduced else ""
    return row | {"measured": st["mean"], "lo": st["lo"], "hi": st["hi"], "std": st["std"], "n": st["n"],
                  "method": st["method"], "pred_lo": pred["lo"], "pred_hi": pred["hi"], "pred_method": pred["method"],
                  "measured_display": fmt_measured(st, pct) + mark, "reduced": reduced,
                  "predicted_display": fmt_measured(pred, pct).partition(" ")[2],
                  "gap": gap, "gap_display": "" if math.isnan(gap) else
                  (f"{100 * gap:+.2f} pts" if pct else f"{gap:+.4f}") + mark}


def judge(claimed: float, tol: float, pred: dict, metric: str, n: int) -> tuple[str, str]:
    """consistent / below / above / inconclusive for one number against one prediction interval."""
    if math.isnan(pred["lo"]):
        why = ("a loss needs its per-image spread (loss_sd, recorded by newer fer-bench runs) and, with fewer than "
               f"{MIN_SEEDS} seeds, has no seed allowance") if metric == "loss" else "no test-set interval"
        return "inconclusive", f"no interval: {why}"
    verdict = compare(claimed, tol, pred["lo"], pred["hi"])
    half = (pred["hi"] - pred["lo"]) / 2
    limit = MAX_HALF_WIDTH.get(metric, MAX_HALF_WIDTH["accuracy"])
    if verdict == "consistent" and (n < MIN_SEEDS or half > limit):
        fix = f"run >= {MIN_SEEDS} distinct seeds" if n < MIN_SEEDS else \
            "more seeds narrow the seed term; a paper's small test set cannot be narrowed"
        return "inconclusive", (f"too imprecise: the claim lies in the prediction interval (+-{half:.4g} from "
                                f"{n} seed(s), {pred['method']}; a verdict needs >= {MIN_SEEDS} seeds and "
                                f"+-{limit:.4g}): {fix}")
    return verdict, pred["method"]


def _epochs_only(pick: Pick) -> bool:
    """Whether the group was cut only in epochs, with a schedule that does not depend on the number of epochs."""
    def cut(reason: str) -> bool:
        m = re.fullmatch(r"epochs=(\d+) \(paper: (\d+)\)|stopped after \d+ of \d+ epochs", reason)
        return bool(m) and (m.group(1) is None or int(m.group(1)) < int(m.group(2)))

    return all(u.profile == "paper" and (u.config or {}).get("scheduler") != "cosine"
               and (u.config or {}).get("monitor", "val/acc") == "val/acc"
               and all(cut(r) for r in u.budget_reasons.split("; ") if r) for u in pick.units.itertuples())


def _lower_bound(row: dict, claim, pick: Pick, pred: dict) -> dict:
    """A reduced group decided by the lower-bound rule (VERDICT_RULES, 'above'), or inconclusive."""
    selection = bool(pick.split) and all(u.selected_on == pick.split for u in pick.units.itertuples())
    if claim.checkpoint == "selected" and selection and _epochs_only(pick) and row["metric"] == "accuracy" \
            and not math.isnan(pred["lo"]) and pred["lo"] > row["claimed"] + row["claimed_tol"]:
        k = int(pick.units.epochs_completed.min())
        return row | {"verdict": "above", "reason": f"above, already after {k} of {_paper_epochs(pick)} epochs: the "
                      f"best {pick.split} accuracy of a run cut only in epochs is a lower bound of the full run's "
                      f"({pred['method']})"}
    return row | {"verdict": "inconclusive", "reason": pick.reason}


def _paper_epochs(pick: Pick) -> str:
    m = re.search(r"\(paper: (\d+)\)", " ".join(pick.units.budget_reasons))
    return m.group(1) if m else str(int(pick.units.epochs_planned.max()))


def _gain_reading(paper, claim) -> str:
    """points / relative when the paper's own accuracies of the two models show which, else both."""
    def acc(model):
        return next((c for c in paper.claims if c.model == model and c.metric == "accuracy" and c.kind == "own"
                     and c.split == claim.split and c.checkpoint == claim.checkpoint), None)
    a, b = acc(claim.model), acc(claim.relative_to)
    if a is None or b is None:
        return "both"
    tol = printed_tolerance(claim.as_printed, claim.value) + printed_tolerance(a.as_printed, a.value) \
        + printed_tolerance(b.as_printed, b.value)
    points = abs(a.value - b.value - claim.value) <= tol
    relative = bool(b.value) and abs((a.value - b.value) / b.value - claim.value) <= tol
    return "points" if points and not relative else "relative" if relative and not points else "both"


def _gain_row(row: dict, paper, claim, units: pd.DataFrame) -> dict:
    models = (claim.model, claim.relative_to)
    picks = [pick_runs(claim, units, paper, m) for m in models]
    for verdict in ("not yet run", "not comparable", "inconclusive"):
        for m, p in zip(models, picks):
            if p.verdict == verdict and (verdict != "inconclusive" or p.units.empty):
                return row | {"verdict": verdict, "reason": f"{m}: {p.reason}"}
    stats, preds = [], []
    for p in picks:
        vals, n_test = _values(p.units, p.split, "accuracy")
        stats.append(summarize(vals, n_test))
        preds.append(predict(vals, n_test))
    d, dp = difference(*stats), difference(*preds)
    base = stats[1]["mean"]
    reduced = any(p.reduced for p in picks)
    row = _with_stats(row, d, dp, True, reduced) | {
        "group": " / ".join(p.group for p in picks), "measured_split": picks[0].split,
        "runs": " ".join(" ".join(p.units.run_id) for p in picks)}
    rel = f"; {100 * d['mean'] / base:+.1f}% relative" if base else ""
    row["measured_display"] += f" ({pct(stats[0]['mean'], missing='')} - {pct(base, missing='')}{rel})"
    if reduced:
        return row | {"verdict": "inconclusive", "reason": "; ".join(f"{m}: {p.reason}" for m, p in zip(models, picks)
                                                                     if p.reduced)}
    n = min(len(p.units) for p in picks)
    reading = _gain_reading(paper, claim)
    judged = {}
    if reading in ("points", "both"):
        judged["points"] = judge(claim.value, row["claimed_tol"], dp, "accuracy", n)
    if reading in ("relative", "both") and base:
        rel = dp | {"lo": dp["lo"] / base, "hi": dp["hi"] / base}
        judged["relative"] = judge(claim.value, row["claimed_tol"], rel, "accuracy", n)
    verdicts = {v for v, _ in judged.values()}
    text = "; ".join(f"{k} reading: {v} ({why})" for k, (v, why) in judged.items())
    if len(verdicts) > 1:
        return row | {"verdict": "inconclusive", "reason": "the readings disagree: " + text}
    return row | {"verdict": verdicts.pop(), "reason": text}


def _per_class_row(row: dict, claim, pick: Pick) -> dict:
    level = 1 - (1 - LEVEL) / len(CLASSES)  # Bonferroni over the seven classes
    judged, gaps, details = [], [], []
    for labels, frac, _, half in per_class_rows(claim):
        for lab, v in zip(labels, frac):
            c = canonical_class(lab)
            vals, n_c = _values(pick.units, pick.split, f"class:{c}") if c else ([], None)
            if not vals:
                continue
            pred = predict(vals, n_c, level=level)
            if math.isnan(pred["lo"]):  # a class without its test count has no interval: not judged
                continue
            judged.append(compare(float(v), half, pred["lo"], pred["hi"]))
            gaps.append(float(np.mean(vals)) - float(v))
            details.append(f"{c} {pct(float(np.mean(vals)), 1, '')} vs {pct(float(v), 1, '')}")
    if not judged:
        return row | {"verdict": "inconclusive", "reason": "no class of the claim is measured with its test count"}
    counts = {v: judged.count(v) for v in ("below", "consistent", "above")}
    verdict = ("consistent" if counts["consistent"] == len(judged) else
               "mixed" if counts["below"] and counts["above"] else "below" if counts["below"] else "above")
    gap = float(np.mean(gaps))
    n = len(pick.units)
    row |= {"measured_display": ", ".join(f"{k} {n_}" for k, n_ in counts.items() if n_) + f" ({'; '.join(details)})"
            + (" (reduced budget)" if pick.reduced else ""), "gap": gap, "reduced": pick.reduced,
            "gap_display": f"{100 * gap:+.2f} pts (mean)", "n": n}
    if pick.reduced:
        return row | {"verdict": "inconclusive", "reason": pick.reason}
    if verdict == "consistent" and n < MIN_SEEDS:
        return row | {"verdict": "inconclusive", "reason": f"too imprecise: every class within its interval, from "
                      f"{n} seed(s); a verdict needs >= {MIN_SEEDS}"}
    return row | {"verdict": verdict, "reason": f"each class: prediction interval at level {level:.4f} (Bonferroni "
                  "over 7 classes) on its own test images"}


def evaluate_claim(paper, claim, units: pd.DataFrame) -> dict | None:
    """One summary row for one claim (None for dataset sizes, which only the audit checks)."""
    if claim.metric == "dataset_size":
        return None
    metric = claim.metric
    tol = printed_tolerance(claim.as_printed, claim.value)
    row = _row(paper, claim, claimed_tol=tol, claimed_display=claim.as_printed)
    if metric == "confusion_matrix" and claim.matrix:
        ms = matrix_summary(claim)
        row |= {"claimed": ms["accuracy"], "claimed_tol": max(ms["accuracy"] - ms["acc_lo"], ms["acc_hi"] -
                                                               ms["accuracy"]),
                "claimed_display": f"implying {pct(ms['accuracy'], missing='')} accuracy"}
    elif len(str(claim.as_printed)) > 60:
        row["claimed_display"] = str(claim.as_printed)[:57] + "..."
    if claim.model not in paper.models:
        why = "cited: fer-bench has no model of this name" if claim.kind == "cited" else \
            "the claim names no registered model"
        return row | {"verdict": "not yet run", "reason": why}
    if metric == "accuracy_gain":
        return _gain_row(row, paper, claim, units)

    measurable = metric in ("accuracy", "loss", "macro_f1", "confusion_matrix", "per_class_accuracy")
    pick = pick_runs(claim, units, paper, claim.model, need_split=measurable)
    if pick.verdict in ("not yet run", "not comparable") or pick.units.empty:
        return row | {"verdict": pick.verdict, "reason": pick.reason}
    row |= {"group": pick.group + ("; " + "; ".join(pick.notes) if pick.notes else ""),
            "runs": " ".join(pick.units.run_id), "measured_split": pick.split or ""}
    if metric == "train_time_hours":
        hours = [s / 3600 for s in pick.units.train_s if s]
        st = summarize(hours, binomial=False)
        return row | {"measured": st["mean"], "n": st["n"], "measured_display": f"{st['mean']:.2f} h" if hours else "",
                      "verdict": "not comparable", "reason": "training time depends on the hardware (measured on "
                      f"{', '.join(sorted(set(pick.units.device)))}; the paper: {claim.note or '?'})"}
    if not measurable:
        what = "shown in the training-curve figure, not judged" if metric.endswith("_curve") else "not measured"
        return row | {"verdict": "not comparable", "reason": f"'{metric}' claims are {what} by fer-bench"}
    if metric == "per_class_accuracy":
        return _per_class_row(row, claim, pick)
    metric = "accuracy" if metric == "confusion_matrix" else metric  # a printed matrix: the accuracy it implies
    vals, n_test = _values(pick.units, pick.split, metric)
    loss_sd, n_sd = _loss_sd(pick.units, pick.split) if metric == "loss" else (None, 0)
    if not vals:
        return row | {"verdict": "inconclusive", "reason": f"no {metric} measured on {pick.split} by {pick.group}"}
    binomial = metric == "accuracy"
    st = summarize(vals, n_test, binomial)
    paper_n = paper_test_n(paper, claim, pick.split, n_test)
    pred = predict(vals, n_test, binomial, loss_sd, paper_n, row["claimed"]) \
        if metric != "macro_f1" else predict([], None)
    row = _with_stats(row, st, pred, binomial, pick.reduced) | {"n_test": n_test}
    unleaked = _values(pick.units, f"{pick.split}_unleaked", metric)[0]
    if unleaked:
        row["unleaked"] = fmt_measured(summarize(unleaked, None, False) | {"lo": math.nan}, binomial)
    notes = "; ".join(pick.notes)
    if pick.reduced:
        return _lower_bound(row, claim, pick, pred)
    verdict, why = judge(row["claimed"], row["claimed_tol"], pred, metric, st["n"])
    if loss_sd is not None and n_sd < len(vals):
        why += f"; loss_sd from {n_sd} of {len(vals)} runs (the others predate it)"
    if paper_n and claim.split.lower() in PROXY_SPLITS and pick.split != claim.split:
        why += f"; the paper's '{claim.split}' images are not ours: {pick.split} is a held-out proxy"
    return row | {"verdict": verdict, "reason": why + (f"; {notes}" if notes else "")}


# ---------------------------------------------------------------- the report's data

@dataclass
class Report:
    papers: list  # registered Paper objects, in id order
    units: pd.DataFrame  # one row per run / pooled cross-validation
    measured: pd.DataFrame  # per group, split and metric: mean, std, n, interval
    summary: pd.DataFrame  # one row per claim: claimed vs measured and the verdict
    findings: pd.DataFrame  # the claim audit
    runs_dir: str = ""
    skipped: list = field(default_factory=list)


def build(runs_dir: str | Path | None = "results", papers=None) -> Report:
    """Everything the report says, as DataFrames. ``papers``: Paper objects (default: every registered one)."""
    if papers is None:
        from papers import get_paper, list_papers
        papers = [get_paper(p) for p in list_papers()]
    runs, skipped = load_runs(runs_dir) if runs_dir is not None else ([], [])
    u = units(runs, {p.id: p for p in papers})
    rows = [r for p in papers for c in p.claims if (r := evaluate_claim(p, c, u)) is not None]
    findings = pd.DataFrame(audit(papers), columns=["paper", "check", "severity", "finding", "sources", "numbers"])
    return Report(papers, u, summaries(measurements(u)), pd.DataFrame(rows, columns=SUMMARY_FIELDS), findings,
                  str(runs_dir or ""), skipped)
