"""A worker's training path (job options "train", `compare --train`): the backend built, its training
started, then one SGD step per step on the same batch with that step's dropout masks.

    options["train"] = {"steps": N, "data": "<train.npz>"}   (harness/train/data.py)

Each step's tensors go to JOB_DIR/out/train/step<k>/{gradient,parameter,momentum}/<tensor>.npy as the
backend returned them (canonical names and layouts, float32 or the reference's float64), and
result.json gets "train": {"losses", "data_losses", "steps": [{kind: {tensor: relative path}}], "spread": [...],
"ambiguous": [...]} (the last two per step, from the reference only: backends/base.py TrainStep).
After each step the worker sends {"event": "train_step", "step": k, "steps": N, "loss": x}.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..train.data import read_train_npz

KINDS = {"gradient": "grads", "parameter": "params", "momentum": "momentum"}  # folder -> TrainStep field


def run_training(worker, backend, train: dict[str, Any]) -> None:
    """``worker``: the entry's Worker (stages, events, result); ``backend``: built."""
    steps = int(train["steps"])
    x, labels, masks = read_train_npz(train["data"])
    out: dict[str, Any] = {"losses": [], "data_losses": [], "steps": [], "spread": [], "ambiguous": []}
    with worker.stage("train"):
        backend.start_training()
        for k in range(1, steps + 1):
            step = backend.train_step(x, labels, masks.get(k, {}))
            out["losses"].append(float(step.loss))
            out["data_losses"].append(float(step.data_loss))
            out["steps"].append(save_step(worker.job_dir, k, step))
            out["spread"].append(step.spread)
            out["ambiguous"].append(step.ambiguous)
            worker.emit("train_step", step=k, steps=steps, loss=float(step.loss))
    worker.result["train"] = out
    worker.result["environment"] = worker.environment(backend)


def save_step(job_dir: Path, k: int, step) -> dict[str, dict[str, str]]:
    """Step ``k``'s tensors as .npy files under ``job_dir``; kind -> tensor -> path relative to it."""
    saved: dict[str, dict[str, str]] = {}
    for kind, attr in KINDS.items():
        folder = Path("out") / "train" / f"step{k}" / kind
        (job_dir / folder).mkdir(parents=True, exist_ok=True)
        saved[kind] = {}
        for tensor, array in getattr(step, attr).items():
            np.save(job_dir / folder / f"{tensor}.npy", np.asarray(array))
            saved[kind][tensor] = str(folder / f"{tensor}.npy")
    return saved
