"""Claim audit: what a paper's own printed numbers say about its claims, before any training.

Every check reads only the registered claims (``fer_bench.registry.Claim``) and official facts about
the datasets (split sizes, class counts). A finding is a dict: paper, check, severity, finding (one
sentence with its numbers), sources (the paper's sections/tables/figures), numbers (the values used).

Severity, from the discrepancy beyond what rounding of the printed numbers allows:
    info    consistent within rounding (listed, so the report shows what was checked)
    low     under 1 point (or a labelling issue that changes no number by more than 1 point)
    medium  1 to 5 points; a test split of the paper's own; a checkpoint selected on the test set
    high    over 5 points; a matrix at chance level beside a high claimed accuracy
"""

from __future__ import annotations

import math
import re
from collections import defaultdict

import numpy as np

from .data import CLASSES

SEVERITIES = ("high", "medium", "low", "info")

# Official class counts (FER-2013 label order); FER-2013: counted from the Kaggle release's Usage column.
FER2013_COUNTS = {
    "Training": dict(angry=3995, disgust=436, fear=4097, happy=7215, sad=4830, surprise=3171, neutral=4965),
    "PublicTest": dict(angry=467, disgust=56, fear=496, happy=895, sad=653, surprise=415, neutral=607),
    "PrivateTest": dict(angry=491, disgust=55, fear=528, happy=879, sad=594, surprise=416, neutral=626),
}
FER2013_COUNTS["all"] = {c: sum(s[c] for s in FER2013_COUNTS.values()) for c in CLASSES}
# JAFFE (Lyons et al. 1998): 213 images of 10 subjects; no official split (papers cross-validate).
JAFFE_COUNTS = {"all": dict(angry=30, disgust=29, fear=32, happy=31, sad=31, surprise=30, neutral=30)}
CLASS_COUNTS = {"fer2013": FER2013_COUNTS, "jaffe": JAFFE_COUNTS}
SIZES = {d: {s: sum(c.values()) for s, c in counts.items()} for d, counts in CLASS_COUNTS.items()}

_SPLIT_ALIASES = {"training": "Training", "train": "Training", "publictest": "PublicTest", "public": "PublicTest",
                  "privatetest": "PrivateTest", "private": "PrivateTest", "all": "all", "total": "all",
                  "whole": "all", "dataset": "all"}
_LABEL_ALIASES = {
    "angry": "angry", "anger": "angry", "an": "angry", "ang": "angry", "mad": "angry",
    "disgust": "disgust", "disgusted": "disgust", "disgusting": "disgust", "di": "disgust", "dis": "disgust",
    "fear": "fear", "fearful": "fear", "afraid": "fear", "scared": "fear", "fe": "fear",
    "happy": "happy", "happiness": "happy", "joy": "happy", "ha": "happy", "hap": "happy",
    "sad": "sad", "sadness": "sad", "sa": "sad",
    "surprise": "surprise", "surprised": "surprise", "su": "surprise", "sur": "surprise",
    "neutral": "neutral", "normal": "neutral", "ne": "neutral", "neu": "neutral", "calm": "neutral",
}
_AVERAGE = re.compile(r"^(average|avg|mean|overall|total|all)\b", re.I)
_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|[-+]?\.\d+")
_APPROX = re.compile(r"~|\babout\b|\bapprox|\baround\b|\bnearly\b|\broughly\b|≈", re.I)
_LOWER_BOUND = re.compile(r"\bover\b|\bmore than\b|\bat least\b|>|\babove\b", re.I)


# ---------------------------------------------------------------- helpers shared with the report

def canonical_class(label: str) -> str | None:
    """A paper's class label ('Anger', 'Normal', 'HA') as a FER-2013 class name, or None."""
    return _LABEL_ALIASES.get(re.sub(r"[^a-z]", "", str(label).lower()))


def official_split(split: str) -> str | None:
    """A claim's split name as an official split ('Training', 'PublicTest', 'PrivateTest', 'all')."""
    return _SPLIT_ALIASES.get(re.sub(r"[^a-z]", "", str(split).lower()))


