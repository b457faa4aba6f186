"""``alexbench compare``: arguments, progress, the printed table and the exit code."""

from __future__ import annotations

import argparse

from ...backends.precision import ALIASES, PRECISIONS, UnknownPrecision, canonical_precision
from ...backends.registry import UnknownBackend
from ...spec.loader import shipped_spec_names
from ..compare.metrics import PROFILES, REL_L2_LIMIT
from ..errors import ExitCode, StructureMismatch, UsageError
from ..inputs import InputError
from ..train.data import DEFAULT_TRAIN_BATCH
from .progress import stderr_progress

DESCRIPTION = """Run the float64 NumPy reference and every requested backend on the same input batch with the
same weights, then compare output shapes and parameter counts with the spec, numbers with the reference
(per layer, in spec order) and backends with each other. The ONNX export of every native backend is run in
ONNX Runtime too (onnx-torch, onnx-keras) unless --no-onnx; exports are cached by content hash."""

EXAMPLES = """examples:
  alexbench compare                                   # alexnet, torch + keras + both ONNX exports, batch 4
  alexbench compare --spec alexnet-owt --weights alexnet-owt.pth   # torchvision's pretrained weights
  alexbench compare --spec my-net.yaml --backends torch --no-onnx --json results.json
  alexbench compare --input cat.png --input dog.jpg --save run/    # real images; keep every array
  alexbench compare --profile strict                  # or --atol/--rtol/--rel-l2
  alexbench compare --spec alexnet-owt --precision bf16   # bf16 against float64, the bf16 profile, 64 inputs
  alexbench compare --model my_net.py:AlexNet --spec alexnet-owt   # your own model against a spec
  alexbench compare --model model.onnx --input batch.npy          # your ONNX file, your inputs
  alexbench compare --backends torch --python torch=/opt/torch-2.4/bin/python   # torch from another venv
  alexbench compare --train --steps 5                 # 5 SGD steps of alexnet, batch 8, torch + keras
  alexbench compare --train --spec alexnet-owt --labels y.npy --save run/   # your labels; keep every step
"""


