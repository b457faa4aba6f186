"""The SPEC argument that summary, validate, weights and report share."""

from __future__ import annotations

import argparse

from ...spec import load_spec
from ...spec.loader import DEFAULT_BUDGET_BYTES, shipped_spec_names

SPEC_HELP = "a spec file (.yaml) or a shipped spec's name: " + ", ".join(shipped_spec_names())


def add_spec_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", help=SPEC_HELP)
    parser.add_argument("--max-gib", type=float, default=DEFAULT_BUDGET_BYTES / 2**30,
                        help="refuse specs whose float32 weights or one image's activations exceed this (default 4)")


def load_spec_argument(args: argparse.Namespace):
    return load_spec(args.spec, budget_bytes=int(args.max_gib * 2**30))
