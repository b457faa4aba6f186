"""A user's own model as a spec and canonical weights: for ``alexbench import``, ``diff``,
``compare --model``, ``report --compare-with`` and ``alexbench.import_model``.

The importers live with their frameworks (``backends/<framework>/importer.py``); what a SOURCE
names is resolved in ``backends/model_source.py``; naming, writing and validating the spec is
framework-free (``spec/imported.py``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..backends.model_source import SOURCE_FORMS, WHAT_MODELS_ARE, importer_for, is_model_file, load_object
from ..spec import ModelSpec, load_spec
from ..spec.imported import ImportResult, build_spec
from ..spec.loader import shipped_spec_names
from .errors import UsageError

INPUT_SHAPE_FORM = "C,H,W of positive integers, e.g. 3,224,224"


def import_source(source: str | Any, *, input_shape: tuple[int, int, int] | None = None,
                  name: str | None = None, label: str | None = None) -> ImportResult:
    """Import a SOURCE string or an in-memory model (``label``: what to call it, default its type);
    raise a SpecError (exit 2) when the spec language cannot express it or the model cannot run."""
    if isinstance(source, (str, Path)):
        label = str(source)
        obj, importer = load_object(label)
    else:
        obj, importer = source, importer_for(source)
        label = label or f"<{type(source).__name__} object>"
        if importer is None:
            raise UsageError(f"model: a {type(source).__name__} is not a model; expected {WHAT_MODELS_ARE}, "
                             f"or a source string ({SOURCE_FORMS})")
    return build_spec(importer.import_model(obj, label, input_shape), name=name)


def is_source(arg: str) -> bool:
    """A model SOURCE rather than a spec: a model file, or code with ':NAME'."""
    return is_model_file(arg) or (":" in arg and not arg.lower().endswith((".yaml", ".yml")))


def spec_from_argument(arg: str, *, input_shape: tuple[int, int, int] | None = None) -> ModelSpec:
    """A spec file or shipped spec's name as it is; a model SOURCE imported."""
    if arg in shipped_spec_names() or not is_source(arg):
        return load_spec(arg)
    return import_source(arg, input_shape=input_shape).spec


def parse_input_shape(text: str | None, option: str = "--input-shape") -> tuple[int, int, int] | None:
    if text is None:
        return None
    parts = [p.strip() for p in re.split(r"[,x ]", text.strip()) if p.strip()]
    if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise UsageError(f"{option}: received {text!r}; expected {INPUT_SHAPE_FORM}")
    return tuple(int(p) for p in parts)  # type: ignore[return-value]
