"""A paper added from a PDF names its source with a Citation instead of a seed text, and both are checked."""

from pathlib import Path

import pytest
from torch import nn

from fer_bench import Citation
from fer_bench.registry import Model, Paper
from papers import get_paper, list_papers

SEEDS = Path(__file__).resolve().parents[2] / "shared" / "seeds"  # the papers' texts, beside the checkout
OK = dict(title="A tiny CNN", venue="Example Workshop", year=2024)


def paper(**kw):
    return Paper(id="cited", title="t", models={"a": Model(lambda cfg: nn.Linear(2, 7))}, recipe={}, claims=[],
                 interpretations={}, **kw)


def test_a_paper_with_a_citation_needs_no_seed_text():
    p = paper(citation=Citation(**OK, doi="10.1109/ACCESS.2024.1234567"))
    assert p.seed == "" and p.source == "A tiny CNN. Example Workshop, 2024. https://doi.org/10.1109/ACCESS.2024.1234567"
    assert p.to_json()["citation"] == {**OK, "doi": "10.1109/ACCESS.2024.1234567", "url": ""}
    assert paper(citation=Citation(**OK, url="https://example.org/tiny.pdf")).source.endswith("https://example.org/tiny.pdf")


@pytest.mark.parametrize("kw, why", [
    (dict(title=" "), "title and venue are required"),
    (dict(venue=""), "title and venue are required"),
    (dict(year="2024"), "year '2024' is not a year"),
    (dict(year=24), "year 24 is not a year"),
    (dict(year=3024), "year 3024 is not a year"),
    (dict(doi="", url=""), "give a doi or a url"),
    (dict(doi="https://doi.org/10.1/x"), "is not a DOI"),
    (dict(doi="10.12/x"), "is not a DOI"),
    (dict(url="www.example.org/x.pdf"), "is not an http(s) address"),
    (dict(url="https://exa mple.org"), "is not an http(s) address"),
])
def test_a_bad_citation_is_refused_naming_what_is_wrong(kw, why):
    with pytest.raises(ValueError, match=r"Citation .*" + __import__("re").escape(why)):
        Citation(**{**OK, "doi": "10.1000/xyz123", **kw})


def test_a_paper_names_a_seed_or_a_citation():
    with pytest.raises(ValueError, match="name the paper's source: seed=.* or citation=Citation"):
        paper()
    with pytest.raises(ValueError, match="citation must be a fer_bench.Citation"):
        paper(citation={"title": "x"})


def test_every_registered_seed_text_exists():
    if not SEEDS.is_dir():
        pytest.skip(f"the papers' texts are not beside this checkout ({SEEDS})")
    for pid in list_papers():
        p = get_paper(pid)
        assert p.seed or p.citation, pid
        if p.seed:
            assert (SEEDS / p.seed).is_file(), f"{pid}: seed {p.seed} is not in {SEEDS}"