def class_counts(dataset: str, split: str) -> dict | None:
    """Class counts of an official split of a known dataset (JAFFE: the whole set, whatever the split)."""
    counts = CLASS_COUNTS.get(str(dataset).lower())
    if counts is None:
        return None
    return counts.get(official_split(split) or "") or (counts["all"] if str(dataset).lower() == "jaffe" else None)


def _token_halfunit(token: str) -> float:
    """Half of the last printed digit's unit: '57.31' -> 0.005; '1.8e+02' (2 significant digits) -> 5."""
    token = token.replace(",", "")
    mantissa, _, exp = token.lower().partition("e")
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    if exp:  # scientific notation as printed by '%.2g': at least two significant digits are meant
        return 0.5 * 10 ** (int(exp) - max(decimals, 1))
    return 0.5 * 10 ** -decimals


def printed_tolerance(as_printed: str, value: float | None) -> float:
    """How far the true number can be from ``value`` given how the paper printed it (same scale as value).

    '57.31%' -> 0.00005; '93%' -> 0.005; '0.6294' -> 0.00005; '~62%' doubles the half unit."""
    m = _NUMBER.search(str(as_printed or ""))
    if not m or value is None:
        return 0.0
    x = float(m.group().replace(",", ""))
    half = _token_halfunit(m.group())
    if abs(x / 100 - value) < abs(x - value):  # printed as a percentage, stored as a fraction
        half /= 100
    return half * (2 if _APPROX.search(as_printed) else 1)


def _matrix_halfunits(claim, shape) -> np.ndarray:
    """Per-entry rounding half-units of a printed matrix, from ``as_printed`` when its tokens match."""
    tokens = _NUMBER.findall(str(claim.as_printed or ""))
    size = int(np.prod(shape))
    values = np.asarray(claim.matrix, dtype=float)
    if len(tokens) == size:
        exact = claim.metric == "confusion_matrix"  # an integer count is exact; an integer percentage is not
        units = np.array([0.0 if exact and re.fullmatch(r"\d+", t) else _token_halfunit(t)
                          for t in tokens]).reshape(shape)
        printed = np.array([float(t.replace(",", "")) for t in tokens]).reshape(shape)
        nz = values != 0
        if nz.any() and np.median(printed[nz] / values[nz]) > 50:  # printed in %, stored as fractions
            units = units / 100
        return units
    if claim.metric == "confusion_matrix" and np.allclose(values, np.round(values)):
        return np.zeros(shape)  # integer counts: exact
    decimals = max(len(f"{v:.10g}".split(".")[1]) if "." in f"{v:.10g}" else 0 for v in values.ravel())
    return np.full(shape, 0.5 * 10 ** -decimals)


def _fractions(values: np.ndarray) -> tuple[np.ndarray, float]:
    """Per-class numbers as fractions (a table printed in % is divided by 100) and the scale used."""
    scale = 100.0 if np.nanmax(values) > 1.5 else 1.0
    return values / scale, scale


def _pct(x: float, digits: int = 2) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.{digits}f}%"


def _pts(x: float) -> str:
    return f"{100 * x:+.2f} points"


def severity_from_gap(gap: float) -> str:
    """gap: discrepancy (fraction) beyond rounding; 0 means consistent."""
    gap = abs(gap)
    if gap <= 1e-12:
        return "info"
    if gap < 0.01:
        return "low"
    if gap <= 0.05:
        return "medium"
    return "high"


def _beyond(diff: float, tol: float) -> float:
    return max(0.0, abs(diff) - tol)


def _finding(paper, check, severity, text, sources, **numbers) -> dict:
    return {"paper": paper.id, "check": check, "severity": severity, "finding": text,
            "sources": "; ".join(dict.fromkeys(p.strip() for s in sources if s for p in s.split(";"))),
            "numbers": numbers}


# ---------------------------------------------------------------- confusion matrices