def _csv(text: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list such as torch,keras")
    return items


def _number(kind: type, minimum: float, what: str):
    """An argparse type: ``kind`` (int or float) of at least ``minimum``, with a message that says so."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}; received {text!r}") from None
        if not value >= minimum:  # also refuses NaN
            raise argparse.ArgumentTypeError(f"expected {what}; received {text}")
        return value
    return parse


_positive_int = _number(int, 1, "a positive integer")
_nonnegative_float = _number(float, 0.0, "a number >= 0")


def add_arguments(command: str, parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
    parser.epilog = EXAMPLES + "\n" + (parser.epilog or "")
    parser.add_argument("--spec", default=None,
                        help="spec file or shipped name (default alexnet, or with --model the model's own structure; "
                        "shipped: " + ", ".join(shipped_spec_names()) + ")")
    parser.add_argument("--model", dest="models", action="append", default=[], metavar="SOURCE",
                        help="your own model, run itself as a backend named after it, layer by layer against the "
                        "reference (repeatable): file.py:NAME, package.module:NAME, or a .keras/.onnx/.pt file. Its "
                        "own weights are used everywhere (with --weights: those, for the reference and the other "
                        "backends, while the model runs its own); with --spec its structure must match the spec's "
                        "first (else the diff is printed, exit 1). Importing code RUNS it: only models you trust")
    parser.add_argument("--input-shape", metavar="C,H,W",
                        help="the input a --model takes when it does not say (PyTorch code; default 3,224,224)")
    parser.add_argument("--backends", type=_csv, default=None,
                        help="comma-separated backends (default torch,keras; with --model none besides the model; "
                        "`alexbench backends` lists them)")
    parser.add_argument("--python", action="append", default=[], metavar="BACKEND=PYTHON",
                        help="run BACKEND's worker in another Python environment's interpreter (repeatable), e.g. "
                        "torch=/opt/torch-2.4/bin/python to check another torch version: it needs Python >= 3.10, "
                        "numpy and the backend's framework there, not alexbench (its code travels with the job). "
                        "The results record every backend's interpreter and package versions. An interpreter that "
                        "is missing, crashes, is too old or lacks a package fails that backend with one line (exit 3)")
    parser.add_argument("--no-onnx", dest="onnx", action="store_false",
                        help="do not export to ONNX and run the exports in ONNX Runtime")
    parser.add_argument("--weights", help="canonical safetensors, or a torchvision-style state_dict (.pth) "
                        "(default: canonical weights drawn from --seed)")
    parser.add_argument("--seed", type=int, default=0, help="seed for canonical weights and inputs (default 0)")
    parser.add_argument("--batch", type=_positive_int, default=None,
                        help="batch size of seeded inputs (default 4, or 64 below fp32: top-1/top-5 agreement is "
                        "judged on 64 inputs or more, and only reported with fewer; with --input: the number of "
                        "inputs the files hold)")
    parser.add_argument("--input", dest="inputs", action="append", default=[], metavar="FILE",
                        help="PNG/JPEG image, preprocessed as the spec says, or .npy/.npz float array (N x C x H x W "
                        "or C x H x W, taken as is: e.g. an earlier --save DIR's input.npy); repeatable, in order; "
                        "replaces seeded inputs")
    parser.add_argument("--precision", default="fp32", metavar="P",
                        help=f"run every backend but the float64 reference in P: {', '.join(PRECISIONS)} (or "
                        f"{', '.join(ALIASES)}); default fp32. A backend that cannot is 'unsupported' with its reason. "
                        "Below fp32 the precision's own tolerance profile applies (growing with depth; "
                        "docs/precision.md), classes are judged too, and seeded inputs default to a batch of 64")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="default",
                        help="named tolerance (default: the precision's own): "
                        + "; ".join(f"{k}: rtol {v.rtol:g}" for k, v in PROFILES.items()))
    parser.add_argument("--atol", type=_nonnegative_float, help="absolute tolerance (overrides the profile)")
    parser.add_argument("--rtol", type=_nonnegative_float,
                        help="tolerance relative to max|reference| (overrides the profile)")
    parser.add_argument("--rel-l2", type=_nonnegative_float, metavar="X",
                        help="largest relative L2 error that passes (overrides the profile: "
                        + "; ".join(f"{k}: {v:g}" for k, v in REL_L2_LIMIT.items()) + ")")
    parser.add_argument("--layers", dest="layers", action="store_true", default=True,
                        help="compare every named layer, not only the output (default)")
    parser.add_argument("--no-layers", dest="layers", action="store_false", help="compare the final output only")
    parser.add_argument("--train", action="store_true",
                        help="compare training instead of inference: --steps SGD steps on the same batch in every "
                        "backend that trains (reference, torch, keras, keras-jax, keras-torch; ONNX runners are "
                        "unsupported), with the spec's training settings and harness-drawn dropout masks, judged "
                        "step by step: loss, every gradient (backward order), parameter, momentum buffer and "
                        "batch-norm running statistic "
                        "against derived float32 limits (docs/training.md). Seeded inputs default to a batch of "
                        f"{DEFAULT_TRAIN_BATCH}, not the spec's batch_size (what it trained with): --batch changes it. "
                        "fp32 and specs only (no --precision, no --model)")
    parser.add_argument("--steps", type=_positive_int, default=None, metavar="N",
                        help="with --train: SGD steps to take and compare (default 1)")
    parser.add_argument("--labels", metavar="FILE.npy",
                        help="with --train: the batch's class labels, a 1-D integer array, one per input, in "
                        "[0, classes) (default: seeded from --seed)")
    parser.add_argument("--json", metavar="PATH", help="write the results (schema alexbench.results/3) here; "
                        "- writes them to standard output and moves the table (or -q's verdict) to standard error")
    parser.add_argument("--save", metavar="DIR", help="keep spec, weights, inputs and every output as .npy in DIR "
                        "(new, empty, or an earlier --save run's folder, whose listed files are replaced)")
    parser.add_argument("--report", metavar="DIR", help="also write report.md and report.html into DIR")
    parser.add_argument("--timeout", type=_nonnegative_float, default=600.0,
                        help="seconds each backend's worker may take (default 600)")
    parser.add_argument("--cache-dir", help="ONNX export cache (default $ALEXBENCH_CACHE_DIR or "
                        "~/.cache/alexbench/onnx)")
    parser.add_argument("--quiet", "-q", action="store_true", help="print only the verdict line")


def run(command: str, args: argparse.Namespace) -> int:
    from ..output_paths import check_file, check_folder, check_save_folder, is_stdout, table_stream, write_results_file

    # Every output path before any work: a bad one is exit 2 in a second, not a traceback after the run.
    check_file("--json", args.json, what="the results")
    check_save_folder("--save", args.save)
    check_folder("--report", args.report, what="report.md and report.html")
    try:
        precision = canonical_precision(args.precision)
    except UnknownPrecision as exc:
        raise UsageError(f"--precision: {exc}") from None
    out = table_stream(args.json)  # --json -: standard output carries the JSON alone

    from ..compare.run import CompareConfig, run_compare
    from ..compare.table import render_compare
    from ..model_import import parse_input_shape
    from ..workers.interpreter import parse_python

    cfg = CompareConfig(spec=args.spec, backends=args.backends, models=args.models, onnx=args.onnx,
                        model_input_shape=parse_input_shape(args.input_shape),
                        weights=args.weights,
                        seed=args.seed, batch=args.batch, inputs=args.inputs, profile=args.profile,
                        atol=args.atol, rtol=args.rtol, rel_l2=args.rel_l2,
                        layers=args.layers, timeout_s=args.timeout,
                        save_dir=args.save, cache_dir=args.cache_dir, precision=precision,
                        train=args.train, steps=args.steps, labels=args.labels, python=parse_python(args.python))
    if args.seed < 0:
        raise UsageError(f"--seed must be >= 0; received {args.seed}")
    from ..train.run import check_train_options, run_train
    from ..train.table import render_training

    check_train_options(cfg)
    if args.report:  # fail before a long run, not after it
        from ..report.diagram import check_graphviz

        check_graphviz()

    progress = stderr_progress(args.quiet)

    try:
        doc = run_train(cfg, progress) if cfg.train else run_compare(cfg, progress)
    except (UnknownBackend, InputError) as exc:
        raise UsageError(str(exc)) from None
    except StructureMismatch as exc:
        print(str(exc), file=out)
        return ExitCode.MISMATCH
    if args.json:
        write_results_file(doc, args.json)
        if not is_stdout(args.json):
            progress(f"results written to {args.json}")
    if args.report:
        from ..report.write import write_report_for_results

        write_report_for_results(doc, args.report, progress=progress)
        progress(f"report written to {args.report}")
    if args.quiet:
        print(doc["verdict"]["summary"], file=out)
    else:
        print(render_training(doc) if cfg.train else render_compare(doc), file=out)
    return doc["verdict"]["exit_code"]
