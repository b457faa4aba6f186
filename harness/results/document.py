"""The results file: one versioned JSON document per compare or bench run.

The schema (``results_schema.json``, documented in docs/results.md) is the contract for CI
gates and reports. Files are validated before they are written, and written atomically.
"""

from __future__ import annotations

import json
import time
from importlib import resources
from pathlib import Path
from typing import Any

from ... import __version__
from ...spec import ModelSpec
from ...spec.weights import atomic_write_bytes
from ..environment import environment

SCHEMA_ID = "alexbench.results/1"


def load_schema() -> dict:
    return json.loads(resources.files(__package__).joinpath("results_schema.json").read_text("utf-8"))


def validate_results(doc: dict) -> None:
    """Raise jsonschema.ValidationError when ``doc`` does not follow the schema."""
    import jsonschema

    jsonschema.validate(doc, load_schema())


def new_results(kind: str, spec: ModelSpec) -> dict[str, Any]:
    return {
        "schema": SCHEMA_ID,
        "kind": kind,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "alexbench_version": __version__,
        "environment": environment(),
        "spec": spec_summary(spec),
        "backends": [],
        "verdict": {"exit_code": 0, "summary": ""},
    }


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


def write_results(doc: dict, path: str | Path) -> Path:
    validate_results(doc)
    path = Path(path)
    atomic_write_bytes(path, (json.dumps(doc, indent=2, allow_nan=False) + "\n").encode("utf-8"))
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
