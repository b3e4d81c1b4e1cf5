"""The report: every registered claim beside what was measured, with statistics, a claim audit and figures.

``build(runs_dir)`` reads every ``<runs_dir>/runs/<paper>/<model>/<run>/metrics.json`` (the folds of a
cross-validation are pooled into one unit), groups the runs by paper, model, dataset, protocol, TTA,
profile, recipe variant and budget, and judges each claim of each registered paper by the rules in
``VERDICT_RULES``. ``write(report, out)`` writes OUT/REPORT.md, OUT/summary.csv (one row per claim),
OUT/measured.csv (one row per group, split and metric), OUT/audit.csv and OUT/figures/*.png.
Statistics: ``fer_bench.stats``; the audit: ``fer_bench.audit``.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .audit import SEVERITIES, audit, canonical_class, matrix_summary, per_class_rows, printed_tolerance
from .data import CLASSES
from .errors import UserError
from .stats import METHOD, compare, difference, summarize

GROUP = ["paper", "model", "dataset", "protocol", "tta", "profile", "variant", "full"]
BUDGET_KEYS = {"epochs", "train_subset", "val_subset", "input_size", "batch_size", "eval_batch_size"}
PROTOCOL_KEYS = {"protocol", "tta", "paper_train_size", "paper_test_size", "split_seed", "folds_by"}
VERDICTS = ("consistent", "below", "above", "mixed", "not comparable", "inconclusive", "not yet run")

VERDICT_RULES = [
    ("not yet run", "no completed run of the claim's model exists (for a gain: of either model); also every cited "
                    "claim on a model fer-bench does not implement."),
    ("not comparable", "runs exist, but none matches the claim's protocol, dataset, test-time augmentation (the "
                       "claim's own, else that of the paper's recipe for the model) and split (a claim on "
                       "'validation' is matched with PublicTest, on 'test' with PrivateTest); also claims fer-bench "
                       "cannot measure the same way (training time on other hardware, curves)."),
    ("inconclusive", "comparable runs exist, but only with a reduced budget (budget.full false: smoke profile, cut "
                     "epochs, a training subset...); or a loss/macro-F1 claim measured with one seed (no interval). "
                     "The measured number is shown, never as a reproduction."),
    ("consistent", "the 95% interval of the measured mean (full-budget runs) overlaps the claimed value +- the "
                   "rounding of its printed digits. Confusion-matrix claims are judged by the accuracy the matrix "
                   "implies (its range under the printed rounding)."),
    ("below", "the whole interval lies below the claimed value (minus its rounding)."),
    ("above", "the whole interval lies above the claimed value (plus its rounding)."),
    ("mixed", "per-class claims only: some classes below their interval and some above (each class judged as an "
              "accuracy on its own test images)."),
]
GROUP_CHOICE = ("When several full-budget groups match, the verdict uses the profile 'paper' with the unmodified "
                "recipe first, then the group with the most seeds; the group is named beside the verdict. A claim "
                "the paper makes of its final epoch ('last epoch' in Refers to, e.g. the end of a training curve) "
                "is compared with each run's last-epoch weights (metrics.json last_epoch), every other claim with "
                "the checkpoint selected on the selection split; runs without last-epoch metrics leave a "
                "last-epoch claim inconclusive.")


# ---------------------------------------------------------------- loading

def load_runs(runs_dir: str | Path) -> tuple[list[dict], list[str]]:
    """Every metrics.json under <runs_dir>/runs (each with '_path'), cross-validation folds pooled into one
    record per cross-validation; and the files that could not be read."""
    runs, skipped = [], []
    for path in sorted(Path(runs_dir).glob("runs/*/*/*/metrics.json")):
        try:
            d = json.loads(path.read_text())
            _check_record(d)
        except (OSError, ValueError) as e:
            skipped.append(f"{path}: {e}")
            continue
        d["_path"] = str(path)
        runs.append(d)
    return _pool_folds(runs), skipped


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_record(d) -> None:
    """ValueError saying why ``d`` is not a metrics.json the report can use (the report then lists it as
    unreadable instead of counting it or failing on it)."""
    if not isinstance(d, dict) or not {"paper", "model", "splits"} <= set(d):
        raise ValueError("not a fer-bench metrics.json (paper, model or splits missing)")
    if not (isinstance(d["paper"], str) and isinstance(d["model"], str)):
        raise ValueError("paper and model must be names (strings)")
    _check_splits(d["splits"], "splits")
    last = d.get("last_epoch")
    if last is not None:
        if not isinstance(last, dict):
            raise ValueError(f"last_epoch is a {type(last).__name__}, not a mapping")
        _check_splits(last.get("splits") or {}, "last_epoch.splits")


def _check_splits(splits, where: str) -> None:
    """Each split a mapping of metrics; accuracies and macro-F1 numbers in [0, 1]; a numeric confusion matrix."""
    if not isinstance(splits, dict):
        raise ValueError(f"{where} is a {type(splits).__name__}, not a mapping of split names to metrics")
    for name, m in splits.items():
        at = f"{where}.{name}"
        if not isinstance(m, dict):
            raise ValueError(f"{at} is a {type(m).__name__}, not a mapping of metrics")
        fractions = {"accuracy": m.get("accuracy"), "macro_f1": m.get("macro_f1")}
        per_class = m.get("per_class_accuracy")
        if per_class is not None:
            if not isinstance(per_class, dict):
                raise ValueError(f"{at}.per_class_accuracy is not a mapping of classes to accuracies")
            fractions |= {f"per_class_accuracy.{c}": v for c, v in per_class.items()}
        for key, v in fractions.items():
            if v is not None and not (_is_number(v) and 0 <= v <= 1):
                raise ValueError(f"{at}.{key} is {v!r}, not a number in [0, 1]")
        for key in ("loss", "n"):
            if m.get(key) is not None and not _is_number(m[key]):
                raise ValueError(f"{at}.{key} is {m[key]!r}, not a number")
        cm = m.get("confusion_matrix")
        if cm is not None and not (isinstance(cm, list) and all(isinstance(r, list) and len(r) == len(cm)
                                                                and all(_is_number(x) and x >= 0 for x in r)
                                                                for r in cm)):
            raise ValueError(f"{at}.confusion_matrix is not a square matrix of counts")


def _pool_folds(runs: list[dict]) -> list[dict]:
    """The folds of one cross-validation become one record whose 'test' split pools every fold's test images."""
    out, cvs = [], {}
    for d in runs:
        if isinstance(d.get("fold"), dict) and d["fold"].get("cv_id"):
            cvs.setdefault((d["paper"], d["model"], d["fold"]["cv_id"]), []).append(d)
        else:
            out.append(d)
    for (_, _, cv_id), folds in cvs.items():
        folds.sort(key=lambda d: d["fold"].get("index", 0))
        first, k = folds[0], folds[0]["fold"].get("of", len(folds))
        done = len(folds) == k and all(f.get("status") == "completed" for f in folds)
        tests = [f["splits"]["test"] for f in folds if "test" in f.get("splits", {})]
        splits = {}
        if done and tests:
            cm = np.sum([np.asarray(t["confusion_matrix"]) for t in tests], axis=0)
            n, tp = cm.sum(), np.diag(cm)
            f1 = np.divide(2 * tp, cm.sum(0) + cm.sum(1), out=np.zeros(len(cm)), where=(cm.sum(0) + cm.sum(1)) > 0)
            splits["test"] = {
                "n": int(n), "accuracy": float(tp.sum() / n), "macro_f1": float(f1.mean()),
                "loss": float(sum(t["loss"] * t["n"] for t in tests) / n),
                "per_class_accuracy": {c: float(tp[i] / cm[i].sum()) if cm[i].sum() else 0.0
                                       for i, c in enumerate(CLASSES)},
                "confusion_matrix": cm.tolist()}
        out.append({**first, "run_id": f"{cv_id}-cv", "status": "completed" if done else "incomplete",
                    "splits": splits, "folds": [f["run_id"] for f in folds],
                    "epochs_completed": min(f.get("epochs_completed") or 0 for f in folds),
                    "timing": {"train_s": sum((f.get("timing") or {}).get("train_s") or 0 for f in folds)},
                    "_logs": [str(Path(f["_path"]).parent / "logs" / "metrics.csv") for f in folds]})
    return out


