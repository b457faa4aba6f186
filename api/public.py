"""``alexbench.compare``, ``alexbench.bench`` and ``alexbench.report``: the command line's three runs as
functions (docs/api.md).

Arguments are checked before anything runs; a bad one raises ``UsageError`` with one line saying
what was received and what would be valid. The harness modules are imported inside the functions,
so ``import alexbench`` stays cheap (no framework, not even numpy).
"""

from __future__ import annotations

import math
import re
from os import PathLike
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence, Union

from .harness.errors import UsageError
from .harness.results.model import BenchDocument, CompareDocument, ResultsDocument

CompareResult = CompareDocument
BenchResult = BenchDocument

Progress = Callable[[str], None]
PathArg = Union[str, PathLike]
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def compare(spec: Any = None, backends: Sequence[str] | str | None = None, *, model: Any = None,
            onnx: bool = True, weights: PathArg | None = None, seed: int = 0, batch: int | None = None,
            inputs: Any = None,
            profile: str = "default", atol: float | None = None, rtol: float | None = None,
            rel_l2: float | None = None, layers: bool = True, timeout_s: float = 600, save_dir: PathArg | None = None,
            cache_dir: PathArg | None = None, precision: str = "fp32", train: bool = False,
            steps: int | None = None, labels: PathArg | None = None, python: Mapping[str, PathArg] | None = None,
            progress: Progress | None = None) -> CompareResult:
    """Run the float64 reference and every backend (plus the ONNX runs of their exports when ``onnx``)
    on one batch with the same weights and judge them; what ``alexbench compare`` does.

    ``rel_l2``: the largest relative L2 error that passes (None: the profile's). Returns the results
    document, typed: ``.ok`` (exit code 0), ``.exit_code`` (0 agree, 1 mismatch, 3 a backend failed
    or nothing was checked), ``.verdict``, ``.backends``, ``.to_json()``. A backend that fails or
    disagrees is in the result, not an exception.

    ``spec``: a shipped name or .yaml path (default alexnet; with ``model``, the model's own structure).
    ``model``: your own model (an nn.Module, a Keras model, an onnx.ModelProto, or a SOURCE string such
    as "net.py:AlexNet"; or a list of them): it runs itself as a backend, with its own weights used for
    every backend and the reference; ``backends`` then defaults to none besides it. With ``spec``, a
    model whose structure differs raises ``StructureMismatch`` carrying the diff. ``inputs``: image or
    .npy/.npz paths, or an N x C x H x W (or C x H x W) float array. ``precision``: fp32, bf16, fp16
    or int8 (or float32, bfloat16, float16): what every backend but the float64 reference runs in;
    below fp32 the precision's own profile judges (unless ``profile`` names another), classes are
    judged too, and seeded inputs default to a batch of 64 (docs/precision.md).

    ``train``: compare training instead (docs/training.md): ``steps`` SGD steps (default 1) on one batch
    (seeded inputs: 8 by default) with the spec's training settings, labels from ``labels`` (a .npy file of
    one integer class per input; default seeded), every backend that trains judged step by step against
    the float64 reference; ``.entry(name).training`` holds its losses and checks, ``.training`` the
    settings and derived limits. fp32 and specs only (no ``model``).

    ``python``: backend name -> the interpreter of another Python environment to run that backend's worker
    in (``compare --python``), e.g. ``{"torch": "/opt/torch-2.4/bin/python"}``: it needs Python >= 3.10,
    numpy and the backend's framework there, not alexbench. Each entry's ``environment["interpreter"]``
    says where it ran (executable, version, prefix, package versions). An interpreter that is missing,
    crashes, is too old or lacks a package fails that backend (its entry's ``error`` says why, exit code 3);
    a name that is not a backend of the run raises UsageError."""
    from .backends.precision import UnknownPrecision, canonical_precision
    from .harness.compare.metrics import PROFILES

    try:
        precision = canonical_precision(precision)
    except UnknownPrecision as exc:
        raise UsageError(f"precision: {exc}") from None

    names = None if backends is None else _backend_names(backends)
    models = [] if model is None else list(model) if isinstance(model, (list, tuple)) else [model]
    _int("seed", seed, 0)
    if batch is not None:  # None: 4 seeded inputs (8 with train), or one per input image
        _int("batch", batch, 1)
    if steps is not None:
        _int("steps", steps, 1)
    if profile not in PROFILES:
        raise UsageError(f"profile: unknown {profile!r}; expected one of {', '.join(sorted(PROFILES))}")
    for what, value in (("atol", atol), ("rtol", rtol), ("rel_l2", rel_l2)):
        if value is not None:
            _number(what, value, 0.0)
    _number("timeout_s", timeout_s, 0.0, strict=True)
    array = inputs if hasattr(inputs, "__array__") else None
    files = [] if inputs is None or array is not None else [
        str(_path("inputs", p)) for p in _sequence("inputs", inputs)]
    interpreters = _interpreters(python)
    progress = _progress(progress)

    from .backends.registry import UnknownBackend
    from .harness.compare.run import CompareConfig, run_compare
    from .harness.inputs import InputError
    from .harness.train.run import check_train_options, run_train
    from .spec import SpecError

    cfg = CompareConfig(spec=None if spec is None else _spec_arg(spec), backends=names, models=models,
                        onnx=bool(onnx), weights=_opt_path("weights", weights), input_array=array,
                        seed=seed, batch=batch, inputs=files, profile=profile, atol=atol, rtol=rtol,
                        rel_l2=rel_l2, layers=bool(layers), timeout_s=float(timeout_s),
                        save_dir=_opt_path("save_dir", save_dir), cache_dir=_opt_path("cache_dir", cache_dir),
                        precision=precision, train=bool(train), steps=steps,
                        labels=_opt_path("labels", labels), python=interpreters)
    check_train_options(cfg)
    try:
        doc = run_train(cfg, progress) if cfg.train else run_compare(cfg, progress)
    except (UnknownBackend, InputError, SpecError) as exc:
        raise UsageError(str(exc)) from exc
    return CompareDocument.from_json(doc)


