"""fer-bench: reproduce facial-expression-recognition papers with one Lightning runner."""

__version__ = "0.1.0"

from .errors import DataError, UserError  # noqa: E402
from .registry import Citation, Claim, Model, Paper, register  # noqa: E402

# the papers themselves: `from papers import get_paper, list_papers` (the papers package imports every paper module)
__all__ = ["Citation", "Claim", "DataError", "Model", "Paper", "UserError", "register"]


def __getattr__(name: str):
    """``fer_bench.get_paper`` / ``list_papers`` (older code): forwarded to the papers package, which loads them."""
    if name in ("get_paper", "list_papers"):
        import papers
        return getattr(papers, name)
    raise AttributeError(f"module 'fer_bench' has no attribute {name!r}")
