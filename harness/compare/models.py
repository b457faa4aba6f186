"""``compare --model``: a user's own models as backends of a compare run.

Each model is imported here (its structure and weights become the run's spec and weights, or are
checked against ``--spec``), then runs itself in its own worker: the worker loads the same SOURCE
(an in-memory model is first written in its framework's own file format) and reads every layer it
exposes (forward hooks, intermediate Keras outputs, added ONNX graph outputs).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...backends.model_source import MODEL_BACKENDS, importer_for, is_model_file, load_object, source_label
from ...backends.registry import available_backends
from ...spec import ModelSpec
from ...spec.diff import diff_specs
from ...spec.imported import ImportResult
from ...spec.loader import resolve_spec_path
from ..errors import StructureMismatch
from ..model_import import import_source


@dataclass
class ModelRun:
    name: str  # the backend name it runs under
    source: Any  # the SOURCE string, or the in-memory model
    imported: ImportResult
    imported_object: Any  # the model instance the import read

    @property
    def target(self) -> str:
        return MODEL_BACKENDS[self.imported.model.importer.partition(".")[0]]

    def worker_options(self, folder: Path) -> dict[str, str]:
        """What the worker loads: {"source": ...} with absolute paths, plus {"state": ...}, the tensors
        of the instance imported here, for code whose init may be random; an in-memory model is saved
        in its framework's file format."""
        folder.mkdir(parents=True, exist_ok=True)
        importer = importer_for(self.imported_object)
        if not isinstance(self.source, (str, Path)):
            return {"source": str(importer.save_model(self.source, folder).resolve())}
        source = str(self.source)
        if is_model_file(source):
            return {"source": str(Path(source).resolve())}
        module, _, name = source.rpartition(":")
        code = f"{Path(module).resolve()}:{name}" if module.endswith(".py") else source
        if not hasattr(importer, "save_state"):
            return {"source": str(importer.save_model(self.imported_object, folder).resolve())}
        return {"source": code, "state": str(importer.save_state(self.imported_object, folder).resolve())}


def import_models(sources: list[Any], progress, input_shape: tuple[int, int, int] | None = None,
                  spec_shape: tuple[int, int, int] | None = None) -> list[ModelRun]:
    """``input_shape``: given by the user, for every model; ``spec_shape``: the --spec's, for models
    that do not record their own (PyTorch code)."""
    taken = set(available_backends()) | {"reference"}
    runs = []
    for source in sources:
        progress(f"importing {source if isinstance(source, (str, Path)) else type(source).__name__}")
        obj, importer = load_object(str(source)) if isinstance(source, (str, Path)) else (source, importer_for(source))
        shape = input_shape or (None if getattr(importer, "RECORDS_INPUT_SHAPE", True) else spec_shape)
        imported = import_source(obj, input_shape=shape,
                                 label=str(source) if isinstance(source, (str, Path)) else None)
        base = source_label(str(source)) if isinstance(source, (str, Path)) else imported.model.name
        name = base if base not in taken else f"{base}-model"  # never a built-in backend's name
        k = 2
        while name in taken:
            name, k = f"{base}-model-{k}", k + 1
        taken.add(name)
        runs.append(ModelRun(name, source, imported, obj))
    return runs


def models_spec(runs: list[ModelRun], given: ModelSpec | None, spec_arg: str | None
                ) -> tuple[ModelSpec, bytes, dict[str, np.ndarray]]:
    """The run's spec (the first model's, or ``given``, loaded from ``spec_arg``, which every model's
    structure must then match: else StructureMismatch with the diff) and the first model's own
    weights, named as the spec names its layers."""
    first = runs[0].imported
    if given is None:
        spec, text = first.spec, first.yaml_text.encode("utf-8")
    else:
        spec, text = given, resolve_spec_path(spec_arg).read_bytes()
    for run in runs:
        diff = diff_specs(run.imported.spec, spec)
        if not diff.same:
            raise StructureMismatch(f"--model {run.name} does not have the structure of '{spec.name}':\n"
                                    + "\n".join(diff.lines()))
    renamed = {}
    for mine, theirs in zip(first.spec.layers, spec.layers):
        for param in mine.params:
            renamed[f"{theirs.name}.{param}"] = first.weights[f"{mine.name}.{param}"]
    return spec, text, renamed