def bench(spec: Any = "alexnet-owt",
          backends: Sequence[str] | str = ("torch", "keras", "onnx-torch", "onnx-keras", "openvino-torch", "litert"),
          *, batch_sizes: Sequence[int] = (1, 8, 64), device: str = "auto", precisions: Sequence[str] = ("float32",),
          compiled: str | None = None, warmup: int | None = None, min_time_s: float | None = None,
          min_reps: int | None = None, threads: int | None = None, seed: int = 0, weights: PathArg | None = None,
          timeout_s: float = 900, cache_dir: PathArg | None = None, overhead: bool = True, peak: bool = True,
          peak_n: int | None = None, train: bool = False, python: Mapping[str, PathArg] | None = None,
          progress: Progress | None = None) -> BenchResult:
    """Time every backend at every batch size on one device; what ``alexbench bench`` does. ``train``: time
    training steps (forward, backward, SGD update) instead of inferences (``bench --train``).

    ``warmup``/``min_time_s``/``min_reps``: the timing method (None: its default). ``device``: auto,
    cpu, cuda or cuda:N; cuda on a machine without a GPU is a UsageError. Returns the typed results
    document: ``.ok``, ``.exit_code`` (0, or 3 when a backend or a batch size failed), ``.rows``.

    ``python``: backend name -> the interpreter of another Python environment to run that backend's jobs in
    (``bench --python``), as in ``compare``: each entry's ``environment["interpreter"]`` says where it ran;
    one that cannot run the worker fails that backend (exit code 3). The matmul peak, the null backend's
    overhead and ONNX exports run in this interpreter."""
    from .harness.bench.method import Method
    from .harness.bench.run import PRECISIONS

    names = _backend_names(backends)
    sizes = [_int("batch_sizes", b, 1) for b in _sequence("batch_sizes", batch_sizes)]
    if not sizes:
        raise UsageError("batch_sizes: empty; expected integers >= 1 such as (1, 8, 64)")
    wanted = [str(p) for p in _sequence("precisions", precisions)]
    unknown = [p for p in wanted if p not in PRECISIONS]
    if unknown or not wanted:
        raise UsageError(f"precisions: unknown {', '.join(map(repr, unknown)) or '(none given)'}; "
                         f"expected some of {', '.join(PRECISIONS)}")
    if not isinstance(device, str) or not _DEVICE.fullmatch(device):
        raise UsageError(f"device: expected auto, cpu, cuda or cuda:N; received {device!r}")
    if compiled not in (None, "also", "only"):
        raise UsageError(f"compiled: expected None, 'also' or 'only'; received {compiled!r}")
    default = Method()
    method = Method(warmup=default.warmup if warmup is None else _int("warmup", warmup, 0),
                    min_time_s=default.min_time_s if min_time_s is None else _number("min_time_s", min_time_s, 0.0),
                    min_reps=default.min_reps if min_reps is None else _int("min_reps", min_reps, 1))
    for what, value in (("threads", threads), ("peak_n", peak_n)):
        if value is not None:
            _int(what, value, 1)
    _int("seed", seed, 0)
    _number("timeout_s", timeout_s, 0.0, strict=True)
    interpreters = _interpreters(python)
    progress = _progress(progress)

    from .backends.registry import UnknownBackend
    from .harness.bench.run import BenchConfig, BenchError, run_bench
    from .spec import SpecError

    cfg = BenchConfig(spec=_spec_arg(spec), backends=tuple(dict.fromkeys(names)),
                      batch_sizes=tuple(sorted(dict.fromkeys(sizes))), device=device,
                      precisions=tuple(dict.fromkeys(wanted)), compiled=compiled, method=method, threads=threads,
                      seed=seed, weights=_opt_path("weights", weights), timeout_s=float(timeout_s),
                      cache_dir=_opt_path("cache_dir", cache_dir), overhead=bool(overhead), peak=bool(peak),
                      peak_n=peak_n, train=bool(train), python=interpreters)
    try:
        doc = run_bench(cfg, progress)
    except (BenchError, UnknownBackend, SpecError) as exc:
        raise UsageError(str(exc)) from exc
    return BenchDocument.from_json(doc)


