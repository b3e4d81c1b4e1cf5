"""The verdict rules: one claim against the runs ``fer_bench.verdicts`` picked for it.

``evaluate_claim`` returns one summary row per claim. The numbers come from ``fer_bench.stats`` (one group's
``Spread``: seed spread from its own seeds, a pooled sd, or the stated allowance; the test-set terms it keeps);
the words of every rule are ``QUESTION``, ``VERDICT_RULES`` and ``CONVENTIONS``, printed in the report.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

from .audit import canonical_class, matrix_summary, per_class_rows, printed_tolerance
from .audit_facts import pct
from .data import CLASSES
from .stats import (LEVEL, LOSS_MARGIN, MARGIN, MIN_SEEDS, SEED_ALLOWANCE, SEED_SD_ALLOWANCE, Z, compare, difference,
                    equivalent, mean_se, p_value, predict, predict_difference, seeds_for_equivalence, spread,
                    summarize, _welch_df)
from .verdicts import (PROXY_SPLITS, Pick, _loss_sd, _values, claim_tta, fmt_measured, paper_test_n, pick_runs,
                       resolve_split)

QUESTION = (
    "Each verdict answers: *could one run of the paper's recipe, trained and evaluated as fer-bench does, have "
    "produced the paper's number?* A paper's number is one run. **below/above**: the claim lies outside the 95% "
    "prediction interval of one new run, mean +- sqrt((t sd sqrt(1 + 1/n))^2 + test terms^2), with a two-sided "
    "p-value. **consistent**: shown by two one-sided tests (5% each) that the recipe's expected value lies within "
    f"the claim +- a margin: +-{100 * MARGIN:.0f} accuracy points (a loss: +-{100 * LOSS_MARGIN:.0f}% of the "
    f"claimed value), beyond the rounding of the printed digits, from >= {MIN_SEEDS} seeds. Why these margins: the "
    "95% binomial half-width of one accuracy on 3,589 test images is 1.6 points at 60%, so a paper's single "
    f"number cannot be read more finely than about {100 * MARGIN:.0f} points; a loss's own test-set half-width is "
    "5.4% of its value on du's ResNet50 (0.149 on 2.76), and a loss is read to twice that. "
    "The seed sd comes from the group's own seeds when it has >= 3; else from the seed variance pooled over every "
    "group that has >= 3 (per test image, scaled to the claim's test size or class size; t with the pooled degrees "
    "of freedom), said so in the reason; only when no group has 3 seeds, from a stated allowance: one run predicted "
    f"from our one run within {100 * SEED_ALLOWANCE:.0f} points, i.e. a seed sd of {100 * SEED_SD_ALLOWANCE:.2f} "
    "points (our run is also a random draw, so the gap between two runs has sd sqrt(2) x the seed sd: 5 / (1.96 x "
    "sqrt 2)); a loss has no allowance. Test-set terms: when the claim was measured on our test images and the "
    f"group has >= {MIN_SEEDS} seeds, none (the seeds' spread on those images already holds the test-set noise; "
    "adding Wilson's term would count it twice); with fewer seeds, the Wilson half-width on our images (a loss: z x "
    "its per-image sd / sqrt(N)); when the paper's images are not ours, the Wilson half-width of the claimed value "
    "on its own test size, always. Multiplicity: every judged claim has a p-value; the summary counts below/above "
    "at 5% each and after Benjamini-Hochberg control of the false discovery rate at 5% over the report (q).")

VERDICT_RULES = [
    ("not yet run", "no completed run of the claim's model exists (for a gain: of either model); also every cited "
                    "claim on a model fer-bench does not implement."),
    ("not comparable", "runs exist, but none matches the claim's protocol, dataset and test-time augmentation (the "
                       "claim's own, else that of the paper's recipe for the model; a single-view claim can use a TTA "
                       "run's recorded single-view numbers), or has its split; or the paper selected its checkpoint "
                       "another way than the runs (on another split; the paper's last epoch is compared with the "
                       "runs' last-epoch weights); also claims fer-bench cannot measure the same way (training "
                       "time on other hardware)."),
    ("inconclusive", "comparable runs exist but the evidence is weak, with the reason: only reduced-budget runs, "
                     "unless the lower-bound rule below decides; no measured value; no interval (a loss from fewer "
                     f"than {MIN_SEEDS} seeds with no pooled loss spread; macro-F1); too imprecise: the claim lies "
                     "inside the prediction interval but equivalence within the margin is not shown (what would "
                     "show it is named: more seeds, and how many at the measured spread, or nothing when the "
                     "paper's own test set is too small); per-class claims from fewer than "
                     f"{MIN_SEEDS} seeds (one run's epoch 25 vs 30 moved du's disgust by 18 points: not a finding), and "
                     f"training-curve claims from fewer than {MIN_SEEDS} seeds (an epoch's seed spread, early ones "
                     "above all, is not the final accuracy's, which the stated allowance stands in for)."),
    ("consistent", f">= {MIN_SEEDS} distinct seeds, and two one-sided tests show the expected value within the "
                   "margin of the claim (plus its printed rounding). A printed confusion matrix is judged by the "
                   "accuracy it implies. A parameter count is judged from the built model, exactly: within the "
                   "range the printed words allow ('over 23 million': 23-24 million)."),
    ("below", "the whole prediction interval lies below the claimed value (minus its rounding). A curve bound "
              "('larger than 1.4' at every epoch): some epoch's interval lies wholly on the wrong side."),
    ("above", "the whole prediction interval lies above it (plus its rounding). Lower-bound rule, only where the "
              "paper states how it selected its checkpoint: a run cut only in epochs, whose schedule does not "
              "depend on the number of epochs and which selects on accuracy, is the first k epochs of the paper's "
              "run, so its best selection-split accuracy is a lower bound of the full run's: when even that "
              "bound's interval lies above a claim on the selection split, 'above, already after k of N epochs'."),
    ("mixed", "per-class claims: some classes below and some above, each class at the Bonferroni level 1 - 0.05/7 "
              "on its own test images (the seed sd scaled by the class's size where it is pooled or allowed; the "
              "paper's test-set noise added per class where its images are not ours); 'consistent' needs every "
              "class equivalent within the margin at that level."),
]
CONVENTIONS = (
    "Splits: a claim on 'validation' is compared with PublicTest and one on 'test' with PrivateTest. When the "
    "paper's test images are not ours (its own protocol, or a 'validation' hold-out it carved itself, as Huang's "
    "5,742 images), PublicTest/PrivateTest is a held-out proxy and the paper's own test-set noise is added. Gains: "
    "when the paper's own accuracies show whether a gain is in points or relative, that reading is judged; "
    "otherwise both are, and the verdict stands only if they agree. Dependent claims: a gain whose verdict follows "
    "from one of its two accuracies' verdicts (the gain below because the baseline is above) is the same finding, "
    "counted once; so is a curve's end that is a table's number. Readings: each claim is judged again under the "
    "other readings fer-bench can express from the same runs (the other canonical split; last epoch vs the "
    "selected checkpoint; for an accuracy or a gain, the mean of the per-class accuracies vs the pooled accuracy, "
    "its test-set term from the classes' own sizes); 'holds under readings' says whether the verdict survives them. Seeds are counted once "
    "(a repeated seed keeps the run that finished last); a group that mixes dataset fingerprints or code versions "
    "says so. When several full-budget groups match, the paper profile with the unmodified recipe is used first, "
    "then the group with the most seeds.")


SUMMARY_FIELDS = ["paper", "model", "kind", "metric", "as_printed", "claimed", "claimed_tol", "claimed_display",
                  "split", "protocol", "dataset", "tta", "selected_on", "checkpoint", "source", "refers_to",
                  "measured", "lo", "hi", "std", "n", "n_test", "method", "pred_lo", "pred_hi", "pred_method",
                  "measured_split", "measured_display", "predicted_display", "reduced", "unleaked", "gap",
                  "gap_display", "p", "q", "verdict", "reason", "depends_on", "finding", "readings", "group", "runs"]


def _row(paper, claim, **kw) -> dict:
    tta = claim_tta(claim, paper)
    refers = f"{claim.split}, {claim.protocol} protocol, {claim.dataset}" + (f", TTA {tta}" if tta != "none" else "")
    refers += (f", selected on {claim.selected_on}" if claim.selected_on else "")
    refers += ", last epoch" if claim.checkpoint == "last" else ""
    row = dict.fromkeys(SUMMARY_FIELDS, "") | {
        "paper": paper.id, "model": claim.model, "kind": claim.kind, "metric": claim.metric,
        "as_printed": claim.as_printed, "claimed": claim.value, "claimed_tol": 0.0, "split": claim.split,
        "protocol": claim.protocol, "dataset": claim.dataset, "tta": tta, "selected_on": claim.selected_on,
        "checkpoint": claim.checkpoint, "source": claim.source, "refers_to": refers, "n": 0, "n_test": None,
        "reduced": False}
    for k in ("measured", "lo", "hi", "std", "pred_lo", "pred_hi", "gap", "p", "q"):
        row[k] = math.nan
    return row | kw


def _with_stats(row: dict, st: dict, pred: dict, pct_: bool, reduced: bool) -> dict:
    gap = st["mean"] - row["claimed"] if row["claimed"] is not None else math.nan
    mark = " (reduced budget)" if reduced else ""
    return row | {"measured": st["mean"], "lo": st["lo"], "hi": st["hi"], "std": st["std"], "n": st["n"],
                  "method": st["method"], "pred_lo": pred["lo"], "pred_hi": pred["hi"], "pred_method": pred["method"],
                  "measured_display": fmt_measured(st, pct_) + mark, "reduced": reduced,
                  "predicted_display": fmt_measured(pred, pct_).partition(" ")[2],
                  "gap": gap, "gap_display": "" if math.isnan(gap) else
                  (f"{100 * gap:+.2f} pts" if pct_ else f"{gap:+.4f}") + mark}


def margin_of(metric: str, claimed: float) -> float:
    return LOSS_MARGIN * abs(claimed) if metric == "loss" else MARGIN


def decide(claimed: float, tol: float, pred: dict, se_df: tuple[float, float], n: int, metric: str,
           sd: float = math.nan, paper_se: float = 0.0, alpha: float = 1 - LEVEL, no_interval: str = "") -> dict:
    """verdict, reason and p for one number against one prediction interval (``pred``) and the seed mean's
    (se, df) for the equivalence test; ``sd``: one run's seed sd (to say how many seeds would decide)."""
    if math.isnan(pred["lo"]):
        return {"verdict": "inconclusive", "reason": f"no interval: {no_interval or 'no test-set interval'}",
                "p": math.nan}
    p = p_value(claimed, tol, pred["mean"], pred["se"], pred["df"])
    verdict = compare(claimed, tol, pred["lo"], pred["hi"])
    if verdict != "consistent":
        return {"verdict": verdict, "reason": f"{pred['method']}; p = {p:.2g}", "p": p}
    margin = margin_of(metric, claimed)
    gap = pred["mean"] - claimed
    gap = math.copysign(max(0.0, abs(gap) - tol), gap)
    eq, p_eq = equivalent(gap, se_df[0], se_df[1], margin, alpha)
    unit = (lambda x: f"{100 * x:.1f} pts") if metric != "loss" else (lambda x: f"{x:.3g}")
    if eq and n >= MIN_SEEDS:
        return {"verdict": "consistent", "reason": f"equivalent within +-{unit(margin)} (two one-sided tests, "
                f"p = {p_eq:.2g}); {pred['method']}", "p": p}
    if n < MIN_SEEDS:
        fix = f"run >= {MIN_SEEDS} distinct seeds"
    elif paper_se and Z * paper_se >= margin:
        fix = (f"the paper's own test set alone spreads its number by +-{unit(Z * paper_se)}, wider than the margin: "
               "no number of seeds can show it")
    elif abs(gap) >= margin:
        fix = (f"the mean is {unit(abs(gap))} from the claim, beyond the margin: more seeds would tell whether it is "
               "below or above")
    else:
        k = seeds_for_equivalence(gap, sd, margin, alpha)
        fix = f"about {k} seeds at the measured spread would show it" if k else "more seeds"
    return {"verdict": "inconclusive", "reason": f"too imprecise: the claim lies in the prediction interval (+-"
            f"{unit((pred['hi'] - pred['lo']) / 2)}, {pred['method']}; p = {p:.2g}) but equivalence within "
            f"+-{unit(margin)} is not shown (p = {p_eq:.2g}, from {n} seed(s)): {fix}", "p": p}


