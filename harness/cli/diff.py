"""``alexbench diff A B``: where two networks' structures differ, layer by layer."""

from __future__ import annotations

import argparse
import json

from ..errors import ExitCode

DESCRIPTION = """Compare the structure of two networks: their layers are aligned by op sequence (not by name: an
imported model's layers are named conv1, relu1, ... whatever a spec calls them), and each aligned pair's
differing fields are listed (filters, kernel, stride, padding, groups, LRN size/alpha/beta/k, units, ...), with
the layers only one side has, the input shape, and the parameter and MAC totals. Weights are not compared.

A and B are each a spec file (.yaml), a shipped spec's name, or a model source: file.py:NAME,
package.module:NAME, or a .keras, .onnx or .pt file. Importing a model source RUNS the user's code (a Python
file, and a .pt or .keras file's code too): diff only models you trust."""

EXAMPLES = """examples:
  alexbench diff alexnet alexnet-owt              # the 2012 paper's network vs torchvision's
  alexbench diff my_net.py:AlexNet alexnet-owt    # your PyTorch model vs a shipped spec
  alexbench diff model.onnx my-net.yaml --json
"""

EXIT_HELP = "exit code 0: no structural difference; 1: they differ; 2: an argument cannot be read or imported"


def add_arguments(command: str, parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
    parser.epilog = EXAMPLES + "\n" + EXIT_HELP + "\n\n" + (parser.epilog or "")
    parser.add_argument("a", metavar="A", help="a spec file, a shipped spec's name, or a model source")
    parser.add_argument("b", metavar="B", help="the same kinds as A")
    parser.add_argument("--json", action="store_true", help="print the diff as JSON (every aligned layer)")


def run(command: str, args: argparse.Namespace) -> int:
    from ...spec.diff import diff_specs
    from ..model_import import spec_from_argument

    diff = diff_specs(spec_from_argument(args.a), spec_from_argument(args.b))
    print(json.dumps(diff.to_json(), indent=2) if args.json else "\n".join(diff.lines()))
    return ExitCode.OK if diff.same else ExitCode.MISMATCH
