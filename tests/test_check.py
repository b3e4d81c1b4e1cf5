"""`fer-bench check`: registry validation, reference comparison with tolerances, the committed reference."""

import json
from pathlib import Path

import pytest

from fer_bench.check import REFERENCE, TOLERANCE, compare, smoke_values, validate_papers
from papers import get_paper, list_papers

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _test_splits_of_100_images(monkeypatch):
    """The check's faked smoke runs (no training, no data) report splits of 100 images."""
    import fer_bench.check as chk

    monkeypatch.setattr(chk, "_split_sizes", lambda data: {"PrivateTest": 100, "PublicTest": 100})


def split_of(accuracy: float, loss: float = 2.0, n: int = 100) -> dict:
    """A test split's metrics as a run writes them, consistent with a confusion matrix: ``accuracy`` of ``n``
    images, the correct ones all angry, the rest disgust predicted as angry."""
    from fer_bench.data import CLASSES

    cm = [[0] * 7 for _ in range(7)]
    cm[0][0], cm[1][0] = round(accuracy * n), n - round(accuracy * n)
    per_class = {c: (1.0 if i == 0 and cm[0][0] else 0.0) for i, c in enumerate(CLASSES)}
    return {"n": n, "accuracy": accuracy, "loss": loss, "confusion_matrix": cm, "per_class_accuracy": per_class}


def test_every_registered_paper_validates():
    assert validate_papers() == []


def test_compare_flags_only_values_outside_tolerance():
    ref = {"p/m": {"PrivateTest": {"accuracy": 0.30, "loss": 2.0}}}
    ok = compare({"p/m": {"PrivateTest": {"accuracy": 0.30 + TOLERANCE["accuracy"] * 0.9, "loss": 2.05}}}, ref)
    assert [r[-1] for r in ok] == [True, True]
    bad = compare({"p/m": {"PrivateTest": {"accuracy": 0.25, "loss": 2.2}}}, ref)
    assert [(r[1], r[-1]) for r in bad] == [("PrivateTest accuracy", False), ("PrivateTest loss", False)]
    missing = compare({}, ref)
    assert not any(r[-1] for r in missing)


def test_committed_reference_has_every_models_parameter_count():
    ref = json.loads((ROOT / REFERENCE).read_text())
    for pid in list_papers():
        paper = get_paper(pid)
        for model in paper.models:
            assert ref["params"][f"{pid}/{model}"] == paper.num_params(model), f"{pid}/{model}"
    kinds = smoke_values(ref)
    assert kinds, "no smoke reference values"
    everywhere = set()
    for kind, entry in kinds.items():
        for key, splits in entry["values"].items():
            assert set(splits) == {"PrivateTest", "PublicTest"}, (kind, key)
            everywhere.add(key)
    # every model has a reference on at least one kind of CPU
    assert everywhere == {f"{pid}/{m}" for pid in list_papers() for m in get_paper(pid).models}


def test_check_compares_with_this_cpu_kinds_values_only(monkeypatch, tmp_path, capsys):
    """Another CPU kind's values are not a reference here (its rounding flips near-chance smoke models); a model
    with no value on any kind fails."""
    import fer_bench.check as chk

    monkeypatch.setattr(chk, "cpu_kind", lambda: "AVX512")
    measured = {"PrivateTest": split_of(0.25), "PublicTest": split_of(0.25)}
    monkeypatch.setattr(chk, "_smoke", lambda *a, **k: {"status": "completed", "splits": measured,
                                                         "timing": {"train_s": 1, "eval_s": 1}})
    ref = json.loads((ROOT / REFERENCE).read_text())
    far = {"PrivateTest": {"accuracy": 0.10, "loss": 9.0}, "PublicTest": {"accuracy": 0.10, "loss": 9.0}}
    key = "miao_presnet_vgg/presnet"
    others = {k: far for k in _registered() if k != key}  # every other model has a value somewhere
    ref["smoke"] = {"AVX2": {"software": {}, "values": {**others, key: far}}}
    reference = tmp_path / "smoke.json"
    reference.write_text(json.dumps(ref))
    assert chk.check(None, reference, only=[key]) == 0  # only another kind's value: noted, not failed
    assert "no reference for CPU kind AVX512" in capsys.readouterr().out
    ref["smoke"]["AVX512"] = {"software": {}, "values": {key: far}}
    reference.write_text(json.dumps(ref))
    assert chk.check(None, reference, only=[key]) == 1  # this kind's value, far off: a regression
    ref["smoke"] = {"AVX512": {"software": {}, "values": others}}
    reference.write_text(json.dumps(ref))
    assert chk.check(None, reference, only=[key]) == 1  # no value anywhere: fails
    assert "no smoke reference value on any CPU kind" in capsys.readouterr().out


