"""The results document as typed values: what compare and bench build, and what the API returns.

``to_json()`` gives exactly the JSON that ``--json`` writes (results_schema.json, documented in
docs/results.md): same keys in the same order, optional keys only where they were present.
``from_json()`` reads such a document back (a file already checked with ``read_results``).
Sections that are free-form in the schema (environment, spec summary, timings, the bench
peak and settings) stay plain dicts.

Importing this module imports no framework and no numpy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Union

SCHEMA_ID = "alexbench.results/3"
# Every version this code reads: /2 added the precision fields, /3 the training fields (compare --train,
# bench --train; docs/results.md); nothing was removed.
SCHEMA_IDS = ("alexbench.results/1", "alexbench.results/2", SCHEMA_ID)

Json = dict[str, Any]


def _opt(d: Json, cls):
    return None if d is None else cls.from_json(d)


# ---- compare ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutputMetrics:
    """A backend's final output against the float64 reference (None: not finite or not comparable)."""

    shape_ok: bool
    max_abs: float | None
    rel_l2: float | None
    cosine: float | None
    ref_max: float | None
    ok: bool
    min_atol: float | None  # smallest atol that would have passed with the same rtol
    problem: str = ""
    top1: float | None = None  # share of samples whose top-1 class matches the reference's
    top5: float | None = None  # ... is among the reference's top 5

    @classmethod
    def from_agreement(cls, agreement, top1: float | None, top5: float | None) -> OutputMetrics:
        """From ``compare.metrics.Agreement``, non-finite numbers as None (JSON has no NaN)."""
        return cls(**agreement.to_json(), top1=top1, top5=top5)

    def to_json(self) -> Json:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_json(cls, d: Json) -> OutputMetrics:
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})


@dataclass(frozen=True)
class LayerDiff:
    """One named layer of a backend against the same layer of the reference."""

    name: str
    max_abs: float | None
    rel_l2: float | None
    ok: bool
    min_atol: float | None

    @classmethod
    def from_agreement(cls, name: str, agreement) -> LayerDiff:
        j = agreement.to_json()
        return cls(name, j["max_abs"], j["rel_l2"], agreement.ok, j["min_atol"])

    def to_json(self) -> Json:
        return {"name": self.name, "max_abs": self.max_abs, "rel_l2": self.rel_l2, "ok": self.ok,
                "min_atol": self.min_atol}

    @classmethod
    def from_json(cls, d: Json) -> LayerDiff:
        return cls(d["name"], d["max_abs"], d["rel_l2"], d["ok"], d["min_atol"])


@dataclass(frozen=True)
class PrecisionInfo:
    """What precision a backend was asked for and what its tensors say it computed in (results/2)."""

    requested: str  # fp32, bf16, fp16, int8
    computed: list[str]  # the precisions of the dtypes it reported (empty: it reported none)
    problem: str | None = None  # the dtypes contradict the request: "asked for fp32, but layer ..."
    diagnosis: str | None = None  # an fp32 run out of tolerance whose errors look like a lower precision's
    # The precision-relevant settings the backend says it ran with (environment["precision"]["settings"]:
    # OpenVINO's INFERENCE_PRECISION_HINT), shown with a mismatch; None when it reports none.
    settings: str | None = None

    def to_json(self) -> Json:
        d = {"requested": self.requested, "computed": list(self.computed), "problem": self.problem,
             "diagnosis": self.diagnosis}
        return d | ({"settings": self.settings} if self.settings else {})

    @classmethod
    def from_json(cls, d: Json) -> PrecisionInfo:
        return cls(d["requested"], list(d.get("computed") or []), d.get("problem"), d.get("diagnosis"),
                   d.get("settings"))


