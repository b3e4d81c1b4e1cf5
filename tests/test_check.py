"""`fer-bench check`: registry validation, reference comparison with tolerances, the committed reference."""

import json
from pathlib import Path

from fer_bench.check import REFERENCE, TOLERANCE, compare, validate_papers
from fer_bench.registry import get_paper, list_papers

ROOT = Path(__file__).resolve().parents[1]


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
    assert ref["smoke"], "no smoke reference values"
    for key, splits in ref["smoke"].items():
        assert set(splits) == {"PrivateTest", "PublicTest"}, key
