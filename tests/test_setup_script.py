"""scripts/setup.sh chooses torch's CPU index by default (a bare version pin installs the CUDA
build from PyPI), and falls back to the configured package sources, quickly and saying so, on a
machine that cannot reach that index."""

from __future__ import annotations

import functools
import http.server
import os
import subprocess
import threading
import time
from pathlib import Path

SETUP = Path(__file__).resolve().parents[1] / "scripts" / "setup.sh"


def _plan(**env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SETUP), "--print-torch-plan"], capture_output=True, text=True,
                          env={**os.environ, "ALEXBENCH_PROBE_TIMEOUT": "1", **env}, timeout=30)


def test_an_unreachable_index_falls_back_within_seconds():
    start = time.monotonic()
    # TEST-NET-1 (RFC 5737): never routed, so the probe's timeout is what ends the wait
    done = _plan(TORCH_INDEX_URL="http://192.0.2.1:9/whl/cpu")
    assert time.monotonic() - start < 5
    assert done.returncode == 0
    assert done.stdout.strip() == "torch: configured sources"
    assert "unreachable" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_a_reachable_index_serving_torch_is_used(tmp_path):
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "index.html").write_text("<a>torch</a>")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        done = _plan(TORCH_INDEX_URL=url, no_proxy="127.0.0.1", NO_PROXY="127.0.0.1")
    finally:
        server.shutdown()
    assert done.stdout.strip() == f"torch: pip install torch --index-url {url}"


def test_the_default_is_the_cpu_index_and_cuda_uses_the_configured_sources():
    text = SETUP.read_text()
    assert "CPU_INDEX=https://download.pytorch.org/whl/cpu" in text
    assert _plan(ALEXBENCH_TORCH="cuda").stdout.strip() == "torch: configured sources"
    bad = _plan(ALEXBENCH_TORCH="gpu")
    assert bad.returncode == 2 and "cpu (the default) or cuda" in bad.stderr