def _epochs_only(pick: Pick) -> bool:
    """Whether the group was cut only in epochs, with a schedule that does not depend on the number of epochs."""
    def cut(reason: str) -> bool:
        m = re.fullmatch(r"epochs=(\d+) \(paper: (\d+)\)|stopped after \d+ of \d+ epochs", reason)
        return bool(m) and (m.group(1) is None or int(m.group(1)) < int(m.group(2)))

    return all(u.profile == "paper" and (u.config or {}).get("scheduler") != "cosine"
               and (u.config or {}).get("monitor", "val/acc") == "val/acc"
               and all(cut(r) for r in u.budget_reasons.split("; ") if r) for u in pick.units.itertuples())


def _lower_bound(row: dict, claim, pick: Pick, pred: dict) -> dict:
    """A reduced group decided by the lower-bound rule (VERDICT_RULES, 'above'), or inconclusive. Only where the
    paper states how it selected (claim.selected_on)."""
    selection = bool(pick.split) and all(u.selected_on == pick.split for u in pick.units.itertuples())
    if claim.checkpoint == "selected" and claim.selected_on and selection and _epochs_only(pick) \
            and row["metric"] == "accuracy" and not math.isnan(pred["lo"]) \
            and pred["lo"] > row["claimed"] + row["claimed_tol"]:
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


