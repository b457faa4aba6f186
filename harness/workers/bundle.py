"""The code a worker in another Python environment runs (``compare --python``): alexbench's package
tree and PyYAML's pure-Python package, copied once per run into a folder that goes first on the
worker's PYTHONPATH. That environment then needs only NumPy and the backend's framework; it need
not (and should not have to) install alexbench.

Only source files and the package data a worker reads are copied, never compiled extensions:
PyYAML without its C extension falls back to its pure-Python loader, so the copy runs on any
Python >= 3.10, whatever Python this one is.
"""

from __future__ import annotations

import importlib
import importlib.util
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

# alexbench's installed packages with a folder of their own (pyproject's package-dir: an editable
# install keeps each in its repository folder), and what of them a worker may read.
PACKAGES = ("alexbench", "alexbench.spec", "alexbench.backends", "alexbench.harness")
PACKAGE_FILES = ("*.py", "*.yaml", "*.json")


def write_worker_code(dest: Path) -> Path:
    """Copy the worker's code into ``dest`` (made if absent); return it, the folder for PYTHONPATH."""
    for package in PACKAGES:
        source = Path(importlib.import_module(package).__path__[0])
        shutil.copytree(source, dest.joinpath(*package.split(".")), ignore=_keep(PACKAGE_FILES), dirs_exist_ok=True)
    yaml = importlib.util.find_spec("yaml")
    shutil.copytree(yaml.submodule_search_locations[0], dest / "yaml", ignore=_keep(("*.py",)), dirs_exist_ok=True)
    return dest


@contextmanager
def worker_code(needed: bool) -> Iterator[Path | None]:
    """The worker's code in a temporary folder for the length of a run (not in the run's folder: a
    ``--save`` folder holds the run's files and nothing else); None when no worker runs in another
    environment (``needed`` false)."""
    if not needed:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="alexbench-code-") as tmp:
        yield write_worker_code(Path(tmp))


def _keep(patterns: tuple[str, ...]):
    """A copytree ``ignore``: every file matching none of ``patterns``, and caches."""
    def ignore(folder: str, names: list[str]) -> set[str]:
        here = Path(folder)
        return {n for n in names if n == "__pycache__" or (
            not (here / n).is_dir() and not any(Path(n).match(p) for p in patterns))}
    return ignore