def matrix_summary(claim) -> dict:
    """What a printed confusion matrix implies: accuracy (with its rounding range), kappa, totals, recalls,
    and the matrix reordered to FER-2013's label order when every label maps."""
    m = np.asarray(claim.matrix, dtype=float)
    units = _matrix_halfunits(claim, m.shape)
    labels = list(claim.labels or [])
    mapped = [canonical_class(lab) for lab in labels]
    order = [mapped.index(c) for c in CLASSES] if sorted(filter(None, mapped)) == sorted(CLASSES) else None
    rows = m.sum(axis=1)
    normalised = bool(np.allclose(rows, rows.mean(), rtol=0.03) and min(abs(rows.mean() - 1), abs(rows.mean() - 100))
                      < 0.05 * rows.mean())
    recalls = np.divide(np.diag(m), rows, out=np.full(len(rows), np.nan), where=rows > 0)
    out = {"matrix": m, "labels": labels, "order": order, "normalised": normalised, "recalls": recalls,
           "fer_matrix": m[np.ix_(order, order)] if order else None}
    if normalised:  # rows are per-class rates: the overall accuracy needs the class counts
        counts = class_counts(claim.dataset, claim.split) or class_counts(claim.dataset, "all")
        out["unweighted"] = float(np.nanmean(recalls))
        if counts and order:
            w = np.array([counts[c] for c in CLASSES], dtype=float)
            out["accuracy"] = float((recalls[order] * w).sum() / w.sum())
        else:
            out["accuracy"] = out["unweighted"]
        out["acc_lo"] = out["acc_hi"] = out["accuracy"]
        out["total"] = out["total_lo"] = out["total_hi"] = math.nan
        out["kappa"] = math.nan
        return out
    diag = np.eye(len(m), dtype=bool)
    d, o = m[diag].sum(), m[~diag].sum()
    d_lo, d_hi = (m[diag] - units[diag]).clip(0).sum(), (m[diag] + units[diag]).sum()
    o_lo, o_hi = (m[~diag] - units[~diag]).clip(0).sum(), (m[~diag] + units[~diag]).sum()
    total = d + o
    p_e = float((m.sum(axis=1) * m.sum(axis=0)).sum() / total ** 2)  # agreement expected by chance
    acc = d / total
    out.update(accuracy=float(acc), acc_lo=float(d_lo / (d_lo + o_hi)), acc_hi=float(d_hi / (d_hi + o_lo)),
               total=float(total), total_lo=float(d_lo + o_lo), total_hi=float(d_hi + o_hi),
               kappa=float((acc - p_e) / (1 - p_e)), chance=p_e)
    return out


def _accuracy_claims(paper, model, dataset):
    return [c for c in paper.claims if c.metric == "accuracy" and c.model == model and c.dataset == dataset
            and c.value is not None]


def _gain_baselines(paper, model, dataset) -> list[tuple]:
    """Accuracies of ``model`` implied by gain claims whose baseline it is: (value, reading, gain claim, acc claim)."""
    out = []
    for g in paper.claims:
        if g.metric == "accuracy_gain" and g.relative_to == model and g.dataset == dataset and g.value is not None:
            for a in _accuracy_claims(paper, g.model, dataset):
                out.append((a.value - g.value, "absolute", g, a))
                out.append((a.value / (1 + g.value), "relative", g, a))
    return out


