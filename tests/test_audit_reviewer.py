"""The reviewer's checks of the claim audit (fer_bench.audit_reviewer) and their arithmetic, on claims with known
answers and on the registered papers."""

from __future__ import annotations

import math
import re
from fractions import Fraction

import pytest

from fer_bench.audit import CHECKS, audit
from fer_bench.audit_facts import (any_fold_mean, chi2_sf, fold_mean, is_count, near_equal_parts, nearest_count,
                                   partitions, split_rules)
from fer_bench.audit_reviewer import REVIEWER_CHECKS, folds, jaffe_leak, network, stated_test_size
from fer_bench.published import PUBLISHED, best
from fer_bench.registry import Claim, Model, Paper
from papers import get_paper, list_papers


def claim(model, metric, value, printed, split="PublicTest", protocol="canonical", source="Table 1", **kw):
    return Claim(model=model, metric=metric, value=value, as_printed=printed, split=split, protocol=protocol,
                 source=source, quote=kw.pop("quote", ""), **kw)


def paper(*claims, id="toy", recipe=None, models=None) -> Paper:
    names = {c.model for c in claims if c.model != "*" and c.kind == "own"} | set(models or ())
    return Paper(id=id, title=id, seed="none", models={m: Model(build=lambda cfg: None) for m in names},
                 recipe=dict(recipe or {}), claims=list(claims), interpretations={})


def check(name, *papers):
    return [f for f in audit(papers) if f["check"] == name]


# ---------------------------------------------------------------- arithmetic

def test_count_arithmetic():
    assert is_count(0.5731, 0.00005, 3589) and nearest_count(0.5731, 3589) == 2057  # Du's 57.31% = 2057/3589
    assert not is_count(0.7247, 0.00005, 3500)  # 2536/3500 = 72.457%, 2537/3500 = 72.486%
    assert near_equal_parts(213, 5) == (43, 43, 43, 42, 42) and near_equal_parts(30, 5) == (6,) * 5
    assert partitions(6, 3) == ((4, 1, 1), (3, 2, 1), (2, 2, 2)) and len(partitions(30, 5)) == 377
    # fold means: (a/2 + b/3) / 2 takes the values m/12; 7/12 is one, 0.6 (7.2/12) is none
    assert fold_mean(0.5833, 0.00005, (2, 3)) == Fraction(7, 12) and fold_mean(0.6, 0.00005, (2, 3)) is None
    # 5/6 of 4 images is no count k/4, but the mean of 2/3 and 1/1 over folds of 3 and 1 images
    assert not is_count(0.8333, 0.00005, 4) and any_fold_mean(0.8333, 0.00005, 4, 2) == ((3, 1), Fraction(5, 6))
    # Miao Table 1, JAFFE, Angry: 95.31% of 30 images is neither, whatever the 5 folds' sizes
    assert any_fold_mean(0.9531, 0.00005, 30, 5) is None and any_fold_mean(0.9667, 0.00005, 30, 5) is not None
    assert chi2_sf(0, 6) == 1 and chi2_sf(2.0, 2) == pytest.approx(math.exp(-1))
    assert chi2_sf(12.5916, 6) == pytest.approx(0.05, abs=1e-4)


def test_split_rules_for_a_5742_image_hold_out():
    rules = split_rules("fer2013", 5602, 5882)
    assert [(r["pool"], r["size"]) for r in rules] == [("Training", 5742), ("all", 5742), ("Training+PublicTest", 5814)]
    assert rules[1]["rule"].startswith("20% of the 80% of all") and split_rules("fer2013", 5743, 5800) == []