def _registered() -> list[str]:
    return [f"{pid}/{m}" for pid in list_papers() for m in get_paper(pid).models]


def _fake_smoke(monkeypatch, git_sha="new", accuracy=0.25):
    """check's smoke runs replaced by a metrics.json-like dict (no training), recorded with ``git_sha``."""
    import fer_bench.check as chk
    from fer_bench.results import software

    d = {"status": "completed", "splits": {"PrivateTest": split_of(accuracy), "PublicTest": split_of(accuracy)},
         "timing": {"train_s": 1, "eval_s": 1},
         "software": {**software(), "git_sha": git_sha}}
    monkeypatch.setattr(chk, "_smoke", lambda *a, **k: json.loads(json.dumps(d)))


@pytest.fixture
def sixth_paper(monkeypatch):
    """A newly added paper (one tiny model) that has no reference yet: registered for this test only."""
    from torch import nn

    from fer_bench import registry
    from fer_bench.registry import Model, Paper

    paper = Paper(id="sixth_paper", title="A new paper", seed="none.txt",
                  models={"tiny": Model(lambda cfg: nn.Sequential(nn.Flatten(), nn.Linear(48 * 48, 7)))},
                  recipe={}, claims=[], interpretations={"everything": "a test fixture"})
    monkeypatch.setitem(registry._REGISTRY, paper.id, paper)
    return paper


def test_a_model_with_no_reference_anywhere_fails_naming_the_command(monkeypatch, tmp_path, capsys, sixth_paper):
    """A new paper's model has no smoke value on any CPU kind: whichever models run, the check fails and says the
    exact command that measures it, and that the result is to be committed."""
    import fer_bench.check as chk

    monkeypatch.setattr(chk, "cpu_kind", lambda: "AVX2")
    _fake_smoke(monkeypatch)
    reference = tmp_path / "smoke.json"
    reference.write_text((ROOT / REFERENCE).read_text())
    command = "fer-bench check --update --only sixth_paper/tiny --data ../shared/datasets/fer2013"
    for only in (["miao_presnet_vgg/presnet"], ["sixth_paper"]):  # another model's run, or the new one's own
        assert chk.check(None, reference, only=only) == 1
        out = capsys.readouterr().out
        (line,) = [ln for ln in out.splitlines() if ln.startswith("  FAIL") and "sixth_paper/" in ln]
        assert "sixth_paper/tiny" in line and "no smoke reference value on any CPU kind" in line
        assert f"`{command} --reference {reference}`" in line and f"commit {reference}" in line
    # run on the default reference, the command is exactly the one to type; --data names the data the check used
    assert chk._missing("p/m", None, REFERENCE).endswith(
        "`fer-bench check --update --only p/m --data ../shared/datasets/fer2013` and commit results/reference/smoke.json")
    assert chk.measure_command("p/m", "/data/fer2013.csv") == "fer-bench check --update --only p/m --data /data/fer2013.csv"
    # the command it names does what it says: measured and recorded, the same check then passes
    assert chk.check(None, reference, update=True, only=["sixth_paper/tiny"]) == 0
    assert chk.check(None, reference, only=["sixth_paper/tiny"]) == 0
    assert json.loads(reference.read_text())["params"]["sixth_paper/tiny"] == sixth_paper.num_params("tiny")


