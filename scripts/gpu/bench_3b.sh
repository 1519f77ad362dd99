#!/usr/bin/env bash
# GPU benchmark on the Qwen2.5-VL-3B shape: BF16 vs FP8 (LM-only) in vLLM, defaults and eager,
# against the copy-bandwidth roofline. Writes $VLMQUANT_GPU_WORK/results/bench-3b.json.
#   usage (GPU host, repo root, vLLM + ModelOpt importable): OUT=DIR bash scripts/gpu/bench_3b.sh
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
step build models; ensure_models
args=(--gpu-memory-utilization 0.85)
[ "$shape" = tiny ] && args=(--modes eager --concurrency 1 4 --shapes 32x16 \
  --single-stream 32 16 --repeats 2 --max-model-len 512)
step bench
vq bench --model "$base" --model "$q/fp8_fp8_demo" --out "$res/bench-3b.json" "${args[@]}" \
  --force 2>&1 | grep --line-buffered "^bench\|rror"
