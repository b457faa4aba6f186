"""The .tflite files go through the export cache (backends/onnx/cache.py): a second build is a hit on the
same file, a damaged file is found and converted again, the key follows what shapes the file (a different
LRN alpha is a different file), and `alexbench cache list|prune` show and remove the entries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alexbench.backends.litert.backend import LiteRtBackend
from alexbench.backends.litert.convert import tflite_path
from alexbench.backends.onnx.cache import file_sha256
from alexbench.harness.cli.main import main
from alexbench.spec import canonical_weights, load_spec, weights_sha256

SPEC_PATH = Path(__file__).resolve().parents[2] / "specs" / "ops-pool-norm.yaml"


@pytest.fixture(scope="module")
def spec_and_weights():
    spec = load_spec(SPEC_PATH)
    return spec, canonical_weights(spec, seed=0)


def _build(spec, weights, cache: Path, cls: type[LiteRtBackend] = LiteRtBackend) -> LiteRtBackend:
    backend = cls(options={"cache_dir": str(cache)})
    backend.build(spec, weights)
    return backend


def test_second_build_is_a_hit_on_the_same_file_and_a_damaged_file_is_converted_again(spec_and_weights, tmp_path):
    spec, weights = spec_and_weights
    first = _build(spec, weights, tmp_path)
    mtime = first.path.stat().st_mtime_ns
    second = _build(spec, weights, tmp_path)
    assert (first.cache_hit, second.cache_hit) == (False, True)
    assert second.path == first.path and first.path.stat().st_mtime_ns == mtime
    assert second.environment()["tflite_cache_hit"] is True
    meta = json.loads(first.path.with_suffix(".json").read_text())
    assert meta["kind"] == "keras" and meta["sha256"] == file_sha256(first.path)
    assert meta["info"]["converter"] == first.conversion["converter"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary files left
    data = first.path.read_bytes()
    first.path.write_bytes(data[:-100] + bytes([data[-100] ^ 0xFF]) + data[-99:])
    third = _build(spec, weights, tmp_path)
    assert third.cache_hit is False and file_sha256(third.path) == meta["sha256"]  # the same conversion again


class UndividedAlpha(LiteRtBackend):
    @classmethod
    def tflite_lrn_alpha(cls, layer):
        return layer.attrs["alpha"]


def test_key_follows_the_lrn_alpha_in_the_file(spec_and_weights, tmp_path):
    """A backend that lowers LRN with another alpha gets its own file, never the correct one's (or vice versa)."""
    spec, weights = spec_and_weights
    w_sha = weights_sha256(weights)
    right = tflite_path(spec, w_sha, {"norm1": 0.01 / 5}, tmp_path)
    assert right != tflite_path(spec, w_sha, {"norm1": 0.01}, tmp_path)
    assert right.suffix == ".tflite" and right.name.startswith("ops-pool-norm-keras-")
    assert _build(spec, weights, tmp_path).path == right
    assert _build(spec, weights, tmp_path, UndividedAlpha).path == tflite_path(spec, w_sha, {"norm1": 0.01}, tmp_path)


def test_cache_list_and_prune_show_and_remove_tflite_entries(spec_and_weights, tmp_path, capsys):
    spec, weights = spec_and_weights
    path = _build(spec, weights, tmp_path).path
    assert main(["cache", "list", "--cache-dir", str(tmp_path), "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)["entries"]
    assert [(e["kind"], e["spec"], e["path"]) for e in entries] == [("tflite-keras", "ops-pool-norm", str(path))]
    assert main(["cache", "prune", "--cache-dir", str(tmp_path), "--all"]) == 0
    assert "removed tflite-keras" in capsys.readouterr().out
    assert not path.exists() and not path.with_suffix(".json").exists()