def test_update_only_keeps_the_other_entries_code_version(monkeypatch, tmp_path):
    """`--update --only X` records the code version that measured X, beside X's value; every other value keeps its
    own record (and its parameter count), on this CPU kind and on the others. A reference written before records
    were kept per model (one ``software`` per kind) still loads, each value getting its kind's record."""
    import fer_bench.check as chk

    monkeypatch.setattr(chk, "cpu_kind", lambda: "AVX2")
    ref = json.loads((ROOT / REFERENCE).read_text())
    keys = _registered()
    far = {"PrivateTest": {"accuracy": 0.10, "loss": 9.0}, "PublicTest": {"accuracy": 0.10, "loss": 9.0}}
    old = {"python": "3.11.7", "torch": "2.14.1", "lightning": "2.6.6", "fer_bench": "0.1.0", "git_sha": "old"}
    ref["smoke"] = {"AVX2": {"software": old, "values": {k: far for k in keys}},
                    "AVX512": {"software": {**old, "git_sha": "other"}, "values": {k: far for k in keys}}}
    a, b, c = "miao_presnet_vgg/presnet", "miao_presnet_vgg/presnet_vgg", "rodrigues_cnn/cnn8"
    ref["params"][c] += 1  # a model whose network changed since its values were measured
    reference = tmp_path / "smoke.json"
    reference.write_text(json.dumps(ref))

    loaded = smoke_values(ref)  # the kind-level record of an older reference, per value
    assert all(loaded[kind]["measured_with"][k]["git_sha"] == sha for kind, sha in (("AVX2", "old"), ("AVX512", "other"))
               for k in keys)

    _fake_smoke(monkeypatch, git_sha="new")
    assert chk.check(None, reference, update=True, only=[a]) == 1  # c's count differs from its values' network
    _fake_smoke(monkeypatch, git_sha="newer")
    assert chk.check(None, reference, update=True, only=[b]) == 1
    written = json.loads(reference.read_text())
    kinds = smoke_values(written)
    sha = {k: v["git_sha"] for k, v in kinds["AVX2"]["measured_with"].items()}
    assert sha[a] == "new" and sha[b] == "newer"  # each measured value with the code that measured it
    assert {sha[k] for k in keys if k not in (a, b)} == {"old"}  # the others untouched
    assert kinds["AVX2"]["values"][a]["PrivateTest"]["accuracy"] == 0.25 and kinds["AVX2"]["values"][c] == far
    assert written["smoke"]["AVX512"] == ref["smoke"]["AVX512"]  # another CPU kind: exactly as it was
    assert written["params"][c] == ref["params"][c]  # kept: the count of the network c's values were measured with
    assert written["params"][a] == get_paper("miao_presnet_vgg").num_params("presnet")
    # once every value of a kind has its own record, the kind-level one goes
    assert "software" in written["smoke"]["AVX2"]
    entry = chk._updated(written["smoke"]["AVX2"], {k: far for k in keys}, {k: old for k in keys})
    assert set(entry) == {"values", "measured_with"}
    # the oldest layout (values keyed by model, one software record) loads as the AVX2 machine's
    legacy = smoke_values({"software": old, "smoke": {a: far}})
    assert legacy == {"AVX2": {"values": {a: far}, "measured_with": {a: old}}}


def test_default_precision_follows_the_hardware(monkeypatch):
    import torch

    from fer_bench.runner import default_precision

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    assert default_precision("cpu") == "bf16-mixed"  # a Xeon with AVX512-BF16
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert default_precision("cpu") == "32-true"  # AVX2 only: bf16 would be emulated, about 10x slower
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # counts emulation
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (7, 5))  # T4
    assert default_precision("gpu") == "16-mixed"
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (9, 0))  # H100/H200
    assert default_precision("gpu") == "bf16-mixed"


