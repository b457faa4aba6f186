"""The one small interface every backend implements.

A backend owns nothing but its framework: it builds a model from (spec, canonical
weights), runs an NCHW float32 batch, counts its own parameters, exports ONNX where it
can, and offers a step for benchmarking. The harness owns clocks, tolerances and files,
and runs each backend in its own worker process (see ``worker.py``).

Everything a backend returns is in canonical layout: NCHW feature maps, (N, F) features.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import numpy as np

from ..spec import ModelSpec

Weights = dict[str, np.ndarray]

OPSET = 18  # the ONNX opset every export targets


class BackendUnavailable(RuntimeError):
    """The backend's framework is not installed; the message is one line with the install hint."""


class ExportUnsupported(RuntimeError):
    """This backend has no ONNX export (or not for this spec); the message says why."""


@dataclass
class RunOutput:
    output: np.ndarray
    layers: dict[str, np.ndarray] = field(default_factory=dict)
    # The dtype each tensor had as the framework computed it, before the float32 copy returned here
    # (layer name, and "output"): what precision really ran (backends/precision.py DTYPE_NAMES).
    dtypes: dict[str, str] = field(default_factory=dict)


@dataclass
class TrainStep:
    """One training step as a backend computed it, canonical names (``<layer>.<param>``) and layouts
    (docs/training.md). With ``readout=False`` only the losses are filled in (the bench times that)."""

    loss: float  # the data loss plus the spec's l2 penalties
    data_loss: float  # the cross-entropy alone (mean over the batch)
    # Every trainable tensor: d(loss)/d(tensor), penalties included; the coupled weight decay is not (the
    # optimizer adds it).
    grads: dict[str, np.ndarray] = field(default_factory=dict)
    # Every canonical tensor after the step, batch norm's running statistics included.
    params: dict[str, np.ndarray] = field(default_factory=dict)
    # The SGD buffer of every trainable tensor in PyTorch's convention (b <- mu b + g + wd w); empty when
    # the spec's momentum is 0.
    momentum: dict[str, np.ndarray] = field(default_factory=dict)
    # The reference only: how far float32's legitimate choices at kinks can move each result. A max-pool
    # window whose top two values, or a ReLU input whose distance from 0, lie within float32's error at
    # that depth may be decided either way; the oracle runs a shadow step that decides every such case the
    # other way. ``spread[kind][tensor]``: the L2 norm of (main - shadow) for kind gradient, parameter,
    # momentum or statistic (and spread["loss"]["loss"], the losses' difference); ``ambiguous[layer]``: how
    # many such cases the step had.
    spread: dict[str, dict[str, float]] = field(default_factory=dict)
    ambiguous: dict[str, int] = field(default_factory=dict)


