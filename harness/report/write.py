"""Writing a report: report.md, report.html and the SVG files of one spec and its results, atomically.

The library side of ``alexbench report`` (and of ``compare --report``, ``bench --report`` and
``alexbench.report``); the report modules themselves load only when a report is written.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Sequence

from ...spec.files import atomic_write

# Every file a report writes matches this; stale ones from an earlier report in DIR are removed.
OWN_FILE = re.compile(r"^(report\.md|report\.html|diagram\.svg|chart-(errors|throughput|loss)-\d+\.svg)$")

Progress = Callable[[str], None]


def write_report(spec, out_dir: str | Path, *, results: Sequence[tuple[str, dict[str, Any]]] = (),
                 variants: Sequence = (), diagram: bool = True, progress: Progress | None = None) -> list[Path]:
    """Write the report for ``spec`` (a ModelSpec) into ``out_dir``; return the paths written,
    report.md and report.html first. ``results``: (label, validated results document) pairs."""
    from .content import build_report
    from .html import render_html
    from .markdown import render_markdown
    from .model import gather_results

    progress = progress or (lambda message: None)
    gathered = gather_results(results, spec)
    drawn = None
    if diagram:
        from .diagram import diagram_svg, inline_svg

        progress("drawing the architecture diagram with Graphviz")
        standalone = diagram_svg(spec)
        drawn = (inline_svg(standalone, "diagram", f"architecture of {spec.name}"), standalone)
    report = build_report(spec, results=gathered, variants=variants, diagram=drawn)
    files = {"report.md": render_markdown(report), "report.html": render_html(report)}
    files.update({f.file: f.file_text or f.svg for f in report.figures()})
    return _write_files(Path(out_dir), files, progress)


def _write_files(out_dir: Path, files: dict[str, str], progress: Progress) -> list[Path]:
    from .model import ReportError

    if out_dir.exists() and not out_dir.is_dir():
        raise ReportError(f"-o {out_dir}: exists and is not a folder; expected a folder to write the report into")
    written = []
    for name, text in files.items():
        if not OWN_FILE.match(name):  # names are made here; this keeps every write inside out_dir
            raise AssertionError(f"refusing to write report file {name!r}")
        path = out_dir / name
        atomic_write(path, text)
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
