"""Intervals, tests and margins for measured numbers, on scipy.stats (t quantiles, binomial intervals, FDR).

A measured accuracy varies for two reasons. Training is random: another seed gives another network, and its
accuracy on the same test images is another draw. And a test set is a finite sample of faces. When a claim was
measured on the same test images as ours, the seed-to-seed spread of our accuracies on those images already holds
everything that varies between one run of the recipe and another, so with >= MIN_SEEDS seeds no test-set term is
added (adding one would count it twice). With fewer seeds the spread is not estimated from the group itself: a
seed sd pooled over the groups that have >= MIN_SEEDS seeds stands in (scaled to the test size), else the stated
SEED_SD_ALLOWANCE, and the test set's own binomial term (Wilson) is kept. When the paper's images are not ours,
the noise of its own test set is added to every comparison.

``Spread`` is one group's values seen this way; ``predict`` (one new run), ``mean_interval`` (the seed mean),
``p_value`` and ``equivalent`` (two one-sided tests against a margin) all read it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as st

LEVEL = 0.95
Z = float(st.norm.ppf(0.5 + LEVEL / 2))  # 1.959963984540054
MIN_SEEDS = 3  # fewer seeds do not estimate the seed-to-seed spread of their group

# With no group of >= MIN_SEEDS seeds, one run of the recipe is predicted from our one run within this many
# accuracy points (seed term alone). Our run is itself a random draw: the gap between two runs has sd sqrt(2) x the
# seed sd, so a 5-point allowance stands for a seed sd of 5 / (1.96 sqrt 2) = 1.80 points (SEED_SD_ALLOWANCE).
SEED_ALLOWANCE = 0.05
SEED_SD_ALLOWANCE = SEED_ALLOWANCE / (Z * math.sqrt(2))

# "consistent" is an equivalence statement: the recipe's expected value lies within claim +- MARGIN (accuracy,
# points as a fraction) or claim x (1 +- LOSS_MARGIN) (a loss, relative), shown by two one-sided tests at 5%.
MARGIN = 0.02
LOSS_MARGIN = 0.10

METHOD = (
    "95% intervals (scipy.stats). One seed: the Wilson score interval of the accuracy on the N test images of the "
    "split. n >= 2 seeds: the seed mean +- sqrt(h_seed^2 + h_test^2), h_seed = t(0.975, n-1) * sd / sqrt(n) (sd "
    "with ddof=1) and h_test the Wilson half-width at the mean (each side apart). Per-class accuracies use the "
    "class's own test count as N. Loss and macro F1 have no binomial term: they get the t-interval alone, which "
    "needs >= 2 seeds. A gain between two models gets the difference of their means +- the two half-widths added "
    "in quadrature."
)


def t_quantile(df: float, level: float = LEVEL) -> float:
    """The two-sided ``level`` critical value of Student's t with ``df`` degrees of freedom (normal for inf)."""
    if df < 1:
        raise ValueError("t needs df >= 1")
    return float(st.t.ppf(0.5 + level / 2, df))


def wilson(p: float, n: int, z: float = Z) -> tuple[float, float]:
    """Wilson score interval of a proportion p observed on n trials at the level of ``z`` (scipy's, for a count)."""
    if not n:
        return (math.nan, math.nan)
    level = 2 * float(st.norm.cdf(z)) - 1
    if abs(p * n - round(p * n)) < 1e-6:  # a count: scipy's own
        ci = st.binomtest(int(round(p * n)), int(n)).proportion_ci(level, method="wilson")
        return (float(ci.low), float(ci.high))
    denom = 1 + z * z / n  # a mean over seeds is no count: the same formula at a non-integer k
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (max(0.0, centre - half), min(1.0, centre + half))


def _clean(values) -> np.ndarray:
    return np.asarray([x for x in values if x is not None and not math.isnan(x)], dtype=float)


def summarize(values, n_test: int | None = None, binomial: bool = True, level: float = LEVEL) -> dict:
    """mean, std (ddof=1), n and the ``level`` interval of the seed mean (the 'Measured' column; METHOD)."""
    z = float(st.norm.ppf(0.5 + level / 2))
    v = _clean(values)
    n = len(v)
    if n == 0:
        return {"mean": math.nan, "std": math.nan, "n": 0, "lo": math.nan, "hi": math.nan, "method": "none"}
    mean = float(v.mean())
    std = float(v.std(ddof=1)) if n >= 2 else math.nan
    h_seed = t_quantile(n - 1, level) * std / math.sqrt(n) if n >= 2 else 0.0
    if binomial and n_test:
        w_lo, w_hi = wilson(mean, int(n_test), z)
        lo, hi = max(0.0, mean - math.hypot(h_seed, mean - w_lo)), min(1.0, mean + math.hypot(h_seed, w_hi - mean))
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
    """consistent / below / above: where an interval lies relative to claim +- tol (inconclusive without one)."""
    if math.isnan(lo) or math.isnan(hi):
        return "inconclusive"
    if hi < claim - tol:
        return "below"
    if lo > claim + tol:
        return "above"
    return "consistent"


