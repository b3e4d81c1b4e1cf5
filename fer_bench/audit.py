"""Claim audit: what a paper's own printed numbers say about its claims, before any training.

Every check reads only the registered claims (``fer_bench.registry.Claim``), official facts about the datasets
(split sizes, class counts: ``fer_bench.audit_facts``) and, for the reviewer's checks
(``fer_bench.audit_reviewer``), a table of published FER-2013 results (``fer_bench.published``) and the other
audited papers. A finding is a dict: paper, check, severity, finding (one sentence with its numbers), sources (the
paper's sections/tables/figures), numbers (the values used).

Severity is the effect on a reported number: how far it can be from what it claims to be, beyond what the rounding
of the printed numbers (and, between two measurements, test-set noise) allows:
    info    no effect: consistent within rounding, or explained by another finding; also a statement that is
            true though loose (a lower bound that holds). Listed so the report shows what was checked.
    low     under 1 point; or an error that changes no reported number (a misprinted dataset size, a miscount
            of the whole set, an average that is the unweighted class mean, an accuracy no count of test images
            gives but whose nearest possible value is within half an image)
    medium  1 to 5 points; or a number measured where it cannot be compared as stated (a test split of the
            paper's own, a checkpoint selected on the test set, a hold-out other than the split named)
    high    over 5 points; or a number that does not measure what it is compared with (a matrix at chance level
            beside a high claimed accuracy; cross-validation folds that put the test subjects in training)
The reviewer's checks size their gaps on the same scale: a claim above the published record by its excess over the
best published number, one network claimed at two accuracies by their distance beyond rounding and the test sets'
noise. A cited number (a claim of another paper the text repeats) is at most medium: the paper's own numbers do not
depend on it.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from .audit_facts import (CLASS_COUNTS, FER2013_COUNTS, JAFFE_COUNTS, SEVERITIES, SIZES, _LOWER_BOUND,
                          accuracy_claims as _accuracy_claims, any_fold_mean, beyond as _beyond, canonical_class,
                          chi2_sf, class_counts, finding as _finding, is_count, matrix_halfunits as _matrix_halfunits,
                          near_equal_parts, official_split, pct as _pct, per_class_rows, pool_counts, printed_tolerance,
                          pts as _pts, severity_from_gap, smallest_denominator as _smallest_denominator, split_rules)
from .audit_reviewer import REVIEWER_CHECKS, folds
from .data import CLASSES

__all__ = ["SEVERITIES", "FER2013_COUNTS", "JAFFE_COUNTS", "CLASS_COUNTS", "SIZES", "CHECKS", "audit",
           "canonical_class", "class_counts", "matrix_summary", "official_split", "per_class_rows",
           "printed_tolerance", "severity_from_gap"]


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


def _gain_baselines(paper, model, dataset) -> list[tuple]:
    """Accuracies of ``model`` implied by gain claims whose baseline it is: (value, reading, gain claim, acc claim)."""
    out = []
    for g in paper.claims:
        if g.metric == "accuracy_gain" and g.relative_to == model and g.dataset == dataset and g.value is not None:
            for a in _accuracy_claims(paper, g.model, dataset):
                out.append((a.value - g.value, "absolute", g, a))
                out.append((a.value / (1 + g.value), "relative", g, a))
    return out


def check_confusion_matrices(paper, papers=()) -> list[dict]:
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


def _matrix_size_findings(paper, c, s) -> list[dict]:
    """The images a printed matrix counts vs the split the claim names, and every split rule giving that many, with
    how well the matrix's class counts (its row sums) fit each rule's expected class counts."""
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
    rules, extra = split_rules(c.dataset, lo, hi), ""
    rows = s["matrix"].sum(axis=1)[s["order"]] if s["order"] else None
    for r in rules:
        if rows is not None:  # a random hold-out of this pool: its class proportions, scaled to the matrix's total
            pool = pool_counts(c.dataset, r["parts"])
            expect = pool * rows.sum() / pool.sum()
            r["chi2"] = float(((rows - expect) ** 2 / expect).sum())
            r["p"] = chi2_sf(r["chi2"], len(rows) - 1)
    if rules:
        fit = [r for r in rules if r.get("p", 1.0) >= 0.05]
        extra = (f"; {len(rules)} split rule(s) give a hold-out of that size: " + "; ".join(
            f"{r['rule']} = {r['size']:,}" + (f" (class counts: chi-square {r['chi2']:.1f}, p = {r['p']:.3f})"
                                              if "p" in r else "") for r in rules))
        if rows is not None:
            spread = _matrix_halfunits(c, s["matrix"].shape).sum(axis=1).max()
            extra += (". Its row sums (" + "/".join(f"{x:.0f}" for x in rows) + ", FER-2013 class order" +
                      (f", each uncertain by up to ±{spread:.0f} from the printed rounding" if spread else "") +
                      ") fit " +
                      (f"{len(fit)} of them, so which images it counts is not known: only the first rule is a "
                       "hold-out of Training alone" if len(fit) > 1 else
                       f"only {fit[0]['rule']}" if fit else "none (a hold-out not drawn at random?)"))
        numbers.update(rules=[{k: r[k] for k in ("pool", "fraction", "size", "rule", "p") if k in r} for r in rules])
    where = f"the claim's split ({c.split} = {named}, {sizes[named]:,} images)" if named in sizes else \
        f"the claim's split ({c.split})"
    sev = "medium" if matches or rules or named in sizes else "low"
    return [_finding(paper, "confusion matrix size", sev,
                     text + f"{extra}. It does not count {where}" + (f"; sizes within range: {', '.join(matches)}"
                                                                     if matches else "") + ".",
                     [c.source], **numbers)]


# ---------------------------------------------------------------- per-class tables

def check_per_class(paper, papers=()) -> list[dict]:
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
            if counts and str(c.dataset).lower() == "fer2013" and c.protocol != "canonical":
                count_name += " class counts (an estimate: those of the paper's own test set are not given)"
            else:
                count_name += " class counts" if counts else ""
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
                    + (f", {weighted * 100:.2f}% weighted by the {count_name}" if not math.isnan(weighted)
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


def _granularity(paper, c, labels, mapped, frac, half) -> list[dict]:
    """Per-class accuracies are k/n for the n test images of a class (pooled), or under k-fold cross-validation
    possibly a mean over folds of k_i/n_i: check that some split can give them, where n is known."""
    counts = class_counts(c.dataset, c.split)
    if str(c.dataset).lower() == "fer2013" and c.protocol != "canonical":
        return []  # a split of the paper's own: its class counts are unknown
    if not counts or not all(mapped) or half <= 0:
        return []
    k_folds = folds(c.protocol) or None
    bad, fold_means = [], []
    for lab, cls, v in zip(labels, mapped, frac):
        n = counts[cls]
        if is_count(v, half, n):
            continue
        if k_folds and n <= 40 and k_folds <= 10 and any_fold_mean(v, half, n, k_folds):  # a few thousand splits
            fold_means.append(lab)
            continue
        k = round(v * n)
        bad.append((lab, v, n, k, _smallest_denominator(v, half)))
    if not bad:
        return []
    pooled = "all images" if official_split(c.split) in (None, "all") else f"the {official_split(c.split)} images"
    detail = "; ".join(f"{lab} {v * 100:.2f}% (n={n}: nearest {k}/{n} = {k / n * 100:.2f}%; smallest denominator "
                       f"giving it: {d})" for lab, v, n, k, d in bad)
    text = (f"{c.source} ({c.model}, {c.dataset}): {len(bad)} of {len(labels)} per-class accuracies are no count k/n "
            f"of the class's images pooled over {pooled} ({detail})")
    if k_folds:
        text += (f", nor a mean over {k_folds} folds of per-fold accuracies, whatever the class's fold sizes "
                 f"(every way to deal its images into {k_folds} non-empty folds was tried; a stratified split deals "
                 f"e.g. {'/'.join(map(str, near_equal_parts(bad[0][2], k_folds)))}). So they are not accuracies over "
                 "these images under the stated protocol, pooled or averaged over folds: means over repeated runs, or "
                 "numbers of another kind; the paper does not say."
                 + (f" ({', '.join(fold_means)}: means over folds, not pooled counts.)" if fold_means else ""))
    else:
        text += ". They are not pooled accuracies; a mean over runs, or a test set of another size, would explain them."
    return [_finding(paper, "per-class granularity", "low", text, [c.source], classes=[b[0] for b in bad],
                     denominators=[b[4] for b in bad], fold_means=fold_means)]


# ---------------------------------------------------------------- differences

def check_differences(paper, papers=()) -> list[dict]:
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

def check_dataset_sizes(paper, papers=()) -> list[dict]:
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
            if official >= c.value:  # true, however loose: it changes nothing
                sev, text = "info", f"{where}: a lower bound that holds ({label} has {official:,}), understating it " \
                                    f"by {-rel:.0%}."
            else:
                sev, text = "medium", f"{where}: a lower bound above the {official:,} images of {label}: a " \
                                      "misstatement, or a dataset other than the one named."
        elif diff == 0:
            sev, text = "info", f"{where}: matches {label} ({official:,})."
        else:
            text = f"{where}: {label} has {official:,} ({diff:+,.0f}, {rel:+.2%})." if abs(rel) >= 0.001 else \
                f"{where}: {label} has {official:,} ({diff:+,.0f}, {rel:+.3%})."
            if split != "all" and c.value > sizes.get("all", math.inf):
                sev = "low"  # a misprint: no number was measured on a split larger than the dataset
                text += f" It exceeds the whole dataset ({sizes['all']:,} images): a misprint" + \
                    _implied_size(paper, c, split, official) + "."
            elif cls or split == "all":  # a description of the data, not the images a number was measured on
                sev = "low" if abs(rel) <= (0.05 if cls else 0.01) else "medium"
                text += " It changes no reported number." if sev == "low" else " A different version of the data?"
            elif split in ("PublicTest", "PrivateTest"):
                sev = "low" if abs(rel) <= 0.001 else "medium"
                text += " Numbers measured on it are on a test set of the paper's own, not the official split." \
                    if sev == "medium" else ""
            else:
                sev = "low" if abs(rel) <= 0.05 else "medium"
                text += (f" Training on {abs(rel):.1%} {'fewer' if diff < 0 else 'more'} images than the official "
                         "split changes accuracy little." if sev == "low" else
                         " Numbers trained on it are not trained on the official split.")
        findings.append(_finding(paper, "dataset size", sev, text, [c.source], stated=c.value, official=official))
    return findings


def _implied_size(paper, c, split, official) -> str:
    """What the paper's own other sizes imply for a misprinted split: the whole minus the other two splits."""
    stated = {official_split(d.split): d.value for d in paper.claims if d.metric == "dataset_size" and not d.labels
              and d.dataset == c.dataset and d.value and not _LOWER_BOUND.search(d.as_printed or "")}
    rest = [x for x in SIZES.get(str(c.dataset).lower(), {}) if x not in ("all", split)]
    if "all" not in stated or not rest or not all(x in stated for x in rest):
        return ""
    implied = stated["all"] - sum(stated[x] for x in rest)
    return (f"; the paper's own sizes imply {implied:,.0f} ({stated['all']:,.0f} - " +
            " - ".join(f"{stated[x]:,.0f}" for x in rest) + ")" +
            (f", the official {split} size, so no number depends on it" if implied == official else ""))