def check_confusion_matrices(paper) -> list[dict]:
    findings = []
    for c in paper.claims:
        if c.metric != "confusion_matrix" or not c.matrix:
            continue
        s = matrix_summary(c)
        where = f"{c.source} ({c.model})"
        rng = f"{_pct(s['acc_lo'])}-{_pct(s['acc_hi'])}"
        kappa = "" if math.isnan(s["kappa"]) else (
            f"; Cohen's kappa {s['kappa']:.3f}, chance agreement {_pct(s['chance'])}"
            + (": predictions nearly independent of the true class" if s["kappa"] < 0.05 else ""))
        implied = (f"{where} implies an accuracy of {_pct(s['accuracy'])} (trace/total = "
                   f"{s['matrix'].trace():.0f}/{s['total']:.0f}; {rng} given how the entries are printed{kappa})"
                   if not s["normalised"] else
                   f"{where} is row-normalised: class-weighted accuracy {_pct(s['accuracy'])}, mean of the diagonal "
                   f"{_pct(s['unweighted'])}")
        targets = [(a.value, printed_tolerance(a.as_printed, a.value), f"the claimed {a.as_printed} "
                    f"({a.source}, {a.split})", a.source) for a in _accuracy_claims(paper, c.model, c.dataset)]
        readings = defaultdict(list)  # (gain claim, accuracy claim) -> [(implied baseline, reading)]
        for v, reading, g, a in _gain_baselines(paper, c.model, c.dataset):
            readings[(g, a)].append((v, reading))
        for (g, a), vs in readings.items():
            tol = printed_tolerance(g.as_printed, g.value) + printed_tolerance(a.as_printed, a.value)
            v = min(vs, key=lambda x: abs(x[0] - s["accuracy"]))[0]  # the reading nearer the matrix
            targets.append((v, tol, "the " + " or ".join(f"{x * 100:.2f}% ({r})" for x, r in vs) +
                            f" that {a.as_printed} ({a.source}) minus the stated {g.as_printed} gain ({g.source}) "
                            "implies for it", g.source))
        if not targets:
            findings.append(_finding(paper, "confusion matrix vs claimed accuracy", "info",
                                     f"{implied}; the paper states no accuracy for {c.model} to compare it with.",
                                     [c.source], implied=s["accuracy"], implied_lo=s["acc_lo"], implied_hi=s["acc_hi"]))
        for value, tol, what, src in targets:
            gap = 0.0 if s["acc_lo"] - tol <= value <= s["acc_hi"] + tol else \
                min(abs(value - s["acc_lo"]), abs(value - s["acc_hi"])) - tol
            sev = severity_from_gap(gap)
            if sev != "info" and not math.isnan(s["kappa"]) and s["kappa"] < 0.05:
                sev = "high"  # a chance-level matrix beside any above-chance claim
            verdict = "consistent with" if sev == "info" else ("below" if s["accuracy"] < value else "above")
            findings.append(_finding(
                paper, "confusion matrix vs claimed accuracy", sev,
                f"{implied}: {verdict} {what}, a gap of {_pts(s['accuracy'] - value)}.",
                [c.source, src], implied=s["accuracy"], implied_lo=s["acc_lo"], implied_hi=s["acc_hi"],
                claimed=value, gap=s["accuracy"] - value, kappa=s["kappa"]))
        findings += _matrix_size_findings(paper, c, s)
    return findings


_ROUND_FRACTIONS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 1 / 3, 0.5)


def _matrix_size_findings(paper, c, s) -> list[dict]:
    """The images a printed matrix counts vs the split the claim names and the official splits."""
    sizes = SIZES.get(str(c.dataset).lower())
    if s["normalised"] or not sizes:
        return []
    lo, hi, total = s["total_lo"], s["total_hi"], s["total"]
    named = official_split(c.split) or ("PublicTest" if str(c.split).lower() in ("validation", "val") else None)
    matches = [name for name, n in sizes.items() if lo <= n <= hi]
    text = (f"{c.source} ({c.model}) counts {total:,.0f} images ({lo:,.0f}-{hi:,.0f} given the printed rounding); "
            f"official splits: " + ", ".join(f"{k} {v:,}" for k, v in sizes.items()))
    numbers = dict(total=total, total_lo=lo, total_hi=hi)
    if named and named in matches:
        return [_finding(paper, "confusion matrix size", "info", text + f"; it matches the claim's split "
                         f"({c.split} = {named}).", [c.source], **numbers)]
    extra = ""
    for split, n in sizes.items():
        if split == "all" or n < hi:
            continue
        for f in _ROUND_FRACTIONS:
            if lo <= f * n <= hi:
                extra = (f"; it is {total / n:.1%} of {split} ({split} {n:,} x {f:.3g} = {f * n:,.0f}): a hold-out "
                         f"carved from {split}")
                counts = class_counts(c.dataset, split)
                if s["order"] and counts:
                    rows = s["matrix"].sum(axis=1)[s["order"]]
                    expect = np.array([counts[k] for k in CLASSES]) * f
                    extra += (", whose class counts it also matches (rows " + "/".join(f"{r:.0f}" for r in rows) +
                              f" vs {f:.3g} x {split}'s " + "/".join(f"{e:.0f}" for e in expect) + ")")
                numbers.update(fraction_of=split, fraction=f)
                break
        if extra:
            break
    where = f"the claim's split ({c.split} = {named}, {sizes[named]:,} images)" if named in sizes else \
        f"the claim's split ({c.split})"
    sev = "medium" if matches or extra or named in sizes else "low"
    return [_finding(paper, "confusion matrix size", sev,
                     text + f"{extra}. It does not count {where}" + (f"; sizes within range: {', '.join(matches)}"
                                                                     if matches else "") + ".",
                     [c.source], **numbers)]


