"""Output paths, checked before any work starts: a bad one exits 2 with one line naming the option
the user typed, instead of a traceback after minutes of running.

``-`` (or a path that is this process's standard output) means standard output for results
files; the command then prints its table on standard error, so standard output is pure JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Sequence

from .errors import UsageError

STDOUT = "-"


def _typed(option: str | Sequence[str]) -> str:
    """The spelling of ``option`` the user typed (``-o`` or ``--output``), read off the command line."""
    spellings = [option] if isinstance(option, str) else list(option)
    for arg in sys.argv[1:]:
        for spelling in spellings:
            if arg == spelling or arg.startswith(spelling + "=") or (
                    len(spelling) == 2 and arg.startswith(spelling) and not arg.startswith("--")):
                return spelling
    return spellings[0]


def is_stdout(path: str | os.PathLike | None) -> bool:
    """``-``, or a path that names this process's standard output (``/dev/stdout``, or the file the
    shell redirected it to)."""
    if path is None:
        return False
    if str(path) == STDOUT:
        return True
    try:
        st, own = os.stat(path), os.fstat(1)
    except (OSError, ValueError):
        return False
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


def _missing_parts(path: Path, option: str, shown: str, valid: str) -> Path:
    """The nearest existing ancestor of ``path``; refuse one that is not a folder or not writable."""
    ancestor = path
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UsageError(f"{option} {shown}: {ancestor} is a file, not a folder; expected {valid}")
    return ancestor


def _writable(folder: Path, option: str, shown: str, valid: str) -> None:
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {shown}: folder {folder} is not writable; expected {valid}")


def check_file(option: str | Sequence[str], path: str | None, *, what: str, stdout_ok: bool = True) -> None:
    """A file to write (``--json``, ``weights -o``): not a folder, in an existing writable folder;
    ``-`` is standard output where ``stdout_ok``. ``what``: what goes into it, for the message."""
    if path is None or (stdout_ok and is_stdout(path)):
        return
    option = _typed(option)
    valid = f"a file path for {what} in an existing folder" + (", or - for standard output" if stdout_ok else "")
    if path == "" or path.endswith(("/", os.sep)) or os.path.isdir(path):
        raise UsageError(f"{option} {path}: is a folder; expected {valid}")
    p = Path(path)
    parent = p.parent
    if not parent.exists():
        _missing_parts(parent, option, path, valid)  # an ancestor that is a file says so
        raise UsageError(f"{option} {path}: folder {parent} does not exist; expected {valid} "
                         f"(create the folder first)")
    if not parent.is_dir():
        raise UsageError(f"{option} {path}: {parent} is a file, not a folder; expected {valid}")
    if p.is_symlink():  # the link's target is what gets written, in its own folder
        parent = Path(os.path.realpath(p)).parent
    if not (p.exists() and not p.is_file()):  # a device or a pipe is written in place
        _writable(parent, option, path, valid)


def check_folder(option: str | Sequence[str], path: str | None, *, what: str) -> None:
    """A folder to write into, made if missing (``--report``, ``report -o``)."""
    if path is None:
        return
    option = _typed(option)
    valid = f"a folder to write {what} into"
    p = Path(path)
    if p.exists() and not p.is_dir():
        kind = " (it is a file)" if p.is_file() else ""
        raise UsageError(f"{option} {path}: exists and is not a folder{kind}; expected {valid}")
    _writable(_missing_parts(p, option, path, valid), option, path, valid)


def check_save_folder(option: str | Sequence[str], path: str | None) -> list[Path]:
    """``compare --save DIR``: DIR new, empty, or an earlier run's folder (it has the manifest.json
    that run wrote). Returns what that earlier run wrote there (to remove before this run writes,
    so no stale backend folder outlives it); refuses a folder holding anything else."""
    if path is None:
        return []
    option = _typed(option)
    valid = "a new or empty folder, or the folder of an earlier --save run"
    check_folder(option, path, what="the run's files")
    p = Path(path)
    if not p.is_dir():
        return []
    entries = sorted(e.name for e in p.iterdir())
    if not entries:
        return []
    manifest = p / "manifest.json"
    if not manifest.is_file():
        shown = ", ".join(entries[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")
        raise UsageError(f"{option} {path}: holds {shown}, but is not an alexbench run folder (no manifest.json); "
                         f"expected {valid}")
    try:
        listed = json.loads(manifest.read_text("utf-8"))
        names = {listed[key] for key in ("spec", "weights", "input") if isinstance(listed.get(key), str)}
        for files in (listed.get("backends") or {}).values():
            names.update([files["output"], *files.get("layers", {}).values()])
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise UsageError(f"{option} {path}: its manifest.json is not one an alexbench run wrote ({exc}); "
                         f"expected {valid}") from None
    # Each listed path's top entry (a backend's files live in its own folder); never outside DIR.
    tops = {Path(name).parts[0] for name in names if name and not os.path.isabs(name)}
    # A backend that failed has no outputs in the manifest, but its folder holds the job file
    # every worker's folder has: it is that run's too.
    tops.update(e.name for e in p.iterdir() if e.is_dir() and not e.is_symlink() and (e / "job.json").is_file())
    return [p / top for top in sorted(tops) if top not in ("..", ".")] + [manifest]


def remove_previous_run(paths: Sequence[Path]) -> None:
    """Remove what ``check_save_folder`` found of an earlier run (links are removed, not followed)."""
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def write_text(path: str, text: str) -> None:
    """``text`` to standard output for ``-``, otherwise atomically into ``path``."""
    if is_stdout(path):
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    from ..spec.files import atomic_write

    atomic_write(path, text)


def write_results_file(doc: dict, path: str) -> None:
    """Validate ``doc`` and write it to ``path`` (``-``: standard output)."""
    from .results.document import results_json, validate_results

    validate_results(doc)
    write_text(path, results_json(doc))


def table_stream(results_path: str | None):
    """Where a command prints its table: standard error when the results go to standard output."""
    return sys.stderr if is_stdout(results_path) else sys.stdout