@dataclass(frozen=True)
class TopkResult:
    """Class agreement with the float64 reference, margin-aware (compare/precision.py ``topk_check``):
    ``decisive_top1`` inputs lead their second class by more than any error within the profile can
    close, and must keep their top-1 class (``kept_top1``); likewise top-5 against the sixth class."""

    judged: bool  # False with fewer inputs than the criterion needs (``note`` says so)
    inputs: int
    top1: float | None
    top5: float | None
    decisive_top1: int = 0
    kept_top1: int = 0
    decisive_top5: int = 0
    kept_top5: int = 0
    lost: tuple[int, ...] = ()  # decisive inputs (batch indices) whose class was lost
    note: str = ""

    @property
    def ok(self) -> bool:
        return not self.lost

    def to_json(self) -> Json:
        return {f.name: list(self.lost) if f.name == "lost" else getattr(self, f.name) for f in fields(self)} | {
            "ok": self.ok}

    @classmethod
    def from_json(cls, d: Json) -> TopkResult:
        values = {f.name: d[f.name] for f in fields(cls) if f.name in d}
        return cls(**values | {"lost": tuple(d.get("lost") or ())})


# ---- compare --train (results/3) ---------------------------------------------------------------


@dataclass(frozen=True)
class TensorCheck:
    """One tensor of one training step against the float64 reference: ``kind`` gradient, parameter
    (displacement from the initial weights), momentum (the SGD buffer) or statistic (batch norm's running
    statistics, displacement), relative L2 against the derived limit. ``rel_l2`` is None when it cannot
    be computed (a missing tensor, another shape, inf/NaN: ``problem`` says which)."""

    tensor: str
    kind: str
    rel_l2: float | None
    limit: float
    ok: bool
    problem: str | None = None

    def to_json(self) -> Json:
        d = {"tensor": self.tensor, "kind": self.kind, "rel_l2": self.rel_l2, "limit": self.limit, "ok": self.ok}
        return d | ({"problem": self.problem} if self.problem is not None else {})

    @classmethod
    def from_json(cls, d: Json) -> TensorCheck:
        return cls(d["tensor"], d["kind"], d["rel_l2"], d["limit"], d["ok"], d.get("problem"))


@dataclass(frozen=True)
class StepCheck:
    """One SGD step of a backend: the loss' relative error and every tensor, in backward order."""

    step: int  # 1-based
    loss_rel_err: float | None
    ok: bool
    tensors: list[TensorCheck] = field(default_factory=list)
    loss_limit: float | None = None  # the loss' limit at this step (the float32 one, widened by the kink spread)

    def to_json(self) -> Json:
        return {"step": self.step, "loss_rel_err": self.loss_rel_err, "loss_limit": self.loss_limit, "ok": self.ok,
                "tensors": [t.to_json() for t in self.tensors]}

    @classmethod
    def from_json(cls, d: Json) -> StepCheck:
        return cls(d["step"], d["loss_rel_err"], d["ok"], [TensorCheck.from_json(t) for t in d.get("tensors") or []],
                   d.get("loss_limit"))


@dataclass(frozen=True)
class Divergence:
    """Where a backend first leaves the reference: the earliest step, and in it the loss, else the first
    tensor in backward order (kind "loss": tensor "loss")."""

    step: int
    kind: str
    tensor: str
    rel_l2: float | None
    limit: float

    def to_json(self) -> Json:
        return {"step": self.step, "kind": self.kind, "tensor": self.tensor, "rel_l2": self.rel_l2,
                "limit": self.limit}

    @classmethod
    def from_json(cls, d: Json) -> Divergence:
        return cls(d["step"], d["kind"], d["tensor"], d["rel_l2"], d["limit"])


def _finite(values: list) -> list:
    """Losses as JSON holds them: inf or NaN (a diverged run, -log 0) as None."""
    return [v if v is not None and math.isfinite(v) else None for v in values]


@dataclass(frozen=True)
class TrainingResult:
    """A backend's training run (``CompareEntry.training``): its losses per step (None: not finite) and,
    for a backend judged against the reference, every step's checks and the first divergence (None:
    none). ``note``: why later steps were not judged (the reference's loss stopped being finite)."""

    losses: list[float | None]
    data_losses: list[float | None]
    steps: list[StepCheck] = field(default_factory=list)
    first_divergent: Divergence | None = None
    note: str | None = None

    def to_json(self) -> Json:
        d = {"losses": _finite(self.losses), "data_losses": _finite(self.data_losses),
             "steps": [s.to_json() for s in self.steps],
             "first_divergent": None if self.first_divergent is None else self.first_divergent.to_json()}
        return d | ({"note": self.note} if self.note is not None else {})

    @classmethod
    def from_json(cls, d: Json) -> TrainingResult:
        return cls(list(d["losses"]), list(d["data_losses"]), [StepCheck.from_json(s) for s in d.get("steps") or []],
                   _opt(d.get("first_divergent"), Divergence), d.get("note"))


