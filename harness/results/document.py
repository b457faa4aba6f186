"""The results file: one versioned JSON document per compare or bench run.

The schema (``results_schema.json``, documented in docs/results.md) is the contract for CI
gates and reports. Files are validated before they are written, and written atomically. The
typed form of a document is in ``model.py``.
"""

from __future__ import annotations

import json
import time
from importlib import resources
from pathlib import Path
from typing import Any

from ...spec import ModelSpec
from ...spec.files import atomic_write
from ...version import __version__
from ..environment import environment
from .model import SCHEMA_ID, SCHEMA_IDS, BenchDocument, CompareDocument, Document, ResultsDocument

__all__ = ["SCHEMA_ID", "SCHEMA_IDS", "load_schema", "new_results", "read_document", "read_results", "results_json",
           "spec_summary", "validate_results", "write_results"]


def load_schema() -> dict:
    return json.loads(resources.files(__package__).joinpath("results_schema.json").read_text("utf-8"))


def validate_results(doc: dict) -> None:
    """Raise jsonschema.ValidationError when ``doc`` does not follow the schema."""
    import jsonschema

    jsonschema.validate(doc, load_schema())


def new_results(kind: str, spec: ModelSpec, **sections: Any) -> Document:
    """A new document of ``kind`` ("compare" or "bench") for ``spec``, made now on this machine, with
    no backends yet; ``sections``: its other fields (weights, inputs, tolerance; bench)."""
    cls = {"compare": CompareDocument, "bench": BenchDocument}[kind]
    return cls(created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), alexbench_version=__version__,
               environment=environment(), spec=spec_summary(spec), **sections)


def spec_summary(spec: ModelSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "source": spec.source,
        "sha256": spec.sha256,
        "input_shape": list(spec.input_shape),
        "output_shape": list(spec.output_shape),
        "param_count": spec.param_count,
        "trainable_count": spec.trainable_count,
        "macs": spec.macs,
    }


def results_json(doc: dict | ResultsDocument) -> str:
    """The file's text: 2-space JSON, no NaN, a final newline."""
    if isinstance(doc, ResultsDocument):
        doc = doc.to_json()
    return json.dumps(doc, indent=2, allow_nan=False) + "\n"


def write_results(doc: dict | ResultsDocument, path: str | Path) -> Path:
    if isinstance(doc, ResultsDocument):
        doc = doc.to_json()
    validate_results(doc)
    path = Path(path)
    atomic_write(path, results_json(doc))
    return path


def read_results(path: str | Path) -> dict:
    """Read and validate a results file; a bad one raises ValueError with the path and the problem."""
    import jsonschema

    path = Path(path)
    try:
        doc = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a readable results file ({exc})") from None
    try:
        validate_results(doc)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(top level)"
        raise ValueError(f"{path}: not an alexbench results file: at {where}: {exc.message}") from None
    return doc


def read_document(path: str | Path) -> Document:
    """``read_results``, typed: a CompareDocument or a BenchDocument."""
    return ResultsDocument.from_json(read_results(path))
