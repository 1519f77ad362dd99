#!/usr/bin/env bash
# The pipeline on the embedded tiny Qwen2.5-VL, on CPU, with no downloads.
#   usage: bash scripts/demo.sh        (outputs under models/tiny_qwen2_5_vl and datasets/)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/env.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
start=$SECONDS
recipe=recipes/tiny_qwen2_5_vl/fp8_fp8_demo.toml
# Each stage refuses to overwrite without --force; keep what an earlier run built.
[ -f models/tiny_qwen2_5_vl/checkpoints/tiny/config.json ] || vlmquant make-tiny --recipe "$recipe"
[ -f datasets/vlm-quantize-calib/demo_captions.manifest.json ] || vlmquant calib --recipe "$recipe"
echo "demo finished in $((SECONDS - start)) s"