def _gain_row(row: dict, paper, claim, units: pd.DataFrame, pooled: dict) -> dict:
    models = (claim.model, claim.relative_to)
    picks = [pick_runs(claim, units, paper, m) for m in models]
    for verdict in ("not yet run", "not comparable", "inconclusive"):
        for m, p in zip(models, picks):
            if p.verdict == verdict and (verdict != "inconclusive" or p.units.empty):
                return row | {"verdict": verdict, "reason": f"{m}: {p.reason}"}
    stats, spreads = [], []
    for p in picks:
        vals, n_test = _values(p.units, p.split, "accuracy")
        stats.append(summarize(vals, n_test))
        spreads.append(spread(vals, n_test, "accuracy", (pooled or {}).get((p.split, "accuracy"))))
    d, dp = difference(*stats), predict_difference(*spreads)
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
    (sa, da), (sb, db) = mean_se(spreads[0]), mean_se(spreads[1])
    se_df = (math.hypot(sa, sb), _welch_df([(sa, da), (sb, db)]))
    sd = math.hypot(spreads[0].sd, spreads[1].sd)
    reading = _gain_reading(paper, claim)
    judged = {}
    if reading in ("points", "both"):
        judged["points"] = decide(claim.value, row["claimed_tol"], dp, se_df, n, "accuracy", sd)
    if reading in ("relative", "both") and base:
        rel = dp | {"lo": dp["lo"] / base, "hi": dp["hi"] / base, "mean": dp["mean"] / base, "se": dp["se"] / base}
        judged["relative"] = decide(claim.value, row["claimed_tol"], rel, (se_df[0] / base, se_df[1]), n,
                                    "accuracy", sd / base)
    verdicts = {j["verdict"] for j in judged.values()}
    text = "; ".join(f"{k} reading: {j['verdict']} ({j['reason']})" for k, j in judged.items())
    p = max(j["p"] for j in judged.values())
    if len(verdicts) > 1:
        return row | {"verdict": "inconclusive", "reason": "the readings disagree: " + text, "p": p}
    return row | {"verdict": verdicts.pop(), "reason": text, "p": p}