def _variant(d: dict, paper) -> str:
    """The recipe keys this run changed (--set) from the paper's current recipe for its profile."""
    if paper is None or d["model"] not in paper.models:
        return "(unregistered)"
    try:
        ref = paper.resolve(d["model"], d.get("profile", "paper"))
    except Exception:  # a profile the paper no longer has
        return f"(profile {d.get('profile')} unknown)"
    dataset = (d.get("dataset") or {}).get("name", "fer2013")
    for key, value in list(ref.items()):  # "jaffe.epochs": the dataset's own value of a key
        name, dot, base = key.partition(".")
        if dot and name == dataset:
            ref[base] = value
    cfg = d.get("config") or {}
    diff = [f"{k}={cfg[k]}" for k in sorted(cfg) if k in ref and cfg[k] != ref[k]
            and k not in BUDGET_KEYS | PROTOCOL_KEYS and "." not in k]
    return ", ".join(diff)


def _units(runs: list[dict], papers: dict) -> pd.DataFrame:
    """One row per run (or pooled cross-validation)."""
    rows = []
    for d in runs:
        cfg, budget = d.get("config") or {}, d.get("budget") or {}
        hw, sw = d.get("hardware") or {}, d.get("software") or {}
        rows.append({
            "paper": d["paper"], "model": d["model"],
            "dataset": (d.get("dataset") or {}).get("name", "fer2013"),
            "protocol": d.get("protocol") or cfg.get("protocol", "canonical"),
            "tta": cfg.get("tta", "none"), "profile": d.get("profile", "?"),
            "variant": _variant(d, papers.get(d["paper"])),
            "full": bool(budget.get("full", d.get("profile") == "paper")),
            "budget_reasons": "; ".join(budget.get("reasons", [])),
            "seed": d.get("seed"), "run_id": d.get("run_id", Path(d["_path"]).parent.name),
            "status": d.get("status", "?"), "folds": len(d.get("folds", [])) or None,
            "epochs_planned": d.get("epochs_planned"), "epochs_completed": d.get("epochs_completed"),
            "best_epoch": d.get("best_epoch"), "selected_on": d.get("selected_on", ""),
            "accelerator": hw.get("accelerator", "?"), "device": hw.get("device_name", "?"),
            "devices": hw.get("devices"), "precision": hw.get("precision", "?"),
            "git_sha": sw.get("git_sha", "unknown"), "train_s": (d.get("timing") or {}).get("train_s"),
            "path": d["_path"], "logs": d.get("_logs") or [str(Path(d["_path"]).parent / "logs" / "metrics.csv")],
            "splits": d.get("splits") or {},
            "last_splits": (d.get("last_epoch") or {}).get("splits") or {},
        })
    cols = GROUP + ["budget_reasons", "seed", "run_id", "status", "folds", "epochs_planned", "epochs_completed",
                    "best_epoch", "selected_on", "accelerator", "device", "devices", "precision", "git_sha", "train_s",
                    "path", "logs", "splits", "last_splits"]
    return pd.DataFrame(rows, columns=cols)


def _measurements(units: pd.DataFrame) -> pd.DataFrame:
    """Long table: one row per completed unit, split and metric (per-class accuracies as 'class:<name>')."""
    rows = []
    for u in units[units.status == "completed"].itertuples():
        for split, m in u.splits.items():
            base = {k: getattr(u, k) for k in GROUP} | {"run_id": u.run_id, "seed": u.seed, "split": split}
            for metric in ("accuracy", "macro_f1", "loss"):
                if m.get(metric) is not None:
                    rows.append(base | {"metric": metric, "value": float(m[metric]), "n_test": m.get("n")})
            cm = np.asarray(m.get("confusion_matrix") or [])
            for i, (c, acc) in enumerate((m.get("per_class_accuracy") or {}).items()):
                n_c = int(cm[i].sum()) if cm.ndim == 2 and i < len(cm) else None
                if n_c != 0:
                    rows.append(base | {"metric": f"class:{c}", "value": float(acc), "n_test": n_c})
    cols = GROUP + ["run_id", "seed", "split", "metric", "value", "n_test"]
    return pd.DataFrame(rows, columns=cols)


def _binomial(metric: str) -> bool:
    return metric == "accuracy" or metric.startswith("class:")


def _summaries(long: pd.DataFrame) -> pd.DataFrame:
    """mean, std, n and interval per group, split and metric."""
    rows = []
    for key, g in long.groupby(GROUP + ["split", "metric"], sort=False, dropna=False):
        n_test = int(g.n_test.median()) if g.n_test.notna().any() else None
        st = summarize(g.value.tolist(), n_test, _binomial(key[-1]))
        rows.append(dict(zip(GROUP + ["split", "metric"], key)) | st | {"n_test": n_test,
                                                                        "runs": " ".join(g.run_id)})
    cols = GROUP + ["split", "metric", "mean", "std", "n", "lo", "hi", "method", "n_test", "runs"]
    return pd.DataFrame(rows, columns=cols)


# ---------------------------------------------------------------- claims vs runs

