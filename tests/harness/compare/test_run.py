"""The parity harness as CI uses it: every shipped spec through every backend, and --save files that
a plain NumPy script can recheck."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from alexbench.harness.compare.run import CompareConfig, run_compare

SMALL = str(Path(__file__).parents[2] / "specs" / "ops-pool-norm.yaml")


RECHECK = """
import json, sys
import numpy as np
run, results = sys.argv[1], json.load(open(sys.argv[2]))
m = json.load(open(run + "/manifest.json"))
ref = m["backends"]["reference"]
out = {}
for entry in results["backends"][1:]:
    files = m["backends"][entry["name"]]
    pairs = [("output", ref["output"], files["output"])] + [
        (n, ref["layers"][n], path) for n, path in files["layers"].items()]
    for name, r, g in pairs:
        r = np.load(run + "/" + r)
        g = np.load(run + "/" + g).astype(np.float64)
        out[entry["name"] + ":" + name] = [float(np.abs(g - r).max()),
                                            float(np.linalg.norm(g - r) / np.linalg.norm(r))]
print(json.dumps(out))
"""


def test_saved_arrays_let_numpy_recompute_every_error(tmp_path):
    run = tmp_path / "run"
    doc = run_compare(CompareConfig(spec=SMALL, backends=["torch", "keras"], onnx=False, batch=3,
                                    save_dir=str(run)))
    results = tmp_path / "results.json"
    results.write_text(json.dumps(doc))
    done = subprocess.run([sys.executable, "-c", RECHECK, str(run), str(results)], capture_output=True, text=True,
                          check=True)
    recomputed = json.loads(done.stdout)
    checked = 0
    for entry in doc["backends"][1:]:
        rows = [("output", entry["metrics"])] + [(row["name"], row) for row in entry["layers"]]
        for name, row in rows:
            max_abs, rel_l2 = recomputed[f"{entry['name']}:{name}"]
            assert max_abs == pytest.approx(row["max_abs"], rel=1e-9, abs=1e-15)
            assert rel_l2 == pytest.approx(row["rel_l2"], rel=1e-9, abs=1e-15)
            checked += 1
    assert checked == 2 * (1 + 11)  # torch and keras: the output and all 11 layers
