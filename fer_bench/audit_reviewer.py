"""The claim audit's reviewer checks: what a referee adds to a paper's own numbers.

- accuracy as a count: an accuracy over N test images is k/N; a printed value no k/N rounds to was not measured
  as described (another test size, a mean over runs or folds, or a misprint);
- above the published record: FER-2013 accuracies above the best published results (``fer_bench.published``);
- JAFFE subjects: cross-validation folds that put the same JAFFE subjects in training and test;
- the same network across papers: one standard network claimed at very different accuracies by two papers,
  with the two recipes (fer-bench's resolved recipes) side by side.

Each check takes a paper (and the list of every audited paper) and returns findings in the shape of
``fer_bench.audit_facts.finding``; severities follow the scale in ``fer_bench.audit``'s docstring.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict

from .audit_facts import (JAFFE_SUBJECTS, SIZES, beyond, finding, fold_mean, is_count, near_equal_parts,
                          nearest_count, official_split, per_class_rows, printed_tolerance, pts,
                          severity_from_gap, smallest_denominator)
from .published import PUBLISHED, best

_FOLDS = re.compile(r"(\d+)[- ]?fold|cross[- ]?validat", re.I)
_SUBJECT_INDEPENDENT = re.compile(r"subject[- ]independent|person[- ]independent|leave[- ]one[- ](subject|person)"
                                  r"[- ]out|\bLOSO\b|folds?_by=subject|by subject", re.I)
_BOUND = re.compile(r"over|more than|at least|>|above", re.I)  # a stated lower bound is no size
_ENSEMBLE = re.compile(r"ensemble|committee", re.I)
_TEST_SPLITS = ("PublicTest", "PrivateTest")
Z95 = 1.959964  # two-sided 95% normal quantile


def _accuracies(paper):
    return [c for c in paper.claims if c.metric == "accuracy" and c.value is not None]


def folds(protocol: str) -> int | None:
    """The k of a k-fold protocol name ('5-fold' -> 5; 'cross-validation' without a k -> 0), else None."""
    m = _FOLDS.search(str(protocol or ""))
    return None if not m else int(m.group(1)) if m.group(1) else 0


def stated_test_size(paper, c) -> tuple[int | None, str]:
    """(N, whence) for an accuracy claim: the paper's own stated size of the claim's split and protocol (a
    dataset_size claim), else an official test split's size, else the whole dataset under k-fold (pooled)."""
    for d in paper.claims:
        if (d.metric == "dataset_size" and d.value and not d.labels and d.dataset == c.dataset
                and d.split == c.split and d.protocol == c.protocol and not _BOUND.search(d.as_printed or "")):
            return int(d.value), f"the paper's own {d.as_printed} ({d.source})"
    sizes = SIZES.get(str(c.dataset).lower(), {})
    split = official_split(c.split)
    if split in _TEST_SPLITS and split in sizes:
        return sizes[split], f"{c.dataset} {split}"
    if folds(c.protocol) is not None and "all" in sizes:
        return sizes["all"], f"all {sizes['all']} {c.dataset} images, pooled over the folds"
    return None, ""


def _unweighted_table(paper, c, tol) -> str | None:
    """The source of a per-class table whose unweighted class mean is this accuracy claim, if there is one."""
    for t in paper.claims:
        if (t.metric == "per_class_accuracy" and t.matrix and t.model == c.model and t.dataset == c.dataset
                and t.split == c.split):
            for _, frac, _, half in per_class_rows(t):
                if abs(float(frac.mean()) - c.value) <= tol + half + 1e-12:
                    return t.source
    return None


# ---------------------------------------------------------------- accuracy as a count