# ---------------------------------------------------------------- per-class tables

def per_class_rows(claim) -> list[tuple[list[str], np.ndarray, float | None, float]]:
    """(class labels, fractions, stated average or None, half-unit) for each row of a per-class claim."""
    m = np.asarray(claim.matrix, dtype=float)
    m = m.reshape(1, -1) if m.ndim == 1 else m
    labels = list(claim.labels or [])
    units = _matrix_halfunits(claim, m.shape)
    out = []
    for row, unit in zip(m, units):
        frac, scale = _fractions(row)
        avg_idx = [i for i, lab in enumerate(labels) if _AVERAGE.match(str(lab))]
        keep = [i for i in range(len(row)) if i not in avg_idx]
        avg = float(frac[avg_idx[0]]) if avg_idx else None
        half = float(np.max(unit)) / scale
        out.append(([labels[i] for i in keep] if labels else [str(i) for i in keep], frac[keep], avg, half))
    return out


def check_per_class(paper) -> list[dict]:
    findings = []
    for c in paper.claims:
        if c.metric != "per_class_accuracy" or not c.matrix:
            continue
        for labels, frac, avg, half in per_class_rows(c):
            mapped = [canonical_class(lab) for lab in labels]
            findings += _granularity(paper, c, labels, mapped, frac, half)
            if avg is None and sorted(filter(None, mapped)) != sorted(CLASSES):
                continue  # a partial table (a class or two quoted in the text) has no average to check
            counts = class_counts(c.dataset, c.split) or class_counts(c.dataset, "all")
            unweighted = float(frac.mean())
            weighted = math.nan
            if counts and all(mapped):
                w = np.array([counts[k] for k in mapped], dtype=float)
                weighted = float((frac * w).sum() / w.sum())
            count_name = f"{c.dataset} {official_split(c.split) or 'all'}" if counts else ""
            stated = []
            if avg is not None:
                stated.append((avg, half, f"the stated average {avg * 100:.2f}%", c.source))
            else:
                accs = _accuracy_claims(paper, c.model, c.dataset)
                same_source = [a for a in accs if a.source.split(",")[0] == c.source.split(",")[0]]
                for a in same_source or accs:
                    stated.append((a.value, printed_tolerance(a.as_printed, a.value),
                                   f"the stated {a.as_printed} ({a.source})", a.source))
            desc = (f"{c.source} ({c.model}, {c.dataset}): per-class mean {unweighted * 100:.2f}% (unweighted)"
                    + (f", {weighted * 100:.2f}% weighted by the {count_name} class counts" if not math.isnan(weighted)
                       else ""))
            if not stated:
                findings.append(_finding(paper, "per-class vs average", "info",
                                         desc + "; no average is stated to compare with.", [c.source],
                                         unweighted=unweighted, weighted=weighted))
            for value, tol, what, src in stated:
                tol = tol + half
                gap_u = _beyond(value - unweighted, tol)
                gap_w = _beyond(value - weighted, tol) if not math.isnan(weighted) else math.inf
                if gap_w == 0:
                    sev, tail = "info", "it is the overall accuracy these per-class numbers imply."
                elif gap_u == 0:
                    spread = abs(weighted - unweighted) if not math.isnan(weighted) else 0.0
                    sev = "low" if spread >= 0.001 else "info"
                    tail = ("it is the unweighted mean of the class accuracies, not the accuracy over all images"
                            + (f" (which these per-class numbers put at {weighted * 100:.2f}%, "
                               f"{_pts(weighted - value)})" if spread >= 0.001 else
                               f" (here the two differ by only {abs(weighted - unweighted) * 100:.2f} points)") + ".")
                else:
                    gap = min(gap_u, gap_w)
                    sev = severity_from_gap(gap)
                    tail = (f"it matches neither (off by {_pts(value - unweighted)} unweighted"
                            + (f", {_pts(value - weighted)} weighted" if not math.isnan(weighted) else "") + ").")
                findings.append(_finding(paper, "per-class vs average", sev, f"{desc}; {what}: {tail}",
                                         [c.source, src], stated=value, unweighted=unweighted, weighted=weighted))
    return findings


