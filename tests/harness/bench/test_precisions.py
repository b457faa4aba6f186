"""The names `alexbench bench --precision` takes, the names its rows carry, and how a backend's
declared bench precisions are read."""

from __future__ import annotations

from typing import ClassVar

import pytest

from alexbench.backends.base import Backend
from alexbench.harness.bench.precisions import ACCEPTED, UnknownBenchPrecision, canonical, declared, requested
from alexbench.harness.workers.bench_entry import declared_as


def test_every_spelling_gives_the_names_bench_results_have_always_carried():
    assert requested(("fp32", "bf16", "FP16", "int8", "tf32")) == ("float32", "bfloat16", "float16", "int8", "tf32")
    assert requested(("float32", "bfloat16", "float16", "half")) == ("float32", "bfloat16", "float16")
    assert requested(("fp32", "float32", "bf16", "bfloat16")) == ("float32", "bfloat16")  # one row set each
    assert set(ACCEPTED) >= {"float32", "tf32", "float16", "bfloat16", "int8", "fp32", "bf16", "fp16"}


def test_an_unknown_precision_is_refused_with_every_unknown_name_and_what_is_accepted():
    with pytest.raises(UnknownBenchPrecision) as refused:
        requested(("fp32", "float8", "int4"))
    assert str(refused.value) == ("unknown precision float8, int4; known: float32, tf32, float16, bfloat16, int8 "
                                  "(or compare's names fp32, bf16, fp16)")


def test_a_job_tells_its_backend_the_precision_in_compares_names():
    assert [canonical(p) for p in ("float32", "tf32", "bfloat16", "float16", "int8")] == \
        ["fp32", "fp32", "bf16", "fp16", "int8"]  # tf32 builds a float32 model: a matmul switch on top


class _ShortNames(Backend):
    name: ClassVar[str] = "short-names"
    bench_precisions: ClassVar[tuple[str, ...]] = ("fp32", "bf16", "int8", "fp4")


def test_a_backends_declared_precisions_are_read_in_either_spelling_and_its_hooks_get_its_own():
    assert declared(_ShortNames.bench_precisions) == ("float32", "bfloat16", "int8")  # fp4: nobody can ask
    assert declared(("float32", "tf32", "float16", "bfloat16")) == ("float32", "tf32", "float16", "bfloat16")
    backend = _ShortNames()
    assert [declared_as(backend, p) for p in ("float32", "bfloat16", "int8")] == ["fp32", "bf16", "int8"]
