"""The report sections made from results files: parity (compare), throughput (bench) and the
environment they ran in. Blocks only; see report_content for the rest of the report."""

from __future__ import annotations

from typing import Any

from ...spec import ModelSpec
from ..workers.interpreter_text import interpreter_text
from .blocks import Block, Cell, Figure, Section, Table
from .charts import PALETTE, Point, Series, line_chart
from .markup import fmt_int, fmt_num, fmt_sci
from .model import DeviceBench, Results, Run

STATUS_CELL = {"ok": "ok", "mismatch": "bad", "failed": "bad", "unavailable": "warn", "unsupported": "warn"}


# ---- parity ------------------------------------------------------------------------------------

def parity_section(spec: ModelSpec, results: Results) -> Section:
    runs = results.compare_runs
    setup = []
    for run in runs:
        d = run.doc
        tol = d.get("tolerance") or {}
        inputs = d.get("inputs") or {}
        in_precision = "" if _precision(run) == "fp32" else f"precision {_precision(run)}; "
        setup.append([run.label, run.path,
                      f"{inputs.get('source', '?')}, batch {inputs.get('batch', '?')}" if inputs else "",
                      (d.get("weights") or {}).get("source", ""),
                      f"{in_precision}{tol.get('profile', '?')}: atol {tol.get('atol', 0):g}, "
                      f"rtol {tol.get('rtol', 0):g}, rel_l2 {tol.get('rel_l2', 0):g}" if tol else ""])
    blocks: list[Block] = [
        Table("parity-runs", ["run", "results file", "inputs", "weights", "tolerance"], setup, caption="Runs"),
        Table("parity", ["backend", *(run.label for run in runs)],
              [[name, *(_parity_cell(_backend(run, name)) for run in runs)] for name in results.backend_names()],
              caption="Each backend against the float64 reference, with the first layer outside tolerance"),
    ]
    charted = chart_names(results)
    for i, run in enumerate(runs, start=1):
        pair = run.doc.get("pairwise")
        if pair and pair.get("names"):
            names = pair["names"]
            rows = [[a, *(Cell(fmt_sci(v), num=True) for v in row)] for a, row in zip(names, pair["max_abs"])]
            blocks.append(Table("pairwise", ["max |a − b|", *names], rows,
                                caption=f"Pairwise max abs difference of the outputs · {run.label}"))
        chart = _error_chart(spec, run, charted)
        if chart is not None:
            what = (f"relative L2 error in {_precision(run)} (grey: the profile's limit)" if _precision(run) != "fp32"
                    else "max abs error")
            blocks.append(Figure("chart chart-errors", chart, f"chart-errors-{i}.svg",
                                 f"Per-layer {what} against the float64 reference, log scale · {run.label}"))
    return Section("parity", "Parity", blocks)


# ---- runs side by side -------------------------------------------------------------------------

def side_by_side_section(spec: ModelSpec, results: Results) -> Section | None:
    """Per backend, the compare runs that judged outputs (not --train runs) next to each other: where it ran
    (interpreter and package versions: ``compare --python`` runs another environment's), its output's
    relative L2 error against the float64 reference, its verdict, and every layer's relative L2 error, one
    column per run. None with fewer than two such runs."""
    runs = [run for run in results.compare_runs if any(b.get("metrics") for b in run.doc["backends"])]
    if len(runs) < 2:
        return None
    blocks: list[Block] = []
    for name in dict.fromkeys(b["name"] for run in runs for b in run.doc["backends"] if b.get("metrics")):
        entries = [_backend(run, name) for run in runs]
        layers = [{row["name"]: row for row in (b or {}).get("layers") or []} for b in entries]
        rows: list[list[Cell | str]] = [
            ["ran in", *(_where(b) for b in entries)],
            ["output rel L2", *(Cell(fmt_sci(((b or {}).get("metrics") or {}).get("rel_l2")), num=True)
                                for b in entries)],
            ["verdict", *(_verdict_cell(b) for b in entries)],
        ]
        rows += [[layer.name, *(_layer_cell(by_name.get(layer.name)) for by_name in layers)]
                 for layer in spec.layers if any(layer.name in by_name for by_name in layers)]
        blocks.append(Table("side-by-side", [name, *(run.label for run in runs)], rows,
                            caption=f"{name} in each run: where it ran, and its relative L2 error against the "
                                    "float64 reference (output, then every layer)"))
    return Section("side-by-side", "Runs side by side", blocks)


def _where(b: dict[str, Any] | None) -> Cell:
    where = ((b or {}).get("environment") or {}).get("interpreter")
    return Cell(interpreter_text(where) if where else "–")


def _verdict_cell(b: dict[str, Any] | None) -> Cell:
    if b is None:
        return Cell("not run")
    first = b.get("first_divergent_layer")
    if first:
        return Cell(b["status"], STATUS_CELL.get(b["status"], ""), note=f"first divergent layer: {first['name']}")
    note = f"all {len(b['layers'])} layers within tolerance" if b.get("layers") else ""
    return Cell(b["status"], STATUS_CELL.get(b["status"], ""), note=note)


def _layer_cell(row: dict[str, Any] | None) -> Cell:
    if row is None:
        return Cell("–")
    return Cell(fmt_sci(row["rel_l2"]), "" if row["ok"] else "bad", num=True)


def chart_names(results: Results) -> list[str]:
    """The compare runs' charted backends in colour order: those with per-layer errors, then those that
    trained, so that a backend has one colour in every chart of the report."""
    runs = results.compare_runs
    return list(dict.fromkeys([*(b["name"] for run in runs for b in run.doc["backends"] if b.get("layers")),
                               *(b["name"] for run in runs for b in run.doc["backends"] if b.get("training"))]))