@dataclass
class Backend:
    """Base class. Subclasses set ``name``, ``needs`` and implement the verbs."""

    name: ClassVar[str] = ""
    # (importable module, pip extra) pairs checked before building: a missing one gives
    # "backend 'keras' needs tensorflow: pip install 'alexbench[keras]'".
    needs: ClassVar[tuple[tuple[str, str], ...]] = ()
    # The native <-> ONNX pairing, declared here and nowhere else. A native backend that exports
    # ONNX names its route (part of the export cache's key: bump the suffix when the route's
    # output changes) and the packages whose versions the file depends on; a backend that runs
    # such a file names the native backend it comes from.
    onnx_exporter: ClassVar[str | None] = None
    onnx_export_packages: ClassVar[tuple[str, ...]] = ()
    onnx_source: ClassVar[str | None] = None
    # Whether compare adds this runner by itself whenever its source backend runs (ONNX Runtime's do);
    # one that is False runs only when named (OpenVINO's).
    paired_by_default: ClassVar[bool] = True
    # Ops this backend cannot compute, each with the reason a user is shown (status
    # "unsupported", never a crash). Every other op of spec/ops.py must be in ``lowering()``.
    unsupported_ops: ClassVar[dict[str, str]] = {}
    # Precisions `compare --precision` can run this backend in (backends/precision.py); the
    # others are reported "unsupported" with the reason in ``precision_reasons`` (or a default).
    # options["precision"] says which one a worker runs (absent: fp32).
    precisions: ClassVar[tuple[str, ...]] = ("fp32",)
    precision_reasons: ClassVar[dict[str, str]] = {}
    options: dict[str, Any] = field(default_factory=dict)

    # Whether ``train_step`` is implemented (`compare --train`); the others are reported "unsupported"
    # with ``no_train_reason``.
    trains: ClassVar[bool] = False
    no_train_reason: ClassVar[str] = "this backend runs inference only"

    @classmethod
    def precision_reason(cls, precision: str) -> str | None:
        """Why this backend cannot run ``precision`` (a canonical name), or None when it can."""
        if precision in cls.precisions:
            return None
        return cls.precision_reasons.get(precision) or (
            f"backend '{cls.name}' runs {', '.join(cls.precisions)} only, not {precision}")

    @property
    def precision(self) -> str:
        return str(self.options.get("precision", "fp32"))

    @classmethod
    def lowering(cls) -> dict[str, Any]:
        """The backend's lowering table: one entry per op it computes (imports its framework)."""
        raise NotImplementedError

    @classmethod
    def unsupported_reason(cls, spec: ModelSpec) -> str | None:
        """Why this backend cannot run ``spec`` (the first unsupported op), or None."""
        for layer in spec.layers:
            if layer.op in cls.unsupported_ops:
                return f"layer '{layer.name}': op '{layer.op}' is not supported: {cls.unsupported_ops[layer.op]}"
        return None

    def build(self, spec: ModelSpec, weights: Weights, onnx_path: Path | None = None) -> None:
        raise NotImplementedError

    def run(self, x: np.ndarray, layers: Sequence[str] = ()) -> RunOutput:
        """Run an NCHW float32 batch; return the output and the requested named layer outputs."""
        raise NotImplementedError

    def start_training(self) -> None:
        """After build: switch the model to training (the spec's training section, ``self.spec.training``):
        optimizer state zeroed, dropout taking the harness' masks. Backends with ``trains`` only."""
        raise NotImplementedError(f"backend '{self.name}' does not train: {self.no_train_reason}")

    def train_step(self, x: np.ndarray, labels: np.ndarray, masks: dict[str, np.ndarray],
                   readout: bool = True) -> TrainStep:
        """One SGD step on the NCHW float32 batch ``x`` with int64 class ``labels`` (N,). ``masks``: for each
        dropout layer, its keep mask (0/1 float32, canonical layout, the layer's (N, *input shape)); the
        layer computes x * mask / (1 - rate). Returns the step in canonical names and layouts."""
        raise NotImplementedError(f"backend '{self.name}' does not train: {self.no_train_reason}")

    def param_count(self) -> int:
        """Parameters as the framework itself counts them (buffers such as running stats included)."""
        raise NotImplementedError

    def export_onnx(self, path: Path, opset: int = OPSET) -> dict[str, Any]:
        """Write an ONNX file of the built model; return its ``ExportInfo`` as JSON. Native backends
        with an ``onnx_exporter`` only."""
        raise ExportUnsupported(f"backend '{self.name}' has no ONNX export")

    def layer_names(self) -> list[str]:
        """The spec layers whose outputs this backend can return (default: all of them)."""
        raise NotImplementedError

    def environment(self) -> dict[str, Any]:
        """Framework versions, device and providers actually used, for the results file."""
        return {}

    @classmethod
    def check_available(cls, registered_name: str | None = None) -> None:
        """Raise BackendUnavailable naming the backend as registered (a plugin may not set ``name``)."""
        import importlib.util

        for module, extra in cls.needs:
            if importlib.util.find_spec(module) is None:
                raise BackendUnavailable(f"backend '{registered_name or cls.name}' needs {module}: "
                                         f"pip install 'alexbench[{extra}]'")

    # --- bench hooks ------------------------------------------------------------------------
    # The bench worker (harness/workers/bench_entry.py) names no framework: whatever a precision,
    # a compiled variant or a thread count means to a framework is done here, by the backend.
    # Order in a bench worker: before_build, build, prepare_bench, then bench_step per batch size.

    # Precisions the bench may run (besides float32, on CUDA only); the others are skipped.
    bench_precisions: ClassVar[tuple[str, ...]] = ("float32",)
    # What the compiled variant is ("torch.compile"), or None when there is none; then
    # ``no_compiled_reason`` is the skip reason the results carry.
    compiled_variant: ClassVar[str | None] = None
    no_compiled_reason: ClassVar[str] = "no compiled variant known for this backend"
    # A backend that computes nothing (the harness' overhead row): its rows count no MACs.
    computes_nothing: ClassVar[bool] = False

    def before_build(self, precision: str, threads: int) -> None:
        """What must be set before the model exists (a dtype policy, a runtime's thread pools)."""

    def prepare_bench(self, precision: str, compiled: bool, device: str, threads: int) -> str:
        """After build: apply the precision's switches (TF32), the compiled variant and thread
        pinning; return how the model executes (a bench row's "execution", e.g. "eager")."""
        return "as built"

    def bench_step(self, x: np.ndarray, device: str, precision: str = "float32") -> Callable[[], Any]:
        """Stage x on the device and return a callable that runs one inference and waits for it.
        ``precision`` is one of ``bench_precisions``: a backend whose half precision is not already
        set by ``before_build`` casts model and input here (before timing)."""
        raise NotImplementedError

    def threads_seen(self) -> dict[str, Any]:
        """The intra-op pool sizes the backend's framework reports, keyed by framework."""
        return {}

    @classmethod
    def matmul_peak_step(cls, device: str, precision: str, threads: int, n: int) -> tuple[Callable[[], Any], str]:
        """(a step computing one n x n x n matrix product on random data and waiting for it, "library
        version"), for the device's measured peak; the fastest library on offer counts. Raises
        NotImplementedError where the backend offers none for this device and precision, ImportError
        where its framework is not installed."""
        raise NotImplementedError
