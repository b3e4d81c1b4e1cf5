"""The papers, one module each. Importing this package imports every module in it, and each registers its Paper
(fer_bench.registry.register): discovery lives here, above the library, so a new paper is one new module."""

import importlib
import importlib.util
import os
import pkgutil
import sys
from pathlib import Path

from fer_bench.errors import UserError
from fer_bench.registry import get_paper, list_papers

for _info in pkgutil.iter_modules(__path__):
    if not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")


def load_file(path) -> None:
    """Import a paper module kept outside this package (it registers its Paper), once per file."""
    path = Path(path).resolve()
    name = f"{__name__}._extra_{path.stem}"
    if name in sys.modules:
        return
    if path.suffix != ".py" or not path.is_file():
        raise UserError(f"FER_BENCH_PAPERS names {path}, which is not a Python file: give paper modules "
                        f"(path/a.py{os.pathsep}path/b.py), or unset it.")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise


# paper modules outside papers/ (not yet committed, or private): $FER_BENCH_PAPERS, os.pathsep-separated files
for _path in filter(None, os.environ.get("FER_BENCH_PAPERS", "").split(os.pathsep)):
    load_file(_path)

__all__ = ["get_paper", "list_papers", "load_file"]
