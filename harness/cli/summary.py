"""``alexbench summary``: the layer table (output shapes, parameters, MACs) from the spec alone, then
the training setup and the weight decay each trainable tensor feels."""

from __future__ import annotations

import argparse
import json

from ...spec import ModelSpec, fmt_shape
from ...spec.training import TrainingSpec, decay_groups, describe
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
        "training": {**spec.training.settings(), "loss_on": spec.loss_on, "unmodelled": spec.training.unmodelled,
                     "effective_decay": {t: spec.training.effective_decay(t) for t in trainable_tensors(spec)}},
    }


def trainable_tensors(spec: ModelSpec) -> list[str]:
    return [f"{layer.name}.{p}" for layer in spec.layers for p, param in layer.params.items() if param.trainable]


def training_lines(spec: ModelSpec) -> list[str]:
    """The training setup, then the effective decay per trainable tensor, grouped by value: the
    largest group is 'every other trainable tensor' so that AlexNet's 16 tensors take a line or two."""
    training = spec.training
    if not training.declared:
        return ["No training section: compare --train uses the defaults ("
                + describe(TrainingSpec(declared=False)) + ")"]
    lines = ["Training: " + describe(training, loss_on=spec.loss_on, details=False)]
    if training.unmodelled:
        lines.append("Not modelled (compare --train refuses the spec): " + "; ".join(
            f"{layer} {what}" for layer, what in training.unmodelled.items()))
    groups = decay_groups(training, trainable_tensors(spec))
    if not groups:
        return lines
    lines.append("Effective weight decay per step (coupled decay + 2 x l2; the gradient gains decay x w):")
    rest = max(groups, key=lambda g: (len(g[0]), -g[2]))  # on a tie, the group without an l2
    if len(rest[0]) == 1 and len(groups) > 1:
        rest = None  # "every other" would name one tensor: name it
    for names, decay, l2 in groups:
        if rest is None or names is not rest[0]:
            lines.append(f"  {', '.join(names)}: {decay:g}" + (f" (l2 {l2:g})" if l2 else ""))
    if rest is not None:
        names, decay, l2 = rest
        label = "every other trainable tensor" if len(groups) > 1 else "every trainable tensor"
        lines.append(f"  {label} ({len(names)}): {decay:g}" + (f" (l2 {l2:g})" if l2 else ""))
    return lines


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
            f"Weights (float32): {4 * spec.param_count / 2**20:,.1f} MiB",
            rule, *training_lines(spec)]
    return "\n".join(out)
