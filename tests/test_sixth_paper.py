"""A sixth paper, added the way README's "Adding a paper" says: its template, registered from outside papers/ with a
citation and no text, taken in by the registry-wide tests, `fer-bench list`, the report and the notebook without
any other file changing (issue 31)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import torch

import papers
from fer_bench import registry
from fer_bench.cli import main
from sixth_paper import MODEL, PAPER_ID, ROOT, template_source, write_module

# the tests that go over the whole registry (each takes in every registered paper by itself)
REGISTRY_WIDE = [
    "tests/test_audit.py::test_every_registered_paper_is_audited",
    "tests/test_audit_reviewer.py::test_registered_papers_reviewer_findings",
    "tests/test_augment.py::test_preprocess_is_bit_identical_to_the_code_before_stages",
    "tests/test_augment.py::test_every_stage_names_a_torchvision_equivalent_that_gives_the_same_shapes",
    "tests/test_registry.py::test_every_registered_paper_declares_its_own_keys",
    "tests/test_citation.py::test_every_registered_seed_text_exists",
    "tests/test_cli.py::test_list_json_has_papers_models_and_claims",
    "tests/test_report.py::test_report_without_runs",
    "tests/test_report.py::test_notebook_executes",
]


@pytest.fixture
def sixth(tmp_path):
    """README's template registered as a paper module outside papers/, and unregistered afterwards (unless the run
    registered it for every test: --sixth-paper)."""
    already = PAPER_ID in registry._REGISTRY
    papers.load_file(write_module(tmp_path / "extra"))
    yield papers.get_paper(PAPER_ID)
    if not already:
        registry._REGISTRY.pop(PAPER_ID, None)
        sys.modules.pop(f"papers._extra_{PAPER_ID}", None)


def test_the_readme_template_is_a_complete_paper_with_a_source_for_each_recipe_value(sixth, capsys):
    src = template_source()
    recipe = re.search(r"RECIPE = dict\((.*?)\n\)", src, re.S).group(1).strip().splitlines()
    assert recipe and all("#" in line for line in recipe)  # every recipe value says where it comes from
    assert len(src.splitlines()) <= 60  # the smallest complete module, not a 200-line example
    assert sixth.seed == "" and sixth.citation.url and sixth.source.startswith("A tiny CNN for FER-2013. ")
    assert len(sixth.claims) == 1 and len(sixth.interpretations) == 1 and list(sixth.models) == [MODEL]
    cfg = sixth.resolve(MODEL)
    assert (cfg["epochs"], cfg["batch_size"], cfg["optimizer"], cfg["lr"], cfg["aug_hflip"]) == (50, 64, "adam", 1e-3, True)
    net = sixth.build(MODEL).eval()
    assert net(torch.randn(2, 1, 48, 48)).shape == (2, 7)
    assert sixth.num_params(MODEL) == (9 * 16 + 16) + (16 * 9 * 32 + 32) + (32 * 7 + 7) == 5031  # by hand
    assert main(["list", "--json"]) == 0
    (listed,) = [p for p in json.loads(capsys.readouterr().out) if p["id"] == PAPER_ID]
    assert listed["citation"]["year"] == 2024 and listed["models"][0]["params"] == 5031


def test_the_report_takes_in_a_sixth_paper(sixth, tmp_path):
    from fer_bench import report

    rep = report.build(tmp_path)
    mine = rep.summary[rep.summary.paper == PAPER_ID]
    assert len(mine) == 1 and mine.verdict.iloc[0] == "not yet run"
    assert PAPER_ID in set(rep.findings.paper)  # the claim audit covers it too (61.2% = 2196/3589)
    text = report.write(rep, tmp_path / "out", figures=False)["report"].read_text()
    assert f"## {PAPER_ID}: A tiny CNN for FER-2013" in text
    section = text[text.index(f"## {PAPER_ID}:"):]
    assert "Source: " in section.splitlines()[2] and "2024" in section.splitlines()[2]  # its citation, not "None"
    assert "Source text: `None`" not in text


def test_the_template_trains_its_smoke_profile(sixth, tiny_folder, tmp_path):
    assert main(["run", "--paper", PAPER_ID, "--profile", "smoke", "--data", str(tiny_folder),
                 "--out", str(tmp_path)]) == 0
    (metrics,) = tmp_path.glob(f"runs/{PAPER_ID}/{MODEL}/*/metrics.json")
    m = json.loads(metrics.read_text())
    assert m["status"] == "completed" and m["config"]["aug_hflip"] is True and 0 <= m["splits"]["PrivateTest"]["accuracy"] <= 1


@pytest.mark.slow
def test_registry_wide_tests_take_in_a_sixth_paper():
    """The registry-wide tests, run with README's template as a sixth paper (conftest's --sixth-paper registers it
    through $FER_BENCH_PAPERS, so subprocesses and the notebook's kernel see it too), pass, and ran over it."""
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--sixth-paper", "-rA",
                        *REGISTRY_WIDE], cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert f"test_every_registered_paper_is_audited[{PAPER_ID}]" in r.stdout
    assert f"test_preprocess_is_bit_identical_to_the_code_before_stages[{PAPER_ID}/{MODEL}/paper]" in r.stdout
    summary = r.stdout.split("short test summary")[-1]
    skipped = [line for line in summary.splitlines() if line.startswith("SKIPPED")]
    # the one allowed skip: a checkout without shared/ beside it has no paper texts to look for
    assert " failed" not in summary and all("papers' texts are not beside" in line for line in skipped), skipped