def _selects_on_reported(c) -> bool:
    on = str(c.selected_on or "")
    return on.lower() == "test" or (bool(on) and (official_split(on) or on) == (official_split(c.split) or c.split))


def check_test_selection(paper, papers=()) -> list[dict]:
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


def check_repeats(paper, papers=()) -> list[dict]:
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


# every check is check(paper, papers) -> findings; papers: every audited paper (for checks across papers)
CHECKS = (check_confusion_matrices, check_per_class, check_differences, check_dataset_sizes, check_test_selection,
          check_repeats, *REVIEWER_CHECKS)


def audit(papers) -> list[dict]:
    """Every finding for every paper, most severe first within a paper."""
    papers, findings = list(papers), []
    for paper in papers:
        found = [f for check in CHECKS for f in check(paper, papers)]
        if not found:
            metrics = sorted({c.metric for c in paper.claims})
            found = [_finding(paper, "nothing to cross-check", "info",
                              f"{len(paper.claims)} claim(s) ({', '.join(metrics) or 'none'}): no printed confusion "
                              "matrix, per-class table, stated difference, dataset size, test-set selection, "
                              "test size, published result, JAFFE protocol or shared network to check them "
                              "against.", [c.source for c in paper.claims][:3])]
        findings += sorted(found, key=lambda f: SEVERITIES.index(f["severity"]))
    return findings

