"""``alexbench cache list|prune``: the export cache (ONNX exports, LiteRT's .tflite files) and the
canonical weights beside it.

The cache (``$ALEXBENCH_CACHE_DIR`` or ``~/.cache/alexbench/onnx``) grows by an export or converted
file per (spec, weights, converter, framework versions) and a weights file per (spec, seed); after each store it is
pruned to ``$ALEXBENCH_CACHE_MAX_GB`` (default 5) automatically (backends/onnx/cache.py).
"""

from __future__ import annotations

import argparse
import json
import time

from ...backends.onnx.cache import DEFAULT_MAX_GB, Entry, cache_dir, list_entries, max_cache_bytes, prune
from ..errors import ExitCode, UsageError


def add_arguments(command: str, parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    for name, help_text in (("list", "every entry (kind, spec, size, last used) and the total"),
                            ("prune", "remove least-recently-used entries until the cache is under a size")):
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--cache-dir", metavar="DIR",
                       help="the cache directory (default: $ALEXBENCH_CACHE_DIR or ~/.cache/alexbench/onnx)")
        p.add_argument("--json", action="store_true", help="machine-readable output")
        if name == "prune":
            p.add_argument("--max-gb", type=float, metavar="N",
                           help=f"keep at most N GB (default: $ALEXBENCH_CACHE_MAX_GB or {DEFAULT_MAX_GB:g})")
            p.add_argument("--all", action="store_true", help="remove every entry")


def run(command: str, args: argparse.Namespace) -> int:
    if args.action is None:
        raise UsageError("an action is needed: 'list' or 'prune' (alexbench cache --help)")
    if args.action == "list":
        return _list(args)
    return _prune(args)


def _gb(size: int) -> str:
    if size >= 1e8:
        return f"{size / 1e9:.2f} GB"
    return f"{size / 1e6:.1f} MB" if size >= 1e5 else f"{size / 1e3:.1f} kB"


def _row(e: Entry) -> dict:
    return {"kind": e.kind, "spec": e.spec, "path": str(e.path), "size": e.size,
            "last_used": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(e.last_used))}


def _table(entries: list[Entry]) -> None:
    if entries:
        print(f"{'kind':<12} {'spec':<24} {'size':>10}  {'last used':<19}  file")
    for e in entries:
        r = _row(e)
        print(f"{r['kind']:<12} {r['spec']:<24} {_gb(e.size):>10}  {r['last_used'].replace('T', ' ')}  {e.path.name}")


def _list(args: argparse.Namespace) -> int:
    directory = cache_dir(args.cache_dir)
    entries = list_entries(directory)
    total = sum(e.size for e in entries)
    limit = max_cache_bytes()
    if args.json:
        print(json.dumps({"cache_dir": str(directory), "total": total, "max_bytes": limit,
                          "entries": [_row(e) for e in entries]}, indent=2))
        return ExitCode.OK
    _table(entries)
    cap = f"cap {_gb(limit)} ($ALEXBENCH_CACHE_MAX_GB)" if limit else "no cap ($ALEXBENCH_CACHE_MAX_GB=0)"
    print(f"{len(entries)} entries, {_gb(total)} in {directory}; {cap}; least recently used first")
    return ExitCode.OK


def _prune(args: argparse.Namespace) -> int:
    if args.all and args.max_gb is not None:
        raise UsageError(f"--all and --max-gb {args.max_gb:g} contradict each other; give one of them")
    if args.max_gb is not None and args.max_gb < 0:
        raise UsageError(f"--max-gb: received {args.max_gb:g}; give a size in GB >= 0")
    directory = cache_dir(args.cache_dir)
    if args.all:
        limit = 0
    elif args.max_gb is not None:
        limit = int(args.max_gb * 1e9)
    else:
        limit = max_cache_bytes() or int(DEFAULT_MAX_GB * 1e9)
    removed, kept = prune(directory, limit)
    total = sum(e.size for e in kept)
    if args.json:
        print(json.dumps({"cache_dir": str(directory), "max_bytes": limit, "total": total,
                          "removed": [_row(e) for e in removed], "kept": [_row(e) for e in kept]}, indent=2))
        return ExitCode.OK
    for e in removed:
        print(f"removed {e.kind:<12} {e.spec:<24} {_gb(e.size):>10}  {e.path.name}")
    print(f"removed {len(removed)} entries ({_gb(sum(e.size for e in removed))}); "
          f"{len(kept)} left, {_gb(total)} in {directory}")
    if total > limit:
        print(f"still over {_gb(limit)}: the entries left are locked by a running export", flush=True)
    return ExitCode.OK