def test_protocol_and_stated_test_size():
    assert (folds("5-fold"), folds("10 fold"), folds("cross-validation"), folds("canonical")) == (5, 10, 0, None)
    own = claim("m", "accuracy", 0.7247, "72.47%", split="PrivateTest", protocol="paper")
    p = paper(own, claim("*", "dataset_size", 3500.0, "3,500", split="PrivateTest", protocol="paper"),
              claim("*", "dataset_size", 20000.0, "over 20,000", split="PublicTest", protocol="canonical"))
    size = stated_test_size
    assert size(p, own)[0] == 3500  # the paper's own size for the claim's split and protocol
    assert size(p, claim("m", "accuracy", 0.7, "70%", split="PublicTest"))[0] == 3589  # a lower bound is no size
    assert size(p, claim("m", "accuracy", 0.9, "90%", split="validation"))[0] is None
    assert size(p, claim("m", "accuracy", 0.9, "90%", split="test", protocol="5-fold", dataset="jaffe"))[0] == 213


def test_every_check_takes_the_paper_and_the_audited_papers():
    assert set(REVIEWER_CHECKS) <= set(CHECKS) and len(CHECKS) == 10


# ---------------------------------------------------------------- accuracy as a count

def test_accuracy_that_is_no_count_of_the_test_set():
    f = check("accuracy as a count", paper(claim("m", "accuracy", 0.5731, "57.31%"),
                                           claim("m", "accuracy", 0.93, "93%", split="validation")))
    assert len(f) == 1 and f[0]["severity"] == "info" and "57.31% = 2057/3589" in f[0]["finding"]
    assert f[0]["numbers"] == {"checked": 1, "unknown": 1} and "m 93% on validation" in f[0]["finding"]

    own = claim("m", "accuracy", 0.7247, "72.47%", split="PrivateTest", protocol="paper", source="Table 3")
    size = claim("*", "dataset_size", 3500.0, "3,500", split="PrivateTest", protocol="paper")
    (f,) = check("accuracy as a count", paper(own, size))
    assert f["severity"] == "low" and f["numbers"]["n"] == 3500
    assert f["numbers"]["nearest"] == [2536 / 3500, 2537 / 3500] and "smallest test size that gives it is 178" in \
        f["finding"]
    # the same number as the unweighted mean of a per-class table (Miao, Table 1): explained, so info
    table = [71.27, 69.43, 71.53, 75.71, 74.51, 72.38, 72.45]
    pc = claim("m", "per_class_accuracy", None, "x", split="PrivateTest", protocol="paper", source="Table 1",
               matrix=[[v / 100 for v in table]], labels=["An", "Di", "Fe", "Ha", "Sa", "Su", "Ne"])
    (f,) = check("accuracy as a count", paper(own, size, pc))
    assert f["severity"] == "info" and "unweighted mean of the class accuracies of Table 1" in f["finding"]


def test_jaffe_accuracy_pooled_or_a_mean_over_folds():
    def run(value, printed):
        return check("accuracy as a count", paper(claim("m", "accuracy", value, printed, split="test",
                                                        protocol="5-fold", dataset="jaffe")))
    assert run(0.9718, "97.18%")[0]["severity"] == "info"  # 207/213 pooled
    # 99.52% is no k/213 (212/213 = 99.53%), but one error in a fold of 42: 1 - (1/42)/5 = 99.524%
    (f,) = run(0.9952, "99.52%")
    assert f["severity"] == "info" and "mean over 5 folds of 43/43/43/42/42" in f["finding"]
    (f,) = [x for x in run(0.9725, "97.25%") if x["severity"] != "info"]  # Miao Table 4's 97.25%, no table here
    assert f["severity"] == "low" and f["numbers"]["nearest"] == [207 / 213, 208 / 213]
    assert "no mean over 5 folds of 43/43/43/42/42" in f["finding"]


# ---------------------------------------------------------------- above the published record

def test_published_table():
    assert best("single").accuracy == 0.7442 and best("single").authors == "Pecoraro et al."
    assert best("ensemble").accuracy == 0.7682 and best("ensemble").kind == "ensemble"
    assert all(p.source and p.as_printed and 0.7 < p.accuracy < 0.8 for p in PUBLISHED)
    assert any(p.accuracy == 0.7328 and p.authors == "Khaireddin & Chen" for p in PUBLISHED)  # nurmakhan_vgg cites it


