"""What the claim audit knows and how it reads printed numbers: dataset facts, rounding, count arithmetic.

Shared by the checks of ``fer_bench.audit`` (a paper's own numbers against each other) and
``fer_bench.audit_reviewer`` (what a reviewer adds: counts, the published state of the art, JAFFE subjects, the
same network across papers). Nothing here reads a paper module; everything takes claims or plain numbers.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from functools import lru_cache
from math import lcm

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
JAFFE_SUBJECTS = 10  # ten women, each posing every expression about three times (213 / 70 = 3.04)
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


def token_halfunit(token: str) -> float:
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
    half = token_halfunit(m.group())
    if abs(x / 100 - value) < abs(x - value):  # printed as a percentage, stored as a fraction
        half /= 100
    return half * (2 if _APPROX.search(as_printed) else 1)


def matrix_halfunits(claim, shape) -> np.ndarray:
    """Per-entry rounding half-units of a printed matrix, from ``as_printed`` when its tokens match."""
    tokens = _NUMBER.findall(str(claim.as_printed or ""))
    size = int(np.prod(shape))
    values = np.asarray(claim.matrix, dtype=float)
    if len(tokens) == size:
        exact = claim.metric == "confusion_matrix"  # an integer count is exact; an integer percentage is not
        units = np.array([0.0 if exact and re.fullmatch(r"\d+", t) else token_halfunit(t)
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


def fractions_of(values: np.ndarray) -> tuple[np.ndarray, float]:
    """Per-class numbers as fractions (a table printed in % is divided by 100) and the scale used."""
    scale = 100.0 if np.nanmax(values) > 1.5 else 1.0
    return values / scale, scale


def pct(x: float | None, digits: int = 2, missing: str = "n/a") -> str:
    """A fraction as a percentage; ``missing`` for None or NaN."""
    return missing if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.{digits}f}%"


def pts(x: float) -> str:
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


def beyond(diff: float, tol: float) -> float:
    return max(0.0, abs(diff) - tol)


def finding(paper, check, severity, text, sources, **numbers) -> dict:
    return {"paper": paper.id, "check": check, "severity": severity, "finding": text,
            "sources": "; ".join(dict.fromkeys(p.strip() for s in sources if s for p in s.split(";"))),
            "numbers": numbers}


def per_class_rows(claim) -> list[tuple[list[str], np.ndarray, float | None, float]]:
    """(class labels, fractions, stated average or None, half-unit) for each row of a per-class claim."""
    m = np.asarray(claim.matrix, dtype=float)
    m = m.reshape(1, -1) if m.ndim == 1 else m
    labels = list(claim.labels or [])
    units = matrix_halfunits(claim, m.shape)
    out = []
    for row, unit in zip(m, units):
        frac, scale = fractions_of(row)
        avg_idx = [i for i, lab in enumerate(labels) if _AVERAGE.match(str(lab))]
        keep = [i for i in range(len(row)) if i not in avg_idx]
        avg = float(frac[avg_idx[0]]) if avg_idx else None
        half = float(np.max(unit)) / scale
        out.append(([labels[i] for i in keep] if labels else [str(i) for i in keep], frac[keep], avg, half))
    return out


def accuracy_claims(paper, model, dataset):
    return [c for c in paper.claims if c.metric == "accuracy" and c.model == model and c.dataset == dataset
            and c.value is not None]


def smallest_denominator(v: float, half: float, limit: int = 1000) -> int | None:
    for d in range(1, limit + 1):
        if abs(round(v * d) / d - v) <= half + 1e-12:
            return d
    return None


# ---------------------------------------------------------------- count arithmetic

def nearest_count(v: float, n: int) -> int:
    """The number of correct images out of n nearest to an accuracy v."""
    return min(n, max(0, round(v * n)))


def is_count(v: float, tol: float, n: int) -> bool:
    """Whether some k/n (k = 0..n) lies within ``tol`` of v: an accuracy over n images can be v as printed."""
    return abs(nearest_count(v, n) / n - v) <= tol + 1e-12


def near_equal_parts(n: int, k: int) -> tuple[int, ...]:
    """The fold sizes of n images dealt to k folds as evenly as possible (any stratified or plain k-fold)."""
    return tuple(n // k + (i < n % k) for i in range(k))


@lru_cache(maxsize=None)
def partitions(n: int, k: int, largest: int | None = None) -> tuple[tuple[int, ...], ...]:
    """Every way to deal n images into k non-empty folds, as fold sizes in decreasing order."""
    largest = n if largest is None else largest
    if k == 1:
        return ((n,),) if 1 <= n <= largest else ()
    return tuple((first, *rest) for first in range(min(n - k + 1, largest), 0, -1)
                 for rest in partitions(n - first, k - 1, first))


def fold_mean(v: float, tol: float, parts: tuple[int, ...]) -> Fraction | None:
    """A mean over folds of per-fold accuracies k_i/a_i (fold sizes ``parts``) within ``tol`` of v, or None.
    Exact: the sums of errors e_i/a_i are counted in units of 1/lcm(parts), pruned to what v allows."""
    k, unit = len(parts), lcm(*parts)
    budget = math.floor((1 - v + tol) * k * unit + 1e-9)  # the most error (in units) a mean this high allows
    lo = math.ceil((1 - v - tol) * k * unit - 1e-9)
    sums = {0}
    for a in parts:
        step = unit // a
        sums = {s + e * step for s in sums for e in range(a + 1) if s + e * step <= budget}
    hits = sorted(s for s in sums if s >= lo)
    return 1 - Fraction(hits[0], k * unit) if hits else None


def any_fold_mean(v: float, tol: float, n: int, k: int) -> tuple[tuple[int, ...], Fraction] | None:
    """Fold sizes (any split of n images into k non-empty folds) and a fold mean within ``tol`` of v, or None."""
    for parts in partitions(n, k):
        hit = fold_mean(v, tol, parts)
        if hit is not None:
            return parts, hit
    return None


# ---------------------------------------------------------------- split rules: how a hold-out of N images was cut

SPLIT_POOLS = {"fer2013": {"Training": ("Training",), "Training+PublicTest": ("Training", "PublicTest"),
                           "all": ("Training", "PublicTest", "PrivateTest")}}
_ONE_CUT = (0.1, 0.15, 0.2, 0.25, 0.3, 1 / 3)  # validation_split / test_size values in common use
_TWO_CUTS = (0.1, 0.15, 0.2, 0.25)  # a test part cut first, then a validation part of the rest


def split_rules(dataset: str, lo: float, hi: float) -> list[dict]:
    """Every rule 'a fraction of a pool of official splits' giving a hold-out of lo..hi images, nearest first:
    one cut (e.g. 20% of Training) or two (e.g. 20% of the 80% left after a 20% test split: 16% of all)."""
    rules = {}
    for pool, parts in SPLIT_POOLS.get(str(dataset).lower(), {}).items():
        size = sum(SIZES[dataset][p] for p in parts)
        cuts = [(f, f"{f:.0%} of {pool}") for f in _ONE_CUT]
        cuts += [((1 - a) * b, f"{b:.0%} of the {1 - a:.0%} of {pool} left after a {a:.0%} test split "
                  f"({(1 - a) * b:.0%} of {pool})") for a in _TWO_CUTS for b in _TWO_CUTS]
        for f, text in cuts:
            n = round(f * size)
            if lo <= n <= hi and (pool, n) not in rules:
                rules[(pool, n)] = dict(pool=pool, parts=parts, fraction=f, size=n, rule=text)
    return sorted(rules.values(), key=lambda r: abs(r["size"] - (lo + hi) / 2))


def pool_counts(dataset: str, parts) -> np.ndarray:
    """Class counts (FER-2013 order) of a union of official splits."""
    return np.array([sum(CLASS_COUNTS[dataset][p][c] for p in parts) for c in CLASSES], dtype=float)


def chi2_sf(x: float, df: int) -> float:
    """P(chi-square with df degrees of freedom > x): the regularised upper incomplete gamma, by its series."""
    if x <= 0:
        return 1.0
    a, z = df / 2, x / 2
    term = total = 1 / a
    for n in range(1, 1000):
        term *= z / (a + n)
        total += term
        if term < total * 1e-15:
            break
    return max(0.0, 1 - math.exp(a * math.log(z) - z - math.lgamma(a)) * total)
