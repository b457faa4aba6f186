"""``alexbench validate``: check a spec; exit 2 with FILE:LINE:COL on a problem."""

from __future__ import annotations

import argparse

from ...spec import fmt_shape
from .spec_argument import add_spec_arguments, load_spec_argument


def add_arguments(command: str, parser: argparse.ArgumentParser) -> None:
    add_spec_arguments(parser)


def run(command: str, args: argparse.Namespace) -> int:
    spec = load_spec_argument(args)
    print(f"{spec.source}: ok: '{spec.name}', {len(spec.layers)} layers, {spec.param_count:,} parameters, "
          f"output {fmt_shape(spec.output_shape)}")
    return 0