_SPLIT_ALIASES = {"validation": "PublicTest", "val": "PublicTest", "publictest": "PublicTest", "public": "PublicTest",
                  "test": "PrivateTest", "privatetest": "PrivateTest", "private": "PrivateTest"}


def resolve_split(claim_split: str, available) -> str | None:
    """The measured split a claim's split is compared with, if the run has it."""
    if claim_split in available:
        return claim_split
    alias = _SPLIT_ALIASES.get(re.sub(r"[^a-z]", "", str(claim_split).lower()))
    return alias if alias in available else None


def claim_tta(claim, paper=None) -> str:
    """The test-time augmentation a claim was measured with: the claim's own ``tta`` if it has one, else that
    of the paper's recipe for the model (the paper evaluated as its recipe says), else none."""
    tta = getattr(claim, "tta", "")
    if not tta and paper is not None and claim.model in paper.models:
        try:
            tta = paper.resolve(claim.model, "paper").get("tta", "")
        except Exception:
            tta = ""
    return tta or "none"


def _mismatch(claim, u, need_split: bool = True, tta: str = "none") -> list[str]:
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


@dataclass
class Pick:
    """The runs a claim is judged on."""
    verdict: str | None  # set when no judgement is possible: not yet run / not comparable / inconclusive
    reason: str
    units: pd.DataFrame = field(default_factory=pd.DataFrame)
    group: str = ""
    split: str | None = None
    reduced: bool = False


def _group_label(g: pd.Series) -> str:
    label = f"{g.profile} profile"
    if g.variant:
        label += f", {g.variant}"
    if not g.full:
        label += " (reduced budget)"
    return label


def _best_group(units: pd.DataFrame, preferences: list[tuple[str, object]]) -> pd.Series:
    """The group (GROUP columns + n) that best meets ``preferences`` (column, wanted value) in order, then has the
    most runs."""
    sizes = units.groupby(GROUP, sort=False, dropna=False).size().rename("n").reset_index()
    keys = []
    for i, (col, wanted) in enumerate(preferences):
        sizes[f"_p{i}"] = sizes[col] != wanted
        keys.append(f"_p{i}")
    return sizes.sort_values([*keys, "n"], ascending=[True] * len(keys) + [False], kind="stable").iloc[0]


def pick_runs(claim, units: pd.DataFrame, paper, model: str, need_split: bool = True) -> Pick:
    """not yet run -> not comparable -> inconclusive -> the full-budget group to judge (see VERDICT_RULES)."""
    mine = units[(units.paper == paper.id) & (units.model == model) & (units.status == "completed")]
    if mine.empty:
        return Pick("not yet run", f"no completed run of {model}")
    tta = claim_tta(claim, paper)
    ok = mine[[not _mismatch(claim, u, need_split, tta) for u in mine.itertuples()]]
    if ok.empty:
        seen = sorted({"; ".join(_mismatch(claim, u, need_split, tta)) for u in mine.itertuples()})
        return Pick("not comparable", f"{model} was measured only with " + " | ".join(seen))
    full = ok[ok.full]
    pool = full if not full.empty else ok
    best = _best_group(pool, [("profile", "paper"), ("variant", "")])
    sel = pool[np.logical_and.reduce([pool[k] == best[k] for k in GROUP])]
    if claim.checkpoint == "last":  # the paper's number is its final epoch: judge the last-epoch weights only
        sel = sel[[bool(s) for s in sel.last_splits]]
        if sel.empty:
            return Pick("no measurement", "the claim is the paper's last epoch, and no run of this group recorded "
                        "last-epoch metrics (metrics.json without last_epoch)")
        sel = sel.assign(splits=sel.last_splits)
    split = resolve_split(claim.split, sel.iloc[0].splits) if need_split else None
    if full.empty:
        reasons = "; ".join(sorted(set(sel.budget_reasons))) or "budget.full is false"
        return Pick("inconclusive", f"only reduced-budget runs ({reasons})", sel, _group_label(best), split, True)
    return Pick(None, "", sel, _group_label(best), split)


def _values(units: pd.DataFrame, split: str, metric: str) -> tuple[list[float], int | None]:
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


def _fmt_pct(x, digits=2) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.{digits}f}%"


def _fmt_measured(st: dict, pct: bool = True) -> str:
    if not st or not st.get("n"):
        return ""
    f = (lambda v: f"{100 * v:.2f}") if pct else (lambda v: f"{v:.4f}")
    unit = "%" if pct else ""
    out = f"{f(st['mean'])}{unit}"
    if not math.isnan(st.get("lo", math.nan)):
        out += f" [{f(st['lo'])}, {f(st['hi'])}]"
    return out


SUMMARY_FIELDS = ["paper", "model", "kind", "metric", "as_printed", "claimed", "claimed_tol", "claimed_display",
                  "split", "protocol", "dataset", "tta", "selected_on", "source", "refers_to", "measured", "lo", "hi",
                  "std", "n", "n_test", "method", "measured_split", "measured_display", "gap", "gap_display",
                  "verdict", "reason", "group", "runs"]


def _row(paper, claim, **kw) -> dict:
    refers = f"{claim.split}, {claim.protocol} protocol, {claim.dataset}"
    if claim_tta(claim, paper) != "none":
        refers += f", TTA {claim_tta(claim, paper)}"
    if claim.selected_on:
        refers += f", selected on {claim.selected_on}"
    if claim.checkpoint == "last":
        refers += ", last epoch"
    row = {"paper": paper.id, "model": claim.model, "kind": claim.kind, "metric": claim.metric,
           "as_printed": claim.as_printed, "claimed": claim.value, "claimed_tol": 0.0, "claimed_display": "",
           "split": claim.split, "protocol": claim.protocol, "dataset": claim.dataset, "tta": claim_tta(claim, paper),
           "selected_on": claim.selected_on, "source": claim.source, "refers_to": refers, "measured": math.nan,
           "lo": math.nan, "hi": math.nan, "std": math.nan, "n": 0, "n_test": None, "method": "",
           "measured_split": "", "measured_display": "", "gap": math.nan, "gap_display": "", "verdict": "",
           "reason": "", "group": "", "runs": ""}
    row.update(kw)
    assert list(row) == SUMMARY_FIELDS
    return row


def _with_stats(row: dict, st: dict, pct: bool) -> dict:
    gap = st["mean"] - row["claimed"] if row["claimed"] is not None else math.nan
    return row | {"measured": st["mean"], "lo": st["lo"], "hi": st["hi"], "std": st["std"], "n": st["n"],
                  "method": st["method"], "measured_display": _fmt_measured(st, pct), "gap": gap,
                  "gap_display": "" if math.isnan(gap) else (f"{100 * gap:+.2f} pts" if pct else f"{gap:+.4f}")}


