"""Init schemes: how each parameter tensor of the canonical weights is drawn.

A distribution is written ``{dist: NAME, ...args}``. The model's ``init`` block sets the
default for every conv2d/linear ``weight`` and ``bias``; a layer's ``init`` overrides any of
its own parameters (the paper's bias 1 on conv2, conv4, conv5, fc6, fc7).
"""

from __future__ import annotations

from typing import Any

from .fields import FieldProblem, any_number, positive_number, show
from .model import InitDist
from .ops import OPS

# name -> (required args, optional args with defaults, description)
INIT_DISTS: dict[str, tuple[tuple[str, ...], dict[str, float], str]] = {
    "constant": (("value",), {}, "every element equals value"),
    "normal": (("std",), {"mean": 0.0}, "N(mean, std^2)"),
    "uniform": (("low", "high"), {}, "U(low, high)"),
    "fan_in_uniform": ((), {"gain": 1.0},
                       "U(-b, b), b = gain / sqrt(fan_in): PyTorch's default for conv and linear weights and biases"),
    "glorot_uniform": ((), {}, "U(-b, b), b = sqrt(6 / (fan_in + fan_out)): Keras' default kernel init"),
}

# What a parameter gets when neither the layer nor the model says: PyTorch's defaults.
_DEFAULTS = {
    "weight": InitDist("fan_in_uniform", {"gain": 1.0}),
    "bias": InitDist("fan_in_uniform", {"gain": 1.0}),
}


def parse_init(value: Any) -> InitDist:
    expected = "{dist: " + " | ".join(INIT_DISTS) + ", ...}"
    if not isinstance(value, dict) or not isinstance(value.get("dist"), str):
        raise FieldProblem("an init must be a mapping with a 'dist'", show(value), expected)
    dist = value["dist"]
    if dist not in INIT_DISTS:
        raise FieldProblem("unknown init distribution", repr(dist), "one of: " + ", ".join(INIT_DISTS))
    required, optional, _ = INIT_DISTS[dist]
    args = dict(optional)
    for key, raw in value.items():
        if key == "dist":
            continue
        if key not in required and key not in optional:
            raise FieldProblem(f"unknown argument '{key}' for {dist}", repr(key),
                               "arguments: " + (", ".join(required + tuple(optional)) or "none"))
        parse = positive_number if key == "std" else any_number
        args[key] = parse(key, raw)
    missing = [k for k in required if k not in args]
    if missing:
        raise FieldProblem(f"{dist} needs {', '.join(missing)}", show(value), expected)
    if dist == "uniform" and not args["low"] < args["high"]:
        raise FieldProblem("uniform needs low < high", f"low {args['low']:g}, high {args['high']:g}", "low < high")
    return InitDist(dist, {k: args[k] for k in sorted(args)})


def default_init(op: str, param: str, model_init: dict[str, InitDist]) -> InitDist:
    """A parameter's init when its layer sets none: fixed by the op (batch norm), else the model's
    init block, else PyTorch's default."""
    fixed = OPS[op].fixed_init.get(param)
    if fixed is not None:
        return InitDist(fixed[0], dict(fixed[1]))
    return model_init.get(param) or _DEFAULTS[param]