def import_model(source: Any, *, input_shape: Sequence[int] | None = None, name: str | None = None):
    """Your own model as a spec and canonical weights; what ``alexbench import`` does. ``source``: an
    nn.Module, a Keras model, an onnx.ModelProto, or a SOURCE string ("net.py:AlexNet",
    "package.module:NAME", a .keras/.onnx/.pt file; importing code runs it). Returns an object with
    ``.spec`` (a validated ModelSpec), ``.weights`` (name -> float32 array), ``.yaml_text`` and
    ``.save(spec_path, weights_path)``. A model the spec language cannot express, or whose layers do
    not fit together, raises UsageError with the located message."""
    from .harness.model_import import import_source
    from .spec import SpecError

    shape = None
    if input_shape is not None:
        shape = tuple(_int("input_shape", v, 1) for v in _sequence("input_shape", input_shape))
        if len(shape) != 3:
            raise UsageError(f"input_shape: expected [channels, height, width]; received {list(input_shape)}")
    try:
        return import_source(source, input_shape=shape, name=name)
    except SpecError as exc:
        raise UsageError(str(exc)) from exc


def report(spec: Any, out_dir: PathArg, results: Iterable[ResultsDocument | dict | PathArg] = (), *,
           variants: Sequence[Any] = (), diagram: bool = True, progress: Progress | None = None) -> list[Path]:
    """Write report.md, report.html and their SVG files for ``spec`` into ``out_dir``; what
    ``alexbench report`` does. Returns the paths written, report.md and report.html first.

    ``results``: compare/bench results (what ``compare``/``bench`` return, their ``to_json()``,
    or files written with ``--json``), all made with ``spec``; ``variants``: specs (or model SOURCEs,
    imported) to diff against. ``diagram`` needs Graphviz's ``dot``; without it this raises UsageError."""
    from .harness.model_import import spec_from_argument
    from .harness.report.write import write_report
    from .harness.results.document import read_results, validate_results
    from .spec import ModelSpec, SpecError, load_spec

    if not isinstance(out_dir, (str, PathLike)):
        raise UsageError(f"out_dir: expected a folder path; received {out_dir!r}")
    progress = _progress(progress)
    docs = []
    for i, item in enumerate(_sequence("results", results), 1):
        if isinstance(item, ResultsDocument):
            docs.append((f"{item.kind} run {i}", item.to_json()))
        elif isinstance(item, dict):
            try:
                validate_results(item)
            except Exception as exc:  # jsonschema.ValidationError: imported lazily
                raise UsageError(f"results[{i - 1}]: not an alexbench results document: {exc}") from exc
            docs.append((f"{item.get('kind')} run {i}", item))
        elif isinstance(item, (str, PathLike)):
            try:
                docs.append((str(item), read_results(item)))
            except ValueError as exc:
                raise UsageError(str(exc)) from exc
        else:
            raise UsageError(f"results[{i - 1}]: expected a results document, a dict or a file path; "
                             f"received {type(item).__name__}")
    try:
        model = spec if isinstance(spec, ModelSpec) else load_spec(_spec_arg(spec))
        others = [v if isinstance(v, ModelSpec) else spec_from_argument(_spec_arg(v))
                  for v in _sequence("variants", variants)]
    except SpecError as exc:
        raise UsageError(str(exc)) from exc
    if diagram:  # fail before any work
        from .harness.report.diagram import check_graphviz

        check_graphviz()
    return write_report(model, out_dir, results=docs, variants=others, diagram=bool(diagram), progress=progress)