def evaluate_claim(paper, claim, units: pd.DataFrame) -> dict | None:
    """One summary row for one claim (None for dataset sizes, which only the audit checks)."""
    if claim.metric == "dataset_size":
        return None
    metric = claim.metric
    registered = claim.model in paper.models
    tol = printed_tolerance(claim.as_printed, claim.value)
    row = _row(paper, claim, claimed_tol=tol, claimed_display=claim.as_printed)
    if metric == "confusion_matrix" and claim.matrix:
        ms = matrix_summary(claim)
        row |= {"claimed": ms["accuracy"], "claimed_tol": max(ms["accuracy"] - ms["acc_lo"], ms["acc_hi"] -
                                                               ms["accuracy"]),
                "claimed_display": f"implying {_fmt_pct(ms['accuracy'])} accuracy"}
    elif len(str(claim.as_printed)) > 60:
        row["claimed_display"] = str(claim.as_printed)[:57] + "..."
    if not registered:
        why = "cited: fer-bench has no model of this name" if claim.kind == "cited" else \
            "the claim names no registered model"
        return row | {"verdict": "not yet run", "reason": why}

    if metric == "accuracy_gain":
        other = claim.relative_to
        picks = [pick_runs(claim, units, paper, m) for m in (claim.model, other)]
        for verdict in ("not yet run", "not comparable"):
            for m, p in zip((claim.model, other), picks):
                if p.verdict == verdict:
                    return row | {"verdict": verdict, "reason": f"{m}: {p.reason}"}
        stats = []
        for p in picks:
            vals, n_test = _values(p.units, p.split, "accuracy")
            stats.append(summarize(vals, n_test))
        d = difference(*stats)
        rel = d["mean"] / stats[1]["mean"] if stats[1]["mean"] else math.nan
        row = _with_stats(row, d, pct=True) | {"group": " / ".join(p.group for p in picks),
                                               "measured_split": picks[0].split,
                                               "runs": " ".join(" ".join(p.units.run_id) for p in picks)}
        row["measured_display"] += f" ({_fmt_pct(stats[0]['mean'])} - {_fmt_pct(stats[1]['mean'])}; " \
                                   f"{100 * rel:+.1f}% relative)"
        reduced = [m for m, p in zip((claim.model, other), picks) if p.reduced]
        if reduced:
            return row | {"verdict": "inconclusive", "reason": f"only reduced-budget runs of {', '.join(reduced)}"}
        return row | {"verdict": compare(claim.value, tol, d["lo"], d["hi"]),
                      "reason": "gain read in accuracy points; the relative reading is shown beside it"}

    measurable = metric in ("accuracy", "loss", "macro_f1", "confusion_matrix", "per_class_accuracy")
    pick = pick_runs(claim, units, paper, claim.model, need_split=measurable)
    if pick.verdict == "no measurement":
        return row | {"verdict": "inconclusive", "reason": pick.reason}
    if pick.verdict in ("not yet run", "not comparable"):
        return row | {"verdict": pick.verdict, "reason": pick.reason}
    row |= {"group": pick.group, "runs": " ".join(pick.units.run_id), "measured_split": pick.split or ""}

    if metric == "train_time_hours":
        hours = [s / 3600 for s in pick.units.train_s if s]
        devices = ", ".join(sorted(set(pick.units.device)))
        st = summarize(hours, binomial=False)
        return _with_stats(row, st, pct=False) | {
            "measured_display": f"{st['mean']:.2f} h" if hours else "", "gap_display": "",
            "verdict": "not comparable",
            "reason": f"training time depends on the hardware (measured on {devices}; the paper: {claim.note or '?'})"}
    if not measurable:
        what = "shown in the training-curve figure, not judged" if metric.endswith("_curve") else "not measured"
        return row | {"verdict": "not comparable", "reason": f"'{metric}' claims are {what} by fer-bench"}

    if metric == "per_class_accuracy":
        return _per_class_row(row, claim, pick)
    if metric == "confusion_matrix":
        metric = "accuracy"  # judged by the accuracy the printed matrix implies
    vals, n_test = _values(pick.units, pick.split, metric)
    st = summarize(vals, n_test, binomial=metric == "accuracy")
    row = _with_stats(row, st, pct=metric == "accuracy") | {"n_test": n_test}
    if pick.reduced:
        return row | {"verdict": "inconclusive", "reason": pick.reason}
    if math.isnan(st["lo"]):
        return row | {"verdict": "inconclusive", "reason": f"one seed: {metric} has no interval (run >= 2 seeds)"}
    return row | {"verdict": compare(row["claimed"], row["claimed_tol"], st["lo"], st["hi"]),
                  "reason": f"{st['method']} interval on {pick.split}"}


def _per_class_row(row: dict, claim, pick: Pick) -> dict:
    judged, gaps, details = [], [], []
    for labels, frac, _, half in per_class_rows(claim):
        for lab, v in zip(labels, frac):
            c = canonical_class(lab)
            if c is None:
                continue
            vals, n_c = _values(pick.units, pick.split, f"class:{c}")
            if not vals:
                continue
            st = summarize(vals, n_c)
            judged.append(compare(float(v), half, st["lo"], st["hi"]))
            gaps.append(st["mean"] - float(v))
            details.append(f"{c} {_fmt_pct(st['mean'], 1)} vs {_fmt_pct(float(v), 1)}")
    if not judged:
        return row | {"verdict": "not comparable", "reason": "no class of the claim is measured"}
    counts = {v: judged.count(v) for v in ("below", "consistent", "above")}
    verdict = ("consistent" if counts["consistent"] == len(judged) else
               "mixed" if counts["below"] and counts["above"] else "below" if counts["below"] else "above")
    gap = float(np.mean(gaps))
    row |= {"measured_display": ", ".join(f"{k} {n}" for k, n in counts.items() if n) + f" ({'; '.join(details)})",
            "gap": gap, "gap_display": f"{100 * gap:+.2f} pts (mean)", "n": len(pick.units)}
    if pick.reduced:
        return row | {"verdict": "inconclusive", "reason": pick.reason}
    return row | {"verdict": verdict, "reason": "each class: Wilson(+t) interval on its own test images"}


# ---------------------------------------------------------------- the report object

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
        from .registry import get_paper, list_papers
        papers = [get_paper(p) for p in list_papers()]
    runs, skipped = load_runs(runs_dir) if runs_dir is not None else ([], [])
    units = _units(runs, {p.id: p for p in papers})
    measured = _summaries(_measurements(units))
    rows = [r for p in papers for c in p.claims if (r := evaluate_claim(p, c, units)) is not None]
    summary = pd.DataFrame(rows, columns=SUMMARY_FIELDS)
    findings = pd.DataFrame(audit(papers), columns=["paper", "check", "severity", "finding", "sources", "numbers"])
    return Report(papers, units, measured, summary, findings, str(runs_dir or ""), skipped)


