"""alexbench: does a network compiled into two frameworks compute the same function?

The public API (docs/api.md)::

    import alexbench
    result = alexbench.compare(spec="alexnet", backends=["torch", "keras"])
    result.ok, result.exit_code, result.verdict.summary, result.backends, result.to_json()
    alexbench.bench(...)   # -> BenchResult
    alexbench.report(spec, out_dir, results=[result])   # -> paths written
    alexbench.load_spec(name_or_path), alexbench.canonical_weights(spec, seed)
    imported = alexbench.import_model(my_module)   # your own model -> .spec, .weights, .save()
    alexbench.compare(model=my_module, spec="alexnet-owt", inputs=array)

Bad arguments raise ``alexbench.UsageError``. Importing this package is cheap: no deep-learning
framework (nor numpy) is imported until a function needs it; backends run in worker processes.
The subpackages: ``alexbench.spec`` (the spec language), ``alexbench.backends``,
``alexbench.harness`` (compare, bench, report, the command line).
"""

from .harness.errors import ExitCode, StructureMismatch, UsageError
from .public import BenchResult, CompareResult, bench, compare, import_model, report
from .version import __version__

__all__ = ["BenchResult", "CompareResult", "ExitCode", "StructureMismatch", "UsageError", "__version__", "bench",
           "canonical_weights", "compare", "import_model", "load_spec", "report"]

_FROM_SPEC = ("load_spec", "canonical_weights")  # the spec package imports numpy: loaded on first use


def __getattr__(name: str):
    if name in _FROM_SPEC:
        from . import spec

        return getattr(spec, name)
    raise AttributeError(f"module 'alexbench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_FROM_SPEC))