def _smallest_denominator(v: float, half: float, limit: int = 1000) -> int | None:
    for d in range(1, limit + 1):
        if abs(round(v * d) / d - v) <= half + 1e-12:
            return d
    return None


def _granularity(paper, c, labels, mapped, frac, half) -> list[dict]:
    """Per-class accuracies are k/n for the n test images of a class: check they can be, where n is known."""
    counts = class_counts(c.dataset, c.split)
    if str(c.dataset).lower() == "fer2013" and c.protocol != "canonical":
        return []  # a split of the paper's own: its class counts are unknown
    if not counts or not all(mapped) or half <= 0:
        return []
    bad = []
    for lab, cls, v in zip(labels, mapped, frac):
        n = counts[cls]
        k = round(v * n)
        if abs(k / n - v) > half + 1e-12:
            bad.append((lab, v, n, k, _smallest_denominator(v, half)))
    if not bad:
        return []
    pooled = "all images" if official_split(c.split) in (None, "all") else f"the {official_split(c.split)} images"
    detail = "; ".join(f"{lab} {v * 100:.2f}% (n={n}: nearest {k}/{n} = {k / n * 100:.2f}%; smallest denominator "
                       f"giving it: {d})" for lab, v, n, k, d in bad)
    return [_finding(paper, "per-class granularity", "low",
                     f"{c.source} ({c.model}, {c.dataset}): {len(bad)} of {len(labels)} per-class accuracies are no "
                     f"count k/n of the class's images pooled over {pooled} ({detail}). They are not pooled "
                     "accuracies; a mean over folds or a test set of another size would explain them.",
                     [c.source], classes=[b[0] for b in bad], denominators=[b[4] for b in bad])]


# ---------------------------------------------------------------- differences

