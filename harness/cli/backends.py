"""``alexbench backends``: every backend, whether its framework is installed, the installed
versions (package metadata: no framework is imported) and what each backend is."""

from __future__ import annotations

import argparse
import json
from importlib.metadata import PackageNotFoundError, packages_distributions, version

from ...backends.registry import available_backends, install_hint, load_backend_class, missing_module


def add_arguments(command: str, parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(command: str, args: argparse.Namespace) -> int:
    return _backends(args)


def _versions(modules: list[str], dists: dict[str, list[str]]) -> dict[str, str | None]:
    """Distribution -> installed version (None: absent) for each module a backend needs.
    A module may come from a differently named distribution (onnxruntime from onnxruntime-gpu)."""
    found: dict[str, str | None] = {}
    for module in modules:
        for dist in dists.get(module) or [module]:
            try:
                found[dist] = version(dist)
            except PackageNotFoundError:
                found.setdefault(dist, None)
    return found


def _summary(cls) -> str:
    text = getattr(cls, "summary", "") or (cls.__doc__ or "").strip().partition("\n")[0]
    return " ".join(text.split())


def _backends(args: argparse.Namespace) -> int:
    """Load each backend's class (its module imports no framework) and check its needs."""
    dists = packages_distributions()
    rows = []
    for name, target in available_backends().items():
        available, detail, summary, modules = True, "", "", []
        try:
            cls = load_backend_class(name)
            summary = _summary(cls)
            modules = [module for module, _ in cls.needs]
            cls.check_available(name)
        except ImportError as exc:
            missing = missing_module(exc)
            available, detail = False, install_hint(name, missing) if missing else f"cannot import: {exc}"
        except Exception as exc:  # BackendUnavailable, or a plugin that fails in its own way
            available, detail = False, str(exc)
        rows.append({"name": name, "target": target, "available": available, "detail": detail,
                     "summary": summary, "versions": _versions(modules, dists)})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len("backend"), *(len(row["name"]) for row in rows))
    print(f"{'backend':<{width}} {'available':<9}  {'framework versions':<36}  what it is")
    for row in rows:
        versions = ", ".join(f"{d} {v or 'absent'}" for d, v in row["versions"].items()) or "-"
        what = row["summary"] or row["target"]
        if not row["available"]:
            what = f"{what}; {row['detail']}" if row["summary"] else row["detail"]
        print(f"{row['name']:<{width}} {'yes' if row['available'] else 'no':<9}  {versions:<36}  {what}")
    print("'-': needs no framework. compare judges every backend against reference; null is for bench only.")
    return 0