def test_check_runs_the_reference_precision_on_a_bf16_cpu(monkeypatch, tmp_path):
    """On a CPU with native bf16 a plain run would default to bf16-mixed; check still compares like with like."""
    import torch

    import fer_bench.runner as runner
    from fer_bench.check import PRECISION, check

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    seen = []

    def fake_run(pid, model, precision=None, out=None, **kw):
        seen.append(precision)
        path = Path(out) / f"{len(seen)}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"status": "completed", "splits": {"PrivateTest": split_of(0.25),
                                                                      "PublicTest": split_of(0.25)},
                                    "timing": {"train_s": 1, "eval_s": 1}}))
        return [path]

    monkeypatch.setattr(runner, "run", fake_run)
    ref = json.loads((ROOT / REFERENCE).read_text())
    assert ref.get("precision", PRECISION) == "32-true"
    reference = tmp_path / "smoke.json"
    reference.write_text(json.dumps({**ref, "precision": "32-true"}))
    check(None, reference, only=["miao_presnet_vgg/presnet"])
    assert seen == ["32-true", "32-true"]  # the smoke run and its repetition


# ---------------------------------------------------------------- the learning check

def test_one_sided_test_on_hand_made_numbers():
    """m 0.40, s 0.01 from n = 5 seeds, k = 3 fresh seeds: t(0.99, 4) = 3.7469 (tables), so the lowest passing mean is
    0.40 - 3.7469 * 0.01 * sqrt(1/3 + 1/5) = 0.37264."""
    from fer_bench.check import learning_fails, learning_threshold

    assert learning_threshold(0.40, 0.01, 5, 3) == pytest.approx(0.40 - 3.7469 * 0.01 * (1 / 3 + 1 / 5) ** 0.5,
                                                                 abs=1e-5)
    assert learning_threshold(0.40, 0.01, 5, 3) == pytest.approx(0.37264, abs=1e-5)
    assert not learning_fails([0.38, 0.37, 0.37], 0.40, 0.01, 5)  # mean 0.3733: above the bound
    assert learning_fails([0.37, 0.37, 0.37], 0.40, 0.01, 5)  # mean 0.3700: below
    assert learning_fails([0.2449] * 3, 0.40, 0.01, 5)  # a model at chance
    # one fresh seed: t(0.99, 4) * 0.01 * sqrt(1 + 1/5) = 0.04105 below m
    assert learning_threshold(0.40, 0.01, 5, 1) == pytest.approx(0.40 - 0.04105, abs=1e-5)
    assert not learning_fails([0.36], 0.40, 0.01, 5) and learning_fails([0.358], 0.40, 0.01, 5)
    with pytest.raises(Exception, match=">= 3 reference seeds"):
        learning_threshold(0.40, 0.01, 2, 3)


def test_detectable_drop_is_the_tests_power_and_its_false_alarms_are_one_percent():
    """detectable_drop is the drop caught with 90% probability: with very many reference seeds it is
    (z(0.99) + z(0.90)) sd sqrt(1/k) = (2.3263 + 1.2816) sd / sqrt(k); and simulated reference and fresh seeds
    (normal, sd 1) fail the test in 1% of draws with no drop and in 90% with that drop."""
    import numpy as np

    from fer_bench.check import detectable_drop, learning_threshold

    assert detectable_drop(1.0, 10**7, 4) == pytest.approx((2.3263 + 1.2816) / 2, abs=1e-3)
    assert detectable_drop(0.02, 5, 3) == pytest.approx(2 * detectable_drop(0.01, 5, 3))  # in units of the sd
    rng = np.random.default_rng(0)
    for n, k in ((5, 3), (10, 2)):
        draws = 200_000
        ref = rng.standard_normal((draws, n))
        m, s = ref.mean(1), ref.std(1, ddof=1)
        bound = learning_threshold(m, s, n, k)  # numpy arrays: one threshold per draw
        fresh = rng.standard_normal((draws, k)).mean(1)
        assert (fresh < bound).mean() == pytest.approx(0.01, abs=0.002)
        d = detectable_drop(1.0, n, k)
        assert (fresh - d < bound).mean() == pytest.approx(0.90, abs=0.005)


