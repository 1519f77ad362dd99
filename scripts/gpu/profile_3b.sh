#!/usr/bin/env bash
# GPU decode profile and speed attempts on the Qwen2.5-VL-3B shape: BF16 vs FP8 (LM-only), vLLM
# defaults, single stream, with a torch-profiler breakdown of the decode steps; then each attempt
# in ATTEMPTS (one per line: `both|fp8` then extra bench flags, no spaces inside a value) the same
# way. Results: $VLMQUANT_GPU_WORK/results/profile-defaults.json, profile-attempt<N>.json.
#   usage (GPU host, repo root, vLLM + ModelOpt importable): OUT=DIR bash scripts/gpu/profile_3b.sh
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
step build models; ensure_models
args=(--modes default --no-matrix --image "" --repeats 3 --profile-steps 64
  --gpu-memory-utilization 0.85)
[ "$shape" = tiny ] && args=(--modes eager --no-matrix --image "" --repeats 1
  --single-stream 32 16 --max-model-len 512)
default_attempts="fp8 --engine-env VLLM_DISABLED_KERNELS=FlashInferFP8ScaledMMLinearKernel
fp8 --engine-env VLLM_DISABLED_KERNELS=FlashInferFP8ScaledMMLinearKernel,CutlassFP8ScaledMMLinearKernel"
step profile defaults
vq bench --model "$base" --model "$q/fp8_fp8_demo" --out "$res/profile-defaults.json" \
  "${args[@]}" --force 2>&1 | grep --line-buffered "^bench\|rror"
n=0
while read -r which extra; do
  [ -n "$which" ] || continue
  n=$((n + 1)); models=(--model "$q/fp8_fp8_demo")
  [ "$which" = both ] && models=(--model "$base" "${models[@]}")
  step "attempt $n: $which $extra"
  # shellcheck disable=SC2086  # extra is a list of flags
  vq bench "${models[@]}" --out "$res/profile-attempt$n.json" "${args[@]}" $extra --force \
    2>&1 | grep --line-buffered "^bench\|rror"
done <<< "${ATTEMPTS:-$default_attempts}"