# ---- argument checks: each raises UsageError naming the argument, what it got and what is valid ----


def _int(what: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UsageError(f"{what}: expected an integer >= {minimum}; received {value!r}")
    return value


def _number(what: str, value: Any, minimum: float, strict: bool = False) -> float:
    ok = (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
          and (value > minimum if strict else value >= minimum))
    if not ok:
        raise UsageError(f"{what}: expected a number {'>' if strict else '>='} {minimum:g}; received {value!r}")
    return float(value)


def _sequence(what: str, value: Any) -> list:
    if isinstance(value, (str, bytes, PathLike, dict)) or not isinstance(value, Iterable):
        raise UsageError(f"{what}: expected a list; received {value!r}")
    return list(value)


def _backend_names(backends: Any) -> list[str]:
    from .backends.registry import UnknownBackend, backend_target

    names = [n.strip() for n in backends.split(",") if n.strip()] if isinstance(backends, str) else \
        _sequence("backends", backends)
    if not names or not all(isinstance(n, str) for n in names):
        raise UsageError(f"backends: expected backend names such as ['torch', 'keras']; received {backends!r}")
    for name in names:
        try:
            backend_target(name)
        except UnknownBackend as exc:
            raise UsageError(f"backends: {exc}") from exc
    return names


def _interpreters(python: Any) -> dict[str, str]:
    if python is None:
        return {}
    if not isinstance(python, Mapping) or not all(isinstance(k, str) and isinstance(v, (str, PathLike))
                                                  for k, v in python.items()):
        raise UsageError(f"python: expected backend name -> interpreter path, e.g. {{'torch': "
                         f"'/opt/torch-venv/bin/python'}}; received {python!r}")
    return {name: str(path) for name, path in python.items()}


def _spec_arg(spec: Any) -> str:
    if not isinstance(spec, (str, PathLike)):
        raise UsageError(f"spec: expected a shipped spec's name or a .yaml path; received {spec!r}")
    return str(spec)


def _path(what: str, value: Any) -> Path:
    if not isinstance(value, (str, PathLike)):
        raise UsageError(f"{what}: expected a file path; received {value!r}")
    return Path(value)


def _opt_path(what: str, value: Any) -> str | None:
    return None if value is None else str(_path(what, value))


def _progress(progress: Any) -> Progress:
    if progress is None:
        return lambda message: None
    if not callable(progress):
        raise UsageError(f"progress: expected a function taking one str, or None; received {progress!r}")
    return progress
