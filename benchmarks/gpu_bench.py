"""Helpers for ``benchmarks/gpu_bench.sh`` (one prepared call on a GPU machine).

  python3 benchmarks/gpu_bench.py check OUT_DIR [--spec alexnet-owt]
      Correct first: the spec-compiled torch model on CUDA in float32, tf32, float16 and
      bfloat16 against the float64 NumPy reference, on fresh random inputs, as ||out - ref|| / ||ref||
      (expected: float32 far under 1e-3, tf32 near 1e-3, half precisions 1e-3 .. 1e-2; NaN never).
  python3 benchmarks/gpu_bench.py summary OUT_DIR
      One table over every bench JSON in OUT_DIR (printed last by the script: the call's reply
      carries the end of the output), also written as OUT_DIR/summary.md for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def check(out_dir: Path, spec_name: str, batch: int) -> int:
    import torch

    from alexbench.backends.reference.backend import reference_forward
    from alexbench.backends.torch.lowering import torch_model_from_spec
    from alexbench.spec import canonical_weights, load_spec

    spec = load_spec(spec_name)
    weights = canonical_weights(spec, 0)
    x = np.random.default_rng().standard_normal((batch, *spec.input_shape)).astype(np.float32)  # fresh each call
    ref = reference_forward(spec, weights, x, layers=[])[0]
    model = torch_model_from_spec(spec, weights).cuda()
    results, bad = [], False
    for precision in ("float32", "tf32", "float16", "bfloat16"):
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = precision == "tf32"
        dtype = {"float16": torch.float16, "bfloat16": torch.bfloat16}.get(precision, torch.float32)
        m = model.to(dtype)
        with torch.no_grad():
            out = m(torch.from_numpy(x).cuda().to(dtype)).double().cpu().numpy()
        err = float(np.linalg.norm(out - ref) / np.linalg.norm(ref))
        limit = {"float32": 1e-4, "tf32": 1e-2, "float16": 3e-2, "bfloat16": 5e-2}[precision]
        ok = bool(np.isfinite(out).all() and err <= limit)
        bad |= not ok
        results.append({"precision": precision, "rel_l2": err, "limit": limit, "ok": ok})
        print(f"check torch cuda {precision:9} rel L2 vs float64 reference: {err:.2e} (limit {limit:g}) "
              f"{'ok' if ok else 'FAIL'}", flush=True)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    (out_dir / "check.json").write_text(json.dumps({"spec": spec_name, "batch": batch,
                                                    "device": torch.cuda.get_device_name(),
                                                    "results": results}, indent=1))
    return 1 if bad else 0


def _rows(out_dir: Path):
    for path in sorted(out_dir.glob("bench-*.json")):
        doc = json.loads(path.read_text())
        peak = doc["bench"].get("peak") or {}
        for r in doc["bench"]["rows"]:
            measured = (peak.get("measured", {}).get(r["precision"]) or {}).get("gflops")
            yield path.stem, r, measured
        for b in doc["backends"]:
            if b["status"] != "ok":
                print(f"{path.stem}: {b['name']} {b.get('precision') or ''} {b['status']} at {b.get('stage')}: "
                      f"{(b.get('error') or '')[:300]}")
        for s in doc["bench"].get("skipped") or []:
            print(f"{path.stem}: skipped {s['backend']} {s['precision']} {s.get('variant') or ''}: {s['reason']}")


def summary(out_dir: Path) -> int:
    lines = ["| device | backend | execution | precision | batch | median ms | p10–p90 ms | images/s | TFLOP/s | "
             "% of matmul peak |", "|---|---|---|---|---:|---:|---:|---:|---:|---:|"]
    peaks: dict[tuple[str, str], float] = {}
    for _, r, measured in _rows(out_dir):
        if measured:
            peaks[(r["device_name"], r["precision"])] = measured
        execution = (r.get("execution") or "") + (" [compiled]" if r.get("variant") else "")
        tflops = f"{r['gflops'] / 1e3:.2f}" if r.get("gflops") else "-"
        share = f"{r['peak_share']:.0%}" if r.get("peak_share") else "-"
        lines.append(f"| {r['device_name']} | {r['backend']} | {execution} | {r['precision']} | {r['batch']} | "
                     f"{r['median_ms']:.3g} | {r['p10_ms']:.3g}–{r['p90_ms']:.3g} | {r['images_per_s']:,.0f} | "
                     f"{tflops} | {share} |")
    head = ["Measured matmul peaks: " + ", ".join(f"{d} {p} {g / 1e3:.1f} TFLOP/s" for (d, p), g in peaks.items()),
            ""]
    text = "\n".join(head + lines) + "\n"
    (out_dir / "summary.md").write_text(text)
    print(text)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check")
    c.add_argument("out", type=Path)
    c.add_argument("--spec", default="alexnet-owt")
    c.add_argument("--batch", type=int, default=4)
    s = sub.add_parser("summary")
    s.add_argument("out", type=Path)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    return check(args.out, args.spec, args.batch) if args.cmd == "check" else summary(args.out)


if __name__ == "__main__":
    sys.exit(main())
