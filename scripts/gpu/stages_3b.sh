#!/usr/bin/env bash
# GPU run of the infer, check-vllm and eval stages on the Qwen2.5-VL-3B shape (random weights):
# BF16, FP8 LM-only and FP8 vision checkpoints; results under $VLMQUANT_GPU_WORK/results
# (bash scripts/gpu/pack.sh stages-3b brings them back).
#   usage (GPU host, repo root, vLLM + ModelOpt importable):
#     OUT=DIR bash scripts/gpu/stages_3b.sh [infer|eval|eval-lm|all]   (default all; one call
#     each fits the device's 10-minute limit where all does not; NEED_VLM=0 with eval-lm skips
#     building the vision-FP8 export)
set -uo pipefail
part="${1:-all}"
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
step build models; ensure_models
gpu=(--gpu-memory-utilization 0.5 --max-tokens 64 --enforce-eager --force)
[ "$shape" = tiny ] && gpu=(--max-tokens 16 --enforce-eager --max-model-len 1024 --force)

if [ "$part" = infer ] || [ "$part" = all ]; then
for ckpt in "$base" "$q/fp8_fp8_demo" "$q/fp8_fp8_demo_vlm"; do
  step check-vllm "$(basename "$ckpt")"
  vq check-vllm --json "$ckpt" > "$res/check_vllm_$(basename "$ckpt").json"
done
step infer FP8 LM-only with --compare BF16
timeout 240 python3 -m vlmquant infer --model "$q/fp8_fp8_demo" --compare "$base" \
  --out-dir "$res/infer_fp8_fp8_demo" "${gpu[@]}" 2>&1 | grep --line-buffered "^infer\|rror"
step infer FP8 vision
timeout 150 python3 -m vlmquant infer --model "$q/fp8_fp8_demo_vlm" \
  --out-dir "$res/infer_fp8_fp8_demo_vlm" "${gpu[@]}" 2>&1 | grep --line-buffered "^infer\|rror"
fi
[ "$part" = infer ] && exit 0
step eval LM-only, with the vLLM check
timeout 240 python3 -m vlmquant eval --base "$base" --quantized "$q/fp8_fp8_demo" \
  --calib "$calib" --out "$res/eval_fp8_fp8_demo.json" --max-samples 64 --image-samples 16 \
  --force 2>&1 | grep --line-buffered "^eval\|rror"
[ "$part" = eval-lm ] && exit 0
step eval vision FP8 "(emulation only)"
timeout 120 python3 -m vlmquant eval --base "$base" --quantized "$q/fp8_fp8_demo_vlm" \
  --calib "$calib" --out "$res/eval_fp8_fp8_demo_vlm.json" --max-samples 64 --image-samples 16 \
  --no-vllm --force 2>&1 | grep --line-buffered "^eval\|rror"