def check_counts(paper, papers=()) -> list[dict]:
    """An accuracy over N images is k/N; under k-fold cross-validation, k/N pooled or a mean of per-fold k_i/n_i."""
    findings, fits, unknown = [], [], []
    for c in _accuracies(paper):
        tol = printed_tolerance(c.as_printed, c.value)
        n, whence = stated_test_size(paper, c)
        if n is None or tol <= 0:
            unknown += [c] if c.kind == "own" else []
            continue
        k = nearest_count(c.value, n)
        if is_count(c.value, tol, n):
            fits.append(f"{c.model} {c.as_printed} = {k}/{n}")
            continue
        k_folds = folds(c.protocol) or None
        parts = near_equal_parts(n, k_folds) if k_folds else None
        mean = fold_mean(c.value, tol, parts) if parts else None
        if mean is not None:
            fits.append(f"{c.model} {c.as_printed} = a mean over {k_folds} folds of {'/'.join(map(str, parts))} "
                        f"images ({float(mean):.4%})")
            continue
        lo, hi = (k - 1 if k / n > c.value else k), (k if k / n > c.value else k + 1)
        text = (f"{c.model} {c.as_printed} ({c.source}; {c.dataset} {c.split}, {c.kind}): no count of correct images "
                f"out of N = {n:,} ({whence}) rounds to it; the nearest are {lo}/{n} = {lo / n:.2%} and {hi}/{n} = "
                f"{hi / n:.2%}" + (f", and no mean over {k_folds} folds of {'/'.join(map(str, parts))} images does "
                                    "either" if parts else "")
                + f"; the smallest test size that gives it is {smallest_denominator(c.value, tol, 100000)}.")
        table = _unweighted_table(paper, c, tol)
        if table:
            sev = "info"
            text += (f" It is the unweighted mean of the class accuracies of {table}, not an accuracy over images, so "
                     "it need not be a count (the 'per-class vs average' finding weighs what that changes).")
        else:
            sev = "low"  # the nearest possible value is within half an image: the number barely moves
            text += (" So it is not one accuracy measured on that test set as described: a mean over runs, another "
                     "test size, or a misprint (the paper does not say); the nearest possible value is within "
                     f"{0.5 / n:.3%}, so the number itself barely changes.")
        findings.append(finding(paper, "accuracy as a count", sev, text, [c.source], claimed=c.value, n=n,
                                nearest=[lo / n, hi / n]))
    if fits or unknown:
        parts = [f"{len(fits)} accuracy claim(s) are counts over their test sets as stated ({'; '.join(fits)})"] \
            if fits else []
        parts += [f"{len(unknown)} own claim(s) could not be checked, their test-set size being unknown (" +
                  ", ".join(f"{c.model} {c.as_printed} on {c.split}" for c in unknown) + ")"] if unknown else []
        text = "; ".join(parts) + "."
        findings.append(finding(paper, "accuracy as a count", "info", text,
                                [c.source for c in _accuracies(paper)][:4], checked=len(fits), unknown=len(unknown)))
    return findings


# ---------------------------------------------------------------- above the published record

def check_published(paper, papers=()) -> list[dict]:
    """FER-2013 accuracies above the best published single network (ensembles: the best ensemble)."""
    findings, below = [], []
    single, ensemble = best("single"), best("ensemble")
    for c in _accuracies(paper):
        if str(c.dataset).lower() != "fer2013":
            continue
        is_ensemble = bool(_ENSEMBLE.search(f"{c.model} {c.note} {c.quote}"))
        ref = ensemble if is_ensemble else single
        tol = printed_tolerance(c.as_printed, c.value) + printed_tolerance(ref.as_printed, ref.accuracy)
        excess = beyond(c.value - ref.accuracy, tol) if c.value > ref.accuracy else 0.0
        if excess == 0:
            below.append(c)
            continue
        sev = severity_from_gap(excess)
        split = official_split(c.split)
        where = f"on {split}" if split in _TEST_SPLITS else f"on '{c.split}', not an official FER-2013 test split"
        text = (f"{c.model} {c.as_printed} ({c.source}, {where}) is {pts(c.value - ref.accuracy)} above the best "
                f"published {'ensemble' if is_ensemble else 'single-network'} FER-2013 accuracy, {ref.as_printed} "
                f"({ref.authors} {ref.year}, {ref.method})" +
                ("" if is_ensemble else f", and {pts(c.value - ensemble.accuracy)} above the best ensemble "
                                        f"({ensemble.as_printed}, {ensemble.authors} {ensemble.year})") +
                ", as listed in fer_bench.published (a reviewer's reference, not ground truth). A number this far "
                "above the published record needs evidence the paper does not give: the test split, its size, a "
                "check for duplicates between training and test images.")
        if c.kind == "cited":
            sev = "medium" if sev == "high" else sev
            text += (" The paper cites it (not its own measurement): its own numbers do not depend on it, but it is "
                     "the state of the art the paper measures itself against.")
        findings.append(finding(paper, "above the published record", sev, text, [c.source], claimed=c.value,
                                reference=ref.accuracy, excess=excess))
    if below:
        top = max(below, key=lambda c: c.value)
        findings.append(finding(
            paper, "above the published record", "info",
            f"{len(below)} FER-2013 accuracy claim(s), the highest {top.as_printed} ({top.model}, {top.source}), are "
            f"at or below the best published single network, {single.as_printed} ({single.authors} {single.year}, "
            f"{single.method}; {len(PUBLISHED)} published results in fer_bench.published).",
            [c.source for c in below][:4], claims=len(below), highest=top.value, reference=single.accuracy))
    return findings


# ---------------------------------------------------------------- JAFFE subjects