@dataclass(frozen=True)
class TrainingTolerance:
    """The derived limits (harness/train/tolerance.py, docs/training.md): the loss' relative error, and per
    tensor and step the relative L2 of its gradient, momentum buffer and displacement (parameter,
    statistic): the float32 limit, widened where the oracle's kink spread is larger. ``ambiguous``: per
    step, the layers whose ReLU or max-pool decisions float32 may take either way, and how many."""

    derivation: str
    loss: float
    gradient: dict[str, list[float]] = field(default_factory=dict)
    parameter: dict[str, list[float]] = field(default_factory=dict)
    momentum: dict[str, list[float]] = field(default_factory=dict)
    statistic: dict[str, list[float]] = field(default_factory=dict)
    ambiguous: list[dict[str, int]] = field(default_factory=list)

    def to_json(self) -> Json:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_json(cls, d: Json) -> TrainingTolerance:
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})


@dataclass(frozen=True)
class TrainingInfo:
    """What a training comparison ran (``CompareDocument.training``): steps, batch, the spec's training
    settings, where the labels and dropout masks came from, and the limits."""

    steps: int
    batch: int
    settings: Json
    labels: Json  # source ("seeded, seed 0" or the file), sha256
    masks: Json  # source, layers, sha256
    tolerance: TrainingTolerance

    def to_json(self) -> Json:
        return {"steps": self.steps, "batch": self.batch, "settings": self.settings, "labels": self.labels,
                "masks": self.masks, "tolerance": self.tolerance.to_json()}

    @classmethod
    def from_json(cls, d: Json) -> TrainingInfo:
        return cls(d["steps"], d["batch"], d["settings"], d["labels"], d["masks"],
                   TrainingTolerance.from_json(d["tolerance"]))


@dataclass(kw_only=True)
class CompareEntry:
    """One backend of a compare run.

    ``environment`` is None for a backend whose worker returned no result (a failure before or
    in its run, or an ONNX run without an export): such an entry has no ``param_note`` and no
    ``environment`` key. ``timings_s`` is None (no key) when no worker ran at all; ``onnx`` is
    None (no key) unless this native backend's export was run in ONNX Runtime."""

    name: str
    status: str  # ok, mismatch, failed, unavailable
    stage: str | None = None
    error: str | None = None
    stderr_tail: str | None = None
    output_shape: list[int] | None = None
    shape_ok: bool | None = None
    param_count: int | None = None
    param_count_ok: bool | None = None
    param_note: str | None = None
    metrics: OutputMetrics | None = None
    layers: list[LayerDiff] = field(default_factory=list)
    missing_layers: list[str] = field(default_factory=list)
    first_divergent_layer: LayerDiff | None = None
    environment: Json | None = None
    timings_s: dict[str, float | None] | None = None
    onnx: Json | None = None  # the export's facts: info, cache_hit, file
    # results/2, each a key only where present: the dtype of each tensor as computed (layer -> name,
    # and "output"), the precision asked for and seen, the top-k criterion of a low-precision run.
    dtypes: dict[str, str] | None = None
    precision: PrecisionInfo | None = None
    topk: TopkResult | None = None
    training: TrainingResult | None = None  # results/3, compare --train: a key only for a backend that trained

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_json(self) -> Json:
        d: Json = {"name": self.name, "status": self.status, "stage": self.stage, "error": self.error,
                   "stderr_tail": self.stderr_tail, "output_shape": self.output_shape, "shape_ok": self.shape_ok,
                   "param_count": self.param_count, "param_count_ok": self.param_count_ok}
        if self.environment is not None:
            d["param_note"] = self.param_note
        d.update({"metrics": None if self.metrics is None else self.metrics.to_json(),
                  "layers": [row.to_json() for row in self.layers], "missing_layers": list(self.missing_layers),
                  "first_divergent_layer": (None if self.first_divergent_layer is None
                                            else self.first_divergent_layer.to_json())})
        if self.environment is not None:
            d["environment"] = self.environment
        if self.timings_s is not None:
            d["timings_s"] = self.timings_s
        if self.onnx is not None:
            d["onnx"] = self.onnx
        for key in ("dtypes", "precision", "topk", "training"):
            value = getattr(self, key)
            if value is not None:
                d[key] = value if isinstance(value, dict) else value.to_json()
        return d

    @classmethod
    def from_json(cls, d: Json) -> CompareEntry:
        return cls(name=d["name"], status=d["status"], stage=d.get("stage"), error=d.get("error"),
                   stderr_tail=d.get("stderr_tail"), output_shape=d.get("output_shape"), shape_ok=d.get("shape_ok"),
                   param_count=d.get("param_count"), param_count_ok=d.get("param_count_ok"),
                   param_note=d.get("param_note"), metrics=_opt(d.get("metrics"), OutputMetrics),
                   layers=[LayerDiff.from_json(row) for row in d.get("layers") or []],
                   missing_layers=list(d.get("missing_layers") or []),
                   first_divergent_layer=_opt(d.get("first_divergent_layer"), LayerDiff),
                   environment=d.get("environment"), timings_s=d.get("timings_s"), onnx=d.get("onnx"),
                   dtypes=d.get("dtypes"), precision=_opt(d.get("precision"), PrecisionInfo),
                   topk=_opt(d.get("topk"), TopkResult), training=_opt(d.get("training"), TrainingResult))


