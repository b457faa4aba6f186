"""The export cache: one file per (spec, weights, exporter, versions), reused while valid. It holds
the ONNX exports and, through the same functions, other converted files (LiteRT's ``.tflite``,
backends/litert/convert.py): ``content_key`` and ``cached_file`` take any converter route and suffix.

Key: sha256 over the spec's meaning (``spec.sha256``), the weights' sha256, the exporter's
name and route, the framework and exporter versions, and alexbench's version. Versions are
read from package metadata, so a lookup imports no framework (the harness calls it).

Layout: ``<dir>/<spec>-<kind>-<key[:16]>.onnx`` (or ``.tflite``) plus ``.json`` beside it holding
the file's sha256, size and the ExportInfo (or the converter's facts). An export stored with
external-data files is inlined into one self-contained file (models under protobuf's 2 GiB
limit, as AlexNet's 244 MB). The directory is ``$ALEXBENCH_CACHE_DIR`` or ``~/.cache/alexbench/onnx``.

Writes are atomic: a temporary file in the same directory, then ``os.replace``, the model
first and the sidecar last, so a reader sees either no entry or a whole one. Concurrent
exporters of the same key both succeed (the last rename wins; the files are equivalent), and
``cached_file`` also holds an ``fcntl.flock`` on ``<entry>.lock`` so the second waits and
reuses the first's file instead of exporting again. A hit checks size and sha256 against the
sidecar; a truncated or altered file is deleted and reported as a miss, so it is rebuilt.

Size cap: the directory also holds the canonical weights (``weights/<spec>-<key>.safetensors``
plus ``.json``, harness/run_weights.py); an entry is its file, its sidecar and its ``.lock``.
After each store, least-recently-used entries are removed until the whole directory is under
``$ALEXBENCH_CACHE_MAX_GB`` (default 5; ``0`` turns this off). That automatic pruning never
removes the entry just stored, an entry used in the last hour (a run in progress may still
read it), or one whose lock another process holds. A hit marks its entry used (the ``.lock``
file's modification time), so "least recently used" means used, not created.
``alexbench cache list|prune`` (harness/cli/cache.py) shows and prunes the same entries.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from ...spec import ModelSpec, weights_sha256
from ...spec.files import atomic_path, atomic_stream, atomic_write
from ..base import OPSET, Weights
from ..registry import available_backends, load_backend_class


@dataclass(frozen=True)
class CachedExport:
    path: Path
    info: dict[str, Any]
    sha256: str


def cache_dir(path: str | Path | None = None) -> Path:
    chosen = path or os.environ.get("ALEXBENCH_CACHE_DIR") or Path.home() / ".cache" / "alexbench" / "onnx"
    return Path(chosen).expanduser()


def exporter_class(name: str):
    """The native backend class that exports the file ``name`` runs (or ``name``'s own class)."""
    cls = load_backend_class(name)
    native = load_backend_class(cls.onnx_source) if cls.onnx_source else cls
    if native.onnx_exporter is None:
        known = [n for n in available_backends() if load_backend_class(n).onnx_exporter]
        raise ValueError(f"no ONNX exporter for '{name}'; backends that export: {', '.join(known)} "
                         f"(or a backend that runs one of their files)")
    return native


def export_kind(name: str) -> str:
    """The native backend ('torch', 'keras') that exports the file ``name`` runs ('onnx-torch')."""
    cls = load_backend_class(name)
    kind = cls.onnx_source or name
    exporter_class(kind)
    return kind


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "absent"


def content_key(spec: ModelSpec, weights_sha: str, route: str, packages: Sequence[str], **settings: Any) -> str:
    """The key of a file made from (spec, weights) by converter ``route`` with ``packages`` installed;
    ``settings``: anything else the file depends on (an opset, a lowering's constants)."""
    from ...version import __version__

    parts = {"spec": spec.sha256, "weights": weights_sha, "exporter": route, "alexbench": __version__,
             "versions": {p: _version(p) for p in packages}, **settings}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def cache_key(kind: str, spec: ModelSpec, weights_sha: str, opset: int = OPSET) -> str:
    native = exporter_class(kind)
    return content_key(spec, weights_sha, str(native.onnx_exporter), native.onnx_export_packages, opset=opset)


def file_path(kind: str, spec: ModelSpec, key: str, directory: str | Path | None = None,
              suffix: str = ".onnx") -> Path:
    """Where the cache keeps the file of ``kind`` (the native backend it comes from) with ``key``."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", spec.name)
    return cache_dir(directory) / f"{safe}-{kind}-{key[:16]}{suffix}"


def entry_path(kind: str, spec: ModelSpec, weights_sha: str, directory: str | Path | None = None,
               opset: int = OPSET) -> Path:
    kind = export_kind(kind)
    return file_path(kind, spec, cache_key(kind, spec, weights_sha, opset), directory)


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Exclusive lock on the entry (``<entry>.lock``): stores, deletions and exports of one key
    never interleave. flock is per open file, so never nest two of these in one process."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def lookup(kind: str, spec: ModelSpec, weights_sha: str, directory: str | Path | None = None) -> CachedExport | None:
    """The valid cached export, or None (absent, or corrupt and now deleted)."""
    path = entry_path(kind, spec, weights_sha, directory)
    if not _sidecar(path).exists():
        return None
    with _locked(path):
        return _lookup(path)


def _lookup(path: Path) -> CachedExport | None:
    try:
        meta = json.loads(_sidecar(path).read_text())
        ok = path.stat().st_size == meta["size"] and file_sha256(path) == meta["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        ok, meta = False, None
    if ok:
        mark_used(path)
        return CachedExport(path, meta.get("info") or {}, meta["sha256"])
    for stale in (path, _sidecar(path)):  # the sidecar does not vouch for the file: drop both
        stale.unlink(missing_ok=True)
    return None


def _inlined(src: Path) -> bytes | None:
    """A model whose weights sit in external-data files beside it (torch.onnx.export writes
    ``<name>.onnx.data`` by default) as one self-contained file's bytes; None if it is one already.
    The cache then holds one file, which one rename publishes atomically."""
    import onnx
    from onnx.external_data_helper import load_external_data_for_model, uses_external_data

    model = onnx.load(str(src), load_external_data=False)
    if not any(uses_external_data(t) for t in model.graph.initializer):
        return None
    load_external_data_for_model(model, str(src.parent))
    if model.ByteSize() >= 2**31:
        raise ValueError(f"{src}: {model.ByteSize() / 2**30:.1f} GiB with its external data; the export cache keeps "
                         f"single files, which protobuf limits to 2 GiB")
    return model.SerializeToString()


def store(kind: str, spec: ModelSpec, weights_sha: str, src: str | Path, info: dict[str, Any] | None,
          directory: str | Path | None = None) -> Path:
    """Copy the exported file ``src`` into the cache (``src`` stays); return the cached path."""
    path = entry_path(kind, spec, weights_sha, directory)
    with _locked(path):
        stored = _store(path, export_kind(kind), spec, weights_sha, Path(src), info)
    enforce_cap(stored.parent, keep=(stored,))
    return stored


def _store(path: Path, kind: str, spec: ModelSpec, weights_sha: str, src: Path, info: dict[str, Any] | None) -> Path:
    digest = hashlib.sha256()

    def copy(out) -> None:
        with open(src, "rb") as inp:
            while chunk := inp.read(1 << 22):
                digest.update(chunk)
                out.write(chunk)

    inlined = _inlined(src) if path.suffix == ".onnx" else None
    if inlined is not None:
        atomic_write(path, inlined)
        sha = hashlib.sha256(inlined).hexdigest()
    elif src.resolve() != path.resolve():
        with atomic_stream(path) as out:
            copy(out)
        sha = digest.hexdigest()
    else:
        sha = file_sha256(path)
    meta = {"sha256": sha, "size": path.stat().st_size, "kind": kind, "spec": spec.name,
            "spec_sha256": spec.sha256, "weights_sha256": weights_sha,
            "info": {k: v for k, v in (info or {}).items() if k != "path"}}
    text = json.dumps(meta, indent=1, default=str) + "\n"
    atomic_write(_sidecar(path), text)
    return path


def cached_export(kind: str, spec: ModelSpec, weights: Weights, directory: str | Path | None = None,
                  opset: int = OPSET):
    """(path, ExportInfo, hit): the cached export, or a fresh one made in this process (through
    the native backend's own ``export_onnx``) and cached.

    Imports the exporting framework on a miss; an export that fails raises ExportFailed."""
    from .inspect import ExportInfo, describe

    kind = export_kind(kind)
    w_sha = weights_sha256(weights)

    def export(tmp: Path) -> dict[str, Any]:
        exporter = load_backend_class(kind)()
        exporter.build(spec, weights)
        return ExportInfo.from_json(exporter.export_onnx(tmp, opset)).to_json()

    path, info, hit = cached_file(entry_path(kind, spec, w_sha, directory, opset), kind, spec, w_sha, export)
    try:
        return path, ExportInfo.from_json(info), hit
    except TypeError:  # stored by the harness with a native backend's own export facts
        return path, describe(path, spec, weights), hit


def cached_file(path: Path, kind: str, spec: ModelSpec, weights_sha: str,
                make: Callable[[Path], dict[str, Any]]) -> tuple[Path, dict[str, Any], bool]:
    """(path, info, hit): the valid cached file at ``path`` (from ``entry_path`` or ``file_path``), or
    one that ``make(tmp)`` writes (returning its facts, kept in the sidecar) and the cache stores,
    atomically and under the entry's lock, so concurrent makers of one key make it once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path):
        found = _lookup(path) if _sidecar(path).exists() else None
        if found is not None:
            return found.path, found.info, True
        with atomic_path(path, suffix=f".tmp{path.suffix}") as tmp:  # exporters go by the suffix
            info = make(tmp)
        _store(path, kind, spec, weights_sha, path, info)
    enforce_cap(path.parent, keep=(path,))
    return path, {k: v for k, v in info.items() if k != "path"}, False


# ---- size cap: entries, least recently used first --------------------------------------------

DEFAULT_MAX_GB = 5.0
# Automatic pruning spares entries used this recently: a run in progress may still read them.
IN_USE_S = 3600.0


# The converted files the cache holds, by suffix (an entry's kind is "<format>-<native backend>").
MODEL_SUFFIXES = (".onnx", ".tflite")


@dataclass(frozen=True)
class Entry:
    kind: str  # "onnx-torch", "onnx-keras", "tflite-keras", ... or "weights"
    spec: str
    path: Path  # the .onnx, .tflite or .safetensors file
    size: int  # file + sidecar + lock, bytes
    last_used: float  # seconds since the epoch

    def files(self) -> tuple[Path, Path, Path]:
        return self.path, _sidecar(self.path), self.path.with_suffix(".lock")


def max_cache_bytes() -> int | None:
    """The automatic cap from ``$ALEXBENCH_CACHE_MAX_GB`` (default 5 GB); None when set to 0."""
    raw = os.environ.get("ALEXBENCH_CACHE_MAX_GB", "").strip()
    try:
        gb = float(raw) if raw else DEFAULT_MAX_GB
    except ValueError:
        gb = DEFAULT_MAX_GB  # a typo must not turn pruning off, nor fail a run
    return None if gb <= 0 else int(gb * 1e9)


def mark_used(path: Path) -> None:
    """Record a use of the entry whose file is ``path`` (its lock file's mtime; the file and
    sidecar stay untouched, as the weights' sidecar vouches by the file's mtime)."""
    try:
        path.with_suffix(".lock").touch()
    except OSError:
        pass  # a read-only cache still works; it only ages as created


def _entry(path: Path, kind: str, spec: str) -> Entry | None:
    size, last = 0, 0.0
    for f in (path, _sidecar(path), path.with_suffix(".lock")):
        try:
            st = f.stat()
        except OSError:
            continue
        size, last = size + st.st_size, max(last, st.st_mtime)
    return Entry(kind, spec, path, size, last) if size else None


def list_entries(directory: str | Path | None = None) -> list[Entry]:
    """Every entry (converted files and canonical weights), least recently used first. Stray files
    without their model file (a lock alone, an interrupted store's sidecar) count as entries
    too, so that pruning removes them."""
    root = cache_dir(directory)
    found: list[Entry] = []
    for folder, suffixes in ((root, MODEL_SUFFIXES), (root / "weights", (".safetensors",))):
        if not folder.is_dir():
            continue
        stems = {f.stem for f in folder.iterdir()
                 if not f.name.startswith(".") and f.suffix in (*suffixes, ".json", ".lock") and f.is_file()}
        for stem in stems:
            # a stray sidecar or lock takes the first suffix: its entry's files are removed all the same
            suffix = next((s for s in suffixes if (folder / f"{stem}{s}").is_file()), suffixes[0])
            path = folder / f"{stem}{suffix}"
            if suffix in MODEL_SUFFIXES:
                try:
                    meta = json.loads(_sidecar(path).read_text())
                    kind, spec = f"{suffix[1:]}-{meta['kind']}", str(meta["spec"])
                except (OSError, ValueError, KeyError, TypeError):
                    kind, spec = suffix[1:], stem.rsplit("-", 2)[0]
            else:
                kind, spec = "weights", stem.rsplit("-", 1)[0]
            entry = _entry(path, kind, spec)
            if entry is not None:
                found.append(entry)
    return sorted(found, key=lambda e: (e.last_used, str(e.path)))


def _remove_unless_locked(entry: Entry) -> bool:
    """Remove the entry's files under its lock; False (nothing removed) when another process
    holds the lock (it is storing, reading or exporting this entry)."""
    import fcntl

    lock_path = entry.path.with_suffix(".lock")
    try:
        lock = open(lock_path, "a")
    except OSError:
        return False
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        # model first: a reader that waited on this lock then sees no sidecar, a miss
        for f in entry.files():
            f.unlink(missing_ok=True)
        return True


def prune(directory: str | Path | None = None, max_bytes: int = 0, keep: tuple[Path, ...] = (),
          spare_used_within_s: float = 0.0) -> tuple[list[Entry], list[Entry]]:
    """Remove least-recently-used entries until the cache holds at most ``max_bytes``
    (0: remove every entry it may). Never removes an entry in ``keep``, one used within
    ``spare_used_within_s`` seconds, or one whose lock another process holds.
    Returns (removed, kept)."""
    entries = list_entries(directory)
    total = sum(e.size for e in entries)
    kept_paths = {Path(p).resolve() for p in keep}
    now = time.time()
    removed: list[Entry] = []
    for entry in entries:  # oldest first
        if total <= max_bytes:
            break
        if entry.path.resolve() in kept_paths or now - entry.last_used < spare_used_within_s:
            continue
        if _remove_unless_locked(entry):
            removed.append(entry)
            total -= entry.size
    gone = {e.path for e in removed}
    return removed, [e for e in entries if e.path not in gone]


def enforce_cap(directory: str | Path, keep: tuple[Path, ...] = ()) -> list[Entry]:
    """The automatic cap after a store (``directory``: the ONNX cache directory, or its
    ``weights/`` folder). Never fails the run that stored: a cache it cannot prune stays."""
    limit = max_cache_bytes()
    if limit is None:
        return []
    root = Path(directory)
    if root.name == "weights":
        root = root.parent
    try:
        return prune(root, limit, keep=keep, spare_used_within_s=IN_USE_S)[0]
    except OSError:
        return []
