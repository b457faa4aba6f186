"""What goes in a report, section by section, as blocks (see report_blocks). Nothing here formats
Markdown or HTML, so both formats always show the same facts."""

from __future__ import annotations

from typing import Any, Sequence

from .. import __version__
from ..spec import ModelSpec, fmt_shape
from .report_blocks import Block, Cell, Columns, Facts, Figure, Para, Report, Section, Table
from .report_charts import PALETTE, Point, Series, line_chart
from .report_markup import fmt_int, fmt_num, fmt_sci
from .report_model import DeviceBench, Results, Run, align_layers, key_attrs, layer_rows

STATUS_CELL = {"ok": "ok", "mismatch": "bad", "failed": "bad", "unavailable": "warn"}


def build_report(spec: ModelSpec, *, results: Results | None = None, variants: Sequence[ModelSpec] = (),
                 diagram: tuple[str, str] | None = None) -> Report:
    """``diagram``: (inline SVG, standalone SVG) from report_diagram, or None to leave it out."""
    results = results or Results()
    sections = [_overview(spec, results), _architecture(spec, diagram)]
    if variants:
        sections.append(_variants([spec, *variants]))
    if results.compare_runs:
        sections.append(_parity(spec, results))
    if results.bench_runs:
        sections.append(_throughput(results))
    if results.runs:
        sections.append(_environment(results))
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
    if spec.training:
        facts.append(("training", ", ".join(f"{k} {v}" for k, v in spec.training.items())))
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


# ---- parity ------------------------------------------------------------------------------------

def _parity(spec: ModelSpec, results: Results) -> Section:
    runs = results.compare_runs
    setup = []
    for run in runs:
        d = run.doc
        tol = d.get("tolerance") or {}
        inputs = d.get("inputs") or {}
        setup.append([run.label, run.path,
                      f"{inputs.get('source', '?')}, batch {inputs.get('batch', '?')}" if inputs else "",
                      (d.get("weights") or {}).get("source", ""),
                      f"{tol.get('profile', '?')}: atol {tol.get('atol', 0):g}, rtol {tol.get('rtol', 0):g}, "
                      f"rel_l2 {tol.get('rel_l2', 0):g}" if tol else ""])
    blocks: list[Block] = [
        Table("parity-runs", ["run", "results file", "inputs", "weights", "tolerance"], setup, caption="Runs"),
        Table("parity", ["backend", *(run.label for run in runs)],
              [[name, *(_parity_cell(_backend(run, name)) for run in runs)] for name in results.backend_names()],
              caption="Each backend against the float64 reference, with the first layer outside tolerance"),
    ]
    charted = list(dict.fromkeys(b["name"] for run in runs for b in run.doc["backends"] if b.get("layers")))
    for i, run in enumerate(runs, start=1):
        pair = run.doc.get("pairwise")
        if pair and pair.get("names"):
            names = pair["names"]
            rows = [[a, *(Cell(fmt_sci(v), num=True) for v in row)] for a, row in zip(names, pair["max_abs"])]
            blocks.append(Table("pairwise", ["max |a − b|", *names], rows,
                                caption=f"Pairwise max abs difference of the outputs · {run.label}"))
        chart = _error_chart(spec, run, charted)
        if chart is not None:
            blocks.append(Figure("chart chart-errors", chart, f"chart-errors-{i}.svg",
                                 f"Per-layer max abs error against the float64 reference, log scale · {run.label}"))
    return Section("parity", "Parity", blocks)


def _backend(run: Run, name: str) -> dict[str, Any] | None:
    return next((b for b in run.doc["backends"] if b["name"] == name), None)


def _parity_cell(b: dict[str, Any] | None) -> Cell:
    if b is None:
        return Cell("not run")
    status = b["status"]
    if status in ("failed", "unavailable"):
        where = f"{b['stage']}: " if b.get("stage") else ""
        return Cell(status, STATUS_CELL[status], note=f"{where}{b.get('error') or ''}".strip())
    m = b.get("metrics")
    if not m:
        return Cell(status if b["name"] != "reference" else "reference (float64)", "ok" if status == "ok" else "bad")
    notes = []
    first = b.get("first_divergent_layer")
    if first:
        notes.append(f"first divergent layer: {first['name']} (max_abs {fmt_sci(first['max_abs'])}, "
                     f"would pass at atol {fmt_sci(first['min_atol'])})")
    elif b.get("layers"):
        notes.append(f"all {len(b['layers'])} layers within tolerance")
    if b.get("shape_ok") is False:
        notes.append(f"output shape {b.get('output_shape')} differs from the spec")
    if b.get("param_count_ok") is False:
        notes.append(f"{fmt_int(b.get('param_count'))} parameters, not the spec's")
    if m.get("top1") is not None:
        notes.append(f"top-1 agreement {m['top1']:.0%}")
    return Cell(f"{status} · max_abs {fmt_sci(m.get('max_abs'))} · rel_l2 {fmt_sci(m.get('rel_l2'))}",
                STATUS_CELL.get(status, ""), note="; ".join(notes))