def _per_class_row(row: dict, claim, pick: Pick, paper, pooled: dict) -> dict:
    alpha = (1 - LEVEL) / len(CLASSES)  # Bonferroni over the seven classes
    level = 1 - alpha
    judged, gaps, details, ps, eqs = [], [], [], [], []
    _, n_all = _values(pick.units, pick.split, "accuracy")
    paper_n = paper_test_n(paper, claim, pick.split, n_all)
    for labels, frac, _, half in per_class_rows(claim):
        for lab, v in zip(labels, frac):
            c = canonical_class(lab)
            vals, n_c = _values(pick.units, pick.split, f"class:{c}") if c else ([], None)
            if not vals or not n_c:
                continue
            share = n_c / n_all if n_all else 1.0
            s = spread(vals, n_c, "accuracy", (pooled or {}).get((pick.split, "accuracy")),
                       paper_n=round(paper_n * share) if paper_n else None, claimed=float(v), class_share=share)
            pred = predict(s, level)
            if math.isnan(pred["lo"]):
                continue
            j = decide(float(v), half, pred, mean_se(s), s.n, "accuracy", s.sd, alpha=alpha)
            judged.append(compare(float(v), half, pred["lo"], pred["hi"]))
            eqs.append(j["verdict"] == "consistent")
            ps.append(j["p"])
            gaps.append(s.mean - float(v))
            details.append(f"{c} {pct(s.mean, 1, '')} vs {pct(float(v), 1, '')} (n={n_c})")
    if not judged:
        return row | {"verdict": "inconclusive", "reason": "no class of the claim is measured with its test count"}
    counts = {v: judged.count(v) for v in ("below", "consistent", "above")}
    verdict = ("consistent" if all(eqs) else "inconclusive" if counts["consistent"] == len(judged) else
               "mixed" if counts["below"] and counts["above"] else "below" if counts["below"] else "above")
    gap = float(np.mean(gaps))
    n = len(pick.units)
    p = min(1.0, len(ps) * min(ps))  # Bonferroni: the claim's p is its smallest class's, times the classes
    row |= {"measured_display": ", ".join(f"{k} {n_}" for k, n_ in counts.items() if n_) + f" ({'; '.join(details)})"
            + (" (reduced budget)" if pick.reduced else ""), "gap": gap, "reduced": pick.reduced,
            "gap_display": f"{100 * gap:+.2f} pts (mean)", "n": n, "p": p}
    if pick.reduced:
        return row | {"verdict": "inconclusive", "reason": pick.reason}
    if n < MIN_SEEDS:
        return row | {"verdict": "inconclusive", "reason": f"per-class accuracies from {n} seed(s) are not a finding "
                      f"(they would read '{verdict}'): a class of a few dozen images moves by many points between "
                      f"epochs and seeds; run >= {MIN_SEEDS} distinct seeds"}
    if verdict == "inconclusive":
        return row | {"verdict": verdict, "reason": "too imprecise: every class lies in its prediction interval, but "
                      f"not every class is shown equivalent within +-{100 * MARGIN:.0f} points at level "
                      f"{level:.4f}: more seeds"}
    return row | {"verdict": verdict, "reason": f"each class: prediction interval at level {level:.4f} (Bonferroni "
                  "over 7 classes) on its own test images; consistent: every class equivalent within the margin"}


