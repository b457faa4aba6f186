#!/usr/bin/env bash
# One prepared call on a GPU machine (H200/H100 with torch, JAX, onnx, onnxruntime; no TensorFlow):
# correctness of the GPU precisions, then `alexbench bench` for torch (float32/tf32/float16/bfloat16,
# eager and torch.compile), onnx-torch (ONNX Runtime, CUDA provider when this onnxruntime has one),
# keras-jax and keras-torch, each step with its own time limit inside a 330 s budget. Results: one
# JSON per step, a log, summary.md, all in $OUT. Nothing heavy is installed: the package runs from
# the working tree through a symlinked alexbench/ folder (pyproject's package-dir mapping, by hand);
# Keras and jsonschema, absent from that image, are installed from ./.whl when the call carries it
# (cp312 wheels of keras, namex, optree, jsonschema, jsonschema-specifications, referencing, rpds-py).
#     OUT=/tmp/gpu-out bash benchmarks/gpu_bench.sh
set -u
REPO=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$REPO/gpu-out}
BUDGET=${BUDGET:-330}
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}            # DEVICE=cpu SPEC=... BATCHES=1,2 BIG=2: a dry run of the script on a CPU
SPEC=${SPEC:-alexnet-owt}
BATCHES=${BATCHES:-1,16,128,512}
BIG=${BIG:-128}
mkdir -p "$OUT"
LOG="$OUT/gpu_bench.log"
START=$(date +%s)

# step NAME LIMIT_S CMD...: logged, time-limited (SIGINT first, so alexbench kills its workers), never fatal
step() {
    local name=$1 limit=$2; shift 2
    local left=$((BUDGET - ($(date +%s) - START)))
    if [ "$left" -lt 20 ]; then echo "=== $name: SKIPPED (budget spent)" | tee -a "$LOG"; return; fi
    [ "$limit" -gt "$left" ] && limit=$left
    echo "=== [$(date +%T) +$(($(date +%s) - START))s] $name (limit ${limit}s): $*" | tee -a "$LOG"
    timeout -s INT -k 15 "$limit" "$@" >>"$LOG" 2>&1
    echo "=== $name: exit $? after $(($(date +%s) - START))s total" | tee -a "$LOG"
}

# The package without pip: alexbench -> api/, alexbench.{spec,backends,harness} -> their folders.
SITE=/tmp/alexbench-site
rm -rf "$SITE" && mkdir -p "$SITE/alexbench"
for f in "$REPO"/api/*.py; do ln -s "$f" "$SITE/alexbench/"; done
for d in spec backends harness; do ln -s "$REPO/$d" "$SITE/alexbench/$d"; done
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
if ls "$REPO"/.whl/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        "$REPO"/.whl/*.whl >>"$LOG" 2>&1 && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
export ALEXBENCH_CACHE_DIR=/tmp/alexbench-onnx-cache XLA_PYTHON_CLIENT_PREALLOCATE=false
{ nvidia-smi; $PY -c "import sys, alexbench, torch; print(sys.version); print('alexbench', alexbench.__file__, \
'torch', torch.__version__, torch.version.cuda)"; $PY -m pip list 2>/dev/null \
| grep -iE '^(torch|jax|jaxlib|keras|onnx|onnxruntime|onnxruntime-gpu|numpy|optree) '; } >>"$LOG" 2>&1

AB=("$PY" -m alexbench bench --spec "$SPEC" --device "$DEVICE" --timeout 150 --min-time 0.5 --warmup 5)
step check 60 "$PY" "$REPO/benchmarks/gpu_bench.py" check "$OUT" --spec "$SPEC"
step torch 80 "${AB[@]}" --backends torch --precision float32,tf32,float16,bfloat16 \
    --batch-sizes "$BATCHES" --json "$OUT/bench-torch.json"
step keras-jax 70 "${AB[@]}" --backends keras-jax --precision float32,tf32,bfloat16 --no-overhead \
    --batch-sizes "$BATCHES" --json "$OUT/bench-keras-jax.json"
step onnx-torch 50 "${AB[@]}" --backends onnx-torch --no-overhead --batch-sizes "$BATCHES" \
    --json "$OUT/bench-onnx-torch.json"
step keras-torch 50 "${AB[@]}" --backends keras-torch --precision float32,bfloat16 --no-overhead \
    --batch-sizes "$BATCHES" --json "$OUT/bench-keras-torch.json"
step torch-compiled 90 "${AB[@]}" --backends torch --compile only --precision float32,bfloat16 --no-overhead \
    --batch-sizes "$BIG" --json "$OUT/bench-torch-compiled.json"
step cpu-host 45 "$PY" -m alexbench bench --spec "$SPEC" --device cpu --backends torch,onnx-torch --no-overhead \
    --batch-sizes 1,64 --json "$OUT/bench-cpu-host.json"
grep -E "^(skipping|FAILED|WARNING|    .*FAILED)|Error|error:" "$LOG" | tail -20
$PY "$REPO/benchmarks/gpu_bench.py" summary "$OUT"
echo "total $(($(date +%s) - START)) s; files in $OUT"