def _error_chart(spec: ModelSpec, run: Run, everyone: list[str]) -> str | None:
    backends = [b for b in run.doc["backends"] if b.get("layers")]
    if not backends:
        return None
    seen = {row["name"] for b in backends for row in b["layers"]}
    categories = [layer.name for layer in spec.layers if layer.name in seen]
    series = []
    for b in backends:
        by_name = {row["name"]: row for row in b["layers"]}
        first = (b.get("first_divergent_layer") or {}).get("name")
        points = []
        for x, name in enumerate(categories):
            row = by_name.get(name)
            if row is None:
                points.append(Point(x, None))
                continue
            note = (f"{name}: max_abs {fmt_sci(row['max_abs'])}, rel_l2 {fmt_sci(row['rel_l2'])}, passes at atol "
                    f"{fmt_sci(row['min_atol'])}" + (" — first divergent layer" if name == first else ""))
            points.append(Point(x, row["max_abs"], note, bad=not row["ok"]))
        series.append(Series(b["name"], points))
    return line_chart(f"Per-layer error · {run.label}", categories, series, log_y=True, css_class="chart chart-errors",
                      y_label="max |x − reference|", x_label="layer (red ring: outside tolerance)",
                      colors=_colors([s.name for s in series], everyone))


def _colors(names: list[str], everyone: list[str]) -> list[str]:
    """The same colour for the same series name in every chart of the report."""
    return [PALETTE[everyone.index(n) % len(PALETTE)] for n in names]


# ---- throughput --------------------------------------------------------------------------------

def _throughput(results: Results) -> Section:
    devices = results.devices()
    blocks: list[Block] = []
    keys: dict[tuple[str, int], dict[str, dict]] = {}
    everyone = list(dict.fromkeys(name for d in devices for name in d.series()))
    for i, device in enumerate(devices, start=1):
        blocks.append(Figure("chart chart-throughput", _throughput_chart(device, everyone),
                             f"chart-throughput-{i}.svg",
                             f"Images per second against batch size · {device.label} (whiskers: p10–p90)"))
        for name, rows in device.series().items():
            for r in rows:
                keys.setdefault((name, r["batch"]), {})[device.label] = r
    rows = [[name, Cell(str(batch), num=True),
             *(_bench_cell(by_device.get(d.label)) for d in devices)]
            for (name, batch), by_device in sorted(keys.items(), key=lambda kv: (everyone.index(kv[0][0]), kv[0][1]))]
    blocks.append(Table("throughput", ["backend", "batch", *(d.label for d in devices)], rows,
                        caption="Images per second (median latency; GFLOP/s and share of peak when known)"))
    return Section("throughput", "Throughput", blocks)


def _bench_cell(r: dict[str, Any] | None) -> Cell:
    if r is None:
        return Cell("")
    extra = [f"{fmt_num(r['median_ms'])} ms"]
    if r.get("gflops") is not None:
        extra.append(f"{fmt_num(r['gflops'])} GFLOP/s")
    if r.get("peak_share") is not None:
        extra.append(f"{r['peak_share']:.0%} of peak")
    return Cell(f"{r['images_per_s']:,.0f}", num=True, note=" · ".join(extra))


def _throughput_chart(device: DeviceBench, everyone: list[str]) -> str:
    series_rows = device.series()
    batches = sorted({r["batch"] for r in device.rows})
    series = []
    for name, rows in series_rows.items():
        points = []
        for r in rows:
            b = r["batch"]
            low = b * 1000 / r["p90_ms"] if r["p90_ms"] else None
            high = b * 1000 / r["p10_ms"] if r["p10_ms"] else None
            points.append(Point(batches.index(b), r["images_per_s"], low=low, high=high,
                                note=f"batch {b}: {r['images_per_s']:,.0f} images/s (median {fmt_num(r['median_ms'])} "
                                     f"ms, p10 {fmt_num(r['p10_ms'])}, p90 {fmt_num(r['p90_ms'])})"))
        series.append(Series(name, points))
    return line_chart(f"Throughput · {device.label}", [str(b) for b in batches], series, log_y=False,
                      css_class="chart chart-throughput", y_label="images / s", x_label="batch size",
                      colors=_colors([s.name for s in series], everyone))


# ---- environment -------------------------------------------------------------------------------

ENV_FIELDS = ("python", "platform", "machine", "cpu", "cpu_count", "gpus")


def _environment(results: Results) -> Section:
    machines = list(results.machines)
    envs = [results.machines[m] for m in machines]
    rows: list[list[Cell | str]] = []
    for key in ENV_FIELDS:
        rows.append([key, *(_env_value(env.get(key)) for env in envs)])
    packages = sorted({p for env in envs for p in (env.get("packages") or {})})
    for p in packages:
        rows.append([p, *((env.get("packages") or {}).get(p, "–") for env in envs)])
    blocks: list[Block] = [Table("environment", ["", *machines], rows, caption="Machines and package versions")]
    backend_rows = []
    for run in results.compare_runs:
        for b in run.doc["backends"]:
            env = b.get("environment") or {}
            if env:
                backend_rows.append([b["name"], run.label, ", ".join(f"{k} {_env_value(v)}" for k, v in env.items())])
    if backend_rows:
        blocks.append(Table("backend-environment", ["backend", "run", "as run"], backend_rows,
                            caption="What each backend reported about itself"))
    return Section("environment", "Environment", blocks)


def _env_value(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "none"
    return str(value)

