#!/usr/bin/env bash
# Run the FP8 Qwen2.5-VL-3B checkpoint in vLLM on the prompt suite (the seed's five text prompts
# plus drawn-image prompts) and save sample_01.txt ... under tmp/qwen2_5_vl_3b_vllm_fp8.
#   usage: bash scripts/qwen/run_qwen2_5_vl_3b_vllm_fp8.sh [vlmquant infer FLAGS...]
#   e.g.   ... --compare models/qwen2_5_vl_3b_instruct/checkpoints/Qwen2.5-VL-3B-Instruct
#          ... --temperature 0.7 --top-p 0.9          (the seed's sampling)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source scripts/env.sh
vlmquant infer --recipe recipes/qwen2_5_vl_3b_instruct/fp8_fp8_coco2017.toml "$@"