@pytest.mark.parametrize("value, printed, kind, model, severity", [
    (0.93, "93%", "own", "m", "high"),  # Huang's 93%: 18.58 points above 74.42%
    (0.75, "75.00%", "own", "m", "low"),  # 0.58 points above, beyond both roundings (0.01 points)
    (0.7445, "74.45%", "own", "m", "low"),
    (0.7443, "74.43%", "own", "m", "info"),  # within the two roundings
    (0.925, "92.5%", "cited", "patt_lite", "medium"),  # cited: the paper's own numbers do not depend on it
    (0.76, "76%", "own", "cnn_ensemble", "info"),  # an ensemble is compared with the best ensemble, 76.82%
    (0.80, "80%", "own", "cnn_ensemble", "medium"),  # 3.18 points above it
])
def test_claims_above_the_published_record(value, printed, kind, model, severity):
    (f,) = check("above the published record", paper(claim(model, "accuracy", value, printed, kind=kind)))
    assert f["severity"] == severity
    if severity != "info":
        ref = 0.7682 if "ensemble" in model else 0.7442
        tol = {"93%": 0.005, "75.00%": 0.00005, "74.45%": 0.00005, "92.5%": 0.0005, "80%": 0.005}[printed] + 0.00005
        assert f["numbers"]["excess"] == pytest.approx(value - ref - tol)
        assert f["numbers"]["reference"] == ref


def test_jaffe_and_other_datasets_are_not_compared_with_fer2013_results():
    assert check("above the published record", paper(claim("m", "accuracy", 0.98, "98%", dataset="jaffe"))) == []


# ---------------------------------------------------------------- JAFFE subjects

def test_folds_that_ignore_subjects():
    leak = jaffe_leak(5)
    assert leak["fold"] == 43 and leak["per_subject"] == 21
    assert leak["subjects_in_fold"] == pytest.approx(10 * (1 - math.comb(192, 43) / math.comb(213, 43)))
    assert leak["sibling_in_training"] == pytest.approx(1 - 42 * 41 / (212 * 211))  # 96.2%
    jaffe = dict(split="test", dataset="jaffe", source="Table 4")
    (f,) = check("JAFFE subjects", paper(claim("m", "accuracy", 0.97, "97%", protocol="5-fold", **jaffe),
                                         recipe={"folds_by": "expression"}))
    assert f["severity"] == "high" and f["numbers"]["folds"] == 5 and "folds_by=expression" in f["finding"]
    assert "96% of test images" in f["finding"] and "9.9 of the 10 subjects" in f["finding"]
    (f,) = check("JAFFE subjects", paper(claim("m", "accuracy", 0.9, "90%", protocol="leave-one-out", **jaffe)))
    assert f["severity"] == "high" and f["numbers"]["folds"] == 213 and "leave-one-image-out" in f["finding"]
    assert f["numbers"]["sibling_in_training"] == 1.0  # every sibling of the one test image trains
    (f,) = check("JAFFE subjects", paper(claim("m", "accuracy", 0.9, "90%", protocol="cross-validation", **jaffe)))
    assert f["severity"] == "high" and f["numbers"]["folds"] == 10 and "k not given" in f["finding"]
    (f,) = check("JAFFE subjects", paper(claim("m", "accuracy", 0.6, "60%", protocol="leave-one-subject-out",
                                               **jaffe)))
    assert f["severity"] == "info"
    (f,) = check("JAFFE subjects", paper(claim("m", "accuracy", 0.6, "60%", protocol="10-fold",
                                               quote="ten subject-independent folds", **jaffe)))
    assert f["severity"] == "info"
    cited = claim("other", "accuracy", 0.96, "96%", protocol="unknown", kind="cited", **jaffe)
    assert [f["severity"] for f in check("JAFFE subjects", paper(cited))] == ["info"]
    found = check("JAFFE subjects", paper(cited, claim("m", "accuracy", 0.97, "97%", protocol="5-fold", **jaffe)))
    assert sorted(f["severity"] for f in found) == ["high", "low"]  # the comparison may mix protocols


# ---------------------------------------------------------------- the same network across papers

