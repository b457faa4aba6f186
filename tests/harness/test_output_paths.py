"""Output paths are checked before any work: each bad one exits 2 with one line naming the option
the user typed, within a second, and nothing runs (once, these were tracebacks and exit 1 after
the whole run). ``--json -`` is standard output; ``--json`` through a link leaves the link;
``--save`` into an earlier run's folder leaves none of its stale backend folders."""

from __future__ import annotations

import json
import os
import resource
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from alexbench.harness.compare.run import CompareConfig, run_compare
from alexbench.harness.errors import UsageError

SPEC = str(Path(__file__).parents[1] / "specs" / "ops-conv-groups.yaml")
ALEXBENCH = [sys.executable, "-m", "alexbench"]
FAST = ["--spec", SPEC, "--backends", "torch", "--no-onnx"]
BENCH = ["--spec", SPEC, "--backends", "torch", "--batch-sizes", "1"]


def alexbench(tmp_path: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the command in ``tmp_path`` with a private export cache and temp folder (to see that
    nothing ran); returns the process with ``cpu_s``, the CPU seconds it used."""
    env = {**os.environ, "ALEXBENCH_CACHE_DIR": str(tmp_path / "cache"), "TMPDIR": str(tmp_path / "tmp")}
    (tmp_path / "tmp").mkdir(exist_ok=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run([*ALEXBENCH, *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=timeout)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    done.cpu_s = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return done


@pytest.fixture
def place(tmp_path):
    (tmp_path / "file.jpg").write_bytes(b"\xff\xd8")
    (tmp_path / "out.json").write_text("{}")
    (tmp_path / "results").mkdir()
    (tmp_path / "old-notes").mkdir()
    (tmp_path / "old-notes" / "todo.txt").write_text("mine")
    return tmp_path


# (command line, the start of its one error line); paths are relative to the test's folder.
BAD = [
    (["compare", *FAST, "--json", "results"], "alexbench compare: error: --json results: is a folder"),
    (["compare", *FAST, "--json", "results/"], "alexbench compare: error: --json results/: is a folder"),
    (["compare", *FAST, "--json", "missing/r.json"],
     "alexbench compare: error: --json missing/r.json: folder missing does not exist"),
    (["compare", *FAST, "--json", "file.jpg/r.json"],
     "alexbench compare: error: --json file.jpg/r.json: file.jpg is a file, not a folder"),
    (["compare", *FAST, "--save", "out.json"],
     "alexbench compare: error: --save out.json: exists and is not a folder (it is a file)"),
    (["compare", *FAST, "--save", "old-notes"],
     "alexbench compare: error: --save old-notes: holds todo.txt, but is not an alexbench run folder"),
    (["compare", *FAST, "--report", "out.json"],
     "alexbench compare: error: --report out.json: exists and is not a folder (it is a file)"),
    (["compare", *FAST, "--report", "file.jpg/x"],
     "alexbench compare: error: --report file.jpg/x: file.jpg is a file, not a folder"),
    (["bench", *BENCH, "--json", "results"], "alexbench bench: error: --json results: is a folder"),
    (["bench", *BENCH, "--json", "missing/b.json"], "alexbench bench: error: --json missing/b.json: folder missing"),
    (["bench", *BENCH, "--report", "out.json"],
     "alexbench bench: error: --report out.json: exists and is not a folder (it is a file)"),
    (["weights", SPEC, "-o", "results/"], "alexbench weights: error: -o results/: is a folder"),
    (["weights", SPEC, "--output", "results"], "alexbench weights: error: --output results: is a folder"),
    (["weights", SPEC, "-o", "missing/w.safetensors"],
     "alexbench weights: error: -o missing/w.safetensors: folder missing does not exist"),
    (["report", SPEC, "-o", "file.jpg/x"], "alexbench report: error: -o file.jpg/x: file.jpg is a file, not a folder"),
    (["report", SPEC, "--output", "out.json"],
     "alexbench report: error: --output out.json: exists and is not a folder (it is a file)"),
]


@pytest.mark.parametrize("argv, message", BAD, ids=[" ".join(a[:1] + a[-2:]) for a, _ in BAD])
def test_a_bad_output_path_is_one_line_and_exit_2_before_any_work(place, argv, message):
    done = alexbench(place, *argv)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(message) and done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    # Nothing ran: no export cache, no job folder, no weights file. CPU time, not wall time, so a
    # busy machine cannot fail this: importing a framework alone takes more than a second of CPU.
    assert not (place / "cache").exists() and not any((place / "tmp").iterdir())
    assert not list(place.rglob("*.safetensors")) and not list(place.rglob("job.json"))
    assert done.cpu_s < 1.0


def _locked_folder(tmp_path: Path) -> Path:
    """A folder this user cannot write: chmod 555 for a user; for root (who writes through any
    mode), /proc/sys, which the kernel keeps read-only to new files."""
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    for folder in (locked, Path("/proc/sys")):
        if folder.is_dir() and not os.access(folder, os.W_OK):
            return folder
    pytest.skip("no folder here that this user cannot write")


def test_a_folder_the_user_cannot_write_is_refused_before_any_work(tmp_path):
    locked = _locked_folder(tmp_path)
    done = alexbench(tmp_path, "compare", *FAST, "--json", f"{locked}/r.json")
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"alexbench compare: error: --json {locked}/r.json: folder {locked} is not writable")
    assert done.cpu_s < 1.0 and not (tmp_path / "cache").exists()


def test_json_to_stdout_through_a_link_and_reusing_a_save_folder(tmp_path):
    # 1. --json -: standard output is the JSON alone; the verdict goes to standard error.
    run = tmp_path / "run"
    first = alexbench(tmp_path, "compare", *FAST, "--json", "-", "--save", "run", "-q")
    assert first.returncode == 0, first.stderr
    doc = json.loads(first.stdout)
    assert doc["schema"] == "alexbench.results/3" and doc["verdict"]["exit_code"] == 0
    assert "PASS" in first.stderr and not (tmp_path / "-").exists()
    # 2. An earlier run into the same folder had a backend this one does not run; its folder must go.
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["backends"]["keras"] = {"output": "keras/output.npy", "layers": {"conv1": "keras/conv1.npy"}}
    (run / "manifest.json").write_text(json.dumps(manifest))
    (run / "keras").mkdir()
    (run / "keras" / "output.npy").write_bytes(b"stale")
    # ... and one that failed there: not in the manifest, but its folder has the job file.
    (run / "onnx-keras").mkdir()
    (run / "onnx-keras" / "job.json").write_text("{}")
    # 3. --json through a link writes the link's target and leaves the link.
    (tmp_path / "published").mkdir()
    link = tmp_path / "results.json"
    link.symlink_to(tmp_path / "published" / "results.json")
    old = os.umask(0o022)
    try:
        second = alexbench(tmp_path, "compare", *FAST, "--json", "results.json", "--save", "run")
    finally:
        os.umask(old)
    assert second.returncode == 0, second.stderr
    assert "PASS" in second.stdout  # the table, on standard output as usual
    assert link.is_symlink()
    target = tmp_path / "published" / "results.json"
    assert json.loads(target.read_text())["schema"] == "alexbench.results/3"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644  # umask 022, not mkstemp's 0600
    listed = json.loads((run / "manifest.json").read_text())["backends"]
    assert sorted(listed) == ["reference", "torch"]
    assert sorted(p.name for p in run.iterdir() if p.is_dir()) == ["reference", "torch"]


def test_the_library_refuses_a_save_folder_that_is_not_a_run(tmp_path):
    (tmp_path / "mine.txt").write_text("keep")
    with pytest.raises(UsageError, match="holds mine.txt, but is not an alexbench run folder"):
        run_compare(CompareConfig(spec=SPEC, backends=["torch"], onnx=False, batch=1, save_dir=str(tmp_path)))
    assert [p.name for p in tmp_path.iterdir()] == ["mine.txt"]


def test_bench_json_to_stdout_moves_the_table_to_stderr(tmp_path):
    done = alexbench(tmp_path, "bench", *BENCH, "--min-time", "0", "--min-reps", "2", "--warmup", "1",
                     "--no-overhead", "--peak-size", "64", "--json", "-")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["kind"] == "bench"
    assert "images/s" in done.stderr and not (tmp_path / "-").exists()