@dataclass(frozen=True)
class Pairwise:
    """Every backend's output against every other's (None where the shapes differ)."""

    names: list[str]
    max_abs: list[list[float | None]]
    rel_l2: list[list[float | None]]

    def to_json(self) -> Json:
        return {"names": self.names, "max_abs": self.max_abs, "rel_l2": self.rel_l2}

    @classmethod
    def from_json(cls, d: Json) -> Pairwise:
        return cls(d["names"], d["max_abs"], d["rel_l2"])


@dataclass(frozen=True)
class WeightsInfo:
    source: str  # a file, or "canonical, seed N"
    sha256: str

    def to_json(self) -> Json:
        return {"source": self.source, "sha256": self.sha256}

    @classmethod
    def from_json(cls, d: Json) -> WeightsInfo:
        return cls(d["source"], d["sha256"])


@dataclass(frozen=True)
class InputsInfo:
    source: str
    batch: int
    shape: list[int]
    sha256: str
    files: list[str] = field(default_factory=list)

    def to_json(self) -> Json:
        return {"source": self.source, "batch": self.batch, "shape": self.shape, "sha256": self.sha256,
                "files": self.files}

    @classmethod
    def from_json(cls, d: Json) -> InputsInfo:
        return cls(d["source"], d["batch"], d["shape"], d["sha256"], list(d.get("files") or []))


@dataclass(frozen=True)
class ToleranceInfo:
    profile: str
    atol: float
    rtol: float
    rel_l2: float
    label: str | None = None  # set when --atol/--rtol/--rel-l2 override the profile: "custom (default with ...)"
    # results/2, a precision's profile only: its one-line derivation and each layer's relative L2 limit
    # (the limits grow with depth; atol/rtol/rel_l2 above are the output's).
    derivation: str | None = None
    layers: dict[str, float] | None = None

    def to_json(self) -> Json:
        out = {"profile": self.profile, "atol": self.atol, "rtol": self.rtol, "rel_l2": self.rel_l2}
        extra = {"label": self.label, "derivation": self.derivation, "layers": self.layers}
        return out | {k: v for k, v in extra.items() if v is not None}

    @classmethod
    def from_json(cls, d: Json) -> ToleranceInfo:
        return cls(d["profile"], d["atol"], d["rtol"], d["rel_l2"], d.get("label"), d.get("derivation"),
                   d.get("layers"))


# ---- bench ------------------------------------------------------------------------------------