def test_false_alarms_with_two_kinds_pooled():
    """Seeds 0-4 on two CPU kinds pooled (10 values, n = 5 distinct seeds), k = 3: simulated false alarms are 0.13%
    when a seed's values on the two kinds are uncorrelated and 1.2% when they are perfectly correlated (the docs'
    figures)."""
    import numpy as np

    from fer_bench.check import learning_threshold

    rng = np.random.default_rng(1)
    draws, n, k = 400_000, 5, 3
    for rho, rate in ((0.0, 0.0013), (1.0, 0.0122)):
        shared = rng.standard_normal((draws, n))
        kinds = [rho ** 0.5 * shared + (1 - rho) ** 0.5 * rng.standard_normal((draws, n)) for _ in range(2)]
        values = np.concatenate(kinds, 1)
        bound = learning_threshold(values.mean(1), values.std(1, ddof=1), n, k)
        assert (rng.standard_normal((draws, k)).mean(1) < bound).mean() == pytest.approx(rate, abs=0.0006)


def test_reference_pools_kinds_counts_seeds_once_and_fresh_seeds_are_new():
    from fer_bench.check import fresh_seeds, learning_reference

    kinds = {"AVX512": {"seeds": {"0": 0.40, "1": 0.42, "2": 0.44}},
             "AVX2": {"seeds": {"0": 0.41, "1": 0.43, "2": 0.45, "4": 0.42}}}
    m, s, n = learning_reference(kinds)
    values = [0.40, 0.42, 0.44, 0.41, 0.43, 0.45, 0.42]
    assert m == pytest.approx(sum(values) / 7) and n == 4  # seeds 0, 1, 2, 4: each once
    assert s == pytest.approx(float(__import__("numpy").std(values, ddof=1)))
    assert fresh_seeds(kinds, 3) == [3, 5, 6]
    with pytest.raises(Exception, match="at least 3"):
        learning_reference({"AVX2": {"seeds": {"0": 0.4, "1": 0.41}}, "AVX512": {"seeds": {"0": 0.4}}})


def _fake_learning(monkeypatch, accuracies: dict, kind="AVX512"):
    """check's learning runs replaced: seed -> PrivateTest accuracy, no training; returns the seeds trained."""
    import fer_bench.check as chk

    trained = []

    def run(data, seed, out):
        trained.append(seed)
        return {"accuracy": accuracies[seed], "train_s": 150.0, "eval_s": 20.0, "chance": 0.2449,
                "software": {"git_sha": "x"}}

    monkeypatch.setattr(chk, "_learning_run", run)
    monkeypatch.setattr(chk, "cpu_kind", lambda: kind)
    return trained


MEASURED = {0: 0.41, 1: 0.43, 2: 0.40, 3: 0.42, 4: 0.415}  # m 0.415, s 0.01118, n 5


def test_learning_check_on_a_kind_with_a_value_requires_exactly_that_value(monkeypatch, tmp_path, capsys):
    """The run is deterministic on one CPU kind: its lowest seed must give the committed value to the last bit. A
    different value fails, even a better one; the fresh seeds then say whether the change still learns."""
    import fer_bench.check as chk

    reference = tmp_path / "learning.json"
    _fake_learning(monkeypatch, MEASURED)
    assert chk.learning(None, reference, update=True) == 0
    trained = _fake_learning(monkeypatch, {0: 0.41})
    assert chk.learning(None, reference) == 0 and trained == [0]  # one run, as the old gate
    assert "ok   seed 0: PrivateTest acc 0.41, exactly the committed value for CPU kind AVX512" in capsys.readouterr().out
    trained = _fake_learning(monkeypatch, {0: 0.41 + 1e-9, 5: 0.41, 6: 0.42, 7: 0.40})
    assert chk.learning(None, reference) == 1 and trained == [0, 5, 6, 7]
    out = capsys.readouterr().out
    assert "FAIL seed 0: PrivateTest acc 0.410000001, committed for CPU kind AVX512 0.41" in out
    assert "ok   fresh seeds 5, 6, 7 on CPU kind AVX512" in out  # it changed, and still learns
    trained = _fake_learning(monkeypatch, {0: 0.2449, 5: 0.2449, 6: 0.2449, 7: 0.2449})
    assert chk.learning(None, reference) == 2 and trained == [0, 5, 6, 7]  # changed, and stopped learning
    assert "FAIL fresh seeds 5, 6, 7" in capsys.readouterr().out


