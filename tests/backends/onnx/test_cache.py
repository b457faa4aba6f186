"""The ONNX export cache: hits reuse the file, the key follows spec, weights, exporter and
versions, corrupt entries are found and rebuilt, writes are atomic and concurrent exporters of
one key both succeed. Real exports (torch and tf2onnx) of the small op-coverage spec."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import onnx.numpy_helper
import onnxruntime as ort
import pytest

from alexbench.backends.onnx import cache as export_cache
from alexbench.backends.onnx.cache import cache_key, cached_export, file_sha256, lookup, store
from alexbench.spec import canonical_weights, load_spec, weights_sha256

SPEC_PATH = Path(__file__).resolve().parents[2] / "specs" / "ops-conv-groups.yaml"


@pytest.fixture(scope="module")
def spec():
    return load_spec(SPEC_PATH)


@pytest.fixture(scope="module")
def weights(spec):
    return canonical_weights(spec, seed=0)


def _leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("kind", ["torch", "keras"])
def test_second_export_is_a_hit_on_the_same_file(kind, spec, weights, tmp_path):
    path, info, hit = cached_export(kind, spec, weights, tmp_path)
    mtime = path.stat().st_mtime_ns
    again, info_again, hit_again = cached_export(kind, spec, weights, tmp_path)
    assert (hit, hit_again) == (False, True)
    assert again == path and path.stat().st_mtime_ns == mtime and info_again == info
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["sha256"] == file_sha256(path) and meta["size"] == path.stat().st_size
    assert meta["info"]["kind"] == kind and meta["spec_sha256"] == spec.sha256
    assert _leftovers(tmp_path) == []  # no temporary files stay behind


def test_key_follows_spec_weights_exporter_versions_and_opset(spec, weights, monkeypatch):
    w_sha = weights_sha256(weights)
    base = cache_key("torch", spec, w_sha)
    other_weights = dict(weights, **{"fc1.bias": weights["fc1.bias"] + np.float32(1)})
    assert cache_key("onnx-torch", spec, w_sha) == base  # the ONNX Runtime backend's name works too
    assert len({base, cache_key("keras", spec, w_sha), cache_key("torch", spec, weights_sha256(other_weights)),
                cache_key("torch", replace(spec, name="renamed"), w_sha), cache_key("torch", spec, w_sha, 19)}) == 5
    monkeypatch.setattr(export_cache, "_version", lambda package: "9.9" if package == "torch" else "1.0")
    assert cache_key("torch", spec, w_sha) != base


@pytest.mark.parametrize("damage", ["truncated", "flipped_byte", "garbled_sidecar", "no_model"])
def test_corrupt_entry_is_detected_and_rebuilt(damage, spec, weights, tmp_path):
    path, _, _ = cached_export("torch", spec, weights, tmp_path)
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flipped_byte":
        path.write_bytes(data[:-100] + bytes([data[-100] ^ 0xFF]) + data[-99:])
    elif damage == "garbled_sidecar":
        path.with_suffix(".json").write_text("{not json")
    else:
        path.unlink()
    assert lookup("torch", spec, weights_sha256(weights), tmp_path) is None
    assert not path.exists() and not path.with_suffix(".json").exists()  # both dropped
    rebuilt, _, hit = cached_export("torch", spec, weights, tmp_path)
    assert not hit and rebuilt == path and file_sha256(path) == json.loads(path.with_suffix(".json").read_text())[
        "sha256"]


def _tiny_model(value: float, size: int = 1 << 18) -> onnx.ModelProto:
    """y = x + w with a float32 weight of ``size`` values equal to ``value``."""
    w = onnx.numpy_helper.from_array(np.full(size, value, dtype=np.float32), "w")
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Add", ["x", "w"], ["y"])], "tiny",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [size])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [size])], [w])
    # IR version 10: onnx 1.23 writes 14 by default, which onnxruntime-gpu 1.31 refuses.
    return onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18)], ir_version=10)


def test_store_copies_the_harness_export_and_lookup_finds_it(spec, weights, tmp_path):
    w_sha = weights_sha256(weights)
    src = tmp_path / "run" / "torch.onnx"
    src.parent.mkdir()
    onnx.save(_tiny_model(1.0), str(src))
    stored = store("torch", spec, w_sha, src, {"path": str(src), "exporter": "x"}, tmp_path / "cache")
    assert src.exists() and stored.read_bytes() == src.read_bytes()
    found = lookup("onnx-torch", spec, w_sha, tmp_path / "cache")
    assert found is not None and found.path == stored and found.info == {"exporter": "x"}
    assert lookup("keras", spec, w_sha, tmp_path / "cache") is None


def test_export_with_external_data_is_cached_as_one_file(spec, weights, tmp_path):
    """torch.onnx.export writes big weights to ``<name>.onnx.data`` beside the file: the cache
    keeps one self-contained file, which still loads and runs after the run directory is gone."""
    run = tmp_path / "run"
    run.mkdir()
    onnx.save(_tiny_model(2.0), str(run / "torch.onnx"), save_as_external_data=True, location="torch.onnx.data",
              size_threshold=0)
    assert (run / "torch.onnx.data").exists()
    stored = store("torch", spec, weights_sha256(weights), run / "torch.onnx", {}, tmp_path / "cache")
    shutil.rmtree(run)
    assert sorted(p.name for p in stored.parent.iterdir() if p.suffix != ".lock") == [
        stored.with_suffix(".json").name, stored.name]
    session = ort.InferenceSession(str(stored), providers=["CPUExecutionProvider"])
    y = session.run(None, {"x": np.ones(1 << 18, dtype=np.float32)})[0]
    assert np.all(y == 3.0) and lookup("torch", spec, weights_sha256(weights), tmp_path / "cache") is not None


def test_racing_stores_of_one_key_leave_a_consistent_entry(spec, weights, tmp_path):
    """Eight writers with different files for one key: the survivor's sidecar vouches for it."""
    w_sha = weights_sha256(weights)
    sources = []
    for i in range(8):
        sources.append(tmp_path / f"src{i}.onnx")
        onnx.save(_tiny_model(float(i)), str(sources[-1]))
    threads = [threading.Thread(target=store, args=("keras", spec, w_sha, s, {"n": i}, tmp_path / "c"))
               for i, s in enumerate(sources)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    found = lookup("keras", spec, w_sha, tmp_path / "c")
    assert found is not None and found.path.read_bytes() == sources[found.info["n"]].read_bytes()
    assert _leftovers(tmp_path / "c") == []


RACER = """
import json, sys
from alexbench.backends.onnx.cache import cached_export, file_sha256
from alexbench.spec import canonical_weights, load_spec
spec = load_spec(sys.argv[1])
path, info, hit = cached_export("torch", spec, canonical_weights(spec, 0), sys.argv[2])
print(json.dumps({"hit": hit, "path": str(path), "sha": file_sha256(path)}))
"""


def test_two_processes_exporting_one_key_both_succeed(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", RACER, str(SPEC_PATH), str(tmp_path)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert sorted(r["hit"] for r in results) == [False, True]  # the lock made the second reuse the first
    assert len({(r["path"], r["sha"]) for r in results}) == 1
    assert _leftovers(tmp_path) == []


def test_default_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("ALEXBENCH_CACHE_DIR", str(tmp_path / "env"))
    assert export_cache.cache_dir() == tmp_path / "env"
    assert export_cache.cache_dir(tmp_path / "given") == tmp_path / "given"
    monkeypatch.delenv("ALEXBENCH_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert export_cache.cache_dir() == tmp_path / "home" / ".cache" / "alexbench" / "onnx"
