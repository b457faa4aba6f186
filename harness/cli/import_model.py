"""``alexbench import``: a user's own model (PyTorch or Keras code, a .keras, .onnx or .pt file) as a
spec and canonical weights."""

from __future__ import annotations

import argparse
from pathlib import Path

DESCRIPTION = """Read your own model and write it as an alexbench spec (with its provenance: the source, the
importer and its versions) plus its weights as canonical safetensors, ready for `alexbench summary`,
`compare --spec`, `diff` and `report`. Validation is the same as for a hand-written spec: a model whose
layers do not fit together is refused with the layer, the module it came from and the shapes.

SOURCE is one of:
  path/to/file.py:NAME     a PyTorch nn.Module or a Keras model defined in that file
  package.module:NAME      the same, from an importable module
  model.keras              a Keras 3 model file (loaded with safe_mode on)
  model.onnx               an ONNX file
  model.pt                 a whole pickled nn.Module (torch.save(model))
NAME is a model instance, a class that builds one without arguments, or a factory function.

WARNING: importing Python code (file.py:NAME, package.module:NAME) or unpickling a .pt file RUNS that
code, as `python file.py` would. Only import models whose code you trust."""

EXAMPLES = """examples:
  alexbench import my_models.py:AlexNet -o alexnet-mine.yaml          # also writes alexnet-mine.safetensors
  alexbench import model.keras -o from-keras.yaml --weights-out w.safetensors
  alexbench import exported.onnx -o from-onnx.yaml --name my-net
  alexbench import mypackage.nets:build_alexnet -o net.yaml --input-shape 3,227,227
then:
  alexbench summary alexnet-mine.yaml
  alexbench diff alexnet-mine.yaml alexnet-owt
  alexbench compare --model my_models.py:AlexNet --spec alexnet-owt
"""


def add_arguments(command: str, parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
    parser.epilog = EXAMPLES + "\n" + (parser.epilog or "")
    parser.add_argument("source", metavar="SOURCE",
                        help="file.py:NAME, package.module:NAME, or a .keras/.onnx/.pt file")
    parser.add_argument("-o", "--output", required=True, metavar="SPEC.yaml", help="the spec file to write")
    parser.add_argument("--weights-out", metavar="W.safetensors",
                        help="where the weights go (default: next to the spec, SPEC.safetensors)")
    parser.add_argument("--input-shape", metavar="C,H,W",
                        help="the input the model takes (PyTorch code declares none: default 3,224,224; "
                             "Keras and ONNX models: their own)")
    parser.add_argument("--name", help="the spec's name (default: the model's)")


def run(command: str, args: argparse.Namespace) -> int:
    from ..model_import import import_source, parse_input_shape
    from ..output_paths import check_file

    weights_out = args.weights_out or str(Path(args.output).with_suffix(".safetensors"))
    check_file(("-o", "--output"), args.output, what="the spec", stdout_ok=False)  # before any work
    check_file("--weights-out", weights_out, what="the safetensors weights", stdout_ok=False)
    if Path(weights_out).resolve() == Path(args.output).resolve():
        from ..errors import UsageError

        raise UsageError(f"--weights-out {weights_out}: the same file as -o; expected another file")
    result = import_source(args.source, input_shape=parse_input_shape(args.input_shape), name=args.name)
    result.save(args.output, weights_out)
    spec = result.spec
    print(f"imported {args.source} ({result.model.importer}): {len(spec.layers)} layers, "
          f"input {list(spec.input_shape)}, {spec.param_count:,} parameters, {spec.macs:,} MACs")
    for note in result.model.notes:
        print(f"  note: {note}")
    print(f"wrote {args.output} and {weights_out}")
    return 0