def test_learning_check_on_another_kind_tests_fresh_seeds_one_sided(monkeypatch, tmp_path, capsys):
    """A kind with no value: seeds the reference has never seen, their mean against m - t(0.99, 4) s sqrt(1/3 + 1/5)
    = 0.415 - 3.7469 * 0.011180 * 0.73030 = 0.38441."""
    import fer_bench.check as chk

    reference = tmp_path / "learning.json"
    _fake_learning(monkeypatch, MEASURED)
    chk.learning(None, reference, update=True)
    m, s, n = chk.learning_reference(json.loads(reference.read_text())["kinds"])
    assert chk.learning_threshold(m, s, n) == pytest.approx(0.38441, abs=1e-5)
    trained = _fake_learning(monkeypatch, {5: 0.39, 6: 0.38, 7: 0.385}, kind="AVX512+BF16")  # mean 0.3850
    assert chk.learning(None, reference) == 0 and trained == [5, 6, 7]
    assert "ok   fresh seeds 5, 6, 7 on CPU kind AVX512+BF16" in capsys.readouterr().out
    _fake_learning(monkeypatch, {5: 0.39, 6: 0.38, 7: 0.383}, kind="AVX512+BF16")  # mean 0.3843
    assert chk.learning(None, reference) == 1
    assert "FAIL fresh seeds 5, 6, 7 on CPU kind AVX512+BF16" in capsys.readouterr().out


def test_learning_update_keeps_other_seeds_and_kinds(monkeypatch, tmp_path):
    import fer_bench.check as chk

    reference = tmp_path / "learning.json"
    trained = _fake_learning(monkeypatch, MEASURED)
    assert chk.learning(None, reference, update=True) == 0 and trained == [0, 1, 2, 3, 4]
    ref = json.loads(reference.read_text())
    assert ref["kinds"]["AVX512"]["seeds"] == {str(s): a for s, a in MEASURED.items()}
    assert ref["overrides"] == list(chk.LEARNING_RUN[2]) and ref["precision"] == "32-true"
    _fake_learning(monkeypatch, {5: 0.425, 1: 0.44})  # more seeds join this kind's; a seed measured again replaces
    assert chk.learning(None, reference, update=True, seeds=[5, 1]) == 0
    mine = json.loads(reference.read_text())["kinds"]["AVX512"]
    assert mine["seeds"] == {"0": 0.41, "1": 0.44, "2": 0.40, "3": 0.42, "4": 0.415, "5": 0.425}
    assert set(mine["measured_with"]) == set(mine["train_s"]) == set(mine["seeds"])
    # another CPU kind's seeds are added beside; this kind's stay
    _fake_learning(monkeypatch, {0: 0.44, 1: 0.42, 2: 0.43}, kind="AVX2")
    assert chk.learning(None, reference, update=True, seeds=[0, 1, 2]) == 0
    kinds = json.loads(reference.read_text())["kinds"]
    assert set(kinds) == {"AVX512", "AVX2"} and kinds["AVX512"]["seeds"]["4"] == 0.415
    assert chk.fresh_seeds(kinds) == [6, 7, 8]


def test_learning_check_refuses_a_reference_of_another_run_or_one_that_reaches_chance(monkeypatch, tmp_path, capsys):
    import fer_bench.check as chk

    reference = tmp_path / "learning.json"
    _fake_learning(monkeypatch, {0: 0.30, 1: 0.45, 2: 0.26})  # too noisy to tell a learner from chance
    chk.learning(None, reference, update=True, seeds=[0, 1, 2])
    trained = _fake_learning(monkeypatch, {0: 0.30})
    assert chk.learning(None, reference) == 1 and trained == []
    assert "down to chance (0.2449) or below" in capsys.readouterr().out
    ref = json.loads(reference.read_text())
    reference.write_text(json.dumps({**ref, "overrides": ["epochs=1"]}))  # measured for another learning run
    assert chk.learning(None, reference) == 1 and trained == []
    assert "`fer-bench check --learning --update --data ../shared/datasets/fer2013`" in capsys.readouterr().out


