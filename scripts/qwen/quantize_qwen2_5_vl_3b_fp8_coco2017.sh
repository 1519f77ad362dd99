#!/usr/bin/env bash
# Qwen2.5-VL-3B-Instruct -> FP8 (language model) + FP8 KV cache, hf_ptq semantics.
#   usage: bash scripts/qwen/quantize_qwen2_5_vl_3b_fp8_coco2017.sh [vlmquant quantize FLAGS...]
#   e.g.   ... --force          (flags win over the recipe)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source scripts/env.sh
vlmquant quantize --recipe recipes/qwen2_5_vl_3b_instruct/fp8_fp8_coco2017.toml "$@"
