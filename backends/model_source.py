"""A user's own model, named by a SOURCE: ``path/to/file.py:NAME``, ``package.module:NAME``, or a
model file (``.keras``, ``.onnx``, ``.pt``).

Loading Python code runs it, as importing it would. NAME is a model instance, a class callable
without arguments, or a factory; dotted (``zoo.alexnet``) reaches attributes. Which framework a
model belongs to is asked of each importer (``backends/<framework>/importer.py``), none of which
imports its framework to answer: a torch model can only exist once its code imported torch.
Every problem is one ``ImportRefused`` line (exit code 2).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from ..spec.errors import first_line
from ..spec.imported import ImportRefused

IMPORTERS = (
    "alexbench.backends.torch.importer",
    "alexbench.backends.keras.importer",
    "alexbench.backends.onnx.importer",
)
# Where a SOURCE of each framework runs for `compare --model` (a worker's backend class).
MODEL_BACKENDS = {
    "torch": "alexbench.backends.torch.user_model:TorchModelBackend",
    "keras": "alexbench.backends.keras.user_model:KerasModelBackend",
    "onnx": "alexbench.backends.onnxrt.user_model:OnnxModelBackend",
}
SOURCE_FORMS = "file.py:NAME, package.module:NAME, or a .keras, .onnx or .pt file"
WHAT_MODELS_ARE = "a PyTorch nn.Module, a Keras model or an ONNX ModelProto"


def importers() -> list[ModuleType]:
    return [importlib.import_module(name) for name in IMPORTERS]


def file_suffixes() -> dict[str, ModuleType]:
    return {suffix: module for module in importers() for suffix in module.FILE_SUFFIXES}


def importer_for(obj: Any) -> ModuleType | None:
    return next((module for module in importers() if module.accepts(obj)), None)


def is_model_file(source: str) -> bool:
    return Path(source).suffix.lower() in file_suffixes()


def load_object(source: str) -> tuple[Any, ModuleType]:
    """The model a SOURCE names, and the importer that reads it."""
    suffix = Path(source).suffix.lower()
    by_suffix = file_suffixes()
    if suffix in by_suffix:
        path = Path(source)
        if not path.is_file():
            raise ImportRefused(f"source '{source}'", "no such model file", source, SOURCE_FORMS)
        return by_suffix[suffix].load_file(path), by_suffix[suffix]
    module_part, sep, name = source.rpartition(":")
    if not sep or not module_part or not name:
        raise ImportRefused(f"source '{source}'", "not a model source", repr(source), SOURCE_FORMS)
    module = _load_module(source, module_part)
    obj = _attribute(source, module, name)
    importer = importer_for(obj)
    if importer is None and callable(obj):
        obj = _call(source, name, obj)
        importer = importer_for(obj)
    if importer is None:
        raise ImportRefused(f"source '{source}'", f"'{name}' is not a model", type(obj).__name__,
                            f"{WHAT_MODELS_ARE}, a class that builds one without arguments, or a factory")
    return obj, importer


def source_label(source: str) -> str:
    """A short name for the model (its NAME, or the file's stem), fit for a backend and file name."""
    name = Path(source).stem if is_model_file(source) else source.rpartition(":")[2].rpartition(".")[2]
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:48] or "model"


def _load_module(source: str, module_part: str) -> ModuleType:
    where = f"source '{source}'"
    try:
        if module_part.endswith(".py"):
            path = Path(module_part).resolve()
            if not path.is_file():
                raise ImportRefused(where, "no such Python file", module_part, SOURCE_FORMS)
            # One module per file, registered so that its classes pickle; its folder on sys.path so
            # that it can import its neighbours, as running it as a script would.
            digest = hashlib.sha256(str(path).encode()).hexdigest()[:10]
            name = f"alexbench_user_{re.sub(r'[^A-Za-z0-9_]', '_', path.stem)}_{digest}"
            if name in sys.modules:
                return sys.modules[name]
            if str(path.parent) not in sys.path:
                sys.path.insert(0, str(path.parent))
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[name]
                raise
            return module
        return importlib.import_module(module_part)
    except ImportRefused:
        raise
    except ModuleNotFoundError as exc:
        raise ImportRefused(where, "cannot import the module", first_line(exc),
                            "a module on sys.path, or a path ending in .py") from None
    except (Exception, SystemExit) as exc:  # the user's code failed while it ran
        raise ImportRefused(where, f"running {module_part} raised {type(exc).__name__}", first_line(exc),
                            "code that defines the model without error") from None


def _attribute(source: str, module: ModuleType, name: str) -> Any:
    obj: Any = module
    for part in name.split("."):
        if not hasattr(obj, part):
            raise ImportRefused(f"source '{source}'", f"no '{name}' in {_shown(module)}",
                                repr(name), "one of: " + (", ".join(_candidates(module)) or "(no models or classes)"))
        obj = getattr(obj, part)
    return obj


def _shown(module: ModuleType) -> str:
    return getattr(module, "__file__", None) or module.__name__


def _candidates(module: ModuleType) -> list[str]:
    """Names in the module that could be a model: its own classes and functions, and model instances."""
    out = []
    for key, value in vars(module).items():
        if key.startswith("_"):
            continue
        own = getattr(value, "__module__", None) == module.__name__
        if (own and (inspect.isclass(value) or inspect.isfunction(value))) or importer_for(value) is not None:
            out.append(key)
    return out


def _call(source: str, name: str, factory: Any) -> Any:
    where = f"source '{source}'"
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        signature = None
    if signature is not None:
        required = [p.name for p in signature.parameters.values()
                    if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        if required:
            raise ImportRefused(where, f"'{name}' needs arguments to build the model", ", ".join(required),
                                "an instance, a class or a factory callable without arguments "
                                "(e.g. `model = AlexNet(1000)` in the file, then file.py:model)")
    try:
        return factory()
    except Exception as exc:
        raise ImportRefused(where, f"calling {name}() raised {type(exc).__name__}", first_line(exc),
                            "a class or factory that builds the model without error") from None
