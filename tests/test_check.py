"""`fer-bench check`: registry validation, reference comparison with tolerances, the committed reference."""

import json
from pathlib import Path

from fer_bench.check import REFERENCE, TOLERANCE, compare, smoke_values, validate_papers
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
    split = {"accuracy": 0.25, "loss": 2.0}
    measured = {"PrivateTest": split, "PublicTest": split}
    monkeypatch.setattr(chk, "_smoke", lambda *a, **k: {"splits": measured, "timing": {"train_s": 1, "eval_s": 1}})
    ref = json.loads((ROOT / REFERENCE).read_text())
    far = {"PrivateTest": {"accuracy": 0.10, "loss": 9.0}, "PublicTest": {"accuracy": 0.10, "loss": 9.0}}
    key = "miao_presnet_vgg/presnet"
    ref["smoke"] = {"AVX2": {"software": {}, "values": {key: far}}}
    reference = tmp_path / "smoke.json"
    reference.write_text(json.dumps(ref))
    assert chk.check(None, reference, only=[key]) == 0  # only another kind's value: noted, not failed
    assert "no reference for CPU kind AVX512" in capsys.readouterr().out
    ref["smoke"]["AVX512"] = {"software": {}, "values": {key: far}}
    reference.write_text(json.dumps(ref))
    assert chk.check(None, reference, only=[key]) == 1  # this kind's value, far off: a regression
    ref["smoke"] = {"AVX512": {"software": {}, "values": {}}}
    reference.write_text(json.dumps(ref))
    assert chk.check(None, reference, only=[key]) == 1  # no value anywhere: fails
    assert "no reference value on any CPU" in capsys.readouterr().out


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
        split = {"accuracy": 0.25, "loss": 2.0}
        path.write_text(json.dumps({"splits": {"PrivateTest": split, "PublicTest": split},
                                    "timing": {"train_s": 1, "eval_s": 1}}))
        return [path]

    monkeypatch.setattr(runner, "run", fake_run)
    ref = json.loads((ROOT / REFERENCE).read_text())
    assert ref.get("precision", PRECISION) == "32-true"
    reference = tmp_path / "smoke.json"
    reference.write_text(json.dumps({**ref, "precision": "32-true"}))
    check(None, reference, only=["miao_presnet_vgg/presnet"])
    assert seen == ["32-true", "32-true"]  # the smoke run and its repetition
