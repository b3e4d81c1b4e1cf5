"""The claim audit: on the registered papers' own printed numbers, and on small claims with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from fer_bench.audit import (FER2013_COUNTS, JAFFE_COUNTS, SEVERITIES, SIZES, audit, canonical_class,
                             matrix_summary, printed_tolerance)
from fer_bench.data import CLASSES
from fer_bench.registry import Claim, Model, Paper
from papers import get_paper, list_papers


def claim(model, metric, value, printed, split="PublicTest", protocol="canonical", source="Table 1", **kw):
    return Claim(model=model, metric=metric, value=value, as_printed=printed, split=split, protocol=protocol,
                 source=source, quote="", **kw)


def paper(*claims) -> Paper:
    models = {c.model: Model(build=lambda cfg: None) for c in claims if c.model != "*"}
    models.update({c.relative_to: Model(build=lambda cfg: None) for c in claims if c.relative_to})
    return Paper(id="toy", title="toy", seed="none", models=models, recipe={}, claims=list(claims),
                 interpretations={})


def findings(*claims, check=None):
    return [f for f in audit([paper(*claims)]) if check is None or f["check"] == check]


# ---------------------------------------------------------------- the real claims data

def test_official_counts():
    assert SIZES["fer2013"] == {"Training": 28709, "PublicTest": 3589, "PrivateTest": 3589, "all": 35887}
    assert SIZES["jaffe"] == {"all": 213}
    assert FER2013_COUNTS["all"]["disgust"] == 547 and sum(JAFFE_COUNTS["all"].values()) == 213


def test_huang_figure6_implies_18_percent():
    huang = get_paper("huang_fpn")
    fig_a = next(c for c in huang.claims if c.metric == "confusion_matrix" and c.source == "Figure 6(a)")
    s = matrix_summary(fig_a)
    assert s["accuracy"] == pytest.approx(1034 / 5742, abs=1e-12)  # trace / total of the printed counts: 18.01%
    # '1.8e+02' can be 175-185: the accuracy the printed matrix allows, and that it is at chance level
    assert (round(s["acc_lo"], 4), round(s["acc_hi"], 4)) == (0.1736, 0.1868)
    m = np.array(fig_a.matrix)
    chance = (m.sum(0) * m.sum(1)).sum() / m.sum() ** 2  # agreement of a classifier that ignores the image
    assert s["kappa"] == pytest.approx((1034 / 5742 - chance) / (1 - chance)) and round(s["kappa"], 4) == 0.0095
    # the figure's label order (angry disgust fear happy neutral sad surprise) is mapped by name
    assert [fig_a.labels[i] for i in s["order"]] == list(CLASSES)
    sad = fig_a.matrix[5]  # the figure's sixth row is 'sad', FER-2013's fifth class; columns reorder alike
    assert s["fer_matrix"][4].tolist() == [sad[i] for i in s["order"]] and s["order"] == [0, 1, 2, 3, 5, 6, 4]

    found = [f for f in audit([huang]) if f["check"] == "confusion matrix vs claimed accuracy"]
    a = next(f for f in found if f["sources"].startswith("Figure 6(a)"))
    assert a["severity"] == "high" and a["numbers"]["claimed"] == 0.93
    assert a["numbers"]["gap"] == pytest.approx(1034 / 5742 - 0.93)  # -74.99 points
    assert "18.01%" in a["finding"] and "93%" in a["finding"] and "§4" in a["sources"]
    b = next(f for f in found if f["sources"].startswith("Figure 6(b)"))  # vs the baseline the 25% gain implies
    assert b["severity"] == "high" and "68.00% (absolute) or 74.40% (relative)" in b["finding"]


def test_huang_matrices_fit_three_split_rules_and_the_gain_is_not_in_them():
    found = audit([get_paper("huang_fpn")])
    size = [f for f in found if f["check"] == "confusion matrix size"]
    assert len(size) == 2 and all(f["severity"] == "medium" for f in size)
    assert size[0]["numbers"]["total"] == 5742 and "PublicTest, 3,589" in size[0]["finding"]
    # 5,742 is 20% of Training, but also 16% of all 35,887 (20% of the 80% left after a 20% test split), and
    # 18% of Training+PublicTest (5,814) is within the printed rounding (5,602-5,882): three rules, not one
    rules = size[0]["numbers"]["rules"]
    assert [(r["pool"], round(r["fraction"], 4), r["size"]) for r in rules] == [
        ("Training", 0.2, 5742), ("all", 0.16, 5742), ("Training+PublicTest", 0.18, 5814)]
    assert all(r["p"] > 0.05 for r in rules) and "fit 3 of them" in size[0]["finding"]  # class counts fit each
    gain = next(f for f in found if f["check"] == "stated difference")
    assert gain["severity"] == "high"
    assert gain["numbers"]["matrix_gain"] == pytest.approx(1034 / 5742 - 1042 / 5748)  # -0.12 points, not +25
    assert gain["numbers"]["baseline_absolute"] == pytest.approx(0.68)
    assert gain["numbers"]["baseline_relative"] == pytest.approx(0.744)
    sizes = {f["numbers"]["stated"]: f["severity"] for f in found if f["check"] == "dataset size"}
    assert sizes == {28709.0: "info", 3589.0: "info", 20000.0: "info"}  # 'over 20,000' holds (understating by 44%)


@pytest.mark.parametrize("paper_id", list_papers())
def test_every_registered_paper_is_audited(paper_id):
    found = audit([get_paper(paper_id)])
    assert found, "the audit lists at least what it checked"
    for f in found:
        assert f["paper"] == paper_id and f["severity"] in SEVERITIES and f["check"]
        assert f["sources"] and any(ch.isdigit() for ch in f["finding"]), f


def test_miao_tables_if_registered():
    if "miao_presnet_vgg" not in list_papers():
        pytest.skip("miao_presnet_vgg is not registered")
    found = audit([get_paper("miao_presnet_vgg")])
    avg = [f for f in found if f["check"] == "per-class vs average" and "FER2013" in f["sources"]]
    assert avg, "Tables 1-2 print per-class accuracies and an average"
    for f in avg:  # 'Average' is the unweighted mean of the class accuracies, not the overall accuracy
        assert f["numbers"]["unweighted"] == pytest.approx(f["numbers"]["stated"], abs=1e-4)
        assert f["numbers"]["weighted"] - f["numbers"]["stated"] > 0.005 and f["severity"] == "low"
    assert any(f["check"] == "selection on the test set" for f in found)


# ---------------------------------------------------------------- rules on claims with known answers

def test_printed_tolerance():
    assert printed_tolerance("57.31%", 0.5731) == pytest.approx(0.00005)
    assert printed_tolerance("93%", 0.93) == pytest.approx(0.005)
    assert printed_tolerance("0.6294", 0.6294) == pytest.approx(0.00005)
    assert printed_tolerance("~62%", 0.62) == pytest.approx(0.01)  # approximate: twice the half unit
    assert printed_tolerance("28,709", 28709) == 0.5


def test_label_names():
    assert [canonical_class(x) for x in ("Anger", "Normal", "HAPPINESS", "surprised", "DI", "Fearful")] == [
        "angry", "neutral", "happy", "surprise", "disgust", "fear"]
    assert canonical_class("contempt") is None


def test_consistent_matrix_is_info_and_uses_the_printed_range():
    m = np.diag([400, 50, 400, 800, 500, 350, 500]) + 10  # 3,000 correct of 3,490
    m = (m * 3589 / m.sum()).round().tolist()
    acc = np.trace(m) / np.sum(m)
    printed = f"{acc * 100:.1f}%"
    f = findings(claim("a", "accuracy", round(acc, 3), printed),
                 claim("a", "confusion_matrix", None, "counts", matrix=m, labels=list(CLASSES)),
                 check="confusion matrix vs claimed accuracy")
    assert len(f) == 1 and f[0]["severity"] == "info"
    f = findings(claim("a", "accuracy", round(acc, 3) + 0.03, "x"),
                 claim("a", "confusion_matrix", None, "counts", matrix=m, labels=list(CLASSES)),
                 check="confusion matrix vs claimed accuracy")
    assert f[0]["severity"] == "medium" and f[0]["numbers"]["gap"] == pytest.approx(-0.03, abs=1e-3)


def test_row_normalised_matrix_is_weighted_by_class_counts():
    recalls = [0.5, 0.2, 0.4, 0.9, 0.6, 0.8, 0.7]
    m = [[r if i == j else (1 - r) / 6 for j in range(7)] for i, r in enumerate(recalls)]
    s = matrix_summary(claim("a", "confusion_matrix", None, "rates", split="PrivateTest", matrix=m,
                             labels=list(CLASSES)))
    w = np.array([FER2013_COUNTS["PrivateTest"][c] for c in CLASSES])
    assert s["normalised"] and s["unweighted"] == pytest.approx(np.mean(recalls))
    assert s["accuracy"] == pytest.approx((w * recalls).sum() / w.sum())


def test_per_class_vs_average():
    # Miao et al. Table 1, FER2013 column (§4.3): the 'Average' 72.47 is the unweighted mean
    table = [71.27, 69.43, 71.53, 75.71, 74.51, 72.38, 72.45]
    labels = ["Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Normal"]
    pc = claim("p", "per_class_accuracy", None, "; ".join(map(str, table)), split="PrivateTest",
               matrix=[[v / 100 for v in table]], labels=labels)
    f = findings(pc, claim("p", "accuracy", 0.7247, "72.47%", split="PrivateTest"), check="per-class vs average")
    w = np.array([FER2013_COUNTS["PrivateTest"][canonical_class(x)] for x in labels])
    assert len(f) == 1 and f[0]["severity"] == "low" and "unweighted mean" in f[0]["finding"]
    assert f[0]["numbers"]["unweighted"] == pytest.approx(np.mean(table) / 100)
    assert f[0]["numbers"]["weighted"] == pytest.approx((w * table).sum() / w.sum() / 100)
    # an average column inside the table is found by its label; a wrong average is flagged by its size
    pc2 = claim("p", "per_class_accuracy", None, "x", split="PrivateTest", matrix=[[*table, 75.0]],
                labels=[*labels, "Average"])
    f = findings(pc2, check="per-class vs average")
    assert f[0]["severity"] == "medium" and f[0]["numbers"]["stated"] == pytest.approx(0.75)


def test_per_class_granularity_on_jaffe(monkeypatch):
    # Miao et al. Table 1, JAFFE column: 95.31% of the 30 angry images is no whole number of images (61/64 is)
    pc = claim("p", "per_class_accuracy", None, "95.31; 100.00", split="test", protocol="5-fold", dataset="jaffe",
               matrix=[[0.9531, 1.0]], labels=["Angry", "Happy"])
    f = findings(pc, check="per-class granularity")
    assert len(f) == 1 and f[0]["numbers"]["classes"] == ["Angry"] and f[0]["numbers"]["denominators"] == [64]
    # nor is it a mean over 5 folds, whatever the fold sizes of the 30 angry images (not "means over folds")
    assert "nor a mean over 5 folds" in f[0]["finding"] and f[0]["numbers"]["fold_means"] == []
    # 5/6 of 4 images is no pooled count k/4, but the mean of 2/3 and 1/1 over folds of 3 and 1: not flagged;
    # 95% of 20 images (19/20) is a pooled count: not flagged either
    pc = claim("p", "per_class_accuracy", None, "x", split="test", protocol="2-fold", dataset="jaffe",
               matrix=[[0.8333, 0.95]], labels=["Angry", "Happy"])
    monkeypatch.setitem(JAFFE_COUNTS, "all", dict(JAFFE_COUNTS["all"], angry=4, happy=20))
    assert findings(pc, check="per-class granularity") == []


def test_stated_difference_absolute_and_relative():
    # Du, Table 1: 57.31% - 44.00% = 13.31 points (absolute); relative it would be 30.25%
    f = findings(claim("b", "accuracy", 0.5731, "57.31%"), claim("r", "accuracy", 0.44, "44.00%"),
                 claim("b", "accuracy_gain", 0.1331, "13.31%", relative_to="r"), check="stated difference")
    assert f[0]["severity"] == "info" and f[0]["numbers"]["relative"] == pytest.approx(0.1331 / 0.44)
    f = findings(claim("b", "accuracy", 0.55, "55%"), claim("r", "accuracy", 0.44, "44%"),
                 claim("b", "accuracy_gain", 0.25, "25%", relative_to="r"), check="stated difference")
    assert f[0]["severity"] == "low" and "relative gain" in f[0]["finding"]  # 11/44 = 25% relative
    f = findings(claim("b", "accuracy", 0.55, "55%"), claim("r", "accuracy", 0.44, "44%"),
                 claim("b", "accuracy_gain", 0.40, "40%", relative_to="r"), check="stated difference")
    assert f[0]["severity"] == "high"  # neither 11 points nor 25%


def test_dataset_sizes_and_test_selection():
    f = findings(claim("*", "dataset_size", 28000.0, "28,000", split="train"),
                 claim("*", "dataset_size", 3589.0, "3,589", split="PrivateTest"),
                 claim("*", "dataset_size", 287039.0, "287039", split="Training"),
                 claim("*", "dataset_size", 40000.0, "over 40,000", split="all"),
                 claim("*", "dataset_size", 213.0, "213", split="all", dataset="jaffe"), check="dataset size")
    by_size = {x["numbers"]["stated"]: x for x in f}
    # by effect on a reported number: 2.5% fewer training images changes accuracy little (low); a split larger
    # than the dataset is a misprint no number was measured on (low); a false lower bound may be another dataset
    assert {k: x["severity"] for k, x in by_size.items()} == {28000.0: "low", 3589.0: "info", 287039.0: "low",
                                                             40000.0: "medium", 213.0: "info"}
    assert "misprint" in by_size[287039.0]["finding"] and "-2.47%" in by_size[28000.0]["finding"]
    f = findings(claim("*", "dataset_size", 3500.0, "3,500", split="PrivateTest", protocol="paper"),
                 check="dataset size")
    assert f[0]["severity"] == "medium" and "test set of the paper's own" in f[0]["finding"]  # not comparable
    f = findings(claim("*", "dataset_size", 35887.0, "35,887", split="all"),
                 claim("*", "dataset_size", 287039.0, "287039", split="Training"),
                 claim("*", "dataset_size", 3589.0, "3589", split="PublicTest"),
                 claim("*", "dataset_size", 3589.0, "3589", split="PrivateTest"), check="dataset size")
    misprint = next(x for x in f if x["numbers"]["stated"] == 287039.0)  # Du §2.1: its own sizes imply 28,709
    assert misprint["severity"] == "low" and "imply 28,709 (35,887 - 3,589 - 3,589)" in misprint["finding"]
    f = findings(claim("a", "accuracy", 0.7, "70%", split="PrivateTest", selected_on="test"),
                 claim("a", "accuracy", 0.7, "70%", split="PublicTest", selected_on="PrivateTest"),
                 check="selection on the test set")
    assert len(f) == 1 and f[0]["severity"] == "medium" and f[0]["numbers"]["claims"] == 1


def test_class_counts_are_compared_with_the_official_ones():
    f = findings(claim("*", "dataset_size", 547.0, "547 Disgust", split="all", labels=["Disgust"]),
                 claim("*", "dataset_size", 4900.0, "4900 Anger", split="all", labels=["Anger"]),
                 claim("*", "dataset_size", 436.0, "436", split="Training", labels=["disgusted"]),
                 claim("*", "dataset_size", 30.0, "30", split="all", dataset="jaffe", labels=["AN"]),
                 check="dataset size")
    by = {x["numbers"]["stated"]: x for x in f}
    assert {k: (x["severity"], x["numbers"]["official"]) for k, x in by.items()} == {  # a class miscount: low
        547.0: ("info", 547), 4900.0: ("low", 4953), 436.0: ("info", 436), 30.0: ("info", 30)}
    assert "its angry class has 4,953 (-53, -1.07%)" in by[4900.0]["finding"]  # a class, not the whole set
    assert "its disgust class in Training (436)" in by[436.0]["finding"]
