"""Atomic file writes, for every layer (spec/ is the lowest one, so backends/ and harness/ can use it).

A reader sees the old file or the new one, never half of one: the data goes into a temporary
file in the same folder (same filesystem, so the rename is atomic), is fsynced, then
``os.replace``-d over the target. On any error the temporary file is removed.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator


@contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path`` for someone else to write (an exporter, a library);
    on success it is fsynced and renamed over ``path``. ``suffix``: for writers that go by it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)  # gone already after a successful replace


@contextmanager
def atomic_stream(path: str | Path) -> Iterator[BinaryIO]:
    """Yield a binary file to write ``path``'s new content into, chunk by chunk."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Replace ``path`` with ``data`` (text is written as UTF-8)."""
    with atomic_stream(path) as out:
        out.write(data.encode("utf-8") if isinstance(data, str) else data)
