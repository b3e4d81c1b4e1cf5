"""fer-bench: reproduce facial-expression-recognition papers with one Lightning runner."""

__version__ = "0.1.0"

from .errors import DataError, UserError  # noqa: E402
from .registry import Claim, Model, Paper, get_paper, list_papers, register  # noqa: E402

__all__ = ["Claim", "DataError", "Model", "Paper", "UserError", "get_paper", "list_papers", "register"]
