"""``alexbench backends``: every backend and whether its framework is installed."""

from __future__ import annotations

import argparse
import json

from ...backends.registry import available_backends, install_hint, load_backend_class, missing_module


def add_arguments(command: str, parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(command: str, args: argparse.Namespace) -> int:
    return _backends(args)


def _backends(args: argparse.Namespace) -> int:
    """Import each backend's module (this command alone loads the frameworks, to see what works)."""
    rows = []
    for name, target in available_backends().items():
        available, detail = True, ""
        try:
            load_backend_class(name).check_available(name)
        except ImportError as exc:
            missing = missing_module(exc)
            available, detail = False, install_hint(name, missing) if missing else f"cannot import: {exc}"
        except Exception as exc:  # BackendUnavailable, or a plugin that fails in its own way
            available, detail = False, str(exc)
        rows.append({"name": name, "target": target, "available": available, "detail": detail})
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            print(f"{row['name']:<12} {'yes' if row['available'] else 'no ':<4} {row['detail'] or row['target']}")
    return 0
