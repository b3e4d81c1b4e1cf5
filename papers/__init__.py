"""The papers, one module each. Importing this package imports every module in it, and each registers its Paper
(fer_bench.registry.register): discovery lives here, above the library, so a new paper is one new module."""

import importlib
import pkgutil

from fer_bench.registry import get_paper, list_papers

for _info in pkgutil.iter_modules(__path__):
    if not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["get_paper", "list_papers"]