# ---------------------------------------------------------------- claims judged without a run

_SCALES = {"thousand": 1e3, "k": 1e3, "million": 1e6, "m": 1e6, "billion": 1e9}


def printed_range(as_printed: str, value: float) -> tuple[float, float]:
    """The range a printed count allows: 'over 23 million' -> (23e6, 24e6) (up to the next printed unit); '~60,000'
    -> 50,000-70,000 (trailing zeros are rounding: half the unit 10,000 each side, doubled for an approximation);
    '23,522,375' -> +-0.5."""
    text = str(as_printed).lower()
    m = re.search(r"(\d[\d,]*(?:\.\d+)?)\s*(thousand|million|billion|k\b|m\b)?", text)
    if not m:
        return value, value
    digits = m.group(1).replace(",", "")
    scale = _SCALES.get(m.group(2) or "", 1.0)
    decimals = len(digits.partition(".")[2])
    unit = 10.0 ** -decimals * scale
    if not decimals and not m.group(2):  # a bare integer: its trailing zeros are rounding (60,000 -> unit 1,000)
        unit = 10.0 ** (len(digits) - len(digits.rstrip("0")))
    if re.search(r"\b(over|more than|above|at least|exceeds?)\b", text):
        return value, value + unit
    if re.search(r"\b(under|less than|below|at most|fewer than)\b", text):
        return value - unit, value
    approx = 2 if re.search(r"~|about|around|approximately|roughly", text) else 1
    return value - approx * unit / 2, value + approx * unit / 2


