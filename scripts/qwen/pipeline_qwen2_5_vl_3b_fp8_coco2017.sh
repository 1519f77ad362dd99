#!/usr/bin/env bash
# The whole pipeline for Qwen2.5-VL-3B-Instruct, LM-only FP8 recipe: calib -> quantize ->
# infer -> eval -> (bench on a GPU) -> report, skipping stages that are current.
#   usage: bash scripts/qwen/pipeline_qwen2_5_vl_3b_fp8_coco2017.sh [--force-stage NAME ...]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source scripts/env.sh
vlmquant pipeline --recipe recipes/qwen2_5_vl_3b_instruct/fp8_fp8_coco2017.toml "$@"
