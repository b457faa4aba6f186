"""``alexbench bench``: arguments, progress on stderr, the printed table and the exit code.

Exit codes: 0 every job measured; 2 bad arguments, or a device this machine does not have
(``--device cuda`` without a GPU: the request cannot be served, nothing ran); 3 a backend
failed to build or run, or its framework is missing (the other rows are still reported).
"""

from __future__ import annotations

import argparse
import re
import sys

from ...backends.registry import UnknownBackend
from ..errors import UsageError
from .compare import _csv, _nonnegative_float, _positive_int
from .progress import stderr_progress

DESCRIPTION = """Measure latency and throughput of each backend at each batch size on one device. Every
backend runs in its own worker process, one at a time, with the same thread count; inputs are staged on
the device before timing and the device is synchronised before every clock read. Each row: warm-up, then
repetitions until both --min-time and --min-reps are reached; median, p10 and p90 latency; images/s;
achieved GFLOP/s (2 FLOPs per multiply-accumulate of the spec) and its share of a large float32 matrix
product measured on the same device in the same run (the theoretical peak is stated too where known).
The null backend (a no-op step) measures the harness' own cost per repetition. With several
--precision values each backend's rows stand side by side with its float32 rows and their speed-up;
an int8 model is calibrated at build (its seconds are reported apart). --device cuda on a
machine without a GPU exits 2 before anything runs; a backend that fails or is not installed exits 3
after the others have been measured.

--train times training steps instead, by the same method: the backend's train_step (forward in training
mode, cross-entropy, backward, the spec's SGD update) on a seeded batch whose labels and dropout masks are
drawn once per batch size; only the loss is read back. GFLOP/s counts forward, weight gradient and input
gradient of every conv/linear layer (about 3x the forward MACs). Backends that do not train (the ONNX
runtimes), the float64 reference, precisions other than float32 and the compiled variant are skipped, each
with its reason."""

EXAMPLES = """examples:
  alexbench bench                                   # alexnet-owt, torch, keras and both ONNX exports, batch 1,8,64
  alexbench bench --backends torch,onnx-torch --batch-sizes 1,32 --json bench.json --report out/
  alexbench bench --device cuda --backends torch,onnx-torch,keras-jax --precision float32,tf32,bfloat16 --compile
  alexbench bench --backends torch,keras,onnx-torch --batch-sizes 64 --precision fp32,bf16,fp16,int8
  alexbench bench --train --backends torch,keras,keras-jax --batch-sizes 8,32   # training steps per second
  alexbench bench --backends torch,keras --python torch=/opt/torch-2.4/bin/python   # torch from another venv
"""


def _batch_sizes(text: str) -> list[int]:
    sizes = []
    for item in _csv(text):
        try:
            sizes.append(_positive_int(item))
        except argparse.ArgumentTypeError as exc:
            raise argparse.ArgumentTypeError(f"batch size {exc}") from None
    return sorted(dict.fromkeys(sizes))


def _device(text: str) -> str:
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", text):
        raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda or cuda:N; received {text!r}")
    return text


