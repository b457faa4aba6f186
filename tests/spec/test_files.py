"""The one atomic-write helper replaces regular files only: a link stays a link, a device, FIFO or
socket is written in place (as root, ``--json /dev/stdout`` once replaced the system's /dev/stdout
link with a regular file), a folder is refused; new files follow the umask (mkstemp's 0600 could
not be served by a web server), replaced files keep their mode."""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest

from alexbench.spec.files import atomic_path, atomic_stream, atomic_write


def _via_stream(path, data: bytes) -> None:
    with atomic_stream(path) as out:
        out.write(data)


def _via_path(path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)


WRITERS = {"atomic_write": atomic_write, "atomic_stream": _via_stream, "atomic_path": _via_path}


@pytest.fixture(params=sorted(WRITERS))
def write(request):
    return WRITERS[request.param]


@contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def test_a_link_stays_a_link_and_its_target_gets_the_content(tmp_path, write):
    target = tmp_path / "real.json"
    target.write_bytes(b"old")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    write(link, b"new")
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.json", "real.json"]  # no temp file left


def test_a_dangling_link_creates_its_target(tmp_path, write):
    link = tmp_path / "link.json"
    link.symlink_to("real.json")  # relative, as `ln -s` users write them
    write(link, b"new")
    assert link.is_symlink() and (tmp_path / "real.json").read_bytes() == b"new"


def test_a_chain_of_links_through_a_linked_folder(tmp_path, write):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "real.json").write_bytes(b"old")
    (tmp_path / "alias").symlink_to(tmp_path / "data")
    (tmp_path / "first").symlink_to(tmp_path / "second")
    (tmp_path / "second").symlink_to(tmp_path / "alias" / "real.json")
    write(tmp_path / "first", b"new")
    assert (tmp_path / "first").is_symlink() and (tmp_path / "second").is_symlink()
    assert (tmp_path / "data" / "real.json").read_bytes() == b"new"


def test_a_fifo_is_written_not_replaced(tmp_path, write):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    try:
        write(fifo, b"through the pipe")
    finally:
        reader.join(10)
        if reader.is_alive():  # the write never came: open the write end without waiting, so its read ends
            with contextlib.suppress(OSError):  # OSError: no reader has it open any more
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            reader.join(10)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert got == [b"through the pipe"]


def test_a_link_to_a_character_device_stays_a_link(tmp_path, write):
    link = tmp_path / "null"
    link.symlink_to(os.devnull)
    write(link, b"discarded")
    assert link.is_symlink()
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)


def test_a_character_device_node_is_written_not_replaced(tmp_path, write):
    node = tmp_path / "null"
    try:  # a private /dev/null (major 1, minor 3), so a regression cannot damage the real one
        os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except (PermissionError, AttributeError):
        pytest.skip("making a device node needs root (CAP_MKNOD)")
    write(node, b"discarded")
    assert stat.S_ISCHR(os.lstat(node).st_mode)


def test_a_socket_is_never_replaced(tmp_path):
    path = tmp_path / "s"
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(path))
        with pytest.raises(OSError):  # a socket file cannot be opened for writing: an error, not a regular file
            atomic_write(path, b"x")
        assert stat.S_ISSOCK(os.lstat(path).st_mode)
    finally:
        server.close()


# /dev/stdout is a link to /proc/self/fd/1; the same link in tmp_path, so a regression replaces
# the test's link rather than the system's.
WRITE_TO_STDOUT_LINK = """
import os, sys
from alexbench.spec.files import atomic_write
os.symlink("/proc/self/fd/1", sys.argv[1])
print("before", flush=True)
atomic_write(sys.argv[1], "json\\n")
print("after", flush=True)
"""


@pytest.mark.parametrize("stdout_kind", ["pipe", "file"])
def test_standard_output_through_a_link_is_written_in_place(tmp_path, stdout_kind):
    link = tmp_path / "stdout"
    if stdout_kind == "pipe":
        done = subprocess.run([sys.executable, "-c", WRITE_TO_STDOUT_LINK, str(link)], capture_output=True,
                              text=True, timeout=60)
        out = done.stdout
    else:  # `--json /dev/stdout > out.txt`: the shell's file, not a fresh file that replaces it
        redirected = tmp_path / "out.txt"
        with open(redirected, "w") as f:
            done = subprocess.run([sys.executable, "-c", WRITE_TO_STDOUT_LINK, str(link)], stdout=f,
                                  stderr=subprocess.PIPE, text=True, timeout=60)
        out = redirected.read_text()
    assert done.returncode == 0, done.stderr
    assert link.is_symlink() and os.readlink(link) == "/proc/self/fd/1"
    assert out == "before\njson\nafter\n"


def test_a_folder_is_refused(tmp_path, write):
    folder = tmp_path / "results.json"
    folder.mkdir()
    (folder / "keep").write_text("x")
    with pytest.raises(IsADirectoryError):
        write(folder, b"x")
    assert folder.is_dir() and (folder / "keep").read_text() == "x"


def test_a_link_to_a_folder_is_refused(tmp_path, write):
    (tmp_path / "folder").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "folder")
    with pytest.raises(IsADirectoryError):
        write(tmp_path / "link", b"x")
    assert (tmp_path / "link").is_symlink() and not any((tmp_path / "folder").iterdir())


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_new_files_follow_the_umask(tmp_path, write, mask, mode):
    path = tmp_path / "new.json"
    with umask(mask):
        write(path, b"x")
    assert stat.S_IMODE(path.stat().st_mode) == mode


def test_a_replaced_file_keeps_its_mode(tmp_path, write):
    path = tmp_path / "old.json"
    path.write_bytes(b"old")
    path.chmod(0o640)
    with umask(0o022):
        write(path, b"new")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640 and path.read_bytes() == b"new"


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="giving a file away needs root")
def test_as_root_a_replaced_file_keeps_its_owner(tmp_path, write):
    path = tmp_path / "theirs.json"
    path.write_bytes(b"old")
    os.chown(path, 65534, 65534)
    write(path, b"new")
    st = path.stat()
    assert (st.st_uid, st.st_gid) == (65534, 65534) and path.read_bytes() == b"new"


def test_a_missing_folder_is_made_for_a_regular_file(tmp_path, write):
    write(tmp_path / "a" / "b" / "c.json", b"x")
    assert (tmp_path / "a" / "b" / "c.json").read_bytes() == b"x"