# ---------------------------------------------------------------- one group's spread

@dataclass
class Pooled:
    """A seed variance pooled over groups with >= MIN_SEEDS seeds. Accuracies: per image (variance x test size,
    so it scales to any test size or class); losses: relative (variance / mean^2)."""
    unit_var: float
    df: int
    groups: int


def pool(groups: list[tuple[list[float], int | None]], relative: bool = False) -> Pooled | None:
    """Pool (values, n_test) of groups with >= MIN_SEEDS seeds: sum((n_i - 1) s_i^2 scaled) / sum(n_i - 1)."""
    num = df = k = 0
    for values, n_test in groups:
        v = _clean(values)
        if len(v) < MIN_SEEDS or (not relative and not n_test) or (relative and not v.mean()):
            continue
        scale = 1 / float(v.mean()) ** 2 if relative else float(n_test)
        num += (len(v) - 1) * float(v.var(ddof=1)) * scale
        df += len(v) - 1
        k += 1
    return Pooled(num / df, df, k) if df else None


@dataclass
class Spread:
    """One group's values on one metric, with where its seed sd comes from and which test-set terms it keeps."""
    mean: float
    n: int
    sd: float  # seed sd of one run (nan: none)
    df: float  # its degrees of freedom (inf for a stated allowance)
    source: str  # "seeds" | "pooled" | "allowance" | "none"
    test_down: float = 0.0  # 95% half-widths of the test-set terms kept (ours when < MIN_SEEDS; the paper's)
    test_up: float = 0.0
    paper_n: int | None = None

    @property
    def ok(self) -> bool:
        return self.n > 0 and not math.isnan(self.sd)

    def describe(self) -> str:
        what = {"seeds": f"seed sd {self.sd:.4g} from {self.n} seeds, t({self.n - 1})",
                "pooled": f"seed sd {self.sd:.4g} pooled over other groups, t({self.df:g})",
                "allowance": f"{self.n} seed(s): stated seed sd allowance {self.sd:.4g}",
                }.get(self.source, "no seed spread")
        if self.test_down or self.test_up:
            what += " + the test set" + (f" (the paper's, n={self.paper_n})" if self.paper_n else "")
        return what


def spread(values, n_test: int | None, kind: str = "accuracy", pooled: Pooled | None = None,
           loss_sd: float | None = None, paper_n: int | None = None, claimed: float | None = None,
           class_share: float = 1.0) -> Spread:
    """kind: accuracy (binomial) or loss. ``class_share``: a class's test count / the split's, for the allowance."""
    v = _clean(values)
    n = len(v)
    if n == 0 or not n_test:
        return Spread(math.nan, n, math.nan, math.nan, "none")
    mean = float(v.mean())
    if n >= MIN_SEEDS:
        sd, df, source = float(v.std(ddof=1)), n - 1, "seeds"
    elif pooled is not None:
        sd = math.sqrt(pooled.unit_var / n_test) if kind == "accuracy" else math.sqrt(pooled.unit_var) * mean
        df, source = pooled.df, "pooled"
    elif kind == "accuracy":
        sd, df, source = SEED_SD_ALLOWANCE / math.sqrt(class_share), math.inf, "allowance"
    else:
        return Spread(mean, n, math.nan, math.nan, "none")
    down = up = 0.0
    if n < MIN_SEEDS:  # the group's own spread is not estimated: the test set's term is kept
        if kind == "accuracy":
            w_lo, w_hi = wilson(mean, int(n_test))
            down, up = mean - w_lo, w_hi - mean
        elif loss_sd is not None and not math.isnan(loss_sd):
            down = up = Z * loss_sd / math.sqrt(n_test)
        else:
            return Spread(mean, n, math.nan, math.nan, "none")
    if paper_n and claimed is not None and kind == "accuracy":
        p_lo, p_hi = wilson(claimed, int(paper_n))
        down, up = math.hypot(down, p_hi - claimed), math.hypot(up, claimed - p_lo)
    return Spread(mean, n, sd, df, source, down, up, paper_n if paper_n and kind == "accuracy" else None)


