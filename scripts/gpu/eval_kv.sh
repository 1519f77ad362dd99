#!/usr/bin/env bash
# GPU run: where the eval's emulation parts from vLLM on trained weights (issue #12) and what the
# FP8 KV cache costs in vLLM itself (issue #14). The trained Qwen2.5-Coder-0.5B in Qwen2.5-VL
# (make-tiny --lm-gguf $GGUF), three exports from the same 512 demo captions: hf_ptq's recipe
# (FP8 + FP8 KV), its BF16-KV twin, and fp8_cast KV scales; each evaluated with the CUDA
# arithmetic and checked against vLLM 0.25's prompt logprobs on the same held-out samples as
# scripts/recipes_trained.sh (EVAL_SAMPLES, default 48). If the emulation agrees with vLLM on
# the BF16-KV export and not on the FP8-KV ones, the mismatch lies in the KV-cache path.
# Results: $OUT/eval-kv-h200/ (eval JSONs, environment) and $OUT/eval-kv-h200.md.
#   usage (GPU host, repo root, after install.sh):  OUT=DIR GGUF=FILE bash scripts/gpu/eval_kv.sh [RECIPE...]
#   RECIPE: hf_ptq bf16kv fp8cast_kv (default: all three; finished ones are skipped, so a second
#   call on a warm host goes on where the first stopped)
set -uo pipefail
source scripts/gpu/common.sh
dest="$w/eval-kv-h200"
n_eval="${EVAL_SAMPLES:-48}"
mkdir -p "$dest"
ensure_trained "$dest"
declare -A kv=([hf_ptq]=fp8 [bf16kv]=none [fp8cast_kv]=fp8_cast)
for name in "${@:-hf_ptq bf16kv fp8cast_kv}"; do
  for r in $name; do
    e="$w/trained_$r"
    [ -f "$e/run.json" ] || { step "quantize $r"; vq quantize --model "$trained" --calib "$calib" \
      --calib-size 512 --kv-cache-qformat "${kv[$r]}" --out "$e" 2>&1 | tail -1; }
    [ -f "$dest/eval_trained_$r.json" ] && continue
    step "eval $r (CUDA arithmetic + vLLM, $n_eval samples)"
    vq eval --base "$trained" --quantized "$e" --calib "$calib" --kernels cuda --vllm --max-samples "$n_eval" \
      --image-samples 0 --out "$dest/eval_trained_$r.json" 2>&1 | tail -2
    mkdir -p "$out/eval-kv-h200" && cp "$dest"/eval_trained_"$r".json "$dest/environment.txt" "$out/eval-kv-h200/"
  done
done
echo "# Trained 0.5B in Qwen2.5-VL on one NVIDIA H200: the FP8 KV cache, emulation vs vLLM 0.25" \
  > "$dest.md"
python3 -m vlmquant report --results "$w" >/dev/null
cp -r "$dest" "$dest.md" "$out/"
grep -h "vLLM check" "$dest.md"