# ---------------------------------------------------------------- figures

PALETTE = {"consistent": "#2a9d8f", "below": "#e76f51", "above": "#457b9d", "mixed": "#9b5de5",
           "inconclusive": "#adb5bd", "not comparable": "#6c757d", "not yet run": "#ced4da"}


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)  # the Agg backend, without touching pyplot's global state
    return fig


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")


def plot_claimed_vs_measured(summary: pd.DataFrame, title: str = "Claimed vs measured accuracy"):
    """Every accuracy-like claim (accuracy, a printed matrix's implied accuracy): the claimed value (x) beside
    the measured mean with its 95% interval, coloured by verdict."""
    import seaborn as sns

    df = summary[summary.metric.isin(["accuracy", "confusion_matrix"]) & summary.claimed.notna()].copy()
    df["label"] = [(f"{r.paper} · {r.model} · " + (r.as_printed if r.metric == "accuracy" else
                                                    f"implied by {r.source}"))[:70]
                   + (f" ({r.dataset})" if r.dataset != "fer2013" else "") + (" [cited]" if r.kind == "cited" else "")
                   for r in df.itertuples()]
    fig = _figure(11, 1.4 + 0.3 * max(len(df), 1))
    ax = fig.subplots()
    if df.empty:
        ax.text(0.5, 0.5, "no accuracy claims", ha="center", va="center")
        ax.set_axis_off()
        return fig
    y = np.arange(len(df))
    own = (df.kind != "cited").to_numpy()
    ax.scatter(100 * df.claimed[own], y[own], marker="x", s=60, color="black", label="claimed", zorder=3)
    if (~own).any():
        ax.scatter(100 * df.claimed[~own], y[~own], marker="x", s=60, color="#adb5bd", label="claimed (cited)",
                   zorder=3)
    m = df[df.measured.notna()]
    if not m.empty:
        ym = y[df.measured.notna().to_numpy()]
        lo = (m.measured - m.lo).fillna(0).clip(lower=0)
        hi = (m.hi - m.measured).fillna(0).clip(lower=0)
        ax.errorbar(100 * m.measured, ym, xerr=[100 * lo, 100 * hi], fmt="none", ecolor="#495057", capsize=3)
        sns.scatterplot(x=100 * m.measured.to_numpy(), y=ym, hue=m.verdict.to_numpy(), palette=PALETTE, s=60,
                        ax=ax, zorder=4)
    ax.set_yticks(y, df.label)
    ax.invert_yaxis()
    ax.set_xlabel("accuracy (%); x: claimed, dot: measured mean, bar: 95% interval")
    ax.set_xlim(0, 101)
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return fig


def _display_units(units: pd.DataFrame, paper_id: str, model: str) -> tuple[pd.DataFrame, str]:
    """The runs that represent a model in figures: full budget, paper profile, plain recipe, canonical first."""
    mine = units[(units.paper == paper_id) & (units.model == model) & (units.status == "completed")]
    if mine.empty:
        return mine, ""
    best = _best_group(mine, [("full", True), ("protocol", "canonical"), ("profile", "paper"), ("variant", "")])
    sel = mine[np.logical_and.reduce([mine[k] == best[k] for k in GROUP])]
    return sel, f"{best.protocol}, {_group_label(best)}, n={len(sel)}"


def _pick_split(splits: dict, preferred: str | None = None) -> str | None:
    for s in (preferred, "PrivateTest", "test", *splits):
        if s and s in splits:
            return s
    return None


def plot_confusion(report: Report, paper, model: str):
    """The measured confusion matrix (row-normalised %, pooled over the runs' seeds) beside every confusion
    matrix the paper prints for the model (mapped to FER-2013's label order); None if there is neither."""
    import seaborn as sns

    printed = [c for c in paper.claims if c.metric == "confusion_matrix" and c.model == model and c.matrix]
    sel, label = _display_units(report.units, paper.id, model)
    panels = []
    if not sel.empty:
        split = _pick_split(sel.iloc[0].splits, resolve_split(printed[0].split, sel.iloc[0].splits) if printed
                            else None)
        mats = [np.asarray(s[split]["confusion_matrix"], float) for s in sel.splits
                if split in s and s[split].get("confusion_matrix")]
        if mats:
            panels.append((f"measured: {split}\n{label}", np.sum(mats, axis=0), list(CLASSES)))
    for c in printed:
        ms = matrix_summary(c)
        if ms["order"] is not None:
            panels.append((f"printed: {c.source}\n(reordered to FER-2013 order)", ms["fer_matrix"], list(CLASSES)))
        else:
            panels.append((f"printed: {c.source}", ms["matrix"], list(c.labels or [])))
    if not panels:
        return None
    fig = _figure(4.6 * len(panels), 4.4)
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (title, m, labels) in zip(axes, panels):
        rows = m.sum(axis=1, keepdims=True)
        pct = np.divide(100 * m, rows, out=np.zeros_like(m), where=rows > 0)
        sns.heatmap(pct, ax=ax, annot=True, fmt=".0f", cmap="Blues", vmin=0, vmax=100, cbar=False, square=True,
                    xticklabels=labels, yticklabels=labels, annot_kws={"fontsize": 8})
        ax.tick_params(axis="x", labelrotation=90)
        ax.tick_params(axis="y", labelrotation=0)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true (row %)")
    fig.suptitle(f"{paper.id} · {model}: confusion matrices (% of each true class)", fontsize=10)
    return fig


def per_class_table(report: Report, paper) -> pd.DataFrame:
    """Per-class accuracy (%) of a paper: measured (one row per run), claimed tables, and the recall implied by
    printed confusion matrices. Columns: dataset, series, kind, class, accuracy."""
    rows = []
    models = list(dict.fromkeys([*paper.models, *(c.model for c in paper.claims)]))
    for model in models:
        sel, label = _display_units(report.units, paper.id, model)
        for u in sel.itertuples():
            split = _pick_split(u.splits)
            for c, acc in (u.splits.get(split, {}).get("per_class_accuracy") or {}).items():
                rows.append({"dataset": u.dataset, "series": f"{model} measured ({split}; {label})",
                             "kind": "measured", "class": c, "accuracy": 100 * acc})
    for c in paper.claims:
        if c.metric == "per_class_accuracy" and c.matrix:
            for labels, frac, _, _ in per_class_rows(c):
                for lab, v in zip(labels, frac):
                    if canonical_class(lab):
                        rows.append({"dataset": c.dataset, "series": f"{c.model} claimed ({c.source})",
                                     "kind": "claimed", "class": canonical_class(lab), "accuracy": 100 * float(v)})
        if c.metric == "confusion_matrix" and c.matrix:
            ms = matrix_summary(c)
            for lab, r in zip(c.labels or [], ms["recalls"]):
                if canonical_class(lab) and not math.isnan(r):
                    rows.append({"dataset": c.dataset, "series": f"{c.model} implied by {c.source}",
                                 "kind": "implied", "class": canonical_class(lab), "accuracy": 100 * float(r)})
    return pd.DataFrame(rows, columns=["dataset", "series", "kind", "class", "accuracy"])


