#!/usr/bin/env bash
# GPU run for hf_ptq parity (vlmquant parity): upstream hf_ptq.py, unchanged, against quantize
# on CUDA, with an explicit batch (16) and with hf_ptq's automatic batch (--batch-size 0), on
#   3b:      the Qwen2.5-VL-3B shape (random weights, built here);
#   trained: the trained Qwen2.5-Coder-0.5B in Qwen2.5-VL (make-tiny --lm-gguf $GGUF).
# Every parity.json goes to $OUT/parity-h200/.
#   usage (GPU host, repo root, after install.sh):  OUT=DIR bash scripts/gpu/parity.sh 3b|trained
#   env: VLMQUANT_HF_PTQ (default extern/Model-Optimizer), GGUF (for trained), SHAPE=tiny (smoke)
set -uo pipefail
source scripts/gpu/common.sh
which="${1:?usage: parity.sh 3b|trained}"
dest="$out/parity-h200"
mkdir -p "$dest"
export VLMQUANT_HF_PTQ="${VLMQUANT_HF_PTQ:-$PWD/extern/Model-Optimizer}"
n="${CALIB_SIZE:-512}"
parity_pair() {  # MODEL NAME: explicit batch 16, then hf_ptq's automatic batch
  for b in 16 0; do
    step "parity $2 batch $b"
    vq parity --model "$1" --calib "${calib%.txt}.jsonl" --calib-size "$n" --calib-seq 512 \
      --batch-size "$b" --device cuda --out "$w/parity/$2_b$b" --force > "$w/parity_$2_b$b.txt" 2>&1
    echo "exit $?"; tail -8 "$w/parity_$2_b$b.txt"
    cp "$w/parity/$2_b$b/parity.json" "$dest/parity_$2_b$b.json" 2>/dev/null
  done
}
step environment
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import torch, transformers, vllm, modelopt; print('torch', torch.__version__, \
'transformers', transformers.__version__, 'vllm', vllm.__version__, 'modelopt', modelopt.__version__)"
} | tee "$dest/environment.txt"
[ -f "${calib%.txt}.manifest.json" ] || vq calib --demo --num-samples "$n" --out "$calib"
if [ "$which" = 3b ]; then
  [ -f "$base/config.json" ] || vq make-tiny --shape "$shape" --out "$base" 2>&1 | tail -1
  parity_pair "$base" 3b
else
  trained="$w/models/qwen2_5_coder_0_5b_vl/checkpoints/base"
  [ -f "$trained/config.json" ] || vq make-tiny --lm-gguf "${GGUF:?set GGUF}" --out "$trained" \
    2>&1 | tail -1
  cp "$trained/run.json" "$dest/make_tiny_trained.run.json"
  parity_pair "$trained" trained
fi
ls -la "$dest"
