#!/usr/bin/env bash
# GPU run: vLLM 0.25's own attention tensors (the layer's BF16 q/k/v, FlashAttention's FP8 query,
# the KV-cache bytes, the attention output) on the trained 0.5B's exports, to hold the eval's
# emulation of the FP8 KV path against (issue #14; compared by hand so far). Results: $OUT/attn-<recipe>.safetensors, one per recipe.
#   usage (GPU host, repo root, after install.sh):  OUT=DIR GGUF=FILE bash scripts/gpu/attn_capture.sh [RECIPE...]
#   RECIPE: hf_ptq bf16kv fp8cast_kv (default: hf_ptq fp8cast_kv)
set -uo pipefail
source scripts/gpu/common.sh
mkdir -p "$w/attn"
ensure_trained "$w/attn"
for r in ${@:-hf_ptq fp8cast_kv}; do
  trained_export "$r"
  step "capture $r"
  [ -f "$out/attn-$r.safetensors" ] || python3 scripts/gpu/attn_capture.py --model "$w/trained_$r" \
    --calib "$calib" --out "$out/attn-$r.safetensors" 2>&1 | grep -v "^INFO\|^WARNING" | tail -5
done
