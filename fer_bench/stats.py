"""Intervals for measured accuracies: the finite test set (Wilson) combined with seed-to-seed spread (t).

A measured accuracy is uncertain for two reasons. The test set is a finite sample: on N images a
classifier with true accuracy p scores p +- 1.96 sqrt(p(1-p)/N) (about +-1.45 points at 73% on
3,589 images). And training is random: another seed gives another network. With one seed only the
first term can be estimated; with n >= 2 seeds the second is the t-interval of the seed mean. The
two are independent, so their half-widths add in quadrature:

    lo = mean - sqrt(h_seed^2 + (mean - wilson_lo)^2)
    hi = mean + sqrt(h_seed^2 + (wilson_hi - mean)^2)
    h_seed = t(0.975, n-1) * std / sqrt(n)        (0 when n = 1)

(wilson_lo, wilson_hi) is the 95% Wilson score interval at the seed mean with the test split's N;
with one seed the interval is exactly Wilson's. Metrics without a binomial model (loss, macro F1)
get the t term alone, so they need >= 2 seeds for an interval.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

LEVEL = 0.95
Z = NormalDist().inv_cdf(0.5 + LEVEL / 2)  # 1.959963984540054

METHOD = (
    "95% intervals. One seed: the Wilson score interval of the accuracy on the N test images of the split "
    "(binomial sampling of the finite test set; about +-1.45 points at 73% on 3,589 images). n >= 2 seeds: "
    "the seed mean +- sqrt(h_seed^2 + h_test^2), where h_seed = t(0.975, n-1) * std / sqrt(n) is the "
    "t-interval half-width of the seed mean (seed-to-seed spread, std with ddof=1) and h_test is the "
    "Wilson half-width at the mean (each side separately, so the interval may be asymmetric). Per-class "
    "accuracies use the class's own test count as N. Loss and macro F1 have no binomial term: they get the "
    "t-interval alone, which needs >= 2 seeds. A gain between two models gets the difference of their "
    "means +- the two half-widths added in quadrature (conservative: both models see the same test images)."
)


def _t_two_sided_mass(t: float, df: int) -> float:
    """P(|T| < t) for Student's t with integer df (Abramowitz & Stegun 26.7.3-4, exact finite sums)."""
    theta = math.atan(t / math.sqrt(df))
    s, c = math.sin(theta), math.cos(theta)
    if df % 2 == 1:
        if df == 1:
            return 2 * theta / math.pi
        term, total = c, c
        for k in range(3, df - 1, 2):  # c + (2/3)c^3 + (2*4)/(3*5)c^5 + ... up to c^(df-2)
            term *= (k - 1) / k * c * c
            total += term
        return 2 / math.pi * (theta + s * total)
    term, total = 1.0, 1.0
    for k in range(2, df - 1, 2):  # 1 + (1/2)c^2 + (1*3)/(2*4)c^4 + ... up to c^(df-2)
        term *= (k - 1) / k * c * c
        total += term
    return s * total


def t_quantile(df: int, level: float = LEVEL) -> float:
    """The two-sided ``level`` critical value of Student's t with ``df`` degrees of freedom (t(0.975, df))."""
    if df < 1:
        raise ValueError("t needs df >= 1")
    lo, hi = 0.0, 1e3
    for _ in range(200):  # bisection on the exact CDF: 200 halvings are far below float precision
        mid = (lo + hi) / 2
        if _t_two_sided_mass(mid, df) < level:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def wilson(p: float, n: int, z: float = Z) -> tuple[float, float]:
    """95% Wilson score interval of a proportion p observed on n trials."""
    if not n:
        return (math.nan, math.nan)
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (max(0.0, centre - half), min(1.0, centre + half))


def summarize(values, n_test: int | None = None, binomial: bool = True, level: float = LEVEL) -> dict:
    """mean, std (ddof=1), n and the ``level`` interval of per-seed values (see the module docstring).

    ``n_test``: images in the test split (or class) the values were measured on; ``binomial``: whether
    the values are proportions (accuracies) that get the Wilson term.
    """
    z = NormalDist().inv_cdf(0.5 + level / 2)
    v = np.asarray([x for x in values if x is not None and not math.isnan(x)], dtype=float)
    n = len(v)
    if n == 0:
        return {"mean": math.nan, "std": math.nan, "n": 0, "lo": math.nan, "hi": math.nan, "method": "none"}
    mean = float(v.mean())
    std = float(v.std(ddof=1)) if n >= 2 else math.nan
    h_seed = t_quantile(n - 1, level) * std / math.sqrt(n) if n >= 2 else 0.0
    if binomial and n_test:
        w_lo, w_hi = wilson(mean, int(n_test), z)
        lo = mean - math.hypot(h_seed, mean - w_lo)
        hi = mean + math.hypot(h_seed, w_hi - mean)
        lo, hi = max(0.0, lo), min(1.0, hi)  # a proportion's interval stays within [0, 1]
        method = "wilson+t" if n >= 2 else "wilson"
    elif n >= 2:
        lo, hi, method = mean - h_seed, mean + h_seed, "t"
    else:
        lo, hi, method = math.nan, math.nan, "none"
    return {"mean": mean, "std": std, "n": n, "lo": lo, "hi": hi, "method": method}