def check_differences(paper) -> list[dict]:
    findings = []
    for g in paper.claims:
        if g.metric != "accuracy_gain" or g.value is None:
            continue
        a_claims = _accuracy_claims(paper, g.model, g.dataset)
        b_claims = _accuracy_claims(paper, g.relative_to, g.dataset)
        tol_g = printed_tolerance(g.as_printed, g.value)
        head = f"{g.source}: {g.model} is stated {g.as_printed} better than {g.relative_to or '(baseline not named)'}"
        pairs = [(a, b) for a in a_claims for b in b_claims if a.split == b.split] or \
                [(a, b) for a in a_claims for b in b_claims]
        for a, b in pairs:
            tol = tol_g + printed_tolerance(a.as_printed, a.value) + printed_tolerance(b.as_printed, b.value)
            absolute = a.value - b.value
            relative = absolute / b.value
            gap_abs, gap_rel = _beyond(g.value - absolute, tol), _beyond(g.value - relative, tol / b.value)
            if gap_abs == 0:
                sev, tail = "info", f"it is the absolute difference in points; read as a relative gain it would " \
                                    f"be {relative * 100:.2f}%."
            elif gap_rel == 0:
                sev, tail = "low", f"it is the relative gain; in points the difference is {absolute * 100:.2f}."
            else:
                sev = severity_from_gap(min(gap_abs, gap_rel))
                tail = f"it matches neither the absolute ({absolute * 100:.2f} points) nor the relative " \
                       f"({relative * 100:.2f}%) difference."
            findings.append(_finding(paper, "stated difference", sev,
                                     f"{head}; the numbers it subtracts: {a.as_printed} ({a.source}) - {b.as_printed} "
                                     f"({b.source}) = {absolute * 100:.2f} points, {relative * 100:.2f}% relative: "
                                     f"{tail}", [g.source, a.source, b.source], stated=g.value, absolute=absolute,
                                     relative=relative))
        if pairs:
            continue
        parts, sev, numbers = [], "low", {"stated": g.value}
        if a_claims and not b_claims:
            a = a_claims[0]
            b_abs, b_rel = a.value - g.value, a.value / (1 + g.value)
            parts.append(f"the accuracy of {g.relative_to} is never printed: {a.as_printed} ({a.source}) implies "
                         f"{b_abs * 100:.2f}% if the gain is in points, {b_rel * 100:.2f}% if it is relative")
            numbers.update(baseline_absolute=b_abs, baseline_relative=b_rel)
        if b_claims and not a_claims:
            b = b_claims[0]
            a_abs, a_rel = b.value + g.value, b.value * (1 + g.value)
            sev = "info"
            parts.append(f"the accuracy of {g.model} is not printed: with {g.relative_to}'s {b.as_printed} "
                         f"({b.source}) it would be {a_abs * 100:.2f}% if the gain is in points, {a_rel * 100:.2f}% if "
                         "it is relative")
            numbers.update(model_absolute=a_abs, model_relative=a_rel)
        # matrices printed for both models give a gain of their own
        ma = [matrix_summary(c) | {"source": c.source} for c in paper.claims
              if c.metric == "confusion_matrix" and c.model == g.model and c.matrix]
        mb = [matrix_summary(c) | {"source": c.source} for c in paper.claims
              if c.metric == "confusion_matrix" and c.model == g.relative_to and c.matrix]
        srcs = [g.source] + [a.source for a in a_claims]
        for x in ma:
            for y in mb:
                d = x["accuracy"] - y["accuracy"]
                d_lo, d_hi = x["acc_lo"] - y["acc_hi"], x["acc_hi"] - y["acc_lo"]
                gap = 0.0 if d_lo - tol_g <= g.value <= d_hi + tol_g else \
                    min(abs(g.value - d_lo), abs(g.value - d_hi)) - tol_g
                rel = d / y["accuracy"] if y["accuracy"] else math.nan
                parts.append(f"the printed matrices give {x['accuracy'] * 100:.2f}% ({x['source']}) - "
                             f"{y['accuracy'] * 100:.2f}% ({y['source']}) = {d * 100:+.2f} points "
                             f"({rel * 100:+.1f}% relative; range {d_lo * 100:+.2f} to {d_hi * 100:+.2f} points), "
                             f"against the stated {g.as_printed}")
                sev = max(sev, severity_from_gap(gap), key=SEVERITIES[::-1].index)
                numbers.update(matrix_gain=d, matrix_gain_lo=d_lo, matrix_gain_hi=d_hi)
                srcs += [x["source"], y["source"]]
        if not parts:
            parts.append("none of the numbers it subtracts is printed")
        findings.append(_finding(paper, "stated difference", sev, f"{head}; " + "; ".join(parts) + ".", srcs,
                                 **numbers))
    return findings


# ---------------------------------------------------------------- dataset sizes, selection, repeats

def check_dataset_sizes(paper) -> list[dict]:
    findings = []
    for c in paper.claims:
        if c.metric != "dataset_size" or c.value is None:
            continue
        sizes = SIZES.get(str(c.dataset).lower(), {})
        split = official_split(c.split)
        if split is None and str(c.split).lower() in ("test", "validation", "val") and "PublicTest" in sizes:
            split = "PublicTest"  # both FER-2013 test splits have 3,589 images
        official = sizes.get(split or "")
        where = f"{c.source}: {c.as_printed} {c.split} images of {c.dataset}"
        cls = canonical_class(c.labels[0]) if c.labels and len(c.labels) == 1 else None
        if cls:  # one class's images (labels=[class]): compared with the official class count
            counts = CLASS_COUNTS.get(str(c.dataset).lower(), {}).get(split or "")
            official = counts[cls] if counts else None
            where = f"{c.source}: {c.as_printed} ({cls}) images of {c.dataset}" + ("" if split == "all" else
                                                                                  f" {c.split}")
        if official is None:
            findings.append(_finding(paper, "dataset size", "info", f"{where}; no official size to compare with.",
                                     [c.source], stated=c.value))
            continue
        diff = c.value - official
        rel = diff / official
        label = "all images" if split == "all" else f"the official {split} split"
        if cls:
            label = f"its {cls} class" + ("" if split == "all" else f" in {split}")
        if _LOWER_BOUND.search(c.as_printed or ""):
            if official >= c.value:
                sev = "low" if -rel > 0.1 else "info"
                text = f"{where}: a lower bound that holds ({label} has {official:,}), understating it by " \
                       f"{-rel:.0%}."
            else:
                sev, text = "high", f"{where}: a lower bound above the {official:,} images of {label}."
        elif diff == 0:
            sev, text = "info", f"{where}: matches {label} ({official:,})."
        else:
            sev = "low" if abs(rel) <= 0.001 else ("medium" if abs(rel) <= 0.05 else "high")
            if split == "all" and sev == "medium" and abs(rel) <= 0.01:
                sev = "low"  # a miscount of the whole set changes no reported number
            text = f"{where}: {label} has {official:,} ({diff:+,.0f}, {rel:+.2%})." if abs(rel) >= 0.001 else \
                f"{where}: {label} has {official:,} ({diff:+,.0f}, {rel:+.3%})."
            if split != "all" and c.value > sizes.get("all", math.inf):
                text += f" It exceeds the whole dataset ({sizes['all']:,} images): a misprint."
            elif split != "all" and abs(rel) > 0.001 and not cls:
                text += " Numbers measured on it are not on the official split."
        findings.append(_finding(paper, "dataset size", sev, text, [c.source], stated=c.value, official=official))
    return findings