def plot_per_class(report: Report, paper):
    """Per-class accuracy, measured (bars: mean over seeds, error bars: seed sd) vs claimed/implied; one panel
    per dataset. None if the paper has neither measured nor printed per-class numbers."""
    import seaborn as sns

    df = per_class_table(report, paper)
    if df.empty:
        return None
    datasets = list(dict.fromkeys(df.dataset))
    n_series = df.groupby("dataset").series.nunique().max()
    fig = _figure(max(7, 1.2 * len(CLASSES) + 0.5 * n_series) * len(datasets), 4.6)
    axes = np.atleast_1d(fig.subplots(1, len(datasets)))
    for ax, ds in zip(axes, datasets):
        sns.barplot(data=df[df.dataset == ds], x="class", y="accuracy", hue="series", order=list(CLASSES),
                    errorbar="sd", ax=ax)
        ax.set_title(f"{paper.id}: per-class accuracy on {ds}", fontsize=10)
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(0, 105)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=1, frameon=False)
    return fig


def training_curves(report: Report, paper_id: str | None = None) -> pd.DataFrame:
    """Epoch-level curves from the runs' logs/metrics.csv (Lightning's CSVLogger): one row per run, epoch,
    phase (train/val) and quantity (accuracy/loss)."""
    frames = []
    units = report.units if paper_id is None else report.units[report.units.paper == paper_id]
    columns = {"train/acc": ("train", "accuracy"), "val/acc": ("val", "accuracy"),
               "train/loss_epoch": ("train", "loss"), "val/loss": ("val", "loss")}
    for u in units.itertuples():
        for i, log in enumerate(u.logs):
            if not os.path.isfile(log):
                continue
            try:
                df = pd.read_csv(log)
            except (OSError, ValueError, pd.errors.EmptyDataError):
                continue
            if "epoch" not in df:
                continue
            have = [c for c in columns if c in df]
            ep = df.groupby("epoch")[have].first().reset_index().melt("epoch", var_name="column").dropna()
            ep["phase"] = ep.column.map(lambda c: columns[c][0])
            ep["quantity"] = ep.column.map(lambda c: columns[c][1])
            ep["epoch"] += 1
            ep["run"] = u.run_id + (f"/f{i + 1}" if len(u.logs) > 1 else "")
            ep["series"] = f"{u.model} [{u.profile}{'' if u.full else ', reduced'}]"
            ep["paper"] = u.paper
            frames.append(ep.drop(columns="column"))
    cols = ["paper", "series", "run", "epoch", "phase", "quantity", "value"]
    return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)


def plot_training_curves(report: Report, paper_id: str):
    """Accuracy and loss per epoch (train and validation), mean over seeds with a sd band; None without logs."""
    import seaborn as sns
    from matplotlib.ticker import MaxNLocator

    df = training_curves(report, paper_id)
    if df.empty:
        return None
    fig = _figure(12, 4.2)
    axes = fig.subplots(1, 2)
    for ax, quantity in zip(axes, ("accuracy", "loss")):
        d = df[df.quantity == quantity]
        if d.empty:
            ax.set_axis_off()
            continue
        if quantity == "accuracy":
            d = d.assign(value=100 * d.value)
        sns.lineplot(data=d, x="epoch", y="value", hue="series", style="phase", errorbar="sd", marker="o",
                     markersize=4, ax=ax)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(f"{quantity}{' (%)' if quantity == 'accuracy' else ''}")
        ax.set_title(f"{paper_id}: {quantity} per epoch (mean over seeds, band: sd)", fontsize=10)
        ax.legend(fontsize=7)
    return fig


def png(fig) -> bytes:
    """A figure as PNG bytes (for IPython.display.Image in the notebook)."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def papers_with_runs(report: Report) -> list:
    return [p for p in report.papers if p.id in set(report.units.paper)]


def write_figures(report: Report, out: Path) -> dict[str, list[Path]]:
    """figures/claimed_vs_measured.png (every paper) and, per paper with runs, its claimed-vs-measured,
    confusion, per-class and training-curve figures (those it has data for); a paper without runs gets its
    printed confusion matrices only. Returns {paper id or '': [paths]}."""
    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, list[Path]] = {"": []}

    def save(fig, name, key):
        if fig is None:
            return
        path = fig_dir / f"{_safe(name)}.png"
        fig.savefig(path, dpi=100)
        written.setdefault(key, []).append(path)

    save(plot_claimed_vs_measured(report.summary), "claimed_vs_measured", "")
    measured = {p.id for p in papers_with_runs(report)}
    for paper in report.papers:
        printed = [c.model for c in paper.claims if c.metric == "confusion_matrix"]
        models = list(dict.fromkeys([*paper.models, *printed]))
        if paper.id not in measured:  # nothing measured: only the printed matrices, reordered, for the audit
            for model in models:
                save(plot_confusion(report, paper, model), f"{paper.id}_confusion_{model}", paper.id)
            continue
        rows = report.summary[report.summary.paper == paper.id]
        if (rows.metric.isin(["accuracy", "confusion_matrix"]) & rows.claimed.notna()).any():
            save(plot_claimed_vs_measured(rows, f"{paper.id}: claimed vs measured accuracy"),
                 f"{paper.id}_claimed_vs_measured", paper.id)
        for model in models:
            save(plot_confusion(report, paper, model), f"{paper.id}_confusion_{model}", paper.id)
        save(plot_per_class(report, paper), f"{paper.id}_per_class", paper.id)
        save(plot_training_curves(report, paper.id), f"{paper.id}_training_curves", paper.id)
    return written


# ---------------------------------------------------------------- markdown

def _md_cell(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    return str(x).replace("|", "\\|").replace("\n", " ")


def md_table(df: pd.DataFrame, columns: dict[str, str]) -> str:
    """A GitHub markdown table of ``df``'s columns (key) under headers (value)."""
    if df.empty:
        return "_none_\n"
    lines = ["| " + " | ".join(columns.values()) + " |", "|" + "---|" * len(columns)]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(_md_cell(r[c]) for c in columns) + " |")
    return "\n".join(lines) + "\n"