@dataclass(kw_only=True)
class BenchEntry:
    """How one bench worker ended (the null backend, an export, or one backend/precision/variant job).
    ``precision``/``variant`` are keys only for a backend's job (``job`` True)."""

    name: str
    status: str  # ok, failed, unavailable
    stage: str | None = None
    error: str | None = None
    stderr_tail: str | None = None
    param_count: int | None = None
    environment: Json = field(default_factory=dict)
    threads_seen: Json = field(default_factory=dict)
    timings_s: dict[str, float | None] = field(default_factory=dict)
    job: bool = False
    precision: str | None = None
    variant: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_json(self) -> Json:
        d: Json = {"name": self.name, "status": self.status, "stage": self.stage, "error": self.error,
                   "stderr_tail": self.stderr_tail, "param_count": self.param_count,
                   "environment": self.environment, "threads_seen": self.threads_seen, "timings_s": self.timings_s}
        if self.job:
            d["precision"], d["variant"] = self.precision, self.variant
        return d

    @classmethod
    def from_json(cls, d: Json) -> BenchEntry:
        return cls(name=d["name"], status=d["status"], stage=d.get("stage"), error=d.get("error"),
                   stderr_tail=d.get("stderr_tail"), param_count=d.get("param_count"),
                   environment=d.get("environment") or {}, threads_seen=d.get("threads_seen") or {},
                   timings_s=d.get("timings_s") or {}, job="precision" in d, precision=d.get("precision"),
                   variant=d.get("variant"))


@dataclass(kw_only=True)
class BenchRow:
    """One backend/precision/variant at one batch size: latency, throughput, share of the peak."""

    backend: str
    variant: str | None
    device: str
    device_name: str
    precision: str
    tf32: bool
    threads: int | None  # on the CPU only
    batch: int
    median_ms: float
    p10_ms: float
    p90_ms: float
    images_per_s: float
    gflops: float | None
    repetitions: int
    execution: Any
    timed_s: float
    other_cores_busy: Any
    peak_share: float | None = None  # of the matmul peak measured in the same run
    theoretical_share: float | None = None
    # results/3: a training-step row (bench --train: forward, backward and SGD update per batch); the key
    # is written for those rows only.
    train: bool = False

    def to_json(self) -> Json:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "train" or self.train}

    @classmethod
    def from_json(cls, d: Json) -> BenchRow:
        return cls(**{f.name: d.get(f.name) for f in fields(cls) if f.name != "train"}, train=bool(d.get("train")))


@dataclass(kw_only=True)
class BenchSection:
    rows: list[BenchRow] = field(default_factory=list)
    peak: Json = field(default_factory=dict)
    settings: Json = field(default_factory=dict)
    overhead: list[Json] = field(default_factory=list)  # the null backend: the harness' own cost
    skipped: list[Json] = field(default_factory=list)  # combinations left out, each with its reason
    failures: list[Json] = field(default_factory=list)  # batch sizes that failed within a job

    def to_json(self) -> Json:
        return {"rows": [row.to_json() for row in self.rows], "peak": self.peak, "settings": self.settings,
                "overhead": self.overhead, "skipped": self.skipped, "failures": self.failures}

    @classmethod
    def from_json(cls, d: Json) -> BenchSection:
        return cls(rows=[BenchRow.from_json(r) for r in d.get("rows") or []], peak=d.get("peak") or {},
                   settings=d.get("settings") or {}, overhead=list(d.get("overhead") or []),
                   skipped=list(d.get("skipped") or []), failures=list(d.get("failures") or []))


# ---- the document -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    exit_code: int  # harness.errors.ExitCode
    summary: str

    def to_json(self) -> Json:
        return {"exit_code": int(self.exit_code), "summary": self.summary}

    @classmethod
    def from_json(cls, d: Json) -> Verdict:
        return cls(d["exit_code"], d["summary"])


