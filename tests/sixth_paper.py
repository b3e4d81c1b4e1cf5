"""The README's paper template as a module: the tests' temporary sixth paper (conftest's --sixth-paper option,
tests/test_sixth_paper.py). Nothing here is a test."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAPER_ID, MODEL = "doe_tiny_cnn", "tiny_cnn"


def template_source() -> str:
    """The Python block between README's template markers."""
    text = (ROOT / "README.md").read_text()
    (block,) = re.findall(r"<!-- template:start -->\n```python\n(.*?)```\n<!-- template:end -->", text, re.S)
    return block


def write_module(folder: Path) -> Path:
    """The template written as ``folder/doe_tiny_cnn.py``, for $FER_BENCH_PAPERS."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{PAPER_ID}.py"
    path.write_text(template_source())
    return path