def count_trainable(paper, model: str) -> int:
    """The trainable parameters of ``model`` built from its resolved recipe (without downloading pretrained weights:
    the count does not depend on them, only which parameters train does, and that is the recipe's)."""
    cfg = paper.resolve(model) | {"pretrained": False}
    net = paper.models[model].build(cfg)
    return int(sum(p.numel() for p in net.parameters() if p.requires_grad))


def _params_row(row: dict, paper, claim) -> dict:
    lo, hi = printed_range(claim.as_printed, float(claim.value))
    count = count_trainable(paper, claim.model)
    verdict = "below" if count < lo else "above" if count > hi else "consistent"
    return row | {"measured": float(count), "measured_display": f"{count:,} (built model)", "n": 0,
                  "gap": float(count - claim.value), "gap_display": f"{count - claim.value:+,.0f}",
                  "predicted_display": f"printed range [{lo:,.0f}, {hi:,.0f}]", "verdict": verdict,
                  "reason": f"exact count of the built model's trainable parameters ({count:,}) against the range "
                            f"'{claim.as_printed}' allows; no seeds needed"}


# ---------------------------------------------------------------- curve claims, from the per-epoch logs

def epoch_values(pick: Pick, quantity: str) -> dict[int, list[float]]:
    """Per epoch (1-based), the runs' values of val/acc or val/loss (the selection split) from logs/metrics.csv."""
    out: dict[int, list[float]] = {}
    column = "val/acc" if quantity == "accuracy" else "val/loss"
    for u in pick.units.itertuples():
        for log in u.logs:
            try:
                df = pd.read_csv(log)
            except (OSError, ValueError, pd.errors.EmptyDataError):
                continue
            if "epoch" not in df or column not in df:
                continue
            for e, v in df.dropna(subset=[column]).groupby("epoch")[column].first().items():
                out.setdefault(int(e) + 1, []).append(float(v))
    return out


