"""``alexbench weights``: the canonical weights of a spec for a seed, as safetensors."""

from __future__ import annotations

import argparse

from ...spec import canonical_weights, save_weights, weights_sha256
from ..errors import UsageError
from .spec_argument import add_spec_arguments, load_spec_argument


def add_arguments(command: str, parser: argparse.ArgumentParser) -> None:
    add_spec_arguments(parser)
    parser.add_argument("--seed", type=int, default=0, help="seed of the PCG64 streams (default 0)")
    parser.add_argument("-o", "--output", required=True, help="safetensors file to write")


def run(command: str, args: argparse.Namespace) -> int:
    from ..output_paths import check_file

    check_file(("-o", "--output"), args.output, what="the safetensors weights", stdout_ok=False)  # before any work
    if args.seed < 0:
        raise UsageError(f"--seed must be >= 0; received {args.seed}")
    spec = load_spec_argument(args)
    weights = canonical_weights(spec, args.seed)
    save_weights(weights, args.output, metadata={"spec": spec.name, "spec_sha256": spec.sha256,
                                                 "seed": str(args.seed)})
    print(f"wrote {args.output}: {len(weights)} tensors, {spec.param_count:,} parameters, "
          f"sha256 of tensors {weights_sha256(weights)[:16]}")
    return 0