def test_only_the_whole_check_runs_the_learning_check(monkeypatch, tmp_path):
    import fer_bench.check as chk

    calls = []
    monkeypatch.setattr(chk, "learning", lambda *a, **k: calls.append(a) or 0)
    monkeypatch.setattr(chk, "cpu_kind", lambda: "AVX2")
    _fake_smoke(monkeypatch)
    reference = tmp_path / "smoke.json"
    reference.write_text((ROOT / REFERENCE).read_text())
    chk.check(None, reference, only=["miao_presnet_vgg/presnet"])
    assert calls == []
    chk.check(None, reference)
    assert len(calls) == 1


def test_committed_learning_reference_and_the_gate_the_docs_state():
    """The committed reference has this run's values on the AVX2 EPYC and on the AVX-512 Xeon, catches a model at
    chance, and the README and fer_bench.check state its power as detectable_drop computes it."""
    from fer_bench import check as chk

    ref = json.loads((ROOT / chk.LEARNING_REFERENCE).read_text())
    pid, model, overrides = chk.LEARNING_RUN
    assert (ref["run"], ref["overrides"], ref["precision"]) == (f"{pid}/{model}", list(overrides), "32-true")
    assert {"AVX2", "AVX512"} <= set(ref["kinds"])
    m, s, n = chk.learning_reference(ref["kinds"])
    drop = chk.detectable_drop(s, n)
    assert m - drop > max(k["chance"] for k in ref["kinds"].values()) + 0.03
    # a few minutes of CI: each kind's fastest run (the AVX2 seeds 0-2 trained on 2 cores shared with a training
    # campaign, 377-942 s; seeds 3-4, unshared, 146-152 s)
    assert all(min(k["train_s"].values()) < 300 for k in ref["kinds"].values())
    stated = f"{drop * 100:.2f} points"
    assert stated in (ROOT / "README.md").read_text() and stated in (ROOT / "fer_bench/check.py").read_text()
    assert f"s = {s:.4f}" in (ROOT / "fer_bench/check.py").read_text()


def test_check_learning_cli_refuses_only_and_too_few_seeds(capsys):
    from fer_bench.cli import main

    assert main(["check", "--learning", "--only", "miao_presnet_vgg"]) == 2
    assert "drop --only" in capsys.readouterr().err
    assert main(["check", "--learning", "--update", "--seeds", "0,1"]) == 2
    assert "at least 3 seeds" in capsys.readouterr().err


def test_check_fails_a_smoke_run_whose_metrics_disagree_with_themselves(monkeypatch, tmp_path, capsys):
    """Every smoke run must have tested every image of each test split once, with accuracies that are those of its
    confusion matrix (what the per-paper real-data smoke tests asserted, now for every model)."""
    import fer_bench.check as chk

    good = {"status": "completed", "splits": {"PrivateTest": split_of(0.25), "PublicTest": split_of(0.25)}}
    assert chk.consistency(good, {"PrivateTest": 100, "PublicTest": 100}) == []
    assert chk.consistency(good, {"PrivateTest": 3589, "PublicTest": 100}) == [
        "PrivateTest: 100 images in a (7, 7) matrix, n 100, the split has 3589"]
    wrong = json.loads(json.dumps(good))
    wrong["splits"]["PublicTest"]["accuracy"] = 0.3
    assert chk.consistency(wrong, {"PrivateTest": 100, "PublicTest": 100}) == [
        "PublicTest: accuracies differ from the confusion matrix's"]
    assert chk.consistency({**good, "status": "interrupted"}, {})[0] == "status interrupted"
    monkeypatch.setattr(chk, "cpu_kind", lambda: "AVX2")
    monkeypatch.setattr(chk, "_smoke", lambda *a, **k: json.loads(json.dumps(wrong)) | {"timing": {"train_s": 1,
                                                                                                    "eval_s": 1}})
    reference = tmp_path / "smoke.json"
    reference.write_text((ROOT / REFERENCE).read_text())
    assert chk.check(None, reference, only=["miao_presnet_vgg/presnet"]) == 1
    assert "accuracies differ from the confusion matrix's" in capsys.readouterr().out
