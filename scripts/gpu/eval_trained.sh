#!/usr/bin/env bash
# GPU run: fidelity of the trained Qwen2.5-Coder-0.5B in Qwen2.5-VL (make-tiny --lm-gguf $GGUF),
# hf_ptq recipe (FP8 + FP8 KV), with the eval's CUDA arithmetic checked against vLLM 0.25's
# prompt logprobs (top-1 agreement emulation vs vLLM, PPL ratio both ways). JSON to $OUT/eval-trained-h200/.
#   usage (GPU host, repo root, after install.sh):  OUT=DIR GGUF=FILE bash scripts/gpu/eval_trained.sh
set -uo pipefail
source scripts/gpu/common.sh
dest="$out/eval-trained-h200"
mkdir -p "$dest"
ensure_trained "$dest"
python3 - "$trained" <<'PY' 2>&1 | tail -1 | tee "$dest/processor_check.txt"
import sys
from transformers import AutoProcessor
from vlmquant.synthetic import draw
p = AutoProcessor.from_pretrained(sys.argv[1])
chat = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Hi"}]}]
enc = p(text=[p.apply_chat_template(chat, tokenize=False)], images=[draw("red_circle")], return_tensors="pt")
print("image tokens in input_ids:", int((enc["input_ids"] == p.image_token_id).sum()))
PY
for kv in fp8; do
  step "quantize + eval, KV $kv"
  vq quantize --model "$trained" --calib "$calib" --calib-size 512 --kv-cache-qformat "$kv" \
    --out "$w/trained_fp8_$kv" --force 2>&1 | tail -1
  vq eval --base "$trained" --quantized "$w/trained_fp8_$kv" --calib "$calib" --kernels cuda \
    --image-samples 0 --out "$dest/eval_trained_fp8_$kv.json" --force 2>&1 | tail -1
done
ls -la "$dest"
