"""Atomic file writes, for every layer (spec/ is the lowest one, so backends/ and harness/ can use it).

A reader sees the old file or the new one, never half of one: the data goes into a temporary
file in the same folder (same filesystem, so the rename is atomic), is fsynced, then
``os.replace``-d over the target. On any error the temporary file is removed.

Only a regular file is ever replaced. A symbolic link stays a link: its target is written
(atomically, when the target is a regular file or does not exist yet). A character device, FIFO
or socket (``/dev/stdout``, a pipe) is written directly; so is a file that is this process's own
standard output or error (``--json /dev/stdout > out.json``), where replacing it would detach the
shell's redirection. A folder is an error (``IsADirectoryError``).

Modes: a new file gets ``0o666 & ~umask``, as ``open()`` would give it (``mkstemp`` makes 0600,
which a web server or a CI publish step cannot read); a replaced file keeps its mode and, where
permitted, its owner.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator


def _umask() -> int:
    """The process umask, without changing it where /proc tells it (os.umask can only read by setting)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _std_fd(st: os.stat_result) -> int | None:
    """1 or 2 when ``st`` is this process's standard output or error, else None."""
    for fd in (1, 2):
        try:
            own = os.fstat(fd)
        except OSError:
            continue
        if (own.st_dev, own.st_ino) == (st.st_dev, st.st_ino):
            return fd
    return None


def _resolve(path: Path) -> tuple[Path, os.stat_result | None, bool]:
    """(the file to replace, its stat or None when new, whether to write ``path`` directly instead)."""
    try:
        st = os.stat(path)  # follows links
    except FileNotFoundError:
        st = None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, "is a folder, not a file", str(path))
    if st is not None and (not stat.S_ISREG(st.st_mode) or _std_fd(st) is not None):
        return path, st, True
    if not path.is_symlink():
        return path, st, False
    target = Path(os.path.realpath(path))  # a dangling link: create its target
    if st is not None:
        try:
            same = os.path.samefile(target, path)
        except OSError:
            same = False
        if not same:  # a link that does not resolve to a path (/proc's fd links): never guess
            return path, st, True
    return target, st, False


def _new_mode(tmp: str, old: os.stat_result | None) -> None:
    if old is None:
        os.chmod(tmp, 0o666 & ~_umask())
        return
    os.chmod(tmp, stat.S_IMODE(old.st_mode))
    if hasattr(os, "geteuid") and (old.st_uid, old.st_gid) != (os.geteuid(), os.getegid()):
        try:
            os.chown(tmp, old.st_uid, old.st_gid)
        except OSError:  # only root may give a file away; the mode is kept anyway
            pass


@contextmanager
def _direct(path: Path) -> Iterator[BinaryIO]:
    for stream in (sys.stdout, sys.stderr):  # keep what was printed before in order
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    # Our own standard output or error: through its descriptor, so the shell's file offset moves on
    # with what is written (opening the path anew would start at 0, or overwrite with O_APPEND).
    std = _std_fd(os.stat(path))  # also a socket, which cannot be opened by its /proc path
    fd = os.dup(std) if std is not None else os.open(path, os.O_WRONLY | os.O_TRUNC)  # no-op on a device
    with os.fdopen(fd, "wb") as out:
        yield out


@contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path`` for someone else to write (an exporter, a library);
    on success it is fsynced and renamed over ``path``. ``suffix``: for writers that go by it."""
    target, old, direct = _resolve(Path(path))
    if direct:  # the writer needs a real file: one in the temp folder, then copied into the stream
        fd, tmp = tempfile.mkstemp(prefix=".alexbench.", suffix=suffix)
        os.close(fd)
        try:
            yield Path(tmp)
            with open(tmp, "rb") as src, _direct(target) as out:
                shutil.copyfileobj(src, out)
        finally:
            Path(tmp).unlink(missing_ok=True)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        _new_mode(tmp, old)  # after the writer: it may have made the file anew
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)  # gone already after a successful replace


@contextmanager
def atomic_stream(path: str | Path) -> Iterator[BinaryIO]:
    """Yield a binary file to write ``path``'s new content into, chunk by chunk."""
    target, old, direct = _resolve(Path(path))
    if direct:
        with _direct(target) as out:
            yield out
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            _new_mode(tmp, old)
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Replace ``path`` with ``data`` (text is written as UTF-8)."""
    with atomic_stream(path) as out:
        out.write(data.encode("utf-8") if isinstance(data, str) else data)
