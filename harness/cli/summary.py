"""``alexbench summary``: the layer table (output shapes, parameters, MACs) from the spec alone."""

from __future__ import annotations

import argparse
import json

from ...spec import ModelSpec, fmt_shape
from .spec_argument import add_spec_arguments, load_spec_argument


def add_arguments(command: str, parser: argparse.ArgumentParser) -> None:
    add_spec_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the same table as JSON")


def run(command: str, args: argparse.Namespace) -> int:
    spec = load_spec_argument(args)
    print(json.dumps(summary_json(spec), indent=2) if args.json else summary_table(spec))
    return 0


def summary_json(spec: ModelSpec) -> dict:
    return {
        "name": spec.name,
        "source": spec.source,
        "input_shape": list(spec.input_shape),
        "output_shape": list(spec.output_shape),
        "layers": [
            {"name": layer.name, "op": layer.op, "output_shape": list(layer.output_shape),
             "params": layer.param_count, "trainable_params": layer.trainable_count, "macs": layer.macs}
            for layer in spec.layers
        ],
        "totals": {"params": spec.param_count, "trainable_params": spec.trainable_count,
                   "non_trainable_params": spec.param_count - spec.trainable_count,
                   "macs": spec.macs, "flops": 2 * spec.macs},
    }


def summary_table(spec: ModelSpec) -> str:
    rows = [("layer", "op", "output shape", "params", "MACs")]
    rows.append(("input", "", fmt_shape(spec.input_shape), "", ""))
    for layer in spec.layers:
        rows.append((layer.name, layer.op, fmt_shape(layer.output_shape),
                     f"{layer.param_count:,}" if layer.param_count else "",
                     f"{layer.macs:,}" if layer.macs else ""))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    align = ["<", "<", "<", ">", ">"]

    def line(r):
        return "  ".join(f"{c:{a}{w}}" for c, a, w in zip(r, align, widths)).rstrip()
    rule = "-" * len(line(rows[0]))
    out = [f"{spec.name}: {spec.description}" if spec.description else spec.name, rule, line(rows[0]), rule]
    out += [line(r) for r in rows[1:]]
    non_trainable = spec.param_count - spec.trainable_count
    out += [rule,
            f"Total params: {spec.param_count:,}",
            f"Trainable params: {spec.trainable_count:,}",
            f"Non-trainable params: {non_trainable:,}",
            f"MACs (conv + linear, one image): {spec.macs:,}",
            f"FLOPs (2 x MACs): {2 * spec.macs:,}",
            f"Weights (float32): {4 * spec.param_count / 2**20:,.1f} MiB"]
    return "\n".join(out)