def test_network_names():
    assert [network(m) for m in ("resnet50", "resnet50_imagenet", "ResNet50_scratch", "vgg16", "improved_resnet50",
                                 "vggnet", "resnet50_fpn", "cnn8")] == [
        "resnet50", "resnet50", "resnet50", "vgg16", None, None, None, None]


def test_the_same_network_at_very_different_accuracies():
    a = paper(claim("resnet50", "accuracy", 0.44, "44.00%", source="Table 1"), id="paper_a",
              recipe=dict(epochs=30, optimizer="adam", lr=1e-3, batch_size=32))
    b = paper(claim("resnet50_imagenet", "accuracy", 0.6372, "0.6372", split="PrivateTest", source="§III"),
              id="paper_b", recipe=dict(epochs=150, optimizer="sgd", lr=0.01, batch_size=64, pretrained=True))
    found = check("same network across papers", a, b)
    assert [f["paper"] for f in found] == ["paper_a", "paper_b"] and all(f["severity"] == "high" for f in found)
    f = found[0]
    se = math.sqrt(0.44 * 0.56 / 3589 + 0.6372 * 0.3628 / 3589)
    assert f["numbers"]["excess"] == pytest.approx(0.6372 - 0.44 - 0.00005 - 0.00005 - 1.959964 * se)
    assert f["numbers"]["other"] == "paper_b" and f["numbers"]["network"] == "resnet50"
    for side_by_side in ("epochs 30 | 150", "optimizer adam | sgd", "lr 0.001 | 0.01", "batch size 32 | 64",
                         "input size 48 | 48", "pretrained False | True"):
        assert side_by_side in f["finding"]
    # within rounding and test-set noise (about 2.2 points at 3,589 images each): info
    b2 = paper(claim("resnet50", "accuracy", 0.45, "45.00%", split="PrivateTest"), id="paper_c")
    assert [f["severity"] for f in check("same network across papers", a, b2)] == ["info", "info"]
    # a network of one paper only, or a model that is not a standard network, is not compared
    c = paper(claim("improved_resnet50", "accuracy", 0.9, "90%"), id="paper_d")
    assert check("same network across papers", a, c) == []


# ---------------------------------------------------------------- the registered papers

def test_registered_papers_reviewer_findings():
    found = audit([get_paper(p) for p in list_papers()])

    def one(paper_id, name, **numbers):
        hits = [f for f in found if f["paper"] == paper_id and f["check"] == name
                and all(f["numbers"].get(k) == v for k, v in numbers.items())]
        assert len(hits) == 1, (paper_id, name, hits)
        return hits[0]

    huang = one("huang_fpn", "above the published record", claimed=0.93)
    assert huang["severity"] == "high" and huang["numbers"]["excess"] == pytest.approx(0.93 - 0.7442 - 0.00505)
    patt = one("nurmakhan_vgg", "above the published record", claimed=0.925)
    assert patt["severity"] == "medium"  # cited
    jaffe = one("miao_presnet_vgg", "JAFFE subjects", folds=5)
    assert jaffe["severity"] == "high"
    for paper_id, other in (("du_resnet_fc", "rodrigues_cnn"), ("rodrigues_cnn", "du_resnet_fc")):
        same = one(paper_id, "same network across papers", other=other)
        assert same["severity"] == "high" and abs(same["numbers"]["gap"]) == pytest.approx(0.6372 - 0.44)
        epochs = re.search(r"epochs ([\d | ]+);", same["finding"]).group(1).split(" | ")
        assert sorted(set(epochs)) == ["150", "30"]  # Du's 30 epochs beside Rodrigues's 150
    counts = [f for f in found if f["paper"] == "miao_presnet_vgg" and f["check"] == "accuracy as a count"
              and "claimed" in f["numbers"]]
    assert sorted(f["numbers"]["claimed"] for f in counts) == [0.7247, 0.7367, 0.9725, 0.9879]
    assert all(f["severity"] == "info" and "unweighted mean" in f["finding"] for f in counts)
    rodrigues = one("rodrigues_cnn", "accuracy as a count", checked=3)
    assert "0.6294 = 2259/3589" in rodrigues["finding"]
