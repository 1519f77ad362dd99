#!/usr/bin/env bash
# Build the COCO 2017 calibration set (4096 captions, seed 1234) from the official annotations.
#   usage: bash scripts/build_coco2017_captions.sh [EXTRA vlmquant calib FLAGS...]
# Needs datasets/coco2017/annotations/captions_train2017.json (see datasets/README.md).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/env.sh
vlmquant calib --recipe recipes/qwen2_5_vl_3b_instruct/fp8_fp8_coco2017.toml "$@"
