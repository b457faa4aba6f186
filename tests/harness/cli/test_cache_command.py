"""``alexbench cache list|prune`` and the automatic size cap after each store (backends/onnx/cache.py)."""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path

import pytest

from alexbench.backends.onnx import cache
from alexbench.harness.cli.main import main
from alexbench.harness.run_weights import run_weights
from alexbench.spec import load_spec

SPECS = Path(__file__).resolve().parents[2] / "specs"


def _onnx_entry(root: Path, stem: str, size: int, age_s: float, kind: str = "torch") -> Path:
    """A fake export entry of ``size`` bytes (file + sidecar + lock) last used ``age_s`` ago."""
    path = root / f"{stem}.onnx"
    root.mkdir(parents=True, exist_ok=True)
    sidecar = json.dumps({"kind": kind, "spec": stem.rsplit("-", 2)[0], "sha256": "x", "size": 0})
    path.with_suffix(".json").write_text(sidecar)
    path.with_suffix(".lock").write_text("")
    path.write_bytes(b"\0" * (size - len(sidecar)))
    when = time.time() - age_s
    for f in (path, path.with_suffix(".json"), path.with_suffix(".lock")):
        os.utime(f, (when, when))
    return path


def _weights_entry(root: Path, stem: str, size: int, age_s: float) -> Path:
    path = root / "weights" / f"{stem}.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * (size - 2))
    path.with_suffix(".json").write_text("{}")
    when = time.time() - age_s
    for f in (path, path.with_suffix(".json")):
        os.utime(f, (when, when))
    return path


@pytest.fixture
def fake_cache(tmp_path):
    root = tmp_path / "cache"
    oldest = _onnx_entry(root, "net-a-torch-0000000000000001", 3_000_000, age_s=9000)
    weights = _weights_entry(root, "net-a-00000000000000aa", 2_000_000, age_s=8000)
    middle = _onnx_entry(root, "net-b-keras-0000000000000002", 3_000_000, age_s=7000, kind="keras")
    newest = _onnx_entry(root, "net-c-torch-0000000000000003", 1_000_000, age_s=10)
    return root, [oldest, weights, middle, newest]


def test_list_prints_every_entry_and_the_total(fake_cache, capsys):
    root, paths = fake_cache
    assert main(["cache", "list", "--cache-dir", str(root)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:4] == ["kind", "spec", "size", "last"]
    for name in ("onnx-torch", "onnx-keras", "weights", "net-a", "net-b", "net-c", "3.0 MB", "2.0 MB"):
        assert name in out
    assert "4 entries, 9.0 MB" in out
    # least recently used first
    rows = [line.split()[-1] for line in out.splitlines()[1:5]]
    assert rows == [p.name for p in paths]


def test_list_json(fake_cache, capsys):
    root, paths = fake_cache
    assert main(["cache", "list", "--cache-dir", str(root), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["total"] == 9_000_000
    assert [e["size"] for e in doc["entries"]] == [3_000_000, 2_000_000, 3_000_000, 1_000_000]


def test_prune_removes_least_recently_used_whole_entries(fake_cache, capsys):
    root, (oldest, weights, middle, newest) = fake_cache
    assert main(["cache", "prune", "--cache-dir", str(root), "--max-gb", "0.005"]) == 0
    # 9 MB -> remove oldest (3) and weights (2): 4 MB <= 5 MB; the two newer ones stay
    for gone in (oldest, weights):
        assert not any(f.exists() for f in (gone, gone.with_suffix(".json"), gone.with_suffix(".lock")))
    assert middle.exists() and newest.exists()
    assert "removed 2 entries" in capsys.readouterr().out


def test_a_hit_marks_the_entry_used(fake_cache):
    root, (oldest, weights, middle, newest) = fake_cache
    cache.mark_used(oldest)  # a lookup hit: now the most recently used
    removed, _ = cache.prune(root, 5_000_000)
    assert [e.path for e in removed] == [weights, middle]


def test_prune_all_skips_an_entry_whose_lock_is_held(fake_cache, capsys):
    root, (oldest, weights, middle, newest) = fake_cache
    with open(middle.with_suffix(".lock"), "a") as lock:  # another process exporting this entry
        fcntl.flock(lock, fcntl.LOCK_EX)
        assert main(["cache", "prune", "--cache-dir", str(root), "--all"]) == 0
    assert middle.exists() and middle.with_suffix(".json").exists()
    assert not oldest.exists() and not weights.exists() and not newest.exists()
    assert "locked" in capsys.readouterr().out


def test_prune_bad_arguments_exit_2(fake_cache, capsys):
    root, _ = fake_cache
    assert main(["cache", "prune", "--cache-dir", str(root), "--all", "--max-gb", "1"]) == 2
    assert main(["cache", "prune", "--cache-dir", str(root), "--max-gb", "-1"]) == 2
    assert main(["cache"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "list" in err


def _tiny_onnx(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph), str(path))
    return path


def test_cap_enforced_after_an_export_store(fake_cache, tmp_path, monkeypatch):
    """The cache had no cap: every new spec and weights added ~466 MB for good."""
    root, (oldest, weights, middle, newest) = fake_cache
    monkeypatch.setenv("ALEXBENCH_CACHE_MAX_GB", "0.006")
    spec = load_spec(SPECS / "ops-conv-groups.yaml")
    stored = cache.store("torch", spec, "0" * 64, _tiny_onnx(tmp_path / "m.onnx"), {}, root)
    assert stored.exists()  # the entry just stored is never removed
    assert not oldest.exists() and not weights.exists()  # least recently used go first
    # an entry used within the last hour may be read by a run in progress: spared even over the cap
    assert newest.exists()
    assert sum(e.size for e in cache.list_entries(root)) <= 6_000_000


def test_cap_enforced_after_weights_are_written(fake_cache, monkeypatch):
    root, (oldest, weights, middle, newest) = fake_cache
    monkeypatch.setenv("ALEXBENCH_CACHE_MAX_GB", "0.004")
    spec = load_spec(SPECS / "ops-conv-groups.yaml")
    written = run_weights(spec, None, 0, root)
    assert written.path.exists()
    assert not oldest.exists() and not weights.exists() and not middle.exists()
    assert newest.exists()  # used 10 s ago: spared


def test_cap_zero_turns_automatic_pruning_off(fake_cache, monkeypatch):
    root, paths = fake_cache
    monkeypatch.setenv("ALEXBENCH_CACHE_MAX_GB", "0")
    run_weights(load_spec(SPECS / "ops-conv-groups.yaml"), None, 0, root)
    assert all(p.exists() for p in paths)