SUMMARY_COLUMNS = {"paper": "Paper", "model": "Model", "claim": "Claim", "refers_to": "Refers to", "kind": "Kind",
                   "measured_display": "Measured mean [95% interval]", "n": "n", "gap_display": "Gap",
                   "verdict": "Verdict"}


def _summary_view(summary: pd.DataFrame) -> pd.DataFrame:
    s = summary.copy()
    s["claim"] = [f"{m.replace('_', ' ')} {d}".strip() for m, d in zip(s.metric, s.claimed_display)]
    s["refers_to"] = [f"{r}; {src}" for r, src in zip(s.refers_to, s.source)]
    s["n"] = [f"{int(n)}" if n else "" for n in s.n]
    return s


def _measured_view(report: Report, paper_id: str | None = None) -> pd.DataFrame:
    m = report.measured
    if paper_id is not None:
        m = m[m.paper == paper_id]
    m = m[m.metric.isin(["accuracy", "macro_f1", "loss"])]
    if m.empty:
        return pd.DataFrame()
    rows = []
    for key, g in m.groupby(GROUP + ["split"], sort=False, dropna=False):
        r = dict(zip(GROUP + ["split"], key))
        for metric in ("accuracy", "macro_f1", "loss"):
            x = g[g.metric == metric]
            if x.empty:
                continue
            st = x.iloc[0]
            pct = metric == "accuracy"
            cell = _fmt_measured(st.to_dict(), pct)
            if st.n >= 2:
                cell += f" (sd {100 * st['std']:.2f})" if pct else f" (sd {st['std']:.4f})"
            r[metric] = cell
            r["n"] = int(st.n)
            r["n_test"] = st.n_test
        r["budget"] = "full" if r["full"] else "reduced"
        rows.append(r)
    return pd.DataFrame(rows)


MEASURED_COLUMNS = {"model": "Model", "dataset": "Dataset", "protocol": "Protocol", "tta": "TTA",
                    "profile": "Profile", "variant": "Recipe changes", "budget": "Budget", "split": "Split",
                    "n": "Seeds", "n_test": "Test images", "accuracy": "Accuracy [95% interval]",
                    "macro_f1": "Macro F1", "loss": "Loss"}


def _runs_view(units: pd.DataFrame) -> pd.DataFrame:
    u = units.copy()
    u["epochs"] = [f"{_int(c)}/{_int(p)}" for c, p in zip(u.epochs_completed, u.epochs_planned)]
    u["budget"] = ["full" if f else f"reduced: {r}" for f, r in zip(u.full, u.budget_reasons)]
    u["hardware"] = [f"{d} x{n or 1} ({a}, {p})" for d, n, a, p in zip(u.device, u.devices, u.accelerator,
                                                                       u.precision)]
    u["train"] = [f"{s / 60:.1f} min" if s else "" for s in u.train_s]
    u["sha"] = [str(s)[:12] + ("-dirty" if str(s).endswith("-dirty") else "") for s in u.git_sha]
    u["run"] = [f"{r}" + (f" ({_int(f)} folds)" if _int(f) else "") for r, f in zip(u.run_id, u.folds)]
    for col in ("seed", "best_epoch"):
        u[col] = [_int(x) for x in u[col]]
    return u


def _int(x) -> str:
    """An integer as text ('' for missing values, which pandas turns into NaN)."""
    try:
        return "" if x is None or math.isnan(float(x)) else str(int(x))
    except (TypeError, ValueError):
        return str(x)


RUNS_COLUMNS = {"run": "Run", "model": "Model", "profile": "Profile", "protocol": "Protocol", "seed": "Seed",
                "status": "Status", "epochs": "Epochs", "best_epoch": "Best epoch", "selected_on": "Selected on",
                "budget": "Budget", "hardware": "Hardware", "train": "Train time", "sha": "Code (git sha)"}
FINDING_COLUMNS = {"severity": "Severity", "check": "Check", "finding": "Finding", "sources": "Source"}
CLAIM_COLUMNS = {"model": "Model", "claim": "Claim", "refers_to": "Refers to", "kind": "Kind",
                 "measured_display": "Measured", "n": "n", "gap_display": "Gap", "verdict": "Verdict",
                 "reason": "Why", "group": "Runs used"}


def _verdict_counts(summary: pd.DataFrame) -> str:
    counts = summary.verdict.value_counts()
    return ", ".join(f"{v}: {counts[v]}" for v in VERDICTS if v in counts)


def _severity_counts(findings: pd.DataFrame) -> str:
    counts = findings.severity.value_counts()
    return ", ".join(f"{s}: {counts[s]}" for s in SEVERITIES if s in counts) or "none"


def _recipe_table(paper) -> str:
    lines = ["| Key | Value |", "|---|---|"]
    for k, v in paper.recipe.items():
        lines.append(f"| `{k}` | {_md_cell(v)} |")
    for name, spec in paper.models.items():
        if spec.recipe:
            lines.append(f"| `{name}` | " + ", ".join(f"{k}={v}" for k, v in spec.recipe.items()) + " |")
    return "\n".join(lines) + "\n"


def _per_class_md(report: Report, paper) -> str:
    df = per_class_table(report, paper)
    if df.empty or not (df.kind != "measured").any():
        return ""
    wide = df.groupby(["dataset", "series", "class"], sort=False).accuracy.mean().unstack("class")
    wide = wide[[c for c in CLASSES if c in wide.columns]].round(1).reset_index()
    return md_table(wide, {"dataset": "Dataset", "series": "Series", **{c: c for c in CLASSES if c in wide}})


