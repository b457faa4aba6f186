"""Subcommands that need only the spec: summary, validate, weights, backends."""

from __future__ import annotations

import argparse
import json

from ..backends.registry import available_backends, install_hint, load_backend_class, missing_module
from ..spec import ModelSpec, canonical_weights, fmt_shape, load_spec, save_weights, weights_sha256
from ..spec.loader import DEFAULT_BUDGET_BYTES, shipped_spec_names
from .cli import UsageError

SPEC_HELP = "a spec file (.yaml) or a shipped spec's name: " + ", ".join(shipped_spec_names())


def add_arguments(command: str, parser: argparse.ArgumentParser) -> None:
    if command == "backends":
        parser.add_argument("--json", action="store_true", help="machine-readable output")
        return
    parser.add_argument("spec", help=SPEC_HELP)
    parser.add_argument("--max-gib", type=float, default=DEFAULT_BUDGET_BYTES / 2**30,
                        help="refuse specs whose float32 weights or one image's activations exceed this (default 4)")
    if command == "summary":
        parser.add_argument("--json", action="store_true", help="print the same table as JSON")
    if command == "weights":
        parser.add_argument("--seed", type=int, default=0, help="seed of the PCG64 streams (default 0)")
        parser.add_argument("-o", "--output", required=True, help="safetensors file to write")


def run(command: str, args: argparse.Namespace) -> int:
    if command == "backends":
        return _backends(args)
    spec = load_spec(args.spec, budget_bytes=int(args.max_gib * 2**30))
    if command == "validate":
        print(f"{spec.source}: ok: '{spec.name}', {len(spec.layers)} layers, {spec.param_count:,} parameters, "
              f"output {fmt_shape(spec.output_shape)}")
        return 0
    if command == "summary":
        if args.json:
            print(json.dumps(summary_json(spec), indent=2))
        else:
            print(summary_table(spec))
        return 0
    if command == "weights":
        if args.seed < 0:
            raise UsageError(f"--seed must be >= 0; received {args.seed}")
        weights = canonical_weights(spec, args.seed)
        save_weights(weights, args.output, metadata={"spec": spec.name, "spec_sha256": spec.sha256,
                                                     "seed": str(args.seed)})
        print(f"wrote {args.output}: {len(weights)} tensors, {spec.param_count:,} parameters, "
              f"sha256 of tensors {weights_sha256(weights)[:16]}")
        return 0
    raise AssertionError(command)


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


def _backends(args: argparse.Namespace) -> int:
    """Import each backend's module (this command alone loads the frameworks, to see what works)."""
    rows = []
    for name, target in available_backends().items():
        available, detail = True, ""
        try:
            load_backend_class(name).check_available(name)
        except ImportError as exc:
            missing = missing_module(exc)
            available, detail = False, install_hint(name, missing) if missing else f"cannot import: {exc}"
        except Exception as exc:  # BackendUnavailable, or a plugin that fails in its own way
            available, detail = False, str(exc)
        rows.append({"name": name, "target": target, "available": available, "detail": detail})
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            print(f"{row['name']:<12} {'yes' if row['available'] else 'no ':<4} {row['detail'] or row['target']}")
    return 0