@dataclass(kw_only=True)
class ResultsDocument:
    """The parts every results document has; ``CompareDocument`` and ``BenchDocument`` add theirs."""

    kind: str
    created: str  # UTC, ISO 8601
    alexbench_version: str
    environment: Json
    spec: Json  # the spec summary: name, source, sha256, shapes, counts
    backends: list = field(default_factory=list)
    verdict: Verdict = Verdict(0, "")
    weights: WeightsInfo | None = None
    schema: str = SCHEMA_ID

    @property
    def exit_code(self) -> int:
        return int(self.verdict.exit_code)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def entry(self, name: str):
        """The first backend entry called ``name``; KeyError if there is none."""
        for e in self.backends:
            if e.name == name:
                return e
        raise KeyError(f"no backend {name!r} in these results; there are: {', '.join(e.name for e in self.backends)}")

    def _head(self) -> Json:
        return {"schema": self.schema, "kind": self.kind, "created": self.created,
                "alexbench_version": self.alexbench_version, "environment": self.environment, "spec": self.spec,
                "backends": [e.to_json() for e in self.backends], "verdict": self.verdict.to_json()}

    def to_json(self) -> Json:
        raise NotImplementedError

    @staticmethod
    def _common(d: Json) -> Json:
        return {"schema": d["schema"], "kind": d["kind"], "created": d["created"],
                "alexbench_version": d["alexbench_version"], "environment": d["environment"], "spec": d["spec"],
                "verdict": Verdict.from_json(d["verdict"]), "weights": _opt(d.get("weights"), WeightsInfo)}

    @staticmethod
    def from_json(d: Json) -> Document:
        """A CompareDocument or a BenchDocument, by ``kind``."""
        if d.get("kind") == "compare":
            return CompareDocument.from_json(d)
        if d.get("kind") == "bench":
            return BenchDocument.from_json(d)
        raise ValueError(f"not an alexbench results document: kind {d.get('kind')!r}; expected compare or bench")


@dataclass(kw_only=True)
class CompareDocument(ResultsDocument):
    """``alexbench compare``: every backend against the float64 reference and each other."""

    kind: str = "compare"
    backends: list[CompareEntry] = field(default_factory=list)
    inputs: InputsInfo | None = None
    tolerance: ToleranceInfo | None = None
    pairwise: Pairwise | None = None
    precision: str | None = None  # results/2: what the backends were asked to run in (None: a /1 file)
    training: TrainingInfo | None = None  # results/3: compare --train's settings and limits (None: inference)

    def record(self, judgement) -> None:
        """Take the judged entries, pairwise matrix and verdict of ``compare.judge.judge``."""
        self.backends, self.pairwise, self.verdict = list(judgement.backends), judgement.pairwise, judgement.verdict

    def to_json(self) -> Json:
        d = self._head()
        if self.precision is not None:
            d["precision"] = self.precision
        for key in ("weights", "inputs", "tolerance", "pairwise", "training"):
            value = getattr(self, key)
            if value is not None:
                d[key] = value.to_json()
        return d

    @classmethod
    def from_json(cls, d: Json) -> CompareDocument:
        return cls(**cls._common(d), backends=[CompareEntry.from_json(e) for e in d["backends"]],
                   inputs=_opt(d.get("inputs"), InputsInfo), tolerance=_opt(d.get("tolerance"), ToleranceInfo),
                   pairwise=_opt(d.get("pairwise"), Pairwise), precision=d.get("precision"),
                   training=_opt(d.get("training"), TrainingInfo))


@dataclass(kw_only=True)
class BenchDocument(ResultsDocument):
    """``alexbench bench``: throughput and latency rows, the device's peak, the settings."""

    kind: str = "bench"
    backends: list[BenchEntry] = field(default_factory=list)
    bench: BenchSection | None = None

    @property
    def rows(self) -> list[BenchRow]:
        return [] if self.bench is None else self.bench.rows

    def to_json(self) -> Json:
        d = self._head()
        if self.weights is not None:
            d["weights"] = self.weights.to_json()
        if self.bench is not None:
            d["bench"] = self.bench.to_json()
        return d

    @classmethod
    def from_json(cls, d: Json) -> BenchDocument:
        return cls(**cls._common(d), backends=[BenchEntry.from_json(e) for e in d["backends"]],
                   bench=_opt(d.get("bench"), BenchSection))


Document = Union[CompareDocument, BenchDocument]
