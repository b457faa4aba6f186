"""``alexbench report``: report.md and a self-contained report.html for a spec, optionally with
variants to diff against and compare/bench results to show.

Imported by every ``alexbench`` invocation (to build the parser), so the report modules load
only when a report is written. ``write_report_for_results`` serves ``compare --report`` and
``bench --report``.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

EXAMPLES = """examples:
  alexbench report alexnet -o out/
      layer table, parameters and MACs, and the architecture diagram
  alexbench report alexnet --compare-with alexnet-owt --compare-with alexnet-blog-keras -o out/
      ... plus a side-by-side diff of the variants
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

# Every file a report writes matches this; stale ones from an earlier report in DIR are removed.
OWN_FILE = re.compile(r"^(report\.md|report\.html|diagram\.svg|chart-(errors|throughput)-\d+\.svg)$")

Progress = Callable[[str], None]


def add_arguments(command_name: str, parser: argparse.ArgumentParser) -> None:
    from ...spec import shipped_spec_names

    parser.epilog = EXAMPLES + "\n\n" + (parser.epilog or "")
    parser.add_argument("spec", help="a spec file (.yaml) or a shipped spec's name: " + ", ".join(shipped_spec_names()))
    parser.add_argument("-o", "--output", required=True, metavar="DIR", help="folder to write the report into")
    parser.add_argument("--results", action="append", default=[], metavar="FILE",
                        help="results JSON from `alexbench compare --json` or `alexbench bench --json` "
                             "(repeatable; files from several machines merge)")
    parser.add_argument("--compare-with", action="append", default=[], metavar="SPEC",
                        help="another spec to diff against, side by side (repeatable)")
    parser.add_argument("--no-diagram", dest="diagram", action="store_false",
                        help="leave the Graphviz diagram out (for machines without Graphviz)")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress lines on stderr")


def run(command_name: str, args: argparse.Namespace) -> int:
    from ...spec import load_spec
    from ..report.model import ReportError
    from ..results.document import read_results

    progress = _progress(args.quiet)
    if args.diagram:  # fail before any slow step
        from ..report.diagram import check_graphviz

        check_graphviz()
    spec = load_spec(args.spec)
    variants = [load_spec(name) for name in args.compare_with]
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


def write_report(spec, out_dir: str | Path, *, results: Sequence[tuple[str, dict[str, Any]]] = (),
                 variants: Sequence = (), diagram: bool = True, progress: Progress | None = None) -> list[Path]:
    """Write the report for ``spec`` (a ModelSpec) into ``out_dir``; return the paths written,
    report.md and report.html first. ``results``: (label, validated results document) pairs."""
    from ..report.content import build_report
    from ..report.html import render_html
    from ..report.markdown import render_markdown
    from ..report.model import gather_results

    progress = progress or (lambda message: None)
    gathered = gather_results(results, spec)
    drawn = None
    if diagram:
        from ..report.diagram import diagram_svg, inline_svg

        progress("drawing the architecture diagram with Graphviz")
        standalone = diagram_svg(spec)
        drawn = (inline_svg(standalone, "diagram", f"architecture of {spec.name}"), standalone)
    report = build_report(spec, results=gathered, variants=variants, diagram=drawn)
    files = {"report.md": render_markdown(report), "report.html": render_html(report)}
    files.update({f.file: f.file_text or f.svg for f in report.figures()})
    return _write_files(Path(out_dir), files, progress)


def _write_files(out_dir: Path, files: dict[str, str], progress: Progress) -> list[Path]:
    from ...spec.weights import atomic_write_bytes
    from ..report.model import ReportError

    if out_dir.exists() and not out_dir.is_dir():
        raise ReportError(f"-o {out_dir}: exists and is not a folder; expected a folder to write the report into")
    written = []
    for name, text in files.items():
        if not OWN_FILE.match(name):  # names are made here; this keeps every write inside out_dir
            raise AssertionError(f"refusing to write report file {name!r}")
        path = out_dir / name
        atomic_write_bytes(path, text.encode("utf-8"))
        written.append(path)
    for stale in out_dir.iterdir():
        if OWN_FILE.match(stale.name) and stale.name not in files and stale.is_file():
            stale.unlink()
    progress(f"wrote {len(written)} files into {out_dir}")
    return written


def write_report_for_results(doc: dict[str, Any], out_dir: str | Path, spec=None, *,
                             progress: Progress | None = None, label: str = "this run") -> list[Path]:
    """The report of one compare or bench run (``alexbench compare --report DIR``). ``spec`` defaults
    to the one the document names; it must be the spec the results were made with."""
    if spec is None:
        spec = spec_of_results(doc)
    return write_report(spec, out_dir, results=[(label, doc)], progress=progress)


def spec_of_results(doc: dict[str, Any]):
    """Load the spec a results document was made with (by its recorded source)."""
    from ...spec import load_spec

    source = doc["spec"]["source"]
    shipped = re.fullmatch(r"<shipped>/([A-Za-z0-9_.-]+)\.yaml", source)
    return load_spec(shipped.group(1) if shipped else source)
