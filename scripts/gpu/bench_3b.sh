#!/usr/bin/env bash
# GPU benchmark on the Qwen2.5-VL-3B shape: BF16 vs FP8 (LM-only) in vLLM against the
# copy-bandwidth roofline: vLLM defaults with the whole concurrency matrix
# ($VLMQUANT_GPU_WORK/results/bench-3b.json), then --enforce-eager single stream and image
# prefill (bench-3b-eager.json; the eager matrix does not fit the device's 10-minute call).
# Each concurrency case runs MATRIX_REPEATS (default 3) times; the JSON keeps median, min, max.
#   usage (GPU host, repo root, vLLM + ModelOpt importable): OUT=DIR bash scripts/gpu/bench_3b.sh
set -uo pipefail
export NEED_VLM=0  # the vision-FP8 export is not benchmarked here
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
step build models; ensure_models
args=(--gpu-memory-utilization 0.85)
[ "$shape" = tiny ] && args=(--concurrency 1 4 --shapes 32x16 --single-stream 32 16 --repeats 2
  --max-model-len 512)
step bench defaults
vq bench --model "$base" --model "$q/fp8_fp8_demo" --out "$res/bench-3b.json" "${args[@]}" \
  --modes default --matrix-repeats "${MATRIX_REPEATS:-3}" --force 2>&1 \
  | grep --line-buffered "^bench\|rror"
step bench eager
vq bench --model "$base" --model "$q/fp8_fp8_demo" --out "$res/bench-3b-eager.json" \
  "${args[@]}" --modes eager --no-matrix --force 2>&1 | grep --line-buffered "^bench\|rror"
