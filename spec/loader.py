"""Load a YAML spec, validate it completely, and infer every layer's shapes and parameters.

``load_spec`` either returns a ``ModelSpec`` or raises one ``SpecError`` located at the
line to fix. Shipped specs are found by name from any directory.
"""

from __future__ import annotations

import difflib
import math
import re
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import Location, SpecError, SpecErrors, layer_where
from .fields import (
    PADDING_EXPECTED,
    Field,
    FieldProblem,
    any_number,
    number_list,
    padding4,
    positive_int,
    positive_number,
    positive_pair,
    same_padding,
    show,
    text,
)
from .init import default_init, parse_init
from .model import InitDist, Layer, ModelSpec, Param, Preprocessing
from .ops import OPS, ShapeProblem, fmt_shape
from .training import FIELDS as TRAINING_FIELDS
from .training import LAYER_KEYS_EXPECTED, REGULARIZED_PARAMS, SECTION_KEYS, TrainingSpec, unknown_key_hint
from .yaml_source import Node, decode_spec_bytes, load_yaml

MODEL_FIELDS = ("name", "description", "provenance", "input", "preprocessing", "init", "training", "layers")
LAYER_COMMON_FIELDS = ("name", "op", "init", "note")
NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
MODEL_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

# Refuse before allocating anything: float32 bytes of weights, and of one image's activations.
DEFAULT_BUDGET_BYTES = 4 << 30
MODEL = "spec"


def shipped_specs_dir() -> Path:
    return Path(str(resources.files(__package__).joinpath("models")))


def shipped_spec_names() -> list[str]:
    return sorted(p.stem for p in shipped_specs_dir().glob("*.yaml"))


