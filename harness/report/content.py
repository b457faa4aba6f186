"""What goes in a report, section by section, as blocks (see report_blocks). Nothing here formats
Markdown or HTML, so both formats always show the same facts."""

from __future__ import annotations

from typing import Any, Sequence

from ...spec import ModelSpec, fmt_shape
from ...spec.training import describe
from ...version import __version__
from .blocks import Block, Cell, Columns, Facts, Figure, Para, Report, Section, Table
from .markup import fmt_int
from .model import Results, Run, align_layers, key_attrs, layer_rows
from .runs import chart_names, environment_section, parity_section, side_by_side_section, throughput_section
from .training import training_runs, training_section


def build_report(spec: ModelSpec, *, results: Results | None = None, variants: Sequence[ModelSpec] = (),
                 diagram: tuple[str, str] | None = None) -> Report:
    """``diagram``: (inline SVG, standalone SVG) from report_diagram, or None to leave it out."""
    results = results or Results()
    sections = [_overview(spec, results), _architecture(spec, diagram)]
    if variants:
        sections.append(_variants([spec, *variants]))
    if results.compare_runs:
        sections.append(parity_section(spec, results))
    side_by_side = side_by_side_section(spec, results)
    if side_by_side is not None:
        sections.append(side_by_side)
    if training_runs(results):
        sections.append(training_section(spec, results, chart_names(results)))
    if results.bench_runs:
        sections.append(throughput_section(results))
    if results.runs:
        sections.append(environment_section(results))
    return Report(f"{spec.name}: architecture report", spec.description, sections)


# ---- overview and provenance -------------------------------------------------------------------

def _overview(spec: ModelSpec, results: Results) -> Section:
    cards: list[tuple[str, Any]] = [
        ("parameters", fmt_int(spec.param_count)),
        ("MACs per image", fmt_int(spec.macs)),
        ("input", fmt_shape(spec.input_shape)),
        ("output", fmt_shape(spec.output_shape)),
        ("layers", str(len(spec.layers))),
        ("float32 weights", f"{4 * spec.param_count / 2**20:,.1f} MiB"),
    ]
    for run in results.compare_runs:
        verdict = run.doc["verdict"]
        status = "ok" if verdict["exit_code"] == 0 else "bad"
        cards.append((f"parity · {run.label}", Cell(verdict["summary"] or f"exit {verdict['exit_code']}", status)))
    facts: list[tuple[str, Any]] = [("spec", spec.name), ("file", spec.source), ("spec sha256", spec.sha256)]
    for key, value in spec.provenance.items():
        facts.append((key, Cell(str(value), url=str(value))))
    if spec.preprocessing:
        p = spec.preprocessing
        text = ", ".join(x for x in (
            f"resize {p.resize}" if p.resize else "", f"center crop {fmt_shape(p.crop)}" if p.crop else "",
            "scale to [0, 1]", f"mean {list(p.mean)}", f"std {list(p.std)}") if x)
        facts.append(("preprocessing", text))
    if spec.training.declared:
        facts.append(("training", describe(spec.training, loss_on=spec.loss_on)))
    facts.append(("report", f"alexbench {__version__}"))
    blocks: list[Block] = [Facts("cards", cards, cards=True), Facts("provenance", facts)]
    if results.runs:
        blocks.append(_results_files(results.runs))
    return Section("overview", "Overview", blocks)


def _results_files(runs: list[Run]) -> Table:
    rows = [[run.path, run.kind, run.machine, run.doc["created"], run.doc["alexbench_version"],
             Cell(run.doc["verdict"]["summary"], "ok" if run.doc["verdict"]["exit_code"] == 0 else "bad")]
            for run in runs]
    return Table("results-files", ["results file", "kind", "machine", "created", "alexbench", "verdict"], rows,
                 caption="Results files merged into this report")


# ---- architecture ------------------------------------------------------------------------------

