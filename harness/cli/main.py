"""The ``alexbench`` command line. Each subcommand lives in its own module, imported only
when that subcommand runs, so ``alexbench --help`` and ``alexbench summary`` start fast.

Exit codes are the same for every subcommand (``harness/errors.py``).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ...spec import SpecError
from ...version import __version__
from ..errors import EXIT_CODES_HELP, ExitCode, UsageError

# subcommand -> (its module in this package, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "summary": ("summary", "layer table: output shapes, parameters, MACs (from the spec alone)"),
    "validate": ("validate", "check a spec; exit 2 with FILE:LINE:COL on the first problem"),
    "weights": ("weights", "write the canonical weights of a spec for a seed (safetensors)"),
    "import": ("import_model", "turn your own model (PyTorch or Keras code, .keras, .onnx) into a spec and weights"),
    "diff": ("diff", "where two networks' structures differ, layer by layer (specs or model sources)"),
    "backends": ("backends", "list the backends and whether their frameworks are installed"),
    "cache": ("cache", "list or prune the ONNX export and weights cache (least recently used first)"),
    "compare": ("compare", "run backends on the same inputs and compare them with the float64 reference"),
    "bench": ("bench", "measure throughput and latency per backend, batch size and device"),
    "report": ("report", "write report.md and a self-contained report.html for a spec and results"),
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's own errors: one line, exit 2
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(ExitCode.USAGE)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The full parser for ``command``; the other subcommands get their one-line help only, so
    that a command imports nothing but its own module."""
    parser = _Parser(
        prog="alexbench",
        description="Compile one YAML network spec into PyTorch and Keras with identical weights, export "
                    "both to ONNX, and check that every backend computes the same function.",
        epilog="examples:\n  alexbench summary alexnet\n  alexbench validate my-net.yaml\n"
               "  alexbench compare --backends torch,keras\n  alexbench bench --batch-sizes 1,32\n"
               "  alexbench report alexnet -o out/\n\n" + EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"alexbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text, epilog=EXIT_CODES_HELP,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        if name == command:
            _command_module(module).add_arguments(name, p)
    return parser


def _command_module(module: str):
    return importlib.import_module(f"{__package__}.{module}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return ExitCode.USAGE
    module = _command_module(COMMANDS[args.command][0])
    try:
        return module.run(args.command, args)
    except UsageError as exc:
        print(f"alexbench {args.command}: error: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    except SpecError as exc:
        print(f"alexbench {args.command}: error: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    except KeyboardInterrupt:
        print("alexbench: interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