def difference(a: dict, b: dict) -> dict:
    """The interval of mean(a) - mean(b) for two summaries: half-widths added in quadrature per side."""
    d = a["mean"] - b["mean"]
    lo = d - math.hypot(a["mean"] - a["lo"], b["hi"] - b["mean"])
    hi = d + math.hypot(a["hi"] - a["mean"], b["mean"] - b["lo"])
    return {"mean": d, "std": math.nan, "n": min(a["n"], b["n"]), "lo": lo, "hi": hi,
            "method": f"difference of {a['method']}/{b['method']}"}


def compare(claim: float, tol: float, lo: float, hi: float) -> str:
    """consistent / below / above: where the measured interval lies relative to claim +- tol (inconclusive for an
    interval that is not there)."""
    if math.isnan(lo) or math.isnan(hi):
        return "inconclusive"
    if hi < claim - tol:
        return "below"
    if lo > claim + tol:
        return "above"
    return "consistent"


# ---------------------------------------------------------------- where one new run of the recipe would fall

MIN_SEEDS = 3  # fewer seeds do not estimate the seed-to-seed spread: SEED_ALLOWANCE stands in for it
SEED_ALLOWANCE = 0.05  # 5 accuracy points: a run that far from a claim would need a seed sd over 2.5 points


def predict(values, n_test: int | None, binomial: bool = True, loss_sd: float | None = None,
            paper_n: int | None = None, claimed: float | None = None, level: float = LEVEL) -> dict:
    """The ``level`` prediction interval of one new run of the recipe (a paper's number is one run):

        mean +- sqrt(h_seed^2 + h_test^2 + h_paper^2)

    h_seed = t(n-1) * sd * sqrt(1 + 1/n) with n >= MIN_SEEDS seeds; with fewer, SEED_ALLOWANCE for accuracies and
    no interval (NaN) for other metrics. h_test: the Wilson half-width at the mean on the n_test images (each side
    apart) for accuracies; z * loss_sd / sqrt(n_test) for a loss (NaN without loss_sd). h_paper: when the paper's
    test set is not ours, the Wilson half-width of its claimed value on its ``paper_n`` images."""
    v = np.asarray([x for x in values if x is not None and not math.isnan(x)], dtype=float)
    n = len(v)
    nan = {"mean": math.nan, "lo": math.nan, "hi": math.nan, "h_seed": math.nan, "n": n, "method": "none"}
    if n == 0 or not n_test:
        return nan
    z = NormalDist().inv_cdf(0.5 + level / 2)
    mean = float(v.mean())
    if n >= MIN_SEEDS:
        h_seed = t_quantile(n - 1, level) * float(v.std(ddof=1)) * math.sqrt(1 + 1 / n)
        method = f"prediction t({n - 1})"
    elif binomial:
        h_seed, method = SEED_ALLOWANCE, f"prediction, {n} seed(s): seed allowance {100 * SEED_ALLOWANCE:.0f} pts"
    else:
        return nan | {"mean": mean}
    if binomial:
        w_lo, w_hi = wilson(mean, int(n_test), z)
        down, up = mean - w_lo, w_hi - mean
    elif loss_sd is not None and not math.isnan(loss_sd):
        down = up = z * loss_sd / math.sqrt(n_test)
    else:
        return nan | {"mean": mean}
    if paper_n and claimed is not None and binomial:
        p_lo, p_hi = wilson(claimed, int(paper_n), z)
        down, up = math.hypot(down, p_hi - claimed), math.hypot(up, claimed - p_lo)
        method += f" + the paper's test set (n={paper_n})"
    lo, hi = mean - math.hypot(h_seed, down), mean + math.hypot(h_seed, up)
    if binomial:
        lo, hi = max(0.0, lo), min(1.0, hi)
    return {"mean": mean, "lo": lo, "hi": hi, "h_seed": h_seed, "n": n, "method": method}