def _curve_row(row: dict, paper, claim, pick: Pick, pooled: dict) -> dict:
    """A bound over every epoch ([[b]]: 'less than 45%', 'larger than 1.4') or the first and last epoch
    ([[first, last]]), each epoch with its prediction interval on the selection split (PublicTest)."""
    quantity = "accuracy" if claim.metric == "accuracy_curve" else "loss"
    split = resolve_split(claim.split, pick.units.iloc[0].splits) or claim.split
    if not all(u.selected_on == split for u in pick.units.itertuples()):
        return row | {"verdict": "not comparable", "reason": f"the runs' per-epoch curve is on "
                      f"{'/'.join(sorted(set(pick.units.selected_on)))}, the claim's on {split}"}
    curves = epoch_values(pick, quantity)
    if not curves:
        return row | {"verdict": "inconclusive", "reason": "no per-epoch log (logs/metrics.csv) with "
                      f"{'val/acc' if quantity == 'accuracy' else 'val/loss'}"}
    n_test = int(np.median([s[split]["n"] for s in pick.units.splits if split in s and s[split].get("n")]) or 0)
    loss_sd, _ = _loss_sd(pick.units, split) if quantity == "loss" else (None, 0)

    def interval(vals):
        s = spread(vals, n_test, quantity, (pooled or {}).get((split, quantity)), loss_sd)
        return predict(s, bounded=quantity == "accuracy")

    fmt = (lambda v: pct(v, 2, "")) if quantity == "accuracy" else (lambda v: f"{v:.4f}")
    bound = claim.matrix[0]
    last = max(curves)
    if len(bound) == 1:  # a bound over every epoch
        b = float(bound[0])
        upper = bool(re.search(r"less|below|under", claim.as_printed))
        preds = {e: interval(v) for e, v in sorted(curves.items())}
        if any(math.isnan(p["lo"]) for p in preds.values()):
            return row | {"verdict": "inconclusive", "reason": f"no interval for a {quantity} from {len(pick.units)} "
                          f"seed(s) without a pooled spread; its curve {'reaches' if upper else 'falls to'} "
                          f"{fmt((max if upper else min)(v for vs in curves.values() for v in vs))}"}
        wrong = [e for e, p in preds.items() if (p["lo"] > b if upper else p["hi"] < b)]
        extreme = (max if upper else min)(curves, key=lambda e: np.mean(curves[e]) * (1 if upper else -1))
        ext = preds[extreme]
        # a curve point's seed spread is not the final accuracy's (early epochs vary more): from fewer than
        # MIN_SEEDS seeds no curve verdict is a finding, whichever way it points
        few = len(pick.units) < MIN_SEEDS
        verdict = "inconclusive" if few else ("above" if upper else "below") if wrong else "consistent"
        row |= {"measured": ext["mean"], "pred_lo": ext["lo"], "pred_hi": ext["hi"], "n": len(pick.units),
                "measured_display": f"{'max' if upper else 'min'} {fmt(ext['mean'])} at epoch {extreme} of {last}",
                "predicted_display": f"[{fmt(ext['lo'])}, {fmt(ext['hi'])}]", "measured_split": split}
        why = (f"{len(wrong)} of {len(preds)} epochs' prediction intervals lie wholly "
               f"{'above' if upper else 'below'} the bound (first: epoch {wrong[0]})" if wrong else
               "no epoch's interval lies wholly beyond the bound")
        p = min(p_value(b, 0.0, preds[e]["mean"], preds[e]["se"], preds[e]["df"]) for e in preds) * len(preds)
        return row | {"verdict": verdict, "reason": f"{why}; {ext['method']}" + (
            f"; a curve is judged from >= {MIN_SEEDS} distinct seeds (an epoch's seed spread is not the final "
            "accuracy's)" if few else ""), "p": min(1.0, p) if wrong and not few else math.nan}
    ends = [(1, float(bound[0])), (last, float(bound[-1]))]
    parts, verdicts, ps = [], [], []
    for e, v in ends:
        p = interval(curves.get(e, []))
        if math.isnan(p["lo"]):
            parts.append(f"epoch {e}: {fmt(np.mean(curves.get(e, [math.nan])))} vs {fmt(v)}, no interval")
            verdicts.append("inconclusive")
            continue
        verdicts.append(compare(v, printed_tolerance(claim.as_printed, v), p["lo"], p["hi"]))
        ps.append(p_value(v, 0.0, p["mean"], p["se"], p["df"]))
        parts.append(f"epoch {e}: {fmt(p['mean'])} [{fmt(p['lo'])}, {fmt(p['hi'])}] vs {fmt(v)}: {verdicts[-1]}")
    decided = {v for v in verdicts if v in ("below", "above")}
    few = len(pick.units) < MIN_SEEDS  # see above: no curve finding from fewer seeds
    verdict = ("inconclusive" if few else "mixed" if len(decided) > 1 else decided.pop() if decided else
               "consistent" if set(verdicts) == {"consistent"} else "inconclusive")
    return row | {"verdict": verdict, "n": len(pick.units), "measured_split": split,
                  "measured_display": "; ".join(parts), "p": min(1.0, 2 * min(ps)) if ps and not few else math.nan,
                  "reason": "first and last epoch, each against one run's prediction interval"
                            + (f"; a curve is judged from >= {MIN_SEEDS} distinct seeds (an epoch's seed spread is "
                               "not the final accuracy's)" if few else "")}