def _recipe(paper, model: str, dataset: str) -> dict:
    """fer-bench's resolved recipe of a paper's model on a dataset ({} when it cannot be resolved)."""
    try:
        try:
            cfg = dict(paper.resolve(model, "paper", dataset))
        except TypeError:  # a Paper.resolve without datasets: its "DATASET.KEY" keys apply to that dataset
            cfg = dict(paper.resolve(model))
            cfg.update({k.split(".", 1)[1]: v for k, v in list(cfg.items()) if k.startswith(f"{dataset}.")})
    except Exception:  # an unregistered model (a cited one), or a paper whose recipe cannot resolve
        return {}
    return cfg


def jaffe_leak(k: int, n: int = 213, subjects: int = JAFFE_SUBJECTS, per_pose: int = 3) -> dict:
    """What a k-fold split that ignores subjects does on JAFFE (n images, about n/subjects per subject): the test
    fold's size, the expected number of subjects in it (all of whom are also in training), and the share of test
    images with another image of the same subject and expression (``per_pose`` per pair) in training."""
    f = math.ceil(n / k)
    m = round(n / subjects)
    p_absent = math.comb(n - m, f) / math.comb(n, f)  # a given subject has no image in the test fold
    siblings = per_pose - 1
    p_all_in_fold = math.prod((f - 1 - i) / (n - 1 - i) for i in range(siblings))  # its siblings all in the fold
    return dict(fold=f, per_subject=m, subjects_in_fold=subjects * (1 - p_absent),
                sibling_in_training=1 - p_all_in_fold)


def check_jaffe_subjects(paper, papers=()) -> list[dict]:
    """JAFFE claims under folds that do not keep each subject on one side."""
    jaffe = [c for c in paper.claims if str(c.dataset).lower() == "jaffe" and c.metric in (
        "accuracy", "per_class_accuracy", "confusion_matrix")]
    findings = []
    by_protocol = defaultdict(list)
    for c in jaffe:
        by_protocol[(c.kind, c.protocol)].append(c)
    for (kind, protocol), claims in by_protocol.items():
        listed = ", ".join(f"{c.model} {c.as_printed if len(c.as_printed) <= 12 else c.metric.replace('_', ' ')}"
                           for c in claims[:6]) + (f" and {len(claims) - 6} more" if len(claims) > 6 else "")
        said = " ".join(f"{c.protocol} {c.quote}" for c in claims)  # the paper's words, not fer-bench's notes
        if kind == "cited":
            own = any(c.kind == "own" for c in jaffe)
            findings.append(finding(
                paper, "JAFFE subjects", "low" if own else "info",
                f"Cited JAFFE accuracies ({listed}) come with protocol '{protocol}': whether their folds keep "
                "subjects apart is not said" + (", so the comparison may set subject-dependent numbers beside "
                                                "subject-independent ones." if own else "."),
                [c.source for c in claims], claims=len(claims)))
            continue
        k, n = folds(protocol), SIZES["jaffe"]["all"]
        if k is None and re.search(r"leave[- ]one[- ]out", said, re.I):
            k = n  # leave one image out: every other image of its subject, and its siblings, train
        recipe = _recipe(paper, next(c.model for c in claims), "jaffe")
        by = recipe.get("folds_by")
        if _SUBJECT_INDEPENDENT.search(said):
            findings.append(finding(paper, "JAFFE subjects", "info",
                                    f"JAFFE claims ({listed}) under '{protocol}': the paper keeps subjects apart.",
                                    [c.source for c in claims], claims=len(claims)))
            continue
        if k is None:
            continue
        how = ("leave-one-image-out" if k == n else f"{k}-fold" if k else "k-fold (k not given; 10 assumed here)")
        k = k or 10
        leak = jaffe_leak(k, n)
        text = (f"JAFFE claims ({listed}) come from {how} cross-validation of the {n} images ('{protocol}'), the "
                "text saying nothing of subjects" + (f" (fer-bench reads it as folds_by={by})" if by else "") +
                f". JAFFE is 10 women, about {leak['per_subject']} images each: " +
                (f"a test fold of {leak['fold']} images holds on average {leak['subjects_in_fold']:.1f} of the 10 "
                 "subjects, every one of them also in training" if leak["fold"] > 1 else
                 f"the test image's subject has her other ~{leak['per_subject'] - 1} images in training") +
                ", and with about three images of each woman and expression, "
                f"{leak['sibling_in_training']:.0%} of test images have a photo of the same woman with the same "
                "expression in training. The numbers measure expressions of faces seen in training, largely "
                "near-copies, not of new faces; the paper reports no subject-independent number (leave-one-subject-"
                "out, or fer-bench's --set folds_by=subject) to compare with.")
        findings.append(finding(paper, "JAFFE subjects", "high", text, [c.source for c in claims], folds=k,
                                subjects_in_fold=leak["subjects_in_fold"],
                                sibling_in_training=leak["sibling_in_training"]))
    return findings


