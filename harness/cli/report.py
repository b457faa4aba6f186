"""``alexbench report``: report.md and a self-contained report.html for a spec, optionally with
variants to diff against and compare/bench results to show.

The report modules load only when a report is written; the library functions that write one
(``write_report``, ``write_report_for_results``) live in ``harness/report/write.py``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from ..report.write import write_report

EXAMPLES = """examples:
  alexbench report alexnet -o out/
      layer table, parameters and MACs, and the architecture diagram
  alexbench report alexnet --compare-with alexnet-owt --compare-with alexnet-blog-keras -o out/
      ... plus a side-by-side diff of the variants
  alexbench report alexnet --compare-with my_net.py:AlexNet -o out/
      ... your own model, imported (this runs its code), drawn against the paper's
  alexbench compare --spec alexnet --json cpu.json
  alexbench bench --spec alexnet --json bench.json
  alexbench report alexnet --results cpu.json --results gpu.json --results bench.json -o out/
      ... plus the parity matrix, per-layer errors, throughput and environment; files from
      several machines merge, one column per machine
  alexbench compare --spec alexnet --report out/
      the same report straight from one run (also `alexbench bench --report`)

writes into DIR: report.md, report.html (one page, no network or scripts needed), diagram.svg
and chart-*.svg (the pictures of report.md), each atomically; such files left from an earlier
report are replaced or removed, other files are left alone. The diagram needs Graphviz's `dot`
(apt-get install graphviz): without it the command stops with exit 2, unless --no-diagram.
Exit 0 when the report is written; 2 for a bad spec or results file, results made with another
spec, or no Graphviz."""

Progress = Callable[[str], None]


def add_arguments(command_name: str, parser: argparse.ArgumentParser) -> None:
    from ...spec import shipped_spec_names

    parser.epilog = EXAMPLES + "\n\n" + (parser.epilog or "")
    parser.add_argument("spec", help="a spec file (.yaml) or a shipped spec's name: " + ", ".join(shipped_spec_names()))
    parser.add_argument("-o", "--output", required=True, metavar="DIR", help="folder to write the report into")
    parser.add_argument("--results", action="append", default=[], metavar="FILE",
                        help="results JSON from `alexbench compare --json` or `alexbench bench --json` "
                             "(repeatable; files from several machines merge)")
    parser.add_argument("--compare-with", action="append", default=[], metavar="SPEC|SOURCE",
                        help="another spec, or a model SOURCE (file.py:NAME, a .keras/.onnx file: imported, which "
                             "runs its code), to diff against side by side (repeatable)")
    parser.add_argument("--no-diagram", dest="diagram", action="store_false",
                        help="leave the Graphviz diagram out (for machines without Graphviz)")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress lines on stderr")


def run(command_name: str, args: argparse.Namespace) -> int:
    from ...spec import load_spec
    from ..model_import import spec_from_argument
    from ..output_paths import check_folder
    from ..report.model import ReportError
    from ..results.document import read_results

    check_folder(("-o", "--output"), args.output, what="the report")  # before any work
    progress = _progress(args.quiet)
    if args.diagram:  # fail before any slow step
        from ..report.diagram import check_graphviz

        check_graphviz()
    spec = load_spec(args.spec)
    variants = [spec_from_argument(name) for name in args.compare_with]
    docs = []
    for path in args.results:
        progress(f"reading {path}")
        try:
            docs.append((path, read_results(path)))
        except ValueError as exc:
            raise ReportError(str(exc)) from None
    written = write_report(spec, args.output, results=docs, variants=variants, diagram=args.diagram,
                           progress=progress)
    print(f"wrote {written[1]} and {written[0]}" + (f" (+{len(written) - 2} SVG files)" if len(written) > 2 else ""))
    return 0


def _progress(quiet: bool) -> Progress:
    def say(message: str) -> None:
        if not quiet:
            print(f"alexbench report: {message}", file=sys.stderr, flush=True)
    return say
