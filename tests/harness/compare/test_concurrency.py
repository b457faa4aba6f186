"""Two compare runs sharing one export cache at the same time both succeed and corrupt nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from alexbench.backends.onnx.cache import file_sha256

SPEC = str(Path(__file__).parents[2] / "specs" / "ops-pool-norm.yaml")


def test_two_runs_share_one_cache(tmp_path):
    cache = tmp_path / "cache"
    procs = [subprocess.Popen([sys.executable, "-m", "alexbench", "compare", "--spec", SPEC, "--backends",
                               "torch,keras", "--batch", "2", "--cache-dir", str(cache), "--json",
                               str(tmp_path / f"run{i}.json"), "--quiet"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, out + err
    docs = [json.loads((tmp_path / f"run{i}.json").read_text()) for i in range(2)]
    for doc in docs:
        assert {e["name"]: e["status"] for e in doc["backends"]} == {
            "reference": "ok", "torch": "ok", "keras": "ok", "onnx-torch": "ok", "onnx-keras": "ok"}
    # Every cached file still matches the hash its sidecar recorded, and a third run hits the cache.
    sidecars = list(cache.glob("*.json"))
    assert len(sidecars) == 2
    for sidecar in sidecars:
        meta = json.loads(sidecar.read_text())
        onnx_file = next(p for p in cache.iterdir() if p.suffix == ".onnx" and p.stem == sidecar.stem)
        assert file_sha256(onnx_file) == meta["sha256"]
    third = subprocess.run([sys.executable, "-m", "alexbench", "compare", "--spec", SPEC, "--backends", "torch",
                            "--batch", "2", "--cache-dir", str(cache), "--json", str(tmp_path / "run3.json")],
                           capture_output=True, text=True, timeout=600)
    assert third.returncode == 0
    assert "ONNX export found in the cache" in third.stderr