def _backend(run: Run, name: str) -> dict[str, Any] | None:
    return next((b for b in run.doc["backends"] if b["name"] == name), None)


def _parity_cell(b: dict[str, Any] | None) -> Cell:
    if b is None:
        return Cell("not run")
    status = b["status"]
    if status in ("failed", "unavailable", "unsupported"):
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


def _precision(run: Run) -> str:
    return run.doc.get("precision") or "fp32"  # absent: a results/1 file, always fp32


def _error_chart(spec: ModelSpec, run: Run, everyone: list[str]) -> str | None:
    """Per layer, each backend's max abs error; in a lower precision its relative L2 error beside the
    profile's limit (which grows with depth), so the chart shows where precision is lost."""
    backends = [b for b in run.doc["backends"] if b.get("layers")]
    if not backends:
        return None
    seen = {row["name"] for b in backends for row in b["layers"]}
    categories = [layer.name for layer in spec.layers if layer.name in seen]
    precision = _precision(run)
    metric = "max_abs" if precision == "fp32" else "rel_l2"
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
            points.append(Point(x, row[metric], note, bad=not row["ok"]))
        series.append(Series(b["name"], points))
    names = [s.name for s in series]
    colors = _colors(names, everyone)
    limits = (run.doc.get("tolerance") or {}).get("layers") or {}
    if precision != "fp32" and limits:
        profile = f"{run.doc['tolerance']['profile']} profile limit"
        series.append(Series(profile, [Point(x, limits.get(name), f"{name}: limit {fmt_sci(limits.get(name))}")
                                       for x, name in enumerate(categories)]))
        colors.append(PALETTE[-1])  # grey: a bound, not a backend
    y_label = "max |x − reference|" if metric == "max_abs" else "‖x − reference‖ / ‖reference‖"
    return line_chart(f"Per-layer error · {run.label}", categories, series, log_y=True, css_class="chart chart-errors",
                      y_label=y_label, x_label="layer (red ring: outside tolerance)", colors=colors)


def _colors(names: list[str], everyone: list[str]) -> list[str]:
    """The same colour for the same series name in every chart of the report."""
    return [PALETTE[everyone.index(n) % len(PALETTE)] for n in names]


# ---- throughput --------------------------------------------------------------------------------

def throughput_section(results: Results) -> Section:
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
                        caption="Images per second (median latency; GFLOP/s and share of the measured matmul peak)"))
    blocks.append(_bench_runs(results.bench_runs))
    return Section("throughput", "Throughput", blocks)


def _bench_runs(runs: list[Run]) -> Table:
    rows = []
    for run in runs:
        bench = run.doc.get("bench") or {}
        settings, peak = bench.get("settings") or {}, bench.get("peak") or {}
        # Each peak says what it rests on: the measured one its library and thread count, the
        # theoretical one its basis (a figure without a basis is not shown at all).
        peaks = [f"{prec} {fmt_num(v.get('gflops'))} GFLOP/s" + _peak_basis(v.get("library"), v.get("threads"))
                 for prec, v in (peak.get("measured") or {}).items() if isinstance(v, dict) and v.get("gflops")]
        theory = [f"{prec} {fmt_num(v.get('gflops'))} GFLOP/s ({v['basis']})"
                  for prec, v in (peak.get("theoretical") or {}).items() if isinstance(v, dict) and v.get("basis")]
        overhead = "; ".join(f"{fmt_num(o.get('median_ms'))} ms at batch {o.get('batch')}"
                             for o in bench.get("overhead") or [] if isinstance(o, dict))
        missing = [f"{f.get('backend')} {f.get('precision')} batch {f.get('batch', '?')}: {f.get('error', 'failed')}"
                   for f in bench.get("failures") or [] if isinstance(f, dict)]
        missing += [f"{b['name']}: {b['status']}" + (f" ({b['error']})" if b.get("error") else "")
                    for b in run.doc["backends"] if b["status"] != "ok"]
        missing += [f"{k.get('backend')} {k.get('precision')}: skipped ({k.get('reason')})"
                    for k in bench.get("skipped") or [] if isinstance(k, dict)]
        rows.append([run.label, run.path, f"{settings.get('device', '?')} · {settings.get('threads', '?')} threads",
                     "; ".join(peaks) or "–", "; ".join(theory) or "–", overhead or "–",
                     Cell("; ".join(missing) or "none", "bad" if missing else "")])
    return Table("bench-runs", ["run", "results file", "device", "matmul peak (measured)", "theoretical peak",
                                "harness overhead", "not measured"], rows, caption="Bench runs")


def _peak_basis(library: str | None, threads: int | None) -> str:
    parts = [part for part in (library, f"{threads} threads" if threads else None) if part]
    return f" ({', '.join(parts)})" if parts else ""


def _bench_cell(r: dict[str, Any] | None) -> Cell:
    if r is None:
        return Cell("")
    extra = [f"{fmt_num(r['median_ms'])} ms"]
    if r.get("gflops") is not None:
        extra.append(f"{fmt_num(r['gflops'])} GFLOP/s")
    if r.get("peak_share") is not None:
        extra.append(f"{r['peak_share']:.0%} of measured peak")
    if r.get("theoretical_share") is not None:  # not in schema 1's required fields; shown when present
        extra.append(f"{r['theoretical_share']:.0%} of theoretical")
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


def environment_section(results: Results) -> Section:
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
                backend_rows.append([b["name"], run.label, ", ".join(
                    f"{k} {interpreter_text(v) if k == 'interpreter' else _env_value(v)}" for k, v in env.items())])
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
