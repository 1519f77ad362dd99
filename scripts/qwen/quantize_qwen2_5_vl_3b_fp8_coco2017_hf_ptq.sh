#!/usr/bin/env bash
# Parity route: upstream ModelOpt hf_ptq.py, unchanged, and vlmquant quantize on the same model,
# calibration .jsonl and settings; prints the tensor-by-tensor verdict (vlmquant parity).
#   usage: bash scripts/qwen/quantize_qwen2_5_vl_3b_fp8_coco2017_hf_ptq.sh [cuda|cpu] [FLAGS...]
#   e.g.   ... cpu --force       (hf_ptq's FP8 path on CPU; flags win over the recipe)
# Needs the Model-Optimizer checkout at extern/Model-Optimizer (see extern/README.md), or
# VLMQUANT_HF_PTQ=DIR.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
device="${1:-cuda}"
case "$device" in cuda|cpu) shift || true ;; *) device=cuda ;; esac
source scripts/env.sh
recipe=recipes/qwen2_5_vl_3b_instruct/fp8_fp8_coco2017.toml
out="models/qwen2_5_vl_3b_instruct/parity/fp8_fp8_coco2017_$device"
hf_ptq=()
[ -n "${VLMQUANT_HF_PTQ:-}" ] && hf_ptq=(--hf-ptq "$VLMQUANT_HF_PTQ")
vlmquant parity --recipe "$recipe" --device "$device" --out "$out" "${hf_ptq[@]}" "$@"
