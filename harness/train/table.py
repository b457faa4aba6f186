"""Plain-text rendering of a training comparison (a compare results document with ``training``)."""

from __future__ import annotations

from ...spec.training import TrainingSpec, describe
from ..compare.table import aligned_table, shape_text
from ..workers.interpreter_text import interpreter_lines
from .judge import divergence_text

KIND_ORDER = ("gradient", "parameter", "momentum", "statistic")


def _settings_line(t: dict) -> str:
    s = t["settings"]
    trained = (f"the spec trained with batch_size {s['batch_size']}; --batch changes it" if s.get("batch_size")
               else "--batch changes it")
    line = (f"training: {t['steps']} SGD step{'s' * (t['steps'] != 1)} on the same batch of {t['batch']} ({trained}); "
            # the batch size the spec trained with is said just before
            + describe(TrainingSpec.from_settings(s | {"batch_size": None}), loss_on=s.get("loss_on")))
    if not s.get("declared", True):
        line += " (the spec has no training section: these are the defaults)"
    return line


def kinks_text(ambiguous: list[dict]) -> str | None:
    """The steps and layers whose ReLU or max-pool decisions lay within float32's error (their spread widened
    the limits), with how many: "step 1: pool2 166, pool5 2,376; step 3: relu3 2"; None when there were none."""
    steps = [f"step {k}: " + ", ".join(f"{layer} {n:,}" for layer, n in counts.items())
             for k, counts in enumerate(ambiguous, start=1) if counts]
    return "; ".join(steps) or None


def _kinks(ambiguous: list[dict]) -> list[str]:
    text = kinks_text(ambiguous)
    if text is None:
        return []
    return ["kinks within float32's error (ReLU inputs near 0, max-pool near-ties; the oracle's spread over both "
            "choices widens the limits of the tensors they reach): " + text]


def _losses(doc: dict) -> list[str]:
    trained = [e for e in doc["backends"] if e.get("training")]
    if not trained:
        return []
    steps = max(len(e["training"]["losses"]) for e in trained)
    rows = [["loss", *(f"step {k}" for k in range(1, steps + 1))]]
    rows += [[e["name"], *("not finite" if v is None else f"{v:.7g}" for v in e["training"]["losses"])]
             for e in trained]
    return ["", "loss per step (data loss plus penalties):", *aligned_table(rows, right=set(range(1, steps + 1)))]


def _worst(doc: dict) -> list[str]:
    """Per judged backend and kind, the error closest to (or furthest over) its limit."""
    judged = [e for e in doc["backends"] if (e.get("training") or {}).get("steps")]
    if not judged:
        return []
    rows = [["backend", "kind", "worst rel. error", "limit", "tensor", "step"]]
    for e in judged:
        steps = e["training"]["steps"]
        base = doc["training"]["tolerance"]["loss"]
        loss = max((s for s in steps if s["loss_rel_err"] is not None), default=None,
                   key=lambda s: s["loss_rel_err"] / (s.get("loss_limit") or base))
        if loss is not None:
            limit = loss.get("loss_limit") or base
            mark = " !" if loss["loss_rel_err"] > limit else ""
            rows.append([e["name"], "loss", f"{loss['loss_rel_err']:.1e}{mark}", f"{limit:.1e}", "", str(loss["step"])])
        for kind in KIND_ORDER:
            checks = [(s["step"], t) for s in steps for t in s["tensors"] if t["kind"] == kind]
            if not checks:
                continue
            bad = [(k, t) for k, t in checks if t["rel_l2"] is None]
            k, t = bad[0] if bad else max(checks, key=lambda c: c[1]["rel_l2"] / c[1]["limit"])
            value = t.get("problem", "-") if t["rel_l2"] is None else f"{t['rel_l2']:.1e}"
            mark = "" if t["ok"] else " !"
            rows.append(["", kind, value + mark, f"{t['limit']:.1e}", t["tensor"], str(k)])
    return ["", "worst error against its limit, over every step and tensor (!: above it):",
            *aligned_table(rows, right={2, 3, 5})]


def render_training(doc: dict) -> str:
    spec, t = doc["spec"], doc["training"]
    names = ", ".join(e["name"] for e in doc["backends"])
    masks = t["masks"]
    lines = [f"spec '{spec['name']}': {spec['param_count']:,} parameters, output {shape_text(spec['output_shape'])}; "
             f"inputs {shape_text(doc['inputs']['shape'])} ({doc['inputs']['source']}); weights "
             f"{doc['weights']['source']}; backends {names}",
             _settings_line(t),
             f"labels: {t['labels']['source']}; dropout masks: "
             + (f"{masks['source']} ({', '.join(masks['layers'])})" if masks["layers"] else "none (no dropout layer)"),
             f"tolerance: {t['tolerance']['derivation']}"]
    lines += _kinks(t["tolerance"].get("ambiguous") or [])
    lines += _losses(doc)
    lines += _worst(doc)
    details = interpreter_lines(doc["backends"])
    for e in doc["backends"]:
        first = (e.get("training") or {}).get("first_divergent")
        if first:
            where = (first["tensor"], first["kind"])
            problem = next((c.get("problem") for s in e["training"]["steps"] if s["step"] == first["step"]
                            for c in s["tensors"] if (c["tensor"], c["kind"]) == where), None)
            details.append(f"{e['name']}: first diverges at {divergence_text(first, problem)}")
        elif e["status"] == "unsupported":
            details.append(f"{e['name']}: unsupported, not run: {e.get('error')}")
        elif e["status"] in ("failed", "unavailable"):
            details.append(f"{e['name']}: {e['status']} during {e.get('stage') or 'train'}: {e.get('error')}")
            details += [f"    | {line}" for line in (e.get("stderr_tail") or "").strip().splitlines()[-6:]]
    if details:
        lines += [""] + details
    lines += ["", doc["verdict"]["summary"]]
    return "\n".join(lines)