# ---------------------------------------------------------------- the same network across papers

_SUFFIX = re.compile(r"_(scratch|imagenet|pretrained|random|baseline|ft|finetuned|tl)$")
_STANDARD = re.compile(r"(resnet|vgg|densenet|inception_?v|mobilenet_?v|efficientnet_?b|xception|alexnet)\d*")
RECIPE_KEYS = (("epochs", "epochs"), ("optimizer", "optimizer"), ("lr", "lr"), ("batch_size", "batch size"),
               ("input_size", "input size"), ("pretrained", "pretrained"))
OTHER_KEYS = ("scheduler", "weight_decay", "channels", "normalize", "aug_hflip", "aug_rotation", "aug_scale",
              "aug_translate", "crop_size", "tta", "label_smoothing")


def network(model: str) -> str | None:
    """A standard network's name for a model name ('resnet50_imagenet' -> 'resnet50'), or None."""
    base = _SUFFIX.sub("", str(model).lower())
    return base if _STANDARD.fullmatch(base) else None


def _family_claims(paper, fam: str | None = None) -> dict:
    out = defaultdict(list)
    for c in _accuracies(paper):
        f = network(c.model)
        if f and c.model in paper.models and (fam is None or f == fam):
            out[(f, c.dataset)].append(c)
    return out


def _side(paper, c) -> tuple[str, dict]:
    cfg = _recipe(paper, c.model, c.dataset)
    return f"{paper.id}/{c.model}", cfg


def check_same_network(paper, papers=()) -> list[dict]:
    """A standard network this paper and another claim at accuracies further apart than rounding and the test
    sets' binomial noise (95%) allow."""
    findings = []
    for (fam, dataset), mine in _family_claims(paper).items():
        for other in papers:
            if other.id == paper.id:
                continue
            theirs = _family_claims(other, fam).get((fam, dataset), [])
            if not theirs:
                continue
            pairs = []
            for a in mine:
                for b in theirs:
                    na = stated_test_size(paper, a)[0] or stated_test_size(other, b)[0] or 3589
                    nb = stated_test_size(other, b)[0] or na
                    se = math.sqrt(a.value * (1 - a.value) / na + b.value * (1 - b.value) / nb)
                    allow = (printed_tolerance(a.as_printed, a.value) + printed_tolerance(b.as_printed, b.value)
                             + Z95 * se)
                    pairs.append((beyond(a.value - b.value, allow), a, b, allow))
            excess, a, b, allow = max(pairs, key=lambda p: p[0])
            sev = severity_from_gap(excess)
            sides = [(paper, c) for c in mine] + [(other, c) for c in theirs]
            recipes = {}
            for p, c in sides:
                name, cfg = _side(p, c)
                recipes[name] = cfg
            cols = "; ".join(f"{label} " + " | ".join(str(cfg.get(key, "?")) for cfg in recipes.values())
                             for key, label in RECIPE_KEYS)
            differ = [k for k in OTHER_KEYS if len({str(cfg.get(k)) for cfg in recipes.values()}) > 1]
            extra = ("; they also differ in " + ", ".join(
                f"{k} " + " | ".join(str(cfg.get(k)) for cfg in recipes.values()) for k in differ)) if differ else ""
            claimed = "; ".join(f"{p.id} claims {c.as_printed} for {c.model} ({c.source}, {c.split})"
                                for p, c in sides)
            verdict = (f"the widest pair, {a.value:.2%} vs {b.value:.2%}, is {pts(abs(a.value - b.value))} apart, "
                       f"{pts(excess)} beyond what rounding and the two test sets' noise allow (±{allow * 100:.2f} "
                       "points). Which of them is off the claims alone cannot tell: the recipes below may explain "
                       "part of it, and fer-bench's runs of both recipes measure it." if sev != "info" else
                       f"they agree within rounding and test-set noise (±{allow * 100:.2f} points).")
            findings.append(finding(
                paper, "same network across papers", sev,
                f"{fam} on {dataset}: {claimed}: {verdict} Recipes (fer-bench's resolved recipe: the paper's values "
                f"and its interpretations; {' | '.join(recipes)}): {cols}{extra}.",
                [c.source for _, c in sides], network=fam, other=other.id, gap=a.value - b.value, excess=excess))
    return findings


REVIEWER_CHECKS = (check_counts, check_published, check_jaffe_subjects, check_same_network)