def add_arguments(command: str, parser: argparse.ArgumentParser) -> None:
    from ..bench.method import Method
    from ..bench.precisions import NAMES
    from ..bench.run import DEFAULT_BACKENDS, DEFAULT_BATCH_SIZES, DEFAULT_SPEC

    m = Method()
    parser.description = DESCRIPTION
    parser.epilog = EXAMPLES + "\n" + (parser.epilog or "")
    parser.add_argument("--spec", default=DEFAULT_SPEC,
                        help=f"spec file or shipped name (default {DEFAULT_SPEC}: torchvision's AlexNet, the model "
                             "people deploy)")
    parser.add_argument("--backends", type=_csv, default=list(DEFAULT_BACKENDS),
                        help=f"comma-separated backends (default {','.join(DEFAULT_BACKENDS)}; also keras-torch, "
                             "keras-jax; `alexbench backends` lists them)")
    parser.add_argument("--batch-sizes", type=_batch_sizes, default=list(DEFAULT_BATCH_SIZES),
                        help=f"comma-separated batch sizes (default {','.join(map(str, DEFAULT_BATCH_SIZES))})")
    parser.add_argument("--device", type=_device, default="auto",
                        help="auto (a CUDA GPU when nvidia-smi lists one, else the CPU), cpu, cuda or cuda:N")
    parser.add_argument("--precision", type=_csv, default=["float32"],
                        help=f"comma-separated: {', '.join(NAMES)}, or compare's fp32, bf16, fp16 (default "
                             "float32); each runs for the backends that declare it, the others are skipped with the "
                             "reason; tf32 on CUDA only")
    parser.add_argument("--compile", nargs="?", const="also", choices=["also", "only"],
                        help="also time compiled variants as separate rows (torch.compile; XLA for Keras on "
                             "TensorFlow; torch.compile for keras-torch); --compile only: just those")
    parser.add_argument("--train", action="store_true",
                        help="time training steps (forward + backward + SGD update, float32, as each backend's "
                             "train_step runs them) instead of inferences; backends that cannot train are skipped "
                             "with the reason")
    parser.add_argument("--python", action="append", default=[], metavar="BACKEND=PYTHON",
                        help="run BACKEND's jobs in another Python environment's interpreter (repeatable), as in "
                        "compare --python (see its help), and say where each backend ran; the matmul peak, the null "
                        "backend's overhead row and the ONNX exports an ONNX runner times stay in this one")
    parser.add_argument("--threads", type=_positive_int,
                        help="intra-op threads for every CPU runtime (default: all cores)")
    parser.add_argument("--warmup", type=int, default=m.warmup, help=f"untimed runs first (default {m.warmup})")
    parser.add_argument("--min-time", type=_nonnegative_float, default=m.min_time_s,
                        help=f"seconds of timed runs per row, at least (default {m.min_time_s:g})")
    parser.add_argument("--min-reps", type=_positive_int, default=m.min_reps,
                        help=f"timed runs per row, at least (default {m.min_reps})")
    parser.add_argument("--peak-size", type=_positive_int, metavar="N",
                        help="size of the N x N x N matmul that measures the device's peak (default 4096 on a CPU, "
                             "8192 on a GPU)")
    parser.add_argument("--weights", help="canonical safetensors or torchvision-style .pth (default: seeded)")
    parser.add_argument("--seed", type=int, default=0, help="seed for weights and inputs (default 0)")
    parser.add_argument("--json", metavar="PATH", help="write the results (schema alexbench.results/3) here; "
                        "- writes them to standard output and moves the table to standard error")
    parser.add_argument("--report", metavar="DIR", help="also write report.md and report.html (with the "
                        "images/s against batch size chart) into DIR")
    parser.add_argument("--timeout", type=_nonnegative_float, default=900.0,
                        help="seconds each worker may take (default 900)")
    parser.add_argument("--cache-dir",
                        help="ONNX export cache (default $ALEXBENCH_CACHE_DIR or ~/.cache/alexbench/onnx)")
    parser.add_argument("--no-overhead", dest="overhead", action="store_false",
                        help="skip the null backend (the harness' overhead row)")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress, only the table")


def run(command: str, args: argparse.Namespace) -> int:
    from ..output_paths import check_file, check_folder, is_stdout, table_stream, write_results_file

    # Every output path before any work: a bad one is exit 2 in a second, not a traceback after the run.
    check_file("--json", args.json, what="the results")
    check_folder("--report", args.report, what="report.md and report.html")

    from ..bench.method import Method
    from ..bench.run import BenchConfig, BenchError, run_bench
    from ..bench.table import render_bench
    from ..workers.interpreter import parse_python

    if args.warmup < 0:
        raise UsageError(f"--warmup must be >= 0; received {args.warmup}")
    if args.seed < 0:
        raise UsageError(f"--seed must be >= 0; received {args.seed}")
    cfg = BenchConfig(spec=args.spec, backends=tuple(dict.fromkeys(args.backends)),
                      batch_sizes=tuple(args.batch_sizes), device=args.device,
                      precisions=tuple(dict.fromkeys(args.precision)), compiled=args.compile,
                      method=Method(warmup=args.warmup, min_time_s=args.min_time, min_reps=args.min_reps),
                      threads=args.threads, seed=args.seed, weights=args.weights, timeout_s=args.timeout,
                      cache_dir=args.cache_dir, overhead=args.overhead,
                      peak_n=args.peak_size, train=args.train, python=parse_python(args.python))

    progress = stderr_progress(args.quiet)

    try:
        doc = run_bench(cfg, progress)
    except (BenchError, UnknownBackend) as exc:
        raise UsageError(str(exc)) from None
    print(render_bench(doc), file=table_stream(args.json))  # --json -: standard output is the JSON alone
    if args.json:
        _write_json(doc, args.json, write_results_file)
        if not is_stdout(args.json):
            progress(f"results written to {args.json}")
    if args.report:
        from ..report.write import write_report_for_results

        write_report_for_results(doc, args.report)
        progress(f"report written to {args.report}")
    return doc["verdict"]["exit_code"]


def _write_json(doc: dict, path: str, write_results) -> None:
    """Validated and atomic; where jsonschema (a core dependency) is missing, as when the package runs
    from a bare checkout on a GPU machine, minutes of measurements are still kept, unvalidated."""
    try:
        write_results(doc, path)
    except ModuleNotFoundError as exc:
        if exc.name != "jsonschema":
            raise
        from ..output_paths import write_text
        from ..results.document import results_json

        write_text(path, results_json(doc))
        print(f"alexbench bench: warning: jsonschema is not installed; {path} was written without validation "
              f"(pip install jsonschema, then `alexbench report` reads and validates it)", file=sys.stderr)
