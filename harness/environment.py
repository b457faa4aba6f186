"""What machine and packages a result came from, without importing any framework."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from importlib import metadata

from ..version import __version__

PACKAGES = ("numpy", "torch", "tensorflow", "keras", "jax", "jaxlib", "onnx", "onnxruntime", "onnxruntime-gpu",
            "onnxscript", "tf2onnx", "protobuf", "safetensors", "pyyaml")


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_names() -> list[str]:
    """Names of the NVIDIA GPUs present (empty without a driver)."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return []
    try:
        out = subprocess.run([smi, "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=10, check=True).stdout
    except (subprocess.SubprocessError, OSError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def environment() -> dict:
    return {
        "alexbench": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "gpus": gpu_names(),
        "packages": package_versions(),
    }
