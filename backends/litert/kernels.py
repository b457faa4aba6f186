"""LiteRT interpreters on a .tflite file, and which kernels actually ran each op.

Two interpreters run one file: the default one (the output, and the bench: LiteRT applies its default
delegate, XNNPACK, to every op it supports, in as few partitions as it can) and, for layer outputs, one with
``experimental_preserve_all_tensors`` (intermediate tensors are otherwise reused or live inside a delegate
partition). TensorFlow's own ``tf.lite.Interpreter`` turns the default delegate off for the latter; LiteRT 2.3
does not: it keeps XNNPACK and gives each op its own partition, so every tensor is materialised. Which one
happened is read off the interpreter, not assumed: ``kernels`` lists its nodes, where the file's ops come
first and every DELEGATE node after them is a delegate partition, and an op belongs to a partition when it
lies between the partition's inputs and outputs.

The interpreter names no delegate; with no ``experimental_delegates`` given, the one applied by default is
XNNPACK (LiteRT's CPU delegate: "Created TensorFlow Lite XNNPACK delegate for CPU" in its log).
"""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from .flatbuffer import TfliteModel

DEFAULT_DELEGATE = "XNNPACK"


class Runner:
    """One interpreter on the file, its input resized to each batch size it is given."""

    def __init__(self, path: Path, threads: int, **options: Any):
        from ai_edge_litert.interpreter import Interpreter

        with warnings.catch_warnings():  # preserve_all_tensors warns that it is meant for debugging: it is
            warnings.simplefilter("ignore")
            self.interpreter = Interpreter(model_path=str(path), num_threads=threads, **options)
        # LiteRT applies its default delegate lazily, at the first allocation: done here, so that ``kernels``
        # describes the interpreter as it will run from the start.
        self.interpreter.allocate_tensors()
        self.input_index = self.interpreter.get_input_details()[0]["index"]
        self.output_index = self.interpreter.get_output_details()[0]["index"]
        self.batch = int(self.interpreter.get_input_details()[0]["shape"][0])

    def load(self, x_nhwc: np.ndarray) -> None:
        """Set the input (resizing the interpreter when the batch size changes): then ``invoke``."""
        if self.batch != len(x_nhwc):
            self.interpreter.resize_tensor_input(self.input_index, list(x_nhwc.shape))
            self.interpreter.allocate_tensors()
            self.batch = len(x_nhwc)
        self.interpreter.set_tensor(self.input_index, x_nhwc)

    def run(self, x_nhwc: np.ndarray) -> np.ndarray:
        self.load(x_nhwc)
        self.interpreter.invoke()
        return self.tensor(self.output_index)

    def tensor(self, index: int) -> np.ndarray:
        return self.interpreter.get_tensor(index)  # a copy

    def delegation(self, model: TfliteModel) -> tuple[set[int], int]:
        """(the file's ops a delegate took, its number of partitions)."""
        nodes = self.interpreter._get_ops_details()  # no public API lists the delegate's nodes
        partitions = [n for n in nodes[len(model.ops):] if n["op_name"] == "DELEGATE"]
        producer = {t: op.index for op in model.ops for t in op.outputs}
        delegated: set[int] = set()
        for node in partitions:
            delegated |= _partition_ops(model, producer, set(node["inputs"].tolist()), node["outputs"].tolist())
        return delegated, len(partitions)

    def kernels(self, model: TfliteModel) -> dict[str, Any]:
        """Which ops the delegate took (in how many partitions) and which ran on built-in kernels."""
        delegated, partitions = self.delegation(model)
        builtin = Counter(op.code for op in model.ops if op.index not in delegated)
        return {"delegate": DEFAULT_DELEGATE if partitions else None, "partitions": partitions,
                "delegated_ops": len(delegated), "ops": len(model.ops), "builtin_ops": dict(builtin)}


def _partition_ops(model: TfliteModel, producer: dict[int, int], inputs: set[int], outputs: list[int]) -> set[int]:
    """The file's ops inside a delegate partition: those computing its outputs from its inputs."""
    inside: set[int] = set()
    stack = list(outputs)
    while stack:
        tensor = stack.pop()
        op = producer.get(tensor)
        if tensor in inputs or op is None or op in inside:
            continue
        inside.add(op)
        stack.extend(model.ops[op].inputs)
    return inside


def summary(facts: dict[str, Any]) -> str:
    """One line: the delegate and its partitions, and the ops left to built-in kernels."""
    builtin = ", ".join(f"{code}" + (f" x{n}" if n > 1 else "") for code, n in facts["builtin_ops"].items())
    if not facts["delegate"]:
        return f"built-in kernels for all {facts['ops']} ops (no delegate)"
    line = (f"{facts['delegate']} delegate (default): {facts['delegated_ops']} of {facts['ops']} ops in "
            f"{facts['partitions']} partition{'s' if facts['partitions'] != 1 else ''}")
    return line + (f"; built-in kernels: {builtin}" if builtin else "")