def resolve_spec_path(name_or_path: str | Path) -> Path:
    """A path that exists, else a shipped spec's name (``alexnet``), else a SpecError listing them."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = shipped_specs_dir() / f"{name_or_path}.yaml"
    if shipped.is_file() and "/" not in str(name_or_path):
        return shipped
    names = shipped_spec_names()
    close = difflib.get_close_matches(str(name_or_path), names, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise SpecError(None, "spec", f"no spec file or shipped spec by that name{hint}",
                    repr(str(name_or_path)), "a path to a .yaml file or one of: " + ", ".join(names))


def load_spec(name_or_path: str | Path, *, budget_bytes: int = DEFAULT_BUDGET_BYTES) -> ModelSpec:
    path = resolve_spec_path(name_or_path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SpecError(None, "spec", f"cannot read the spec file: {exc.strerror}", str(path)) from None
    return parse_spec(data, _display_name(path), budget_bytes=budget_bytes)


def _display_name(path: Path) -> str:
    if path.parent == shipped_specs_dir():
        return f"<shipped>/{path.name}"
    return str(path)


def parse_spec(data: bytes | str, file: str = "<spec>", *, budget_bytes: int = DEFAULT_BUDGET_BYTES
               ) -> ModelSpec:
    if isinstance(data, str):
        data = data.encode("utf-8")
    root = load_yaml(decode_spec_bytes(data, file), file)
    return _SpecBuilder(file, budget_bytes).build(root)


def _nearest(word: str, choices: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


# What other frameworks call a field (PyTorch, Keras, Caffe): spelling distance alone would
# suggest 'in_features' for 'out_features'.
FIELD_ALIASES = {
    "out_features": "units", "num_outputs": "units", "output_dim": "units",
    "kernel_size": "kernel", "pool_size": "kernel", "ksize": "kernel",
    "strides": "stride", "out_channels": "filters", "num_output": "filters", "num_filters": "filters",
    "pad": "padding", "p": "rate", "dropout": "rate", "drop_rate": "rate", "use_bias": "bias",
    "epsilon": "eps", "local_size": "size", "output_size": "output", "bias_term": "bias",
}
FIELD_NOTES = {
    "in_channels": "input channels come from the previous layer; remove it",
    "num_features": "channels come from the previous layer; remove it",
    "activation": "an activation is a layer of its own: add {op: relu} after this one",
    "data_format": "activations are always [channels, height, width]; remove it",
}
# Other frameworks' op names, compared lower-case without '_'.
OP_ALIASES = {
    "dense": "linear", "fullyconnected": "linear", "fc": "linear", "innerproduct": "linear",
    "conv": "conv2d", "convolution": "conv2d", "convolution2d": "conv2d",
    "maxpool": "maxpool2d", "maxpooling2d": "maxpool2d", "avgpool": "avgpool2d",
    "averagepooling2d": "avgpool2d", "batchnorm": "batchnorm2d", "batchnormalization": "batchnorm2d",
    "bn": "batchnorm2d", "localresponsenorm": "lrn", "localresponsenormalization": "lrn",
    "adaptiveavgpool": "adaptive_avgpool2d", "globalaveragepooling2d": "adaptive_avgpool2d",
}


def _quote(name: str) -> str:
    """A key as written, in quotes; one with a newline or control character escaped so that each
    problem stays on one line."""
    name = str(name)
    return f"'{name}'" if name.isprintable() else repr(name)


def _field_hint(key: str, allowed) -> str:
    alias = FIELD_ALIASES.get(key.lower())
    if alias in allowed:
        return f" (did you mean '{alias}'?)"
    if key.lower() in FIELD_NOTES:
        return f" ({FIELD_NOTES[key.lower()]})"
    return _nearest(key, allowed)


def _op_hint(op_name: str) -> str:
    key = op_name.lower().replace("_", "")
    by_key = {name.replace("_", ""): name for name in OPS}
    target = by_key.get(key) or OP_ALIASES.get(key)
    if target == "adaptive_avgpool2d" and key.startswith("global"):
        return " (did you mean 'adaptive_avgpool2d' with output: 1?)"
    if target:
        return f" (did you mean '{target}'?)"
    return _nearest(op_name, sorted(OPS))


class _SpecBuilder:
    """Checks everything it can and collects every independent problem: one problem is raised as
    it is, several as ``SpecErrors``. Shape inference stops at the first layer whose output shape
    is unknown (a shape error, or broken fields); later layers still get their fields checked."""

    def __init__(self, file: str, budget_bytes: int):
        self.file = file
        self.budget_bytes = budget_bytes
        self.problems: list[SpecError] = []
        self.shape_hint = ""

    def _try(self, fn, fallback=None):
        try:
            return fn()
        except SpecError as err:
            self.problems.append(err)
            return fallback

    def _raise_problems(self) -> None:
        if len(self.problems) == 1:
            raise self.problems[0]
        if self.problems:
            raise SpecErrors(self.problems)

    # -- model level ------------------------------------------------------------------------

    def build(self, root: Node) -> ModelSpec:
        top = self._mapping(root, MODEL, "the spec", "a mapping with name, input and layers")
        self._unknown_keys(top, MODEL_FIELDS, "")
        name = self._try(lambda: self._model_name(top, root), "spec")
        description = self._try(lambda: self._model_field(top, root, "description", Field(text, "a string", "")), "")
        provenance = self._try(lambda: self._provenance(top.get("provenance")), {})
        input_shape = self._try(lambda: self._model_field(
            top, root, "input", Field(_input_shape, "[channels, height, width] of positive integers")))
        self.shape_hint = _hwc_hint(input_shape)
        preprocessing = self._preprocessing(top.get("preprocessing"), input_shape)
        model_init = self._init_block(top.get("init"), MODEL, "init")
        for param in model_init:
            if param not in ("weight", "bias"):
                self.problems.append(SpecError(
                    top["init"].value[param].location, MODEL,
                    f"field {_quote(f'init.{param}')}: the model's init sets conv2d/linear parameters only"
                    + _nearest(param, ["weight", "bias"]),
                    repr(param), "weight or bias (set other parameters in a layer's init)"))
        training_at = len(self.problems)  # its problems are reported in file order, before the layers'
        layers_node = top.get("layers")
        layers: list[Layer] = []
        if layers_node is None:
            self.problems.append(SpecError(root.location, MODEL, "missing required field 'layers'",
                                           None, "a non-empty list of layers"))
        elif not isinstance(layers_node.value, list) or not layers_node.value:
            self.problems.append(SpecError(layers_node.location, MODEL, "field 'layers' must be a non-empty list",
                                           show(layers_node.plain()), "a list of mappings, each with name and op"))
        else:
            layers = self._layers(layers_node.value, input_shape, model_init)
        after_layers = len(self.problems)
        training = self._try(lambda: self._training(top.get("training"), layers_node, layers),
                             TrainingSpec(declared=False))
        training_problems = self.problems[after_layers:]
        del self.problems[after_layers:]
        self.problems[training_at:training_at] = training_problems
        self._raise_problems()
        self._check_budget(layers, input_shape, root.location)
        return ModelSpec(name=name, description=description, provenance=provenance,
                         input_shape=input_shape, preprocessing=preprocessing, layers=tuple(layers),
                         training=training, source=self.file)

    def _model_name(self, top: dict[str, Node], root: Node) -> str:
        name = self._model_field(top, root, "name", Field(text, "a name such as 'alexnet'"))
        if not MODEL_NAME_PATTERN.match(name):
            raise SpecError(top["name"].location, MODEL, "field 'name' has characters a file name "
                            "cannot safely carry", repr(name), "letters, digits, '_', '.', '-' (at most 64)")
        return name

    def _mapping(self, node: Node, where: str, what: str, expected: str) -> dict[str, Node]:
        if not isinstance(node.value, dict):
            raise SpecError(node.location, where, f"{what} must be a mapping", show(node.plain()), expected)
        return node.value

    def _unknown_keys(self, mapping: dict[str, Node], allowed, prefix: str) -> None:
        for key, node in mapping.items():
            if key not in allowed:
                self.problems.append(SpecError(
                    node.location, MODEL, f"unknown field {_quote(f'{prefix}{key}')}{_field_hint(key, allowed)}",
                    repr(key), "one of: " + ", ".join(sorted(allowed))))

    def _model_field(self, top: dict[str, Node], root: Node, key: str, spec: Field) -> Any:
        node = top.get(key)
        if node is None:
            if spec.required:
                raise SpecError(root.location, MODEL, f"missing required field '{key}'",
                                None, spec.expected)
            return spec.default
        try:
            return spec.parse(key, node.plain())
        except FieldProblem as p:
            raise SpecError(node.location, MODEL, p.what, p.received, p.expected) from None

    def _provenance(self, node: Node | None) -> dict[str, str]:
        if node is None:
            return {}
        mapping = self._mapping(node, MODEL, "field 'provenance'", "a mapping with source, url and notes")
        self._unknown_keys(mapping, ("source", "url", "notes"), "provenance.")
        out = {}
        for key, value in mapping.items():
            if not isinstance(value.value, str):
                self.problems.append(SpecError(value.location, MODEL,
                                               f"field {_quote(f'provenance.{key}')} must be a string",
                                               show(value.plain()), "a string"))
            out[key] = value.value
        return out

    def _preprocessing(self, node: Node | None, input_shape: tuple[int, int, int] | None) -> Preprocessing | None:
        if node is None:
            return None
        mapping = self._try(lambda: self._mapping(node, MODEL, "field 'preprocessing'",
                                                  "a mapping with resize, crop, mean, std"))
        if mapping is None:
            return None
        keys = ("resize", "crop", "mean", "std")
        self._unknown_keys(mapping, keys, "preprocessing.")
        channels = input_shape[0] if input_shape else None
        count = channels if channels else "the input's"  # unknown when 'input' is broken
        parsers = {
            "resize": Field(positive_int, "a positive integer (shorter side)", None),
            "crop": Field(positive_pair, "a positive integer or [height, width]", None),
            "mean": Field(number_list(channels, any_number), f"a list of {count} numbers", (0.0,) * (channels or 0)),
            "std": Field(number_list(channels, positive_number), f"a list of {count} numbers > 0",
                         (1.0,) * (channels or 0)),
        }
        values = {}
        broken = False
        for key, spec in parsers.items():
            sub = mapping.get(key)
            try:
                values[key] = spec.default if sub is None else spec.parse(f"preprocessing.{key}", sub.plain())
            except FieldProblem as p:
                self.problems.append(SpecError(sub.location, MODEL, p.what, p.received, p.expected))
                broken = True
        if broken or input_shape is None:
            return None
        final = values["crop"] or (values["resize"],) * 2
        if final[0] is not None and tuple(final) != input_shape[1:]:
            self.problems.append(SpecError(node.location, MODEL, "preprocessing does not produce the input size",
                                           f"{final[0]}x{final[1]}",
                                           f"{input_shape[1]}x{input_shape[2]} (from 'input')"))
            return None
        return Preprocessing(**values)

    def _training(self, node: Node | None, layers_node: Node | None, layers: list[Layer]) -> TrainingSpec:
        if node is None:
            return TrainingSpec(declared=False)
        mapping = self._mapping(node, MODEL, "field 'training'",
                                "a mapping with " + ", ".join(SECTION_KEYS) + " (all optional)")
        for key, value in mapping.items():
            if key not in SECTION_KEYS:
                self.problems.append(SpecError(
                    value.location, MODEL, f"unknown field {_quote(f'training.{key}')}{unknown_key_hint(key)}",
                    repr(key), "one of: " + ", ".join(sorted(SECTION_KEYS))))
        values = {}  # a key left out takes the dataclass's default
        for key, spec in TRAINING_FIELDS.items():
            sub = mapping.get(key)
            try:
                if sub is not None:
                    values[key] = spec.parse(f"training.{key}", sub.plain())
            except FieldProblem as p:
                self.problems.append(SpecError(sub.location, MODEL, p.what, p.received, p.expected))
        momentum = values.get("momentum", TrainingSpec.momentum if "momentum" not in mapping else None)
        if values.get("nesterov") and momentum == 0.0:
            self.problems.append(SpecError(
                mapping["nesterov"].location, MODEL, "field 'training.nesterov' needs momentum (Nesterov's step is "
                "a look-ahead along the momentum buffer)", f"nesterov true with momentum {momentum:g}",
                "momentum in (0, 1), or nesterov false"))
        penalties: dict[str, float] = {}
        unmodelled: dict[str, Any] = {}
        if "layers" in mapping:
            self._training_layers(mapping["layers"], layers_node, layers, penalties, unmodelled)
        return TrainingSpec(**values, penalties=penalties, unmodelled=unmodelled)

    def _training_layers(self, node: Node, layers_node: Node | None, layers: list[Layer],
                         penalties: dict[str, float], unmodelled: dict[str, Any]) -> None:
        """``training.layers``: {layer: {kernel_regularizer: {l2: x}, ...}} as Keras records it. An l2 on a
        parameter the layer has becomes a penalty; an l1, another regularizer or a constraint is kept in
        ``unmodelled`` as written."""
        mapping = self._mapping(node, MODEL, "field 'training.layers'",
                                "a mapping from layer name to {kernel_regularizer: {l2: x}, bias_regularizer: {l2: x}}")
        written = _layer_names(layers_node)
        built = {layer.name: layer for layer in layers}
        with_params = [layer.name for layer in layers if layer.params]
        for name, entry in mapping.items():
            where = f"training.layers.{name}"
            if name not in written:
                self.problems.append(SpecError(
                    entry.location, MODEL, f"field {_quote(where)} names no layer of the spec"
                    + _nearest(name, with_params or written), repr(name),
                    "a layer with parameters: " + (", ".join(with_params) or "(none)")))
                continue
            try:
                settings = self._mapping(entry, MODEL, f"field {_quote(where)}", LAYER_KEYS_EXPECTED)
            except SpecError as err:
                self.problems.append(err)
                continue
            kept: dict[str, Any] = {}
            for key, value in settings.items():
                if key in REGULARIZED_PARAMS:
                    try:
                        penalty, rest = self._regularizer(value, f"{where}.{key}", built.get(name),
                                                          REGULARIZED_PARAMS[key])
                    except SpecError as err:
                        self.problems.append(err)
                        continue
                    if penalty:
                        penalties[f"{name}.{REGULARIZED_PARAMS[key]}"] = penalty
                    if rest:
                        kept[key] = rest
                elif key.endswith(("_regularizer", "_constraint")):
                    kept[key] = value.plain()
                else:
                    self.problems.append(SpecError(
                        value.location, MODEL,
                        f"unknown field {_quote(f'{where}.{key}')}"
                        + _nearest(key, [*REGULARIZED_PARAMS, "activity_regularizer"]),
                        repr(key), LAYER_KEYS_EXPECTED))
            if kept:
                unmodelled[name] = kept

    def _regularizer(self, node: Node, where: str, layer: Layer | None, param: str) -> tuple[float, dict[str, Any]]:
        """A kernel/bias regularizer: (its l2 factor, what is left that training does not model: a
        non-zero l1, another Keras regularizer written as {ClassName: config})."""
        expected = "{l2: x} with x >= 0 (an l1 factor or {KerasClass: config} is kept, not modelled)"
        if layer is not None and (param not in layer.params or not layer.params[param].trainable):
            valid = [k for k, p in REGULARIZED_PARAMS.items() if p in layer.params and layer.params[p].trainable]
            raise SpecError(node.location, MODEL, f"field {_quote(where)}: layer '{layer.name}' ({layer.op}) has no "
                            f"trainable '{param}' to regularize", show(node.plain()),
                            "one of this layer's: " + ", ".join(valid) if valid else "no entry: the layer has no "
                            "weight or bias")
        factors = self._mapping(node, MODEL, f"field {_quote(where)}", expected)
        l2, rest = 0.0, {}
        nonnegative = TRAINING_FIELDS["weight_decay"].parse
        for key, value in factors.items():
            try:
                if key == "l2":
                    l2 = nonnegative(f"{where}.l2", value.plain())
                elif key == "l1":
                    if nonnegative(f"{where}.l1", value.plain()):
                        rest["l1"] = value.plain()
                elif key[:1].isupper():  # another Keras regularizer class, as the importer writes it
                    rest[key] = value.plain()
                else:
                    raise FieldProblem(f"unknown field {_quote(f'{where}.{key}')}" + _nearest(key, ["l1", "l2"]),
                                       repr(key), expected)
            except FieldProblem as p:
                self.problems.append(SpecError(value.location, MODEL, p.what, p.received, p.expected))
        return l2, rest

    def _init_block(self, node: Node | None, where: str, field: str) -> dict[str, InitDist]:
        if node is None:
            return {}
        if not isinstance(node.value, dict):
            self.problems.append(SpecError(node.location, where, f"field '{field}' must be a mapping",
                                           show(node.plain()), "a mapping from parameter name to {dist: ...}"))
            return {}
        out = {}
        for param, dist_node in node.value.items():
            try:
                out[param] = parse_init(dist_node.plain())
            except FieldProblem as p:
                self.problems.append(SpecError(dist_node.location, where,
                                               f"field {_quote(f'{field}.{param}')}: {p.what}",
                                               p.received, p.expected))
        return out

    # -- layers -----------------------------------------------------------------------------

    def _layers(self, nodes: list[Node], input_shape, model_init: dict[str, InitDist]) -> list[Layer]:
        layers: list[Layer] = []
        seen: dict[str, Location] = {}
        shape: tuple[int, ...] | None = input_shape
        for index, node in enumerate(nodes):
            layer = self._layer(node, index, shape, model_init, seen, layers)
            if layer is None:
                shape = None  # unknown from here on: later layers get their fields checked only
                continue
            layers.append(layer)
            shape = layer.output_shape
        return layers

    def _layer(self, node: Node, index: int, shape, model_init, seen, previous: list[Layer]) -> Layer | None:
        """The layer, or None when its output shape is unknown. Problems go to ``self.problems``."""
        problems = self.problems
        fallback_where = f"layer #{index + 1}"
        mapping = self._try(lambda: self._mapping(node, fallback_where, "a layer",
                                                  "a mapping with name, op and the op's fields"))
        if mapping is None:
            return None
        name_node = mapping.get("name")
        name = None
        if name_node is None:
            problems.append(SpecError(node.location, fallback_where, "missing required field 'name'", None,
                                      "a unique layer name such as 'conv1'"))
        elif not isinstance(name_node.value, str) or not NAME_PATTERN.match(name_node.value):
            problems.append(SpecError(name_node.location, fallback_where, "layer name is not a valid identifier",
                                      show(name_node.value), "letters, digits and '_', not starting with a digit, "
                                      "at most 64"))
        else:
            name = name_node.value
        op_node = mapping.get("op")
        if op_node is None:
            problems.append(SpecError(node.location, f"layer '{name}'" if name else fallback_where,
                                      "missing required field 'op'", None, "one of: " + ", ".join(sorted(OPS))))
            return None
        op_name = op_node.value
        if not isinstance(op_name, str) or op_name not in OPS:
            hint = _op_hint(op_name) if isinstance(op_name, str) else ""
            problems.append(SpecError(op_node.location, layer_where(name or fallback_where, str(op_name)),
                                      f"unknown op{hint}", repr(op_name), "one of: " + ", ".join(sorted(OPS))))
            return None
        where = layer_where(name, op_name) if name else f"{fallback_where} ({op_name})"
        if name is not None:
            if name in seen:
                problems.append(SpecError(name_node.location, where, "duplicate layer name",
                                          f"'{name}' again (first at line {seen[name].line})", "unique layer names"))
            else:
                seen[name] = node.location
        op = OPS[op_name]
        allowed = tuple(op.fields) + LAYER_COMMON_FIELDS
        suggested = set()  # a missing field that an unknown one's hint names is one problem, not two
        for key, value in mapping.items():
            if key not in allowed:
                hint = _field_hint(key, allowed)
                suggested.update(re.findall(r"did you mean '(\w+)'", hint))
                problems.append(SpecError(value.location, where, f"unknown field {_quote(key)}{hint}",
                                          repr(key), "one of: " + ", ".join(sorted(allowed))))
        attrs: dict[str, Any] = {}
        fields_ok = True
        for key, spec in op.fields.items():
            sub = mapping.get(key)
            if sub is None:
                if spec.required:
                    given = ", ".join(k for k in mapping if k not in ("name", "op")) or "none"
                    if key not in suggested:
                            problems.append(SpecError(node.location, where, f"missing required field '{key}'",
                                                  f"fields: {given}", f"'{key}': {spec.expected}"))
                    fields_ok = False
                    continue
                attrs[key] = None if spec.default is None else spec.parse(key, spec.default)
                continue
            try:
                attrs[key] = spec.parse(key, sub.plain())
            except FieldProblem as p:
                expected = p.expected
                if spec.parse is padding4 and isinstance(sub.plain(), str):
                    expected = _explicit_padding(sub.plain(), attrs, shape) or expected
                problems.append(SpecError(sub.location, where, p.what, p.received, expected))
                fields_ok = False
        if fields_ok:
            try:
                op.check(attrs)
            except FieldProblem as p:
                problems.append(SpecError(node.location, where, p.what, p.received, p.expected))
                fields_ok = False
        note_node = mapping.get("note")
        note = note_node.value if note_node is not None else ""
        if not isinstance(note, str):
            problems.append(SpecError(note_node.location, where, "field 'note' has the wrong type", show(note),
                                      "a string"))
        layer_init = self._init_block(mapping.get("init"), where, "init")
        if not fields_ok or shape is None or name is None:
            return None
        try:
            out_shape = op.output_shape(attrs, shape)
        except ShapeProblem as p:
            loc = mapping[p.field].location if p.field in mapping else node.location
            received = p.received
            if previous:
                received = f"{received} from layer '{previous[-1].name}'" + _path_note(previous)
            problems.append(SpecError(loc, where, p.what, received, f"{p.expected}{self.shape_hint}"))
            return None
        param_shapes = op.param_shapes(attrs, shape)
        for param in layer_init:
            if param not in param_shapes:
                problems.append(SpecError(
                    mapping["init"].value[param].location, where,
                    f"init names a parameter this layer does not have{_nearest(param, list(param_shapes))}",
                    repr(param), "one of: " + (", ".join(param_shapes) or "(no parameters)")))
        params = {
            p: Param(ps.shape, ps.trainable, layer_init.get(p) or default_init(op_name, p, model_init))
            for p, ps in param_shapes.items()
        }
        fan_in, fan_out = op.fan_in_out(attrs, shape)
        for p, param in params.items():
            if param.init.dist in ("fan_in_uniform", "glorot_uniform") and not fan_in:
                problems.append(SpecError(node.location, where, f"init {param.init.dist} needs a fan-in",
                                          f"'{p}' of a {op_name} layer", "constant, normal or uniform"))
        return Layer(name=name, op=op_name, attrs=attrs, input_shape=tuple(shape), output_shape=tuple(out_shape),
                     params=params, macs=op.macs(attrs, shape, out_shape), fan_in=fan_in, fan_out=fan_out,
                     location=node.location, note=note if isinstance(note, str) else "")

    def _check_budget(self, layers: list[Layer], input_shape, location: Location) -> None:
        weight_bytes = 4 * sum(layer.param_count for layer in layers)
        activation_bytes = 4 * (math.prod(input_shape) + sum(math.prod(layer.output_shape) for layer in layers))
        for what, size in (("weights", weight_bytes), ("activations of one image", activation_bytes)):
            if size > self.budget_bytes:
                raise SpecError(location, "spec", f"the {what} would exceed the memory budget",
                                f"{size / 2**30:.2f} GiB of float32",
                                f"at most {self.budget_bytes / 2**30:.2f} GiB (set --max-gib to raise it)")


def _layer_names(layers_node: Node | None) -> list[str]:
    """The layer names as written (a layer that failed to build is still named)."""
    if layers_node is None or not isinstance(layers_node.value, list):
        return []
    return [item.value["name"].value for item in layers_node.value
            if isinstance(item.value, dict) and "name" in item.value and isinstance(item.value["name"].value, str)]


def _path_note(previous: list[Layer]) -> str:
    """For a flattened input, say what was flattened: '(= 384x2x2 from layer 'pool5', flattened by ...)'."""
    last = previous[-1]
    if last.op == "flatten" and len(previous) > 1:
        return f" (= {fmt_shape(last.input_shape)} from layer '{previous[-2].name}', flattened)"
    return ""


def _hwc_hint(input_shape) -> str:
    """Shape errors on an input that looks like [height, width, channels] say how 'input' is ordered."""
    if not input_shape:
        return ""
    c, h, w = input_shape
    if w in (1, 3, 4) and c not in (1, 3, 4):
        return (f" (note: 'input' is [channels, height, width]; {list(input_shape)} looks like [height, width, "
                f"channels]: did you mean {[w, c, h]}?)")
    return ""


def _explicit_padding(word: str, attrs: dict[str, Any], shape) -> str | None:
    """For 'same' or 'valid': the explicit padding TensorFlow/Keras would use at this layer."""
    word_l = word.strip().lower()
    if word_l == "valid":
        return "padding: 0 (no padding, what 'valid' means)"
    kernel = attrs.get("kernel")
    if word_l != "same" or kernel is None or shape is None or len(shape) != 3:
        return None
    stride = attrs.get("stride") or kernel
    pads = list(same_padding(shape[1:], kernel, stride))
    return (f"padding: {pads} (what TensorFlow/Keras 'same' pads, as [top, bottom, left, right], for this "
            f"layer's {shape[1]}x{shape[2]} input, kernel {kernel[0]}x{kernel[1]}, stride {stride[0]}x{stride[1]}), "
            f"or {PADDING_EXPECTED}")


def _input_shape(name: str, value: Any) -> tuple[int, int, int]:
    if not isinstance(value, list) or len(value) != 3:
        raise FieldProblem("field 'input' must list channels, height and width", show(value),
                           "[channels, height, width] of positive integers")
    return tuple(positive_int(name, v) for v in value)  # type: ignore[return-value]
