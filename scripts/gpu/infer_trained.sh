#!/usr/bin/env bash
# GPU run: readable samples from the trained Qwen2.5-Coder-0.5B in Qwen2.5-VL (make-tiny
# --lm-gguf $GGUF), its BF16 checkpoint and hf_ptq FP8 export (FP8 + FP8 KV) side by side in
# vLLM 0.25 (`infer --compare`, greedy): the project's default prompt suite, and a few factual
# and coding questions whose right answers a reader can check. The vision tower is random, so
# the image prompts' answers are noise. Results: $OUT/infer-trained-h200.md and
# $OUT/infer-trained-h200.tgz (the folder without the engine logs: one file, as the device
# tool hands back only so many).
#   usage (GPU host, repo root, after install.sh):  OUT=DIR GGUF=FILE bash scripts/gpu/infer_trained.sh
set -uo pipefail
source scripts/gpu/common.sh
dest="$w/infer-trained-h200"
mkdir -p "$dest"
fp8="$w/trained_fp8_fp8"
ensure_trained "$dest"
[ -f "$fp8/run.json" ] || vq quantize --model "$trained" --calib "$calib" --calib-size 512 \
  --out "$fp8" 2>&1 | tail -1
step check-vllm
vq check-vllm "$fp8" --json > "$dest/check_vllm_trained_fp8_fp8.json"; tail -c 300 "$dest/check_vllm_trained_fp8_fp8.json"
cat > "$w/questions.jsonl" <<'JSONL'
{"text": "What is the capital of France? Answer in one sentence."}
{"text": "How many days are there in a leap year? Answer with the number."}
{"text": "Write a Python function that returns the n-th Fibonacci number."}
{"text": "What does the SQL statement SELECT COUNT(*) FROM users; return?"}
JSONL
step "infer: default suite, FP8 vs BF16"
timeout 240 python3 -m vlmquant infer --model "$fp8" --compare "$trained" --temperature 0 --enforce-eager \
  --max-tokens 96 --out-dir "$dest/infer_trained_fp8_fp8" --force 2>&1 | grep --line-buffered "^infer\|rror"
step "infer: questions, FP8 vs BF16"
timeout 240 python3 -m vlmquant infer --model "$fp8" --compare "$trained" --temperature 0 --enforce-eager \
  --prompts "$w/questions.jsonl" --max-tokens 96 --out-dir "$dest/infer_trained_questions" --force \
  2>&1 | grep --line-buffered "^infer\|rror"
# a page that holds only its title keeps it; report renders the rest from the folder
echo "# Trained 0.5B LM in Qwen2.5-VL: BF16 vs its hf_ptq FP8 export in vLLM 0.25 on one H200" \
  > "$dest.md"
python3 -m vlmquant report --results "$w"
tar -C "$w" --exclude='engine_*' -czf "$out/infer-trained-h200.tgz" infer-trained-h200
cp "$dest.md" "$out/"; ls -la "$out"; head -12 "$dest.md"
