"""Replace one section of docs/benchmarks.md with a benchmark's new figures (shared by the scripts here)."""

from __future__ import annotations

import argparse
import importlib.metadata
import platform
import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def write_section(heading: str, text: str, keep: str | None = None, docs: Path = DOCS) -> None:
    """Put ``text`` (starting with ``heading``) in place of the section under ``heading``, up to the next
    ``## `` heading or, when given, the paragraph starting with ``keep`` (kept); appended when absent."""
    old = docs.read_text(encoding="utf-8") if docs.exists() else "# Benchmarks\n"
    stop = r"(?=\n" + (re.escape(keep) + r"|\n" if keep else "") + r"## |\Z)"
    pattern = re.compile(re.escape(heading) + r".*?" + stop, re.S)
    new = pattern.sub(lambda _: text.rstrip("\n") + "\n", old, count=1) if pattern.search(old) \
        else old.rstrip("\n") + "\n\n" + text
    docs.write_text(new.rstrip("\n") + "\n", encoding="utf-8")


def installed_version(module: str) -> str | None:
    """The installed version, whichever distribution ships the module (onnxruntime or onnxruntime-gpu)."""
    for dist in importlib.metadata.packages_distributions().get(module, [module]):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def machine_line(device_name: str, threads: int, modules: tuple[str, ...]) -> str:
    """The CPU, its vector instructions, and the versions of ``modules``: what a figure was measured on."""
    flags = set(re.findall(r"\b(avx512f|avx512_bf16|amx_bf16|avx2|avx_vnni|avx512_vnni)\b",
                           Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""))
    isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    extras = sorted(flags - {"avx512f", "avx2"})
    versions = ", ".join(f"{name} {installed_version(name)}" for name in modules if installed_version(name))
    return (f"{device_name}, {threads} cores, {isa}" + (f" ({', '.join(extras)})" if extras else
                                                        " (no bf16 or VNNI instructions)")
            + f", a shared VM (other jobs run on it: figures are noisy); Python {platform.python_version()}, "
            + versions)


def bench_parser(description: str, section: str) -> argparse.ArgumentParser:
    """The options every whole-bench script takes: how many runs, the spec, threads, --write-docs."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--runs", type=int, default=3, help="whole bench runs (default 3)")
    parser.add_argument("--spec", default="alexnet-owt")
    parser.add_argument("--threads", type=int, help="default: every core")
    parser.add_argument("--write-docs", action="store_true", help=f"write the '{section}' section of {DOCS}")
    return parser


def publish(section: str, text: str, write_docs: bool) -> None:
    """Print a benchmark's section and, with --write-docs, put it in docs/benchmarks.md."""
    print(text)
    if write_docs:
        write_section(section, text)
        print(f"wrote '{section}' in {DOCS}")
