#!/usr/bin/env bash
# GPU run: where the eval's emulation parts from vLLM on trained weights (issue #12) and what the
# FP8 KV cache costs in vLLM itself (issue #14). The trained Qwen2.5-Coder-0.5B in Qwen2.5-VL
# (make-tiny --lm-gguf $GGUF), three exports from the same 512 demo captions: hf_ptq's recipe
# (FP8 + FP8 KV), its BF16-KV twin, and fp8_cast KV scales; each evaluated with the CUDA
# arithmetic and checked against vLLM 0.25's prompt logprobs on the same held-out samples as
# scripts/recipes_trained.sh (EVAL_SAMPLES, default 48). If the emulation agrees with vLLM on
# the BF16-KV export and not on the FP8-KV ones, the mismatch lies in the KV-cache path.
# The three rows also go into one recipe comparison (python -m vlmquant.eval.compare collect):
# its page pairs the exports sample by sample, on the emulation's KLD and on vLLM's own NLL.
# Results: $OUT/$NAME.tgz ($NAME/: eval JSONs, environment, recipes-cuda.json and its page;
# $NAME.md);
# NAME defaults to eval-kv-h200 (48 samples) or eval-kv<N>-h200 (EVAL_SAMPLES=N).
#   usage (GPU host, repo root, after install.sh):  OUT=DIR GGUF=FILE bash scripts/gpu/eval_kv.sh [RECIPE...]
#   RECIPE: hf_ptq bf16kv fp8cast_kv pcpt_bf16kv (default: the first three), or one of them
#   with _pth: that export served with vLLM's fp8_per_token_head KV cache (eval --kv-cache-dtype);
#   hf_ptq_kvskipL1-L2...: hf_ptq's recipe with those layers' KV cache BF16
#   (quantize --kv-cache-bf16-layers, vLLM's --kv-cache-dtype-skip-layers);
#   finished ones are skipped, so a second call on a warm host goes on where the first stopped
set -uo pipefail
source scripts/gpu/common.sh
n_eval="${EVAL_SAMPLES:-48}"
name="${NAME:-eval-kv$([ "$n_eval" = 48 ] || echo "$n_eval")-h200}"
dest="$w/$name"
mkdir -p "$dest"
ensure_trained "$dest"
for arg in "${@:-hf_ptq bf16kv fp8cast_kv}"; do
  for r in $arg; do
    x="${r%_pth}" kv=auto
    [ "$x" = "$r" ] || kv=fp8_per_token_head
    trained_export "$x"
    [ -f "$dest/eval_trained_$r.json" ] && continue
    step "eval $r (CUDA arithmetic + vLLM, $n_eval samples, KV cache $kv)"
    vq eval --base "$trained" --quantized "$w/trained_$x" --calib "$calib" --kernels cuda --vllm \
      --kv-cache-dtype "$kv" --max-samples "$n_eval" --image-samples 0 \
      --out "$dest/eval_trained_$r.json" 2>&1 | tail -2
    mkdir -p "$out/$name" && cp "$dest"/eval_trained_"$r".json "$dest/environment.txt" "$out/$name/"
  done
done
rows=()
for r in hf_ptq bf16kv fp8cast_kv bf16kv_pth pcpt_bf16kv pcpt_bf16kv_pth hf_ptq_kvskip0 \
  hf_ptq_kvskip0-1-2 hf_ptq_kvskip0_pth; do
  [ -f "$dest/eval_trained_$r.json" ] && rows+=("$r=$w/trained_${r%_pth}=$dest/eval_trained_$r.json")
done
python3 -m vlmquant.eval.compare collect "$dest/recipes-cuda.json" "${rows[@]}"
echo "# Trained 0.5B in Qwen2.5-VL on one NVIDIA H200: the FP8 KV cache, emulation vs vLLM 0.25" \
  > "$dest.md"
python3 -m vlmquant report --results "$w" >/dev/null
# one archive: the folder and its pages are more files than the device hands back
rm -rf "${out:?}/$name" && tar czf "$out/$name.tgz" -C "$w" "$name" "$name.md"
grep -h "vLLM check" "$dest.md"
cat "$dest/recipes-cuda.md"