def _selects_on_reported(c) -> bool:
    on = str(c.selected_on or "")
    return on.lower() == "test" or (bool(on) and (official_split(on) or on) == (official_split(c.split) or c.split))


def check_test_selection(paper) -> list[dict]:
    """Claims whose checkpoint was chosen on the split they report (selected_on 'test', or equal to the split)."""
    chosen = [c for c in paper.claims if _selects_on_reported(c)]
    by_protocol = defaultdict(list)
    for c in chosen:
        by_protocol[(c.protocol, c.dataset)].append(c)
    findings = []
    for (protocol, dataset), claims in by_protocol.items():
        listed = ", ".join(f"{c.model} {c.metric.replace('_', ' ')} " +
                           (c.as_printed if len(c.as_printed) <= 12 else f"({c.source})") +
                           (" [cited]" if c.kind == "cited" else "") for c in claims[:6])
        more = f" and {len(claims) - 6} more" if len(claims) > 6 else ""
        findings.append(_finding(
            paper, "selection on the test set", "medium",
            f"Protocol '{protocol}' ({dataset}): the checkpoint is chosen on the split the number is reported on, "
            f"so {len(claims)} claim(s) ({listed}{more}) are optimistically biased, not held-out estimates.",
            [c.source for c in claims], claims=len(claims)))
    return findings


def check_repeats(paper) -> list[dict]:
    """The same number stated twice (e.g. a table and the text) with different values."""
    groups = defaultdict(list)
    for c in paper.claims:
        if c.metric in ("accuracy", "loss", "macro_f1") and c.value is not None and c.kind == "own":
            groups[(c.model, c.metric, c.dataset, c.split, c.protocol)].append(c)
    findings = []
    for (model, metric, dataset, split, _), claims in groups.items():
        values = {round(c.value, 6) for c in claims}
        if len(values) > 1:
            spread = max(values) - min(values)
            tol = max(printed_tolerance(c.as_printed, c.value) for c in claims) * 2
            findings.append(_finding(
                paper, "repeated numbers", severity_from_gap(_beyond(spread, tol)),
                f"{model} {metric} on {dataset} {split} is stated as " +
                ", ".join(f"{c.as_printed} ({c.source})" for c in claims) + ".",
                [c.source for c in claims], values=sorted(values)))
    return findings


CHECKS = (check_confusion_matrices, check_per_class, check_differences, check_dataset_sizes, check_test_selection,
          check_repeats)


def audit(papers) -> list[dict]:
    """Every finding for every paper, most severe first within a paper."""
    findings = []
    for paper in papers:
        found = [f for check in CHECKS for f in check(paper)]
        if not found:
            metrics = sorted({c.metric for c in paper.claims})
            found = [_finding(paper, "nothing to cross-check", "info",
                              f"{len(paper.claims)} claim(s) ({', '.join(metrics) or 'none'}): no printed confusion "
                              "matrix, per-class table, stated difference, dataset size or test-set selection to "
                              "check them against.", [c.source for c in paper.claims][:3])]
        findings += sorted(found, key=lambda f: SEVERITIES.index(f["severity"]))
    return findings
