"""Claims against runs: the data layer of the report (figures and markdown are built from what this returns).

``build(runs_dir)`` reads every run through ``fer_bench.results.load_runs`` (cross-validation folds pooled into one
unit), recomputes each run's budget from its recorded recipe (``fer_bench.config.budget``: the file's flag alone is
never trusted), groups the runs by paper, model, dataset, protocol, TTA, profile, recipe variant and budget, and
judges each claim of each registered paper by ``fer_bench.rules`` (whose ``VERDICT_RULES`` and ``QUESTION`` the
report prints). This module is the grouping: runs as units, which runs a claim is judged on, the seed variance pooled
over groups, and what holds the verdicts together (p-values and their false discovery control, dependent claims
counted once, the verdict under each reading of the paper).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import config
from .audit import audit, matrix_summary, printed_tolerance
from .audit_facts import official_split
from .data import CLASSES, SPLITS
from .errors import UserError
from .results import load_runs
from .stats import bh, pool, summarize

GROUP = ["paper", "model", "dataset", "protocol", "tta", "profile", "variant", "full"]
VERDICTS = ("consistent", "below", "above", "mixed", "not comparable", "inconclusive", "not yet run")
PROXY_SPLITS = {"validation": "PublicTest", "val": "PublicTest", "test": "PrivateTest"}  # claim split -> ours

# ---------------------------------------------------------------- runs as units

def _recomputed_budget(d: dict, paper) -> dict:
    """The file's budget reasons plus those the recipe shows (the file's `full` is never believed alone)."""
    recorded = d.get("budget") if isinstance(d.get("budget"), dict) else {}
    reasons = list(recorded.get("reasons") or [])
    if not recorded:
        reasons.append("no budget recorded")
    cfg, model = d.get("config") or {}, d["model"]
    if paper is not None and (model in paper.models or model in getattr(paper, "readings", {})):
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
    if paper is None or d["model"] not in paper.models and d["model"] not in getattr(paper, "readings", {}):
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
    elif claim.selected_on and need_split:  # the paper says how it selected: the runs must select the same way
        wanted = selection_split(claim, sel.iloc[0].splits)
        other = sorted({str(s) for s in sel.selected_on if s != wanted})
        if other:
            return Pick("not comparable", f"the paper selected its checkpoint on {claim.selected_on} ({wanted}), "
                        f"these runs on {', '.join(other) or 'an unrecorded split'}: not the same selection")
    sel, notes = _seeds_once(sel)
    split = resolve_split(claim.split, sel.iloc[0].splits) if need_split else None
    reduced = full.empty
    reason = ("only reduced-budget runs (" + ("; ".join(sorted(set(sel.budget_reasons))) or "budget.full is false")
              + ")") if reduced else ""
    return Pick("inconclusive" if reduced else None, reason, sel, group_label(best), split, reduced, notes)


def selection_split(claim, available) -> str:
    """The split the paper selected its checkpoint on, as ours: 'test' = the reported split itself."""
    if claim.selected_on.lower() == "test":
        return resolve_split(claim.split, available) or claim.split
    return resolve_split(claim.selected_on, available) or claim.selected_on


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
    pooled: dict = field(default_factory=dict)  # (split, metric) -> stats.Pooled


def pooled_spreads(long: pd.DataFrame) -> dict:
    """(split, metric) -> stats.Pooled: the seed variance pooled over the full-budget groups with >= MIN_SEEDS
    seeds (accuracy per test image, loss relative), which stands in for the spread of groups with fewer."""
    out = {}
    full = long[(long.full == True) & long.metric.isin(["accuracy", "loss"])]  # noqa: E712 (a column)
    for (split, metric), g in full.groupby(["split", "metric"], sort=False):
        groups = []
        for _, gg in g.groupby(GROUP, sort=False, dropna=False):
            gg = _latest_per_seed(gg)
            groups.append((gg.value.tolist(), int(gg.n_test.median()) if gg.n_test.notna().any() else None))
        if (p := pool(groups, relative=metric == "loss")) is not None:
            out[(split, metric)] = p
    return out


READABLE = ("accuracy", "loss", "accuracy_gain", "accuracy_curve", "loss_curve")
DECIDED = ("below", "above", "mixed")


def _label(claim) -> str:
    return f"{claim.model} {claim.metric.replace('_', ' ')} {claim.as_printed}"


def per_class_mean(units: pd.DataFrame) -> pd.DataFrame:
    """The runs read the other way an accuracy can be averaged: each split's accuracy replaced by the mean of its
    per-class accuracies (papers print either, often without saying which), and its ``n`` by the effective test
    size whose binomial term is that mean's own test-set variance, sum_c p_c (1 - p_c) / n_c / K^2 over the K
    classes with test images (FER-2013's 56 disgust images weigh a seventh), each p_c kept within [0.5, n_c - 0.5] /
    n_c so that a class at 0% or 100% still counts its own noise. A split without per-class accuracies, and a TTA
    run's single-view numbers (pooled only), lose their accuracy: nothing is judged on them."""
    def one(splits: dict) -> dict:
        out = {}
        for name, m in splits.items():
            m = {k: v for k, v in m.items() if k != "accuracy"}
            if isinstance(m.get("plain"), dict):
                m["plain"] = {k: v for k, v in m["plain"].items() if k != "accuracy"}
            cm = np.asarray(m.get("confusion_matrix") or [])
            pcs = [(float(a), int(cm[CLASSES.index(c)].sum())) for c, a in (m.get("per_class_accuracy") or {}).items()
                   if cm.ndim == 2 and c in CLASSES and CLASSES.index(c) < len(cm)]
            pcs = [(a, n) for a, n in pcs if n > 0]
            if pcs:
                mean = sum(a for a, _ in pcs) / len(pcs)
                clip = [(min(max(a, 0.5 / n), 1 - 0.5 / n), n) for a, n in pcs]
                var = sum(a * (1 - a) / n for a, n in clip) / len(pcs) ** 2
                m |= {"accuracy": mean, "n": max(1, round(mean * (1 - mean) / var)) if var > 0 else m.get("n")}
            out[name] = m
        return out
    return units.assign(splits=[one(s) for s in units.splits], last_splits=[one(s) for s in units.last_splits])


def readings(paper, claim, units: pd.DataFrame, pooled: dict, verdict: str, averaged=None) -> str:
    """'all' / 'only ...': whether the verdict survives the other readings fer-bench can express from the same runs:
    the other canonical test split, the last epoch vs the selected checkpoint, and for accuracies (and their gains)
    the mean of the per-class accuracies vs the pooled accuracy. ``averaged``: (per_class_mean(units), its pooled
    spreads)."""
    from dataclasses import replace

    from .rules import evaluate_claim

    split = resolve_split(claim.split, SPLITS)
    if claim.metric not in READABLE or claim.kind != "own" or claim.protocol != "canonical" or split is None \
            or verdict in ("not yet run", "not comparable"):
        return ""
    other = {"PublicTest": "PrivateTest", "PrivateTest": "PublicTest"}[split]
    names = {"last": "last epoch", "selected": "selected epoch"}
    checkpoints = (claim.checkpoint, "selected" if claim.checkpoint == "last" else "last")
    if claim.metric.endswith("_curve"):  # a curve is every epoch, logged on the selection split only
        return "not testable here: runs log their per-epoch curve on the selection split (PublicTest) only"
    means = {"pooled": (units, pooled)}
    if claim.metric in ("accuracy", "accuracy_gain") and averaged is not None:
        means["per-class mean"] = averaged
    got = {}
    for mean, (u, pl) in means.items():
        for sp in (split, other):
            for cp in checkpoints:
                if (sp, cp, mean) == (split, claim.checkpoint, "pooled"):
                    got[(sp, cp, mean)] = verdict
                    continue
                r = evaluate_claim(paper, replace(claim, split=sp, checkpoint=cp, selected_on=""), u, pl)
                if mean != "pooled" and r and str(r.get("reason", "")).startswith("no accuracy measured"):
                    continue  # runs without per-class counts: that reading is not measurable, not a changed verdict
                got[(sp, cp, mean)] = r["verdict"] if r else ""

    def label(sp, cp, mean):
        return f"{sp} {names[cp]}" + (f", {mean}" if len(means) > 1 and mean != "pooled" else "")
    same = [k for k, v in got.items() if v == verdict]
    if len(same) == len(got):
        return f"all ({len(got)})"
    return (f"only {'; '.join(label(*k) for k in same)} (" +
            "; ".join(f"{label(*k)}: {v}" for k, v in got.items() if v != verdict) + ")")


def _depends(paper, claim, rows: dict) -> str:
    """The claim whose finding this one repeats: a gain below because its baseline is above (or above because its
    model is), a curve's end that is a table's number."""
    r = rows[id(claim)]
    if r["verdict"] not in DECIDED:
        return ""

    def twin(model, metric):
        return next((c for c in paper.claims if c.model == model and c.metric == metric and c.kind == "own"
                     and c.split == claim.split and id(c) in rows and rows[id(c)]["verdict"] in DECIDED), None)
    if claim.metric == "accuracy_gain":
        for model, same in ((claim.relative_to, False), (claim.model, True)):
            c = twin(model, "accuracy")
            if c is not None and c.checkpoint == claim.checkpoint and \
                    (rows[id(c)]["verdict"] == r["verdict"]) == same:
                return _label(c)
    if claim.metric.endswith("_curve") and claim.matrix and len(claim.matrix[0]) == 2:
        c = twin(claim.model, claim.metric.removesuffix("_curve"))
        if c is not None and c.value is not None and abs(c.value - claim.matrix[0][-1]) <= \
                2 * printed_tolerance(claim.as_printed, c.value) + 1e-9 and rows[id(c)]["verdict"] == r["verdict"]:
            return _label(c)
    return ""


def build(runs_dir: str | Path | None = "results", papers=None) -> Report:
    """Everything the report says, as DataFrames. ``papers``: Paper objects (default: every registered one)."""
    from .rules import SUMMARY_FIELDS, evaluate_claim

    if papers is None:
        from papers import get_paper, list_papers
        papers = [get_paper(p) for p in list_papers()]
    runs, skipped = load_runs(runs_dir) if runs_dir is not None else ([], [])
    u = units(runs, {p.id: p for p in papers})
    long = measurements(u)
    pooled = pooled_spreads(long)
    u_mean = per_class_mean(u)
    averaged = (u_mean, pooled_spreads(measurements(u_mean)))
    judged = [(p, c, r) for p in papers for c in p.claims if (r := evaluate_claim(p, c, u, pooled)) is not None]
    rows = {id(c): r for _, c, r in judged}
    for p, c, r in judged:
        r["depends_on"] = _depends(p, c, rows)
        r["readings"] = readings(p, c, u, pooled, r["verdict"], averaged)
    summary = pd.DataFrame([r for _, _, r in judged], columns=SUMMARY_FIELDS)
    summary["q"] = bh(summary.p.astype(float))
    summary["finding"] = [bool(v in DECIDED and not d) for v, d in zip(summary.verdict, summary.depends_on)]
    findings = pd.DataFrame(audit(papers), columns=["paper", "check", "severity", "finding", "sources", "numbers"])
    return Report(papers, u, summaries(long), summary, findings, str(runs_dir or ""), skipped, pooled)