def _architecture(spec: ModelSpec, diagram: tuple[str, str] | None) -> Section:
    rows = [[r.name, r.op, Cell(r.attrs, note=layer.note), r.output_shape,
             Cell(fmt_int(r.params) if r.params else "", num=True),
             Cell(r.param_share, share=r.params / spec.param_count if spec.param_count else None, num=True),
             Cell(fmt_int(r.macs) if r.macs else "", num=True),
             Cell(r.mac_share, share=r.macs / spec.macs if spec.macs else None, num=True)]
            for r, layer in zip(layer_rows(spec), spec.layers)]
    foot = [["total", "", f"{len(spec.layers)} layers", fmt_shape(spec.output_shape),
             Cell(fmt_int(spec.param_count), num=True), Cell("100%", num=True),
             Cell(fmt_int(spec.macs), num=True), Cell("100%", num=True)]]
    inputs: list[Cell | str] = ["input", "", "", fmt_shape(spec.input_shape), "", "", "", ""]
    table = Table("layers", ["layer", "op", "attributes", "output shape", "params", "share", "MACs", "share"],
                  [inputs] + rows, foot=foot,
                  caption=f"Layers of {spec.name}: trainable parameters {spec.trainable_count:,}, "
                          f"non-trainable {spec.param_count - spec.trainable_count:,}; "
                          "MACs count multiply-accumulates of one image (convolutions and linear layers)")
    blocks: list[Block] = [table]
    if diagram is not None:
        inline, standalone = diagram
        figure = Figure("diagram", inline, "diagram.svg", f"{spec.name}: every layer with its input and output "
                        "shape (drawn by Graphviz)", file_text=standalone)
        blocks = [Columns([figure, table])]
    else:
        blocks.insert(0, Para("The diagram was left out (--no-diagram).", "note"))
    return Section("architecture", "Architecture", blocks)


# ---- variants ----------------------------------------------------------------------------------

_DIFF_ORDER = ["changed", "added", "removed", "moved", "reshaped", "same"]


def _variants(specs: list[ModelSpec]) -> Section:
    base = specs[0]
    totals = []
    for s in specs:
        dp, dm = s.param_count - base.param_count, s.macs - base.macs
        totals.append([s.name, fmt_shape(s.input_shape), fmt_shape(s.output_shape), str(len(s.layers)),
                       Cell(fmt_int(s.param_count), num=True),
                       Cell(f"{dp:+,}" if s is not base else "", num=True,
                            note=f"{dp / base.param_count:+.1%}" if s is not base and base.param_count else ""),
                       Cell(fmt_int(s.macs), num=True),
                       Cell(f"{dm:+,}" if s is not base else "", num=True,
                            note=f"{dm / base.macs:+.1%}" if s is not base and base.macs else "")])
    summary = Table("variant-totals", ["spec", "input", "output", "layers", "params", f"Δ vs {base.name}", "MACs",
                                       f"Δ vs {base.name}"], totals, caption="Totals")
    rows = []
    kinds: dict[str, int] = {}
    for row in align_layers(specs):
        cells: list[Cell | str] = [row.name]
        for k, layer in enumerate(row.layers):
            change = row.changes[k - 1] if k else ""
            status = change.split(":")[0] if change else ""
            if layer is None:
                cells.append(Cell("", status, note=change) if change else Cell("—"))
            else:
                text = " · ".join(x for x in (layer.op, key_attrs(layer)) if x) + f" → {fmt_shape(layer.output_shape)}"
                cells.append(Cell(text, status, note=change))
        worst = min((c.split(":")[0] for c in row.changes if c), key=_DIFF_ORDER.index, default="same")
        kinds[worst] = kinds.get(worst, 0) + 1
        rows.append(cells)
    counts = ", ".join(f"{kinds[k]} {k}" for k in _DIFF_ORDER if k in kinds)
    side = Table("variant-diff", ["layer", *(s.name for s in specs)], rows,
                 caption=f"Layers side by side, aligned by name against {base.name} ({counts}); "
                         "reshaped: same op and attributes, shapes changed by an earlier layer")
    return Section("variants", "Variants", [summary, side])
