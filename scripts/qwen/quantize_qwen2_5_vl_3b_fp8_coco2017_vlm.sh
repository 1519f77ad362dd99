#!/usr/bin/env bash
# Qwen2.5-VL-3B-Instruct -> FP8 language model AND vision tower, FP8 KV cache (LM only);
# image+text calibration on COCO 2017 (needs datasets/coco2017/train2017/).
#   usage: bash scripts/qwen/quantize_qwen2_5_vl_3b_fp8_coco2017_vlm.sh [vlmquant quantize FLAGS...]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source scripts/env.sh
vlmquant quantize --recipe recipes/qwen2_5_vl_3b_instruct/fp8_fp8_coco2017_vlm.toml "$@"