# ---------------------------------------------------------------- one claim

def evaluate_claim(paper, claim, units: pd.DataFrame, pooled: dict | None = None) -> dict | None:
    """One summary row for one claim (None for dataset sizes, which only the audit checks). ``pooled``: (split,
    metric) -> stats.Pooled, the seed variance of the groups with >= MIN_SEEDS seeds."""
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
    if metric == "trainable_params":
        return _params_row(row | {"claimed_tol": 0.0}, paper, claim)
    if metric == "accuracy_gain":
        return _gain_row(row, paper, claim, units, pooled)

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
    if metric in ("accuracy_curve", "loss_curve") and claim.matrix:
        return _curve_row(row, paper, claim, pick, pooled) if not pick.reduced else \
            row | {"verdict": "inconclusive", "reason": pick.reason}
    if not measurable:
        return row | {"verdict": "not comparable", "reason": f"'{metric}' claims are not measured by fer-bench"}
    if metric == "per_class_accuracy":
        return _per_class_row(row, claim, pick, paper, pooled)
    metric = "accuracy" if metric == "confusion_matrix" else metric  # a printed matrix: the accuracy it implies
    vals, n_test = _values(pick.units, pick.split, metric)
    loss_sd, n_sd = _loss_sd(pick.units, pick.split) if metric == "loss" else (None, 0)
    if not vals:
        return row | {"verdict": "inconclusive", "reason": f"no {metric} measured on {pick.split} by {pick.group}"}
    binomial = metric == "accuracy"
    st = summarize(vals, n_test, binomial)
    paper_n = paper_test_n(paper, claim, pick.split, n_test)
    s = spread(vals, n_test, metric if metric == "loss" else "accuracy", (pooled or {}).get((pick.split, metric)),
               loss_sd, paper_n, row["claimed"]) if metric != "macro_f1" else spread([], None)
    pred = predict(s, bounded=binomial)
    row = _with_stats(row, st, pred, binomial, pick.reduced) | {"n_test": n_test}
    unleaked = _values(pick.units, f"{pick.split}_unleaked", metric)[0]
    if unleaked:
        row["unleaked"] = fmt_measured(summarize(unleaked, None, False) | {"lo": math.nan}, binomial) + \
            f" ({len(unleaked)} of {len(vals)} seed(s))"
    notes = "; ".join(pick.notes)
    if pick.reduced:
        return _lower_bound(row, claim, pick, pred)
    no_interval = "no test-set interval"
    if metric == "loss":
        no_interval = (f"a loss from {len(vals)} seed(s) has no seed spread (no group has >= {MIN_SEEDS} seeds to "
                       "pool a loss spread from, and a loss has no stated allowance)" +
                       (f"; its per-image spread is recorded (loss_sd {loss_sd:.4g})" if loss_sd is not None else
                        "; nor a per-image spread (loss_sd, recorded by newer runs)"))
    paper_se = 0.0
    if paper_n:
        paper_se = math.sqrt(row["claimed"] * (1 - row["claimed"]) / paper_n) if binomial else 0.0
    j = decide(row["claimed"], row["claimed_tol"], pred, mean_se(s) if s.ok else (math.nan, math.nan), st["n"],
               metric, s.sd, paper_se, no_interval=no_interval)
    why = j["reason"]
    if loss_sd is not None and n_sd < len(vals) and s.n < MIN_SEEDS:
        why += f"; loss_sd from {n_sd} of {len(vals)} runs (the others predate it)"
    if paper_n and claim.split.lower() in PROXY_SPLITS and pick.split != claim.split:
        why += f"; the paper's '{claim.split}' images are not ours: {pick.split} is a held-out proxy"
    return row | {"verdict": j["verdict"], "p": j["p"], "reason": why + (f"; {notes}" if notes else "")}