def _q(df: float, level: float) -> float:
    return float(st.norm.ppf(0.5 + level / 2)) if math.isinf(df) else t_quantile(df, level)


def predict(s: Spread, level: float = LEVEL, bounded: bool = True) -> dict:
    """The ``level`` prediction interval of one new run: mean +- sqrt((q sd sqrt(1 + 1/n))^2 + test terms^2)."""
    if not s.ok:
        return {"mean": s.mean, "lo": math.nan, "hi": math.nan, "se": math.nan, "df": math.nan, "n": s.n,
                "method": "none"}
    k = _q(s.df, level) / Z
    h = _q(s.df, level) * s.sd * math.sqrt(1 + 1 / s.n)
    lo, hi = s.mean - math.hypot(h, k * s.test_down), s.mean + math.hypot(h, k * s.test_up)
    if bounded:
        lo, hi = max(0.0, lo), min(1.0, hi)
    se = math.sqrt((s.sd * math.sqrt(1 + 1 / s.n)) ** 2 + ((s.test_down + s.test_up) / (2 * Z)) ** 2)
    return {"mean": s.mean, "lo": lo, "hi": hi, "se": se, "df": s.df, "n": s.n,
            "method": f"prediction: {s.describe()}"}


def predict_difference(a: Spread, b: Spread, level: float = LEVEL) -> dict:
    """One new run of each of two recipes, on the same test images: the interval of their difference."""
    pa, pb = predict(a, level, False), predict(b, level, False)
    if math.isnan(pa["lo"]) or math.isnan(pb["lo"]):
        return {"mean": a.mean - b.mean, "lo": math.nan, "hi": math.nan, "se": math.nan, "df": math.nan,
                "n": min(a.n, b.n), "method": "none"}
    d = pa["mean"] - pb["mean"]
    se = math.hypot(pa["se"], pb["se"])
    df = _welch_df([(pa["se"], a.df), (pb["se"], b.df)])
    return {"mean": d, "lo": d - math.hypot(pa["mean"] - pa["lo"], pb["hi"] - pb["mean"]),
            "hi": d + math.hypot(pa["hi"] - pa["mean"], pb["mean"] - pb["lo"]), "se": se, "df": df,
            "n": min(a.n, b.n), "method": f"difference of one run each ({a.describe()} / {b.describe()})"}


def _welch_df(parts: list[tuple[float, float]]) -> float:
    """Welch-Satterthwaite degrees of freedom of a sum of independent terms (se_i, df_i)."""
    num = sum(se ** 2 for se, _ in parts) ** 2
    den = sum(se ** 4 / df for se, df in parts if not math.isinf(df))
    return num / den if den else math.inf


def mean_se(s: Spread) -> tuple[float, float]:
    """(se, df) of the recipe's expected value as our mean estimates it, with the test terms kept."""
    return math.sqrt(s.sd ** 2 / s.n + ((s.test_down + s.test_up) / (2 * Z)) ** 2), s.df


def p_value(claimed: float, tol: float, mean: float, se: float, df: float) -> float:
    """Two-sided p of 'the claim is one run of the recipe' (t with df; the printed rounding in the claim's favour)."""
    if math.isnan(se) or se <= 0:
        return math.nan
    gap = max(0.0, abs(mean - claimed) - tol)
    return float(2 * (st.norm.sf(gap / se) if math.isinf(df) else st.t.sf(gap / se, df)))


def equivalent(gap: float, se: float, df: float, margin: float, alpha: float = 1 - LEVEL) -> tuple[bool, float]:
    """Two one-sided tests: (whether |expected - claim| < margin is shown at ``alpha``, its p-value)."""
    if math.isnan(se) or se <= 0:
        return False, math.nan
    dist = st.norm if math.isinf(df) else st.t(df)
    p = float(max(dist.sf((gap + margin) / se), dist.cdf((gap - margin) / se)))
    return p < alpha, p


def seeds_for_equivalence(gap: float, sd: float, margin: float, alpha: float = 1 - LEVEL, most: int = 200) -> int | None:
    """The fewest seeds (>= MIN_SEEDS) whose mean, at this gap and sd, would show equivalence (None: none would)."""
    if abs(gap) >= margin or math.isnan(sd):
        return None
    for n in range(MIN_SEEDS, most + 1):
        if equivalent(gap, sd / math.sqrt(n), n - 1, margin, alpha)[0]:
            return n
    return None


def bh(pvalues) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (scipy.stats.false_discovery_control); NaN stays NaN."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, math.nan)
    ok = ~np.isnan(p)
    if ok.any():
        out[ok] = st.false_discovery_control(p[ok])
    return out
