"""The verdict rules (fer_bench.verdicts) on hand-written runs with known answers: weak evidence is inconclusive,
overwhelming evidence is decided, and the file's own budget flag is never believed alone."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from fer_bench import verdicts
from fer_bench.data import CLASSES
from fer_bench.registry import Claim, Model, Paper
from fer_bench.stats import SEED_SD_ALLOWANCE, Z, t_quantile, wilson

N = 3589
RECIPE = {"epochs": 30, "scheduler": "none"}


def claim(model="a", metric="accuracy", value=0.70, printed="70%", split="PublicTest", **kw) -> Claim:
    return Claim(model=model, metric=metric, value=value, as_printed=printed, split=split,
                 protocol=kw.pop("protocol", "canonical"), source=kw.pop("source", "Table 1"), quote="", **kw)


def paper(*claims, recipe=RECIPE) -> Paper:
    return Paper(id="vt", title="verdict tests", seed="none", models={m: Model(lambda cfg: None) for m in "ab"},
                 recipe=dict(recipe), claims=list(claims), interpretations={"x": "y"})


def split(k: int, n: int = N, loss: float = 1.0, loss_sd: float | None = None) -> dict:
    """A split with k of n right, spread evenly over the seven classes' rows."""
    per = np.full(7, n // 7)
    per[: n - per.sum()] += 1
    right = np.full(7, k // 7)
    right[: k - right.sum()] += 1
    cm = np.diag(right)
    for i in range(7):
        cm[i, (i + 1) % 7] = per[i] - right[i]
    return {"n": n, "accuracy": k / n, "macro_f1": k / n, "loss": loss,
            **({"loss_sd": loss_sd} if loss_sd is not None else {}),
            "per_class_accuracy": {c: float(right[i] / per[i]) for i, c in enumerate(CLASSES)},
            "confusion_matrix": cm.tolist()}


def write_run(root, model: str, seed: int, k: int, *, run: str | None = None, profile="paper", epochs=30,
              done=30, full=True, cfg=None, loss=1.0, loss_sd=None, sha="a" * 40, fingerprint="f0", **extra):
    run = run or f"r-s{seed}"
    cfg = {**RECIPE, "epochs": epochs, **(cfg or {})}
    d = {"schema": "fer-bench/metrics/v1", "paper": "vt", "model": model, "profile": profile, "protocol": "canonical",
         "seed": seed, "run_id": run, "status": "completed", "epochs_planned": epochs, "epochs_completed": done,
         "best_epoch": done, "selected_on": "PublicTest", "budget": {"full": full, "reasons": []},
         "splits": {"PublicTest": split(k, loss=loss, loss_sd=loss_sd), "PrivateTest": split(k, loss=loss,
                                                                                             loss_sd=loss_sd)},
         "software": {"git_sha": sha}, "dataset": {"name": "fer2013", "fingerprint": fingerprint}, "config": cfg,
         **extra}
    path = root / "runs" / "vt" / model / run / "metrics.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(d))


def judged(tmp_path, *claims):
    p = paper(*claims)
    rep = verdicts.build(tmp_path, papers=[p])
    return [r for r in rep.summary.to_dict("records")]


def k(pct: float) -> int:
    return round(pct * N / 100)


def test_two_seeds_do_not_flip_with_a_third(tmp_path):
    """The issue: 60% and 62% made a 70% claim 'consistent' and a third seed flipped it to 'below'. With fewer than 3
    seeds the seed allowance stands in for the spread, so both are 'below'."""
    write_run(tmp_path, "a", 0, k(60))
    write_run(tmp_path, "a", 1, k(62))
    (two,) = judged(tmp_path, claim(value=0.70))
    assert two["verdict"] == "below" and "seed sd allowance" in two["reason"]
    mean = (k(60) + k(62)) / 2 / N  # two seeds: the allowance's sd for one new run, with the test set's Wilson term
    assert two["pred_hi"] == pytest.approx(mean + math.hypot(Z * SEED_SD_ALLOWANCE * math.sqrt(1 + 1 / 2),
                                                             wilson(mean, N)[1] - mean), abs=1e-9)
    write_run(tmp_path, "a", 2, k(61))
    (three,) = judged(tmp_path, claim(value=0.70))
    assert three["verdict"] == "below"


def test_overwhelming_evidence_is_decided(tmp_path):
    write_run(tmp_path, "a", 0, k(52))  # one full run 18 points below a claim
    (one,) = judged(tmp_path, claim(value=0.70))
    assert one["verdict"] == "below"
    for seed, pct in enumerate((73.0, 73.2, 72.9, 73.1, 73.3)):  # five tight seeds around a claim
        write_run(tmp_path, "b", seed, k(pct))
    (five,) = judged(tmp_path, claim("b", value=0.7310, printed="73.10%"))
    assert five["verdict"] == "consistent" and five["n"] == 5
    assert (five["pred_hi"] - five["pred_lo"]) / 2 < 0.03


def test_one_seed_never_makes_a_claim_consistent(tmp_path):
    write_run(tmp_path, "a", 0, k(70))
    (r,) = judged(tmp_path, claim(value=0.70))
    assert r["verdict"] == "inconclusive" and "run >= 3 distinct seeds" in r["reason"]


def test_a_missing_measurement_is_inconclusive_never_consistent(tmp_path):
    write_run(tmp_path, "a", 0, k(70))
    path = tmp_path / "runs/vt/a/r-s0/metrics.json"
    d = json.loads(path.read_text())
    del d["splits"]["PublicTest"]["accuracy"]
    path.write_text(json.dumps(d))
    (r,) = judged(tmp_path, claim(value=0.70))
    assert r["verdict"] == "inconclusive" and "no accuracy measured" in r["reason"]


@pytest.mark.parametrize("kw, reason", [
    (dict(done=5), "stopped after 5 of 30 epochs"),  # 5 of 30 epochs, though the file says full
    (dict(profile="smoke"), "profile smoke"),  # the file says full
    (dict(cfg={"train_subset": 512}), "train_subset=512 (paper: 0)"),
])
def test_the_file_budget_flag_is_recomputed_from_the_recipe(tmp_path, kw, reason):
    for seed in range(3):
        write_run(tmp_path, "a", seed, k(70), **kw)
    (r,) = judged(tmp_path, claim(value=0.70))
    assert r["verdict"] == "inconclusive" and reason in r["reason"] and r["reduced"]


def test_a_repeated_seed_counts_the_run_that_finished_last(tmp_path):
    write_run(tmp_path, "a", 0, k(60), run="r2", finished="2026-01-01T00:00:00Z")
    write_run(tmp_path, "a", 0, k(70), run="r1", finished="2026-02-01T00:00:00Z")  # later, though its id sorts first
    write_run(tmp_path, "a", 1, k(70))
    write_run(tmp_path, "a", 2, k(70))
    (r,) = judged(tmp_path, claim(value=0.70))
    assert r["n"] == 3 and "seed 0 ran 2 times, counted once (r1)" in r["group"]
    assert r["measured"] == pytest.approx(k(70) / N)


def test_seeds_are_counted_once_and_mixed_versions_said(tmp_path):
    write_run(tmp_path, "a", 0, k(70), run="r1")
    write_run(tmp_path, "a", 0, k(70.2), run="r2", sha="b" * 40)  # seed 0 again, with other code
    write_run(tmp_path, "a", 1, k(69.9))
    (r,) = judged(tmp_path, claim(value=0.70))
    assert r["n"] == 2 and "seed 0 ran 2 times, counted once" in r["group"]
    assert "mixes code versions aaaaaaaaaaaa, bbbbbbbbbbbb" in r["group"]


def test_neutral_keys_do_not_split_groups(tmp_path):
    write_run(tmp_path, "a", 0, k(70), cfg={"exclude_leaked": True})
    write_run(tmp_path, "a", 1, k(70), cfg={"compile": True})
    write_run(tmp_path, "a", 2, k(70), cfg={"eval_batch_size": 7})
    (r,) = judged(tmp_path, claim(value=0.70))
    assert r["n"] == 3 and r["group"] == "paper profile"


def test_a_loss_claim(tmp_path):
    """One seed: no interval (a loss has no seed allowance), and the reason says its per-image spread is there. Three
    seeds within 10% of the claim: consistent with no test-set term (the seeds' spread holds it). A group with fewer
    seeds borrows the relative seed spread pooled from that one, with the test set's term (z loss_sd / sqrt N)."""
    write_run(tmp_path, "a", 0, k(70), loss=1.50, loss_sd=4.548)
    (one,) = judged(tmp_path, claim(metric="loss", value=1.47082, printed="1.47082"))
    assert one["verdict"] == "inconclusive" and "loss_sd 4.548" in one["reason"] and "no seed spread" in one["reason"]
    for seed, loss in enumerate((0.99, 1.00, 1.01)):
        write_run(tmp_path, "b", seed, k(70), loss=loss, loss_sd=0.9)
    (three,) = judged(tmp_path, claim("b", metric="loss", value=1.0, printed="1.000"))
    assert three["pred_hi"] - three["measured"] == pytest.approx(t_quantile(2) * 0.01 * math.sqrt(1 + 1 / 3))
    assert three["verdict"] == "consistent" and "within +-0.1 " in three["reason"]
    (pooled,) = judged(tmp_path, claim(metric="loss", value=1.47082, printed="1.47082"))
    sd = 0.01 * 1.50  # b's relative sd (0.01 / 1.00), at a's mean
    h = math.hypot(t_quantile(2) * sd * math.sqrt(2), Z * 4.548 / math.sqrt(N) * t_quantile(2) / Z)
    assert "pooled" in pooled["pred_method"] and pooled["pred_hi"] - pooled["measured"] == pytest.approx(h)
    assert pooled["verdict"] == "inconclusive" and "run >= 3 distinct seeds" in pooled["reason"]


def test_lower_bound_rule_for_runs_cut_only_in_epochs(tmp_path):
    for seed in range(3):  # 5 of 30 epochs already at 70%: a 50% claim on the selection split is 'above'
        write_run(tmp_path, "a", seed, k(70 + seed * 0.1), epochs=5, done=5)
    sel = dict(selected_on="PublicTest")  # the rule needs the paper to say how it selected
    rows = judged(tmp_path, claim(value=0.50, **sel), claim(value=0.50, split="PrivateTest", source="T2", **sel),
                  claim(value=0.70, source="T3", **sel), claim(value=0.50, source="T4"))
    assert rows[0]["verdict"] == "above" and "already after 5 of 30 epochs" in rows[0]["reason"]
    assert rows[1]["verdict"] == "inconclusive"  # PrivateTest is not the selection split: no bound
    assert rows[2]["verdict"] == "inconclusive"  # the bound does not clear the claim
    assert rows[3]["verdict"] == "inconclusive"  # the paper does not say it reports its best epoch: no bound
    cosine = tmp_path / "cos"
    for seed in range(3):  # a schedule that depends on the number of epochs: no bound
        write_run(cosine, "a", seed, k(70), epochs=5, done=5, cfg={"scheduler": "cosine"})
    (r,) = judged(cosine, claim(value=0.50, selected_on="PublicTest"))
    assert r["verdict"] == "inconclusive"


def test_gains_are_judged_in_the_reading_the_paper_shows(tmp_path):
    for seed, (a, b) in enumerate(((60.0, 50.0), (60.1, 50.1), (59.9, 49.9))):
        write_run(tmp_path, "a", seed, k(a))
        write_run(tmp_path, "b", seed, k(b))
    gain = dict(metric="accuracy_gain", relative_to="b")
    acc = [claim("a", value=0.60, printed="60.00%", source="A"), claim("b", value=0.50, printed="50.00%", source="B")]
    points = paper(claim(value=0.10, printed="10.00%", **gain), *acc)
    rows = verdicts.build(tmp_path, papers=[points]).summary
    g = rows[rows.metric == "accuracy_gain"].iloc[0]
    assert "points reading" in g.reason and "relative" not in g.reason  # 60 - 50 = 10 in the paper's own numbers
    assert g.verdict == "consistent"  # three tight seeds each (sd 0.1 point): no test-set term on the same images
    assert (g.pred_hi - g.pred_lo) / 2 < 0.01 and "equivalent within +-2.0 pts" in g.reason
    ambiguous = paper(claim(value=0.20, printed="20%", **gain))  # 10 points = 20% relative: readings disagree
    g = verdicts.build(tmp_path, papers=[ambiguous]).summary.iloc[0]
    assert "the readings disagree" in g.reason and g.verdict == "inconclusive"


def test_the_paper_test_set_noise_is_added_for_its_own_hold_out(tmp_path):
    for seed in range(3):
        write_run(tmp_path, "a", seed, k(70))
    own = claim(value=0.70, split="validation")
    size = claim("*", "dataset_size", 500.0, "500", split="validation", source="S")
    p = paper(own, size, claim(value=0.70, source="T2"))
    rows = verdicts.build(tmp_path, papers=[p]).summary
    hold_out, ours = rows.iloc[0], rows.iloc[1]
    assert "the paper's, n=500" in hold_out.pred_method and "held-out proxy" in hold_out.reason
    assert hold_out.pred_hi - hold_out.pred_lo > ours.pred_hi - ours.pred_lo


def test_single_view_claims_use_a_tta_runs_plain_numbers(tmp_path):
    for seed in range(3):
        write_run(tmp_path, "a", seed, k(72), cfg={"tta": "hflip"})
        path = tmp_path / f"runs/vt/a/r-s{seed}/metrics.json"
        d = json.loads(path.read_text())
        for s in d["splits"].values():
            s["plain"] = {"n": N, "accuracy": k(70) / N, "macro_f1": 0.6, "loss": 1.0}
        path.write_text(json.dumps(d))
    (r,) = judged(tmp_path, claim(value=0.70))
    assert r["measured"] == pytest.approx(k(70) / N)  # the single view, not the TTA average


def test_per_class_without_test_counts_is_never_consistent(tmp_path):
    for seed in range(3):
        write_run(tmp_path, "a", seed, k(70))
        path = tmp_path / f"runs/vt/a/r-s{seed}/metrics.json"
        d = json.loads(path.read_text())
        for s in d["splits"].values():
            del s["confusion_matrix"]  # per-class accuracies without the counts they were measured on
        path.write_text(json.dumps(d))
    per_class = claim(metric="per_class_accuracy", value=None, printed="table", matrix=[[0.7] * 7],
                      labels=list(CLASSES))
    (r,) = judged(tmp_path, per_class)
    assert r["verdict"] == "inconclusive" and "test count" in r["reason"]


def test_a_last_epoch_gain_without_last_epoch_metrics_is_inconclusive(tmp_path):
    for seed in range(3):
        write_run(tmp_path, "a", seed, k(60))
        write_run(tmp_path, "b", seed, k(50))
    (r,) = judged(tmp_path, claim(metric="accuracy_gain", value=0.10, printed="10%", relative_to="b",
                                  checkpoint="last"))
    assert r["verdict"] == "inconclusive" and "last-epoch metrics" in r["reason"]


# ---------------------------------------------------------------- verdicts v2 (issue 28): known answers

def test_three_tight_seeds_around_a_claim_are_consistent(tmp_path):
    for seed, pct in enumerate((70.0, 70.1, 69.9)):
        write_run(tmp_path, "a", seed, k(pct))
    (r,) = judged(tmp_path, claim(value=0.70, printed="70.0%"))
    assert r["verdict"] == "consistent" and "equivalent within +-2.0 pts" in r["reason"]
    assert "test set" not in r["pred_method"]  # our images are the claim's: the seeds' spread holds the test noise


def test_seeds_with_sd_one_and_a_half_points_say_how_many_seeds_would_decide(tmp_path):
    """sd 1.5 points at the claim: the mean's 90% interval, +-2.92 x 1.5 / sqrt(3) = +-2.5 points, is wider than the
    2-point margin; 4 seeds (+-2.35 x 1.5 / 2 = +-1.76) would show it. Before v2, h_test made it impossible."""
    for seed, pct in enumerate((68.5, 70.0, 71.5)):
        write_run(tmp_path, "a", seed, k(pct))
    (r,) = judged(tmp_path, claim(value=0.70, printed="70.0%"))
    assert r["std"] == pytest.approx(0.015, abs=2e-4)
    assert r["verdict"] == "inconclusive" and "about 4 seeds at the measured spread would show it" in r["reason"]
    write_run(tmp_path, "a", 3, k(70.0))
    (r,) = judged(tmp_path, claim(value=0.70, printed="70.0%"))
    assert r["verdict"] == "consistent"


def test_one_seed_six_points_away_is_below_on_the_allowance(tmp_path):
    write_run(tmp_path, "a", 0, k(64))
    (r,) = judged(tmp_path, claim(value=0.70, printed="70.0%"))
    w_hi = wilson(k(64) / N, N)[1] - k(64) / N  # 5.0 points (allowance) and 1.6 (Wilson) in quadrature: 5.25
    assert r["pred_hi"] == pytest.approx(k(64) / N + math.hypot(Z * SEED_SD_ALLOWANCE * math.sqrt(2), w_hi))
    assert Z * SEED_SD_ALLOWANCE * math.sqrt(2) == pytest.approx(0.05) and SEED_SD_ALLOWANCE == pytest.approx(0.018,
                                                                                                           abs=1e-3)
    assert r["verdict"] == "below" and "seed sd allowance" in r["reason"] and 0 < r["p"] < 0.05


def test_a_pooled_seed_sd_stands_in_for_a_group_with_fewer_seeds(tmp_path):
    for seed, pct in enumerate((60.0, 60.5, 59.5, 60.2)):  # model b: 4 seeds, sd about 0.43 points
        write_run(tmp_path, "b", seed, k(pct))
    write_run(tmp_path, "a", 0, k(64))  # one seed 6 points from the claim: now decided by b's spread
    (r,) = judged(tmp_path, claim(value=0.70, printed="70.0%"))
    assert "pooled over other groups, t(3)" in r["pred_method"] and r["verdict"] == "below"
    sd = float(np.std([k(p) / N for p in (60.0, 60.5, 59.5, 60.2)], ddof=1))
    w_hi = wilson(k(64) / N, N)[1] - k(64) / N
    assert r["pred_hi"] == pytest.approx(k(64) / N + math.hypot(t_quantile(3) * sd * math.sqrt(2),
                                                                t_quantile(3) / Z * w_hi))


def test_a_run_selected_on_another_split_is_not_comparable(tmp_path):
    for seed in range(3):
        write_run(tmp_path, "a", seed, k(70))  # selected on PublicTest
    (r,) = judged(tmp_path, claim(value=0.70, split="PrivateTest", selected_on="test"))
    assert r["verdict"] == "not comparable"
    assert "selected its checkpoint on test (PrivateTest), these runs on PublicTest" in r["reason"]
    (ok,) = judged(tmp_path, claim(value=0.70, split="PrivateTest", selected_on="PublicTest"))
    assert ok["verdict"] == "consistent"


def test_a_per_class_claim_from_one_seed_is_not_a_finding(tmp_path):
    write_run(tmp_path, "a", 0, k(70))
    per_class = claim(metric="per_class_accuracy", value=None, printed="table", matrix=[[0.99] * 7],
                      labels=list(CLASSES))
    (r,) = judged(tmp_path, per_class)
    assert r["verdict"] == "inconclusive" and "not a finding (they would read 'below')" in r["reason"]


def test_p_values_fdr_and_a_gain_counted_once_with_its_baseline(tmp_path):
    """du's shape: the baseline measured far above its claim, the gain far below: one finding, not two."""
    for seed in range(3):
        write_run(tmp_path, "a", seed, k(56 + 0.1 * seed))
        write_run(tmp_path, "b", seed, k(59 + 0.1 * seed))
    p = paper(claim("a", value=0.5731, printed="57.31%", source="A"),
              claim("b", value=0.44, printed="44.00%", source="B"),
              claim(value=0.1331, printed="13.31%", metric="accuracy_gain", relative_to="b", source="G"))
    rep = verdicts.build(tmp_path, papers=[p])
    s = rep.summary.set_index("source")
    assert (s.loc["B", "verdict"], s.loc["G", "verdict"]) == ("above", "below")
    assert s.loc["G", "depends_on"] == "b accuracy 44.00%" and not s.loc["G", "finding"] and s.loc["B", "finding"]
    assert s.loc["A", "verdict"] == "below"  # 56 vs 57.31 with sd 0.1: decided, and a finding of its own
    from scipy.stats import false_discovery_control
    assert list(s.q) == pytest.approx(list(false_discovery_control(s.p.to_numpy())))
    assert all(s.p < 0.05)


def test_parameter_counts_are_judged_from_the_built_model(tmp_path):
    from torch import nn

    from fer_bench.rules import printed_range

    assert printed_range("over 23 million", 23e6) == (23e6, 24e6)
    assert printed_range("~60,000", 6e4) == (50000, 70000)  # trailing zeros are rounding; ~ doubles
    p = Paper(id="vt", title="t", seed="none", models={"a": Model(lambda cfg: nn.Linear(10, 6))}, recipe=dict(RECIPE),
              claims=[claim(metric="trainable_params", value=60.0, printed="about 60", split="n/a"),
                      claim(metric="trainable_params", value=100.0, printed="over 100", split="n/a", source="T2")],
              interpretations={"x": "y"})
    rows = verdicts.build(None, papers=[p]).summary
    assert list(rows.verdict) == ["consistent", "below"] and list(rows.measured) == [66.0, 66.0]


def test_a_curve_bound_is_judged_on_every_epoch(tmp_path):
    write_run(tmp_path, "a", 0, k(59))
    log = tmp_path / "runs/vt/a/r-s0/logs/metrics.csv"
    log.parent.mkdir()
    accs = [0.35, 0.40, 0.44, 0.52, 0.59]
    log.write_text("epoch,step,val/acc,val/loss\n" + "".join(f"{e},{e},{a},1.2\n" for e, a in enumerate(accs)))
    bound = claim(metric="accuracy_curve", value=None, printed="less than 45%", matrix=[[0.45]], labels=["bound"])
    (r,) = judged(tmp_path, bound)
    # one seed: 52% and 59% minus 5.25 points still clear 45% (epochs 4 and 5); 44% does not. But an epoch's seed
    # spread is not the final accuracy's, so from one seed the curve is no finding, whichever way it points
    assert r["verdict"] == "inconclusive" and "2 of 5 epochs" in r["reason"] and "first: epoch 4" in r["reason"]
    assert ">= 3 distinct seeds" in r["reason"]
    for seed in (1, 2):  # three seeds with the same curve: the bound is judged
        write_run(tmp_path, "a", seed, k(59))
        other = tmp_path / f"runs/vt/a/r-s{seed}/logs/metrics.csv"
        other.parent.mkdir()
        other.write_text(log.read_text())
    (r,) = judged(tmp_path, bound)
    assert r["verdict"] == "above" and "first: epoch 4" in r["reason"]


def _imbalanced(shift: int = 0) -> dict:
    """3,589 test images in classes of unequal size, the large ones right more often: pooled accuracy 2,652/3,589
    = 73.89% (+ shift images), the mean of the per-class accuracies (0.9 + 0.1 + 5 x 0.7) / 7 = 64.29%."""
    sizes, right = [1000, 100, 500, 500, 500, 500, 489], [900 + shift, 10, 350, 350, 350, 350, 342]
    cm = np.zeros((7, 7), dtype=int)
    for i, (n, r) in enumerate(zip(sizes, right)):
        cm[i, i], cm[i, (i + 1) % 7] = r, n - r
    return {"n": N, "accuracy": sum(right) / N, "loss": 1.0, "confusion_matrix": cm.tolist(),
            "per_class_accuracy": {c: r / n for c, n, r in zip(CLASSES, sizes, right)}}


def test_an_accuracy_is_also_read_as_the_mean_of_its_per_class_accuracies(tmp_path):
    """Issue 28 §2, 'which averaging': three seeds that hold a 73.89% claim as a pooled accuracy are 9.6 points
    below it as a per-class mean; the readings column says the verdict holds only for the pooled reading. The
    per-class mean's test-set term uses the effective size whose binomial variance is sum p_c(1-p_c)/n_c / 7^2."""
    for seed, shift in enumerate((-3, 0, 3)):
        splits = {"PublicTest": _imbalanced(shift), "PrivateTest": _imbalanced(shift)}
        write_run(tmp_path, "a", seed, 0, last_epoch={"epoch": 30, "same_as_selected": True, "splits": splits})
        m = tmp_path / "runs" / "vt" / "a" / f"r-s{seed}" / "metrics.json"
        m.write_text(json.dumps(json.loads(m.read_text()) | {"splits": splits}))
    rep = verdicts.build(tmp_path, papers=[paper(claim(value=2652 / N, printed="73.89%"))])
    (row,) = rep.summary.to_dict("records")
    assert row["verdict"] == "consistent"
    read = row["readings"]
    assert read.startswith("only PublicTest selected epoch; PublicTest last epoch; PrivateTest selected epoch; "
                           "PrivateTest last epoch (")
    assert "PublicTest selected epoch, per-class mean: below" in read and read.count(": below") == 4
    u = verdicts.per_class_mean(rep.units)
    mean = (0.9 + 0.1 + 5 * 0.7) / 7
    var = (0.9 * 0.1 / 1000 + 0.1 * 0.9 / 100 + 4 * 0.7 * 0.3 / 500 + (342 / 489) * (147 / 489) / 489) / 49
    got = u[u.seed == 1].splits.iloc[0]["PublicTest"]
    assert got["accuracy"] == pytest.approx(mean - (0.7 - 342 / 489) / 7) and got["n"] == round(
        got["accuracy"] * (1 - got["accuracy"]) / var)


def test_a_class_at_zero_percent_still_counts_its_test_set_noise_and_tta_runs_have_no_per_class_mean():
    """A class right 0 of 55 times adds (0.5/55)(1 - 0.5/55)/55 to the mean's variance, not nothing (which would
    shrink the interval); a TTA run's single-view numbers are pooled only, so they lose their accuracy."""
    import pandas as pd

    m = {"n": 155, "accuracy": 50 / 155, "confusion_matrix": [[0, 55], [50, 50]],
         "per_class_accuracy": {CLASSES[0]: 0.0, CLASSES[1]: 0.5}, "plain": {"n": 155, "accuracy": 0.3}}
    u = verdicts.per_class_mean(pd.DataFrame({"splits": [{"PublicTest": m}], "last_splits": [{}]}))
    got = u.splits.iloc[0]["PublicTest"]
    p0 = 0.5 / 55
    var = (p0 * (1 - p0) / 55 + 0.25 / 100) / 4
    assert got["accuracy"] == pytest.approx(0.25) and got["n"] == round(0.25 * 0.75 / var)
    assert "accuracy" not in got["plain"] and m["plain"]["accuracy"] == 0.3  # the input is not changed


def test_the_unleaked_column_says_how_many_seeds_it_averages(tmp_path):
    write_run(tmp_path, "a", 0, k(60))
    write_run(tmp_path, "a", 1, k(62))
    m = tmp_path / "runs" / "vt" / "a" / "r-s1" / "metrics.json"
    d = json.loads(m.read_text())
    d["splits"]["PublicTest_unleaked"] = split(k(61), n=3286)
    m.write_text(json.dumps(d))
    (row,) = judged(tmp_path, claim(value=0.70))
    assert row["unleaked"].endswith("(1 of 2 seed(s))")
