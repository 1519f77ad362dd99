#!/usr/bin/env bash
# GPU decode profile and speed attempts on the Qwen2.5-VL-3B shape: BF16 vs FP8 (LM-only), vLLM
# defaults, single stream, with a torch-profiler breakdown of the decode steps; then each attempt
# in ATTEMPTS, one per line: `MODELS` then extra bench flags (no spaces inside a value), where
# MODELS is a comma list of base (BF16), fp8 (FP8 LM-only), fp8vlm (FP8 vision tower too),
# fp8kv16 (FP8 LM weights and activations, BF16 KV cache); `both` = base,fp8.
# Results: $VLMQUANT_GPU_WORK/results/profile-defaults.json, profile-attempt<N>.json.
#   usage (GPU host, repo root, vLLM + ModelOpt importable):
#   OUT=DIR [SKIP_DEFAULTS=1] [FIRST=N] ATTEMPTS="..." bash scripts/gpu/profile_3b.sh
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
default_attempts="fp8 --engine-env VLLM_DISABLED_KERNELS=FlashInferFP8ScaledMMLinearKernel
fp8 --engine-env VLLM_DISABLED_KERNELS=FlashInferFP8ScaledMMLinearKernel,CutlassFP8ScaledMMLinearKernel"
attempts="${ATTEMPTS:-$default_attempts}"
[[ "$attempts" == *fp8kv16* ]] && export NEED_KV16=1
[[ "$attempts" == *fp8vlm* ]] || export NEED_VLM=0
step build models; ensure_models
args=(--modes default --no-matrix --image "" --repeats 3 --profile-steps 64
  --gpu-memory-utilization 0.85)
[ "$shape" = tiny ] && args=(--modes eager --no-matrix --image "" --repeats 1
  --single-stream 32 16 --max-model-len 512)
declare -A path=([base]="$base" [fp8]="$q/fp8_fp8_demo" [fp8vlm]="$q/fp8_fp8_demo_vlm"
  [fp8kv16]="$q/fp8_none_demo")
if [ "${SKIP_DEFAULTS:-0}" != 1 ]; then
  step profile defaults
  vq bench --model "$base" --model "$q/fp8_fp8_demo" --out "$res/profile-defaults.json" \
    "${args[@]}" --force 2>&1 | grep --line-buffered "^bench\|rror"
fi
n=$((${FIRST:-1} - 1))
while read -r which extra; do
  [ -n "$which" ] || continue
  n=$((n + 1)); models=()
  [ "$which" = both ] && which=base,fp8
  for key in ${which//,/ }; do models+=(--model "${path[$key]:?unknown model key $key}"); done
  step "attempt $n: $which $extra"
  # shellcheck disable=SC2086  # extra is a list of flags; later flags override args
  vq bench "${models[@]}" --out "$res/profile-attempt$n.json" "${args[@]}" $extra --force \
    2>&1 | grep --line-buffered "^bench\|rror"
done <<< "$attempts"
