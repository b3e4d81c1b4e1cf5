"""The report: statistics and verdict rules on hand-made fixture results with known answers, the written
files and figures, a report with no runs, the CLI and the notebook."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import numpy as np
import pytest

from fer_bench import figures
from fer_bench import report as rp
from fer_bench.registry import Claim, Model, Paper
from papers import get_paper
from fer_bench.stats import compare, summarize, t_quantile, wilson

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "results"
N = 3589  # PublicTest / PrivateTest images


def claim(model, metric, value, printed, split="PublicTest", protocol="canonical", **kw) -> Claim:
    return Claim(model=model, metric=metric, value=value, as_printed=printed, split=split, protocol=protocol,
                 source=kw.pop("source", "Table 1"), quote="", **kw)


CLAIMS = {
    "a_below": claim("a", "accuracy", 0.90, "90%"),
    "a_consistent": claim("a", "accuracy", 0.72, "72.0%"),
    "a_above": claim("a", "accuracy", 0.60, "60%"),
    "a_private": claim("a", "accuracy", 0.71, "71%", split="test"),  # 'test' is matched with PrivateTest
    "a_loss": claim("a", "loss", 0.85, "0.85"),
    "a_matrix": claim("a", "confusion_matrix", None, "matrix", split="validation", matrix=[[5, 5], [5, 5]],
                      labels=["happy", "sad"]),  # implies exactly 50%
    "a_per_class": claim("a", "per_class_accuracy", None, "per class", matrix=[[0.99, 0.72, 0.72, 0.72, 0.72, 0.72,
                                                                              0.10]], labels=list(rp.CLASSES)),
    "b_smoke": claim("b", "accuracy", 0.56, "56%"),
    "c_other_protocol": claim("c", "accuracy", 0.72, "72%"),
    "c_own_protocol": claim("c", "accuracy", 0.7244, "72.44%", split="PrivateTest", protocol="paper"),
    "d_tta": claim("d", "accuracy", 0.72, "72%"),
    "e_jaffe": claim("e", "accuracy", 0.94, "94%", split="test", protocol="5-fold", dataset="jaffe"),
    "f_unrun": claim("f", "accuracy", 0.70, "70%"),
    "cited": claim("somebody2020", "accuracy", 0.70, "70%", kind="cited"),
    "gain_ok": claim("a", "accuracy_gain", 0.1427, "14.27%", relative_to="g"),
    "gain_big": claim("a", "accuracy_gain", 0.25, "25%", relative_to="g"),
    "gain_smoke": claim("a", "accuracy_gain", 0.10, "10%", relative_to="b"),
    "h_loss_one_seed": claim("h", "loss", 0.85, "0.85"),
    "h_accuracy": claim("h", "accuracy", 0.72, "72%"),
    "size": claim("*", "dataset_size", 28709.0, "28,709", split="Training"),
}
TOY = Paper(id="toy", title="A toy paper for the report tests", seed="none.txt",
            models={m: Model(build=lambda cfg: None, summary=f"model {m}") for m in "abcdefgh"},
            recipe={"epochs": 3}, claims=list(CLAIMS.values()), interpretations={"everything": "made up for the tests"})


@pytest.fixture(scope="module")
def toy_report():
    return rp.build(FIXTURES, papers=[TOY])


def row(report, name):
    index = list(CLAIMS).index(name)
    rows = report.summary[report.summary.source == "Table 1"]  # claim order is kept; dataset sizes are left out
    assert len(rows) == len(CLAIMS) - 1
    return rows.iloc[index].to_dict()


# ---------------------------------------------------------------- statistics

def test_t_quantiles_and_binomial_width():
    assert t_quantile(1) == pytest.approx(12.706204736, abs=1e-8)
    assert t_quantile(2) == pytest.approx(4.302652730, abs=1e-8)
    assert t_quantile(30) == pytest.approx(2.042272456, abs=1e-8)
    lo, hi = wilson(0.73, N)
    assert round(100 * (hi - lo) / 2, 2) == 1.45  # the issue's +-1.45 points at 73% on 3,589 images
    one = summarize([0.73], N)
    assert (one["lo"], one["hi"], one["method"]) == (lo, hi, "wilson") and math.isnan(one["std"])


def test_three_seeds_exact_mean_std_interval():
    st = summarize([2512 / N, 2584 / N, 2656 / N], N)
    assert st["mean"] == pytest.approx(2584 / N, abs=1e-15)
    assert st["std"] == pytest.approx(72 / N, abs=1e-15)  # k = 2584 -+ 72
    assert st["n"] == 3 and st["method"] == "wilson+t"
    # by hand: t(0.975, 2) * std / sqrt(3) combined in quadrature with Wilson's half-widths at the mean
    h_seed = 4.302652729749459 * (72 / N) / math.sqrt(3)
    z, m = 1.959963984540054, 2584 / N
    centre, half = (m + z * z / (2 * N)) / (1 + z * z / N), z / (1 + z * z / N) * math.sqrt(m * (1 - m) / N +
                                                                                           z * z / (4 * N * N))
    assert st["lo"] == pytest.approx(m - math.hypot(h_seed, m - (centre - half)), abs=1e-12)
    assert st["hi"] == pytest.approx(m + math.hypot(h_seed, centre + half - m), abs=1e-12)
    assert (round(st["lo"], 4), round(st["hi"], 4)) == (0.6680, 0.7719)


def test_loss_needs_two_seeds_and_compare_rules():
    st = summarize([0.9, 0.85, 0.8], binomial=False)
    assert st["method"] == "t" and st["hi"] - st["mean"] == pytest.approx(4.302652729749459 * 0.05 / math.sqrt(3))
    assert math.isnan(summarize([0.9], binomial=False)["lo"])
    assert compare(0.5, 0.0, 0.6, 0.7) == "above" and compare(0.8, 0.0, 0.6, 0.7) == "below"
    assert compare(0.705, 0.005, 0.6, 0.7) == "consistent"  # the printed rounding counts in the claim's favour


# ---------------------------------------------------------------- verdicts on the fixture results

def test_fixture_groups(toy_report):
    u = toy_report.units[toy_report.units.paper == "toy"]
    assert set(u.model) == {"a", "b", "c", "d", "e", "g", "h"}
    assert (u[(u.model == "a")].status == "completed").sum() == 3  # the interrupted run is listed, not counted
    assert "interrupted" in set(u.status)
    m = toy_report.measured
    a = m[(m.model == "a") & (m.split == "PublicTest") & (m.metric == "accuracy")].iloc[0]
    assert (a.n, a.n_test, a["mean"]) == (3, N, pytest.approx(2584 / N))
    e = m[(m.model == "e") & (m.metric == "accuracy")].iloc[0]  # five folds pooled into one cross-validation
    assert (e.n, e.n_test, e["mean"], e.dataset, e.split) == (1, 213, pytest.approx(200 / 213), "jaffe", "test")


def test_verdicts(toy_report):
    v = {name: row(toy_report, name)["verdict"] for name in CLAIMS if name != "size"}
    # model a: seeds at 70, 72 and 74% (sd 2 points): one new run falls in 72 +- 10.1 points, so a claim inside that
    # is too imprecise to call consistent, and only claims outside it are decided
    assert v == {
        "a_below": "below", "a_consistent": "inconclusive", "a_above": "above", "a_private": "inconclusive",
        "a_loss": "consistent", "a_matrix": "inconclusive", "a_per_class": "above", "b_smoke": "inconclusive",
        "c_other_protocol": "not comparable", "c_own_protocol": "inconclusive", "d_tta": "not comparable",
        "e_jaffe": "inconclusive", "f_unrun": "not yet run", "cited": "not yet run", "gain_ok": "inconclusive",
        "gain_big": "inconclusive", "gain_smoke": "inconclusive", "h_loss_one_seed": "inconclusive",
        "h_accuracy": "inconclusive"}
    assert "too imprecise" in row(toy_report, "a_consistent")["reason"]
    assert "run >= 3 distinct seeds" in row(toy_report, "c_own_protocol")["reason"]  # two seeds
    # losses 0.90, 0.85, 0.80: the 90% interval of their mean, 0.85 +- 2.92 x 0.05 / sqrt(3) = +-0.084, lies within
    # 0.85 +- 10% (0.085): equivalent; three seeds need no per-image spread (the test set is in their spread)
    assert "equivalent within +-0.085 (two one-sided tests, p = 0.049)" in row(toy_report, "a_loss")["reason"]
    assert "about 5 seeds at the measured spread" in row(toy_report, "a_consistent")["reason"]
    # 'validation' is the paper's own hold-out, and its printed matrix counts 20 images: their test-set noise
    # (Wilson at 50% on 20 images, +-20 points) swamps the gap to 72%
    assert "the paper's, n=20" in row(toy_report, "a_matrix")["pred_method"]
    assert "no number of seeds can show it" in row(toy_report, "a_matrix")["reason"]


def test_verdict_numbers(toy_report):
    r = row(toy_report, "a_below")
    assert (r["measured"], r["std"], r["n"], r["n_test"]) == (pytest.approx(2584 / N), pytest.approx(72 / N), 3, N)
    assert (round(r["lo"], 4), round(r["hi"], 4)) == (0.6680, 0.7719)  # the mean's interval, as before
    h_seed = t_quantile(2) * (72 / N) * math.sqrt(1 + 1 / 3)  # one new run: t * sd * sqrt(1 + 1/n), and no
    assert r["pred_lo"] == pytest.approx(2584 / N - h_seed, abs=1e-12)  # Wilson term: our test images are the
    assert r["pred_hi"] == pytest.approx(2584 / N + h_seed, abs=1e-12)  # claim's, and 3 seeds' spread holds it
    assert r["gap"] == pytest.approx(2584 / N - 0.90) and r["gap_display"] == "-18.00 pts"
    assert r["group"] == "paper profile" and r["measured_split"] == "PublicTest"
    assert row(toy_report, "a_private")["measured"] == pytest.approx(2548 / N)  # PrivateTest
    assert row(toy_report, "a_matrix")["claimed"] == 0.5
    gain = row(toy_report, "gain_ok")
    assert gain["measured"] == pytest.approx(512 / N)  # (2584 - 2072) / 3589
    assert "+24.7% relative" in gain["measured_display"]  # 512 / 2072
    assert "points reading" in gain["reason"] and "relative reading" in gain["reason"]  # the paper shows neither
    smoke = row(toy_report, "b_smoke")
    assert smoke["measured"] == pytest.approx(2000 / N) and "profile smoke" in smoke["reason"]
    assert smoke["measured_display"].endswith("(reduced budget)")
    assert "protocol paper (claim: canonical)" in row(toy_report, "c_other_protocol")["reason"]
    assert "TTA hflip (claim: none)" in row(toy_report, "d_tta")["reason"]
    h = row(toy_report, "h_accuracy")  # one seed: the mean's interval is exactly Wilson's
    assert (h["lo"], h["hi"]) == pytest.approx(wilson(2584 / N, N))
    per_class = row(toy_report, "a_per_class")["measured_display"]
    assert per_class.startswith("consistent 6, above 1")  # neutral 72% vs a claimed 10%


@pytest.fixture(scope="module")
def cli_out(tmp_path_factory):
    """`fer-bench report --runs FIXTURES --out OUT --readme` once, run in-process in a folder with a README."""
    from fer_bench.cli import main

    tmp = tmp_path_factory.mktemp("cli")
    (tmp / "README.md").write_text("# x\n\n<!-- report:start -->\nold table\n<!-- report:end -->\n\ntail\n")
    cwd = os.getcwd()
    os.chdir(tmp)
    try:
        assert main(["report", "--runs", str(FIXTURES), "--out", str(tmp / "out"), "--readme"]) == 0
    finally:
        os.chdir(cwd)
    return tmp


def test_cli_report_md_and_csv(cli_out):
    import pandas as pd

    text = (cli_out / "out" / "REPORT.md").read_text()
    for section in ("## Summary", "## How to read this report", "## Claim audit (all papers)", "## huang_fpn",
                    "### Recipe and interpretations", "### Per-class accuracy", "### Runs",
                    "## Findings", "Holds under readings", "p (q)", "Benjamini-Hochberg",
                    "Each verdict answers", "One run [95% prediction]", "Bonferroni",
                    "**not comparable**", "**inconclusive**", "Fixture GPU", "0123456789ab",
                    "## Runs of unregistered papers", "implies an accuracy of 18.01%"):
        assert section in text, section
    # the registered papers' claims are all in the summary; the fixture runs make huang_fpn's 93% 'below'
    summary = pd.read_csv(cli_out / "out" / "summary.csv")
    assert {"verdict", "measured", "lo", "hi", "n", "gap", "reason"} <= set(summary.columns)
    fpn = summary[(summary.paper == "huang_fpn") & (summary.metric == "accuracy")].iloc[0]
    assert (fpn.n, fpn.measured) == (3, pytest.approx(2584 / N))
    # the fixture runs predate huang's plateau_patience=9 (990c391): a reduced budget, else 93% is far above them
    assert fpn.verdict == ("inconclusive" if fpn.reduced else "below")
    gain = summary[(summary.paper == "huang_fpn") & (summary.metric == "accuracy_gain")].iloc[0]
    assert gain.verdict == "inconclusive"  # its baseline resnet50 has a smoke run only
    others = summary[summary.paper != "huang_fpn"]
    assert set(others[others.metric != "trainable_params"].verdict) <= {"not yet run"}
    assert set(others[others.metric == "trainable_params"].verdict) == {"consistent"}  # judged without a run
    audit = pd.read_csv(cli_out / "out" / "audit.csv")
    assert set(audit.paper) == set(summary.paper)  # the audit covers every registered paper


def test_cli_figures_written(cli_out):
    from matplotlib.image import imread

    text = (cli_out / "out" / "REPORT.md").read_text()
    expected = ["claimed_vs_measured", "huang_fpn_claimed_vs_measured", "huang_fpn_confusion_resnet50_fpn",
                "huang_fpn_confusion_resnet50", "huang_fpn_per_class", "huang_fpn_training_curves"]
    for name in expected:
        png = cli_out / "out" / "figures" / f"{name}.png"
        assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        pixels = imread(png)
        assert pixels.shape[0] > 200 and pixels.shape[1] > 300 and np.std(pixels) > 0.05, name  # not blank
        assert f"figures/{name}.png" in text, name
    rep = rp.build(FIXTURES, papers=[get_paper("huang_fpn")])
    curves = figures.training_curves(rep, "huang_fpn")
    assert set(curves.phase) == {"train", "val"} and curves.epoch.max() == 100  # the paper's 100 epochs
    per_class = figures.per_class_table(rep, get_paper("huang_fpn"))
    assert set(per_class.kind) == {"measured", "implied"}


def test_training_curves_show_the_papers_curve_statements():
    """A curve claim's [[first, last]] is drawn at epoch 1 and the recipe's last epoch, a bound as a line; only for
    models that ran (the report's reason says these claims are shown there)."""
    import dataclasses

    du = figures._paper_curves(get_paper("du_resnet_fc"), {"improved_resnet50", "resnet50"})
    assert [(q, e, v) for q, _, e, v in du] == [("accuracy", [1, 30], pytest.approx([41.73, 57.31])),
                                                 ("loss", [1, 30], pytest.approx([5.3601, 1.1556])),
                                                 ("accuracy", [], pytest.approx([45.0])), ("loss", [], [1.4])]
    assert len(figures._paper_curves(get_paper("du_resnet_fc"), {"improved_resnet50"})) == 2
    huang = get_paper("huang_fpn")
    curves = [claim("resnet50_fpn", "accuracy_curve", None, "from 20% to 70%", matrix=[[0.2, 0.7]],
                    labels=["first epoch", "last epoch"]),
              claim("resnet50_fpn", "loss_curve", None, "above 0.5", matrix=[[0.5]], labels=["bound"])]
    paper = dataclasses.replace(huang, claims=[*huang.claims, *curves])
    fig = figures.plot_training_curves(rp.build(FIXTURES, papers=[paper]), "huang_fpn")
    acc, loss = fig.axes
    (marks,) = [ln for ln in acc.get_lines() if ln.get_label().startswith("paper: resnet50_fpn")]
    assert list(marks.get_xdata()) == [1, 100] and list(marks.get_ydata()) == pytest.approx([20, 70])
    (bound,) = [ln for ln in loss.get_lines() if ln.get_label().startswith("paper: resnet50_fpn")]
    assert list(bound.get_ydata()) == [0.5, 0.5]
    assert "paper: resnet50_fpn from 20% to 70% (PublicTest)" in [t.get_text() for t in acc.get_legend().get_texts()]


def test_cli_readme(cli_out, tmp_path, monkeypatch):
    from fer_bench.cli import main

    text = (cli_out / "README.md").read_text()
    assert "old table" not in text and text.endswith("<!-- report:end -->\n\ntail\n")
    assert "| huang_fpn | resnet50_fpn | accuracy 93% |" in text and "Findings so far" in text
    assert text.index("Findings so far") < text.index("| huang_fpn | resnet50_fpn | accuracy 93% |")
    assert "[out/REPORT.md](out/REPORT.md)" in text
    (tmp_path / "README.md").write_text("no markers")
    monkeypatch.chdir(tmp_path)
    assert main(["report", "--runs", str(FIXTURES), "--out", str(tmp_path / "o2"), "--readme"]) == 2
    assert not (tmp_path / "o2").exists()  # checked before any work


def test_report_without_runs(tmp_path):
    rep = rp.build(tmp_path)  # every registered paper, no results at all
    runless = rep.summary.metric == "trainable_params"  # judged from the built model, no run needed
    assert len(rep.summary) > 0 and set(rep.summary[~runless].verdict) == {"not yet run"}
    assert runless.any() and set(rep.summary[runless].verdict) == {"consistent"}
    assert set(rep.findings.paper) == {p.id for p in rep.papers}  # the audit is still there, for every paper
    paths = rp.write(rep, tmp_path / "out", figures=False)
    text = paths["report"].read_text()
    assert "## Claim audit (all papers)" in text and "implies an accuracy of 18.01%" in text
    assert "not yet run" in text and "_no runs yet_" in text


def test_notebook_executes(monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("FER_BENCH_RUNS", str(FIXTURES))
    nb = nbformat.read(ROOT / "notebooks" / "results.ipynb", as_version=4)
    NotebookClient(nb, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    outputs = " ".join(str(o.get("data", o.get("text", ""))) for c in nb.cells if c.cell_type == "code"
                       for o in c.get("outputs", []))
    assert "image/png" in outputs and "below" in outputs and "18.01%" in outputs
    from papers import list_papers  # however many papers, claims and findings there are: none is cut from a table

    assert not re.search(r"\d+ rows [x\u00d7] \d+ columns", outputs)  # pandas' mark of a shortened table
    assert all(f">{pid}<" in outputs for pid in list_papers())


def test_last_epoch_claims_are_judged_on_the_last_epoch_weights(tmp_path):
    """A claim of the paper's final epoch is compared with metrics.json's last_epoch, not the selected checkpoint;
    runs that recorded no last_epoch leave it inconclusive."""
    import json
    import shutil

    for i, (a, g) in enumerate(zip(sorted((FIXTURES / "runs/toy/a").glob("*-s[012]-*")),
                                   sorted((FIXTURES / "runs/toy/g").glob("*")))):
        d = tmp_path / "runs/toy/a" / a.name
        shutil.copytree(a, d)
        m = json.loads((d / "metrics.json").read_text())
        m["last_epoch"] = {"epoch": 3, "same_as_selected": False,
                           "splits": json.loads((g / "metrics.json").read_text())["splits"]}  # k = 2000, 2072, 2144
        (d / "metrics.json").write_text(json.dumps(m))
    last = claim("a", "accuracy", 0.5773, "57.73%", checkpoint="last")
    selected = claim("a", "accuracy", 0.5773, "57.73%")
    paper = Paper(id="toy", title="t", seed="none.txt", models={"a": Model(build=lambda cfg: None)},
                  recipe={"epochs": 3}, claims=[last, selected], interpretations={"x": "y"})
    rows = rp.build(tmp_path, papers=[paper]).summary
    # the last epoch's 55.7/57.7/59.7% hold the claim but spread too much to call it consistent; the selected
    # checkpoint (70/72/74%) is far better than it
    assert list(rows.verdict) == ["inconclusive", "above"] and "too imprecise" in rows.iloc[0].reason
    assert rows.iloc[0].measured == pytest.approx(2072 / N) and rows.iloc[1].measured == pytest.approx(2584 / N)
    assert "last epoch" in rows.iloc[0].refers_to
    for d in (tmp_path / "runs/toy/a").glob("*"):  # runs from before last_epoch was recorded
        m = json.loads((d / "metrics.json").read_text())
        m.pop("last_epoch")
        (d / "metrics.json").write_text(json.dumps(m))
    rows = rp.build(tmp_path, papers=[paper]).summary
    assert rows.iloc[0].verdict == "inconclusive" and "no run of this group recorded last-epoch" in rows.iloc[0].reason
    assert rows.iloc[1].verdict == "above"


def test_claim_checkpoint_is_validated():
    with pytest.raises(ValueError, match="checkpoint"):
        claim("a", "accuracy", 0.5, "50%", checkpoint="best")


def test_unusable_records_are_skipped_listed_and_printed(tmp_path, capsys):
    """Accuracies outside [0, 1] (or NaN) and splits that are not a mapping: skipped with the reason, in REPORT.md and
    on the console, never counted and never a crash."""
    import json
    import shutil

    from fer_bench.cli import main

    good = FIXTURES / "runs/huang_fpn/resnet50/20260101-000000-s0-huaresscn"
    shutil.copytree(good, tmp_path / "runs/huang_fpn/resnet50" / good.name)
    record = json.loads((good / "metrics.json").read_text())
    bad = {"above_one": {"splits": {"PrivateTest": {**record["splits"]["PrivateTest"], "accuracy": 1.5}}},
           "nan": {"splits": {"PublicTest": {"n": 10, "accuracy": math.nan}}},
           "splits_list": {"splits": [0.7, 0.6]},
           "per_class": {"splits": {"PrivateTest": {"accuracy": 0.5, "per_class_accuracy": {"happy": -0.1}}}},
           "last_epoch": {"last_epoch": {"epoch": 3, "splits": {"PrivateTest": "0.7"}}}}
    for name, change in bad.items():
        (tmp_path / "runs/huang_fpn/resnet50" / name).mkdir()
        (tmp_path / "runs/huang_fpn/resnet50" / name / "metrics.json").write_text(json.dumps({**record, **change}))
    rep = rp.build(tmp_path, papers=[get_paper("huang_fpn")])
    assert list(rep.units.run_id) == [record["run_id"]]
    reasons = {Path(s.split(": ", 1)[0]).parent.name: s.split(": ", 1)[1] for s in rep.skipped}
    assert reasons == {"above_one": "splits.PrivateTest.accuracy is 1.5, not a number in [0, 1]",
                       "nan": "splits.PublicTest.accuracy is nan, not a number in [0, 1]",
                       "splits_list": "splits is a list, not a mapping of split names to metrics",
                       "per_class": "splits.PrivateTest.per_class_accuracy.happy is -0.1, not a number in [0, 1]",
                       "last_epoch": "last_epoch.splits.PrivateTest is a str, not a mapping of metrics"}
    assert main(["report", "--runs", str(tmp_path), "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert err.count("warning: skipped") == len(bad) and all(f"{name}/metrics.json" in err for name in bad)
    assert "Unreadable results files (skipped)" in (tmp_path / "out" / "REPORT.md").read_text()