def to_markdown(report: Report, figures: dict[str, list[Path]], out: Path) -> str:
    s = _summary_view(report.summary)
    lines = [
        "# fer-bench report: claimed vs measured",
        "",
        f"Generated by `fer-bench report` from {int((report.units.status == 'completed').sum())} completed run(s) "
        f"under `{report.runs_dir}/runs` ({len(report.units)} record(s) in all; cross-validation folds pooled). "
        f"Papers: {', '.join(p.id for p in report.papers) or 'none registered'}.",
        "",
        f"Verdicts: {_verdict_counts(report.summary) or 'no claims'}. Audit findings: "
        f"{_severity_counts(report.findings)}.",
        "",
    ]
    if report.skipped:
        lines += ["Unreadable results files (skipped): " + "; ".join(report.skipped), ""]
    lines += ["## Summary", "", md_table(s, SUMMARY_COLUMNS)]
    if "" in figures and figures[""]:
        lines += [f"![claimed vs measured]({os.path.relpath(figures[''][0], out)})", ""]
    lines += [
        "## How to read this report", "",
        "**Statistics.** " + METHOD, "",
        "**Gap** is measured mean minus claimed value, in accuracy points (loss: in its own units). "
        "**n** is the number of seeds (a cross-validation counts once, its folds pooled).", "",
        "**Verdict rules**, applied in this order:", "",
        *[f"- **{v}**: {rule}" for v, rule in VERDICT_RULES],
        "", GROUP_CHOICE, "",
        "Cited claims (kind `cited`) are numbers a paper quotes from other work; they are listed, and judged only "
        "if fer-bench implements the cited model.", "",
        "**Audit severity**: high = over 5 points off (or a chance-level matrix beside a high claim); medium = "
        "1-5 points, a test split of the paper's own, or a checkpoint selected on the test set; low = under 1 "
        "point or a labelling issue; info = consistent within the rounding of the printed digits (listed to show "
        "what was checked).", "",
        "## Claim audit (all papers)", "",
        md_table(report.findings[report.findings.severity != "info"],
                 {"paper": "Paper", **FINDING_COLUMNS}),
    ]
    lines += _data_audit_md(Path(report.runs_dir))
    for paper in report.papers:
        lines += _paper_section(report, paper, s[s.paper == paper.id], figures.get(paper.id, []), out)
    others = report.units[~report.units.paper.isin([p.id for p in report.papers])]
    if not others.empty:
        lines += ["## Runs of unregistered papers", "", md_table(_runs_view(others), {"paper": "Paper",
                                                                                     **RUNS_COLUMNS})]
    return "\n".join(lines) + "\n"


def _data_audit_md(runs_dir: Path) -> list[str]:
    """The counts of `fer-bench data audit --out <runs>/data_audit`, when it was run."""
    path = runs_dir / "data_audit" / "summary.json"
    if not path.is_file():
        return ["## Dataset audit", "", "_not run: `fer-bench data audit --out results/data_audit`_", ""]
    d = json.loads(path.read_text())
    rows = pd.DataFrame([{"what": k, "count": v} for k, v in d["counts"].items()])
    return ["## Dataset audit", "", f"`fer-bench data audit` on FER-2013 ({d['dataset']['format']} release, "
            f"fingerprint `{d['dataset']['fingerprint']}`): pairs of images, or single images for blanks. Exact = "
            "identical pixels; near = equal 64-bit difference hash.", "", md_table(rows, {"what": "Finding",
                                                                                           "count": "Count"})]


def _paper_section(report: Report, paper, s: pd.DataFrame, figures: list[Path], out: Path) -> list[str]:
    lines = [f"## {paper.id}: {paper.title}", "", f"Source text: `{paper.seed}`. Models: " +
             ", ".join(f"`{m}` ({spec.summary})" if spec.summary else f"`{m}`" for m, spec in paper.models.items()),
             "", "### Recipe and interpretations", "", _recipe_table(paper)]
    lines += [f"- **{k}**: {v}" for k, v in paper.interpretations.items()] + [""]
    lines += ["### Claims", "", md_table(s, CLAIM_COLUMNS)]
    lines += ["### Measured", "", md_table(_measured_view(report, paper.id), MEASURED_COLUMNS)]
    per_class = _per_class_md(report, paper)
    if per_class:
        lines += ["### Per-class accuracy (%), measured vs claimed", "", per_class]
    f = report.findings[report.findings.paper == paper.id]
    lines += ["### Audit findings", "", md_table(f, FINDING_COLUMNS)]
    if figures:
        lines += ["### Figures", ""] + [f"![{p.stem}]({os.path.relpath(p, out)})" for p in figures] + [""]
    runs = report.units[report.units.paper == paper.id]
    lines += ["### Runs", "", md_table(_runs_view(runs), RUNS_COLUMNS) if not runs.empty else "_no runs yet_\n"]
    return lines


# ---------------------------------------------------------------- outputs

def write(report: Report, out: str | Path, figures: bool = True) -> dict[str, Path]:
    """OUT/REPORT.md, summary.csv (per claim), measured.csv (per group/split/metric), audit.csv, figures/."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    figures = write_figures(report, out) if figures else {}
    paths = {"report": out / "REPORT.md", "summary": out / "summary.csv", "measured": out / "measured.csv",
             "audit": out / "audit.csv", "figures": out / "figures"}
    paths["report"].write_text(to_markdown(report, figures, out))
    report.summary.drop(columns=["claimed_display", "measured_display", "gap_display"]).to_csv(
        paths["summary"], index=False)
    report.measured.to_csv(paths["measured"], index=False)
    f = report.findings.copy()
    f["numbers"] = [json.dumps(n, default=float) for n in f.numbers]
    f.to_csv(paths["audit"], index=False)
    return paths


def readme_table(report: Report, report_path: str) -> str:
    """The papers' own headline claims (accuracy, gains): the rest is in REPORT.md."""
    s = _summary_view(report.summary)
    s = s[(s.kind == "own") & s.metric.isin(["accuracy", "accuracy_gain"])]
    cols = {"paper": "Paper", "model": "Model", "claim": "Claim", "refers_to": "Refers to",
            "measured_display": "Measured mean [95% interval]", "n": "n", "verdict": "Verdict"}
    return (f"Generated by `fer-bench report --readme` from {int((report.units.status == 'completed').sum())} "
            f"completed run(s): the papers' own accuracy claims. All {len(report.summary)} claims "
            f"({_verdict_counts(report.summary)}), the statistics, the claim audit (findings: "
            f"{_severity_counts(report.findings)}) and the figures are in [{report_path}]({report_path}).\n\n"
            + md_table(s, cols))


def refresh_readme(readme: str | Path, table: str | None, section: str = "report") -> None:
    """Replace what lies between the ``<!-- SECTION:start -->`` and ``<!-- SECTION:end -->`` markers in README.md
    with ``table`` (None: only check that the markers are there)."""
    readme = Path(readme)
    start, end = f"<!-- {section}:start -->", f"<!-- {section}:end -->"
    text = readme.read_text() if readme.is_file() else ""
    if start not in text or end not in text:
        raise UserError(f"{readme} has no generated-table markers: add the two lines {start} and {end} where the "
                        f"table should go, then run the command again.")
    if table is None:
        return
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(f"{head}{start}\n{table}{end}{tail}")


def generate(runs: str | Path = "results", out: str | Path | None = None,
             readme: str | Path | None = None) -> tuple[Report, dict]:
    """`fer-bench report`: build, write, and optionally refresh README.md. Returns the report and the paths."""
    if readme is not None:  # fail before any work if the README cannot take the table
        refresh_readme(readme, None)
    report = build(runs)
    paths = write(report, out if out is not None else runs)
    if readme is not None:
        rel = os.path.relpath(paths["report"], Path(readme).resolve().parent)
        refresh_readme(readme, readme_table(report, rel))
        paths["readme"] = Path(readme)
    return report, paths
