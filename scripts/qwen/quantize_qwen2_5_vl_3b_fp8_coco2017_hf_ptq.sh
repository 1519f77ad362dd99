#!/usr/bin/env bash
# Parity route: run upstream ModelOpt hf_ptq.py, unpatched, on the same model and calib set.
#   usage: bash scripts/qwen/quantize_qwen2_5_vl_3b_fp8_coco2017_hf_ptq.sh [EXTRA hf_ptq FLAGS...]
# Needs a CUDA GPU and the checkout at extern/Model-Optimizer (see extern/README.md).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
model="models/qwen2_5_vl_3b_instruct/checkpoints/Qwen2.5-VL-3B-Instruct"
calib="datasets/vlm-quantize-calib/coco2017_captions.jsonl"
out="models/qwen2_5_vl_3b_instruct/quantized/fp8_fp8_coco2017_hf_ptq"
script=""
for candidate in extern/Model-Optimizer/examples/llm_ptq/hf_ptq.py \
                 extern/Model-Optimizer/examples/hf_ptq/hf_ptq.py; do
  [ -f "$candidate" ] && script="$candidate" && break
done
if [ -z "$script" ]; then
  echo "hf_ptq: extern/Model-Optimizer is missing; clone it as extern/README.md says" >&2
  exit 2
fi
[ -f "$calib" ] || { echo "hf_ptq: $calib missing; run: pixi run calib" >&2; exit 2; }
[ -d "$model" ] || { echo "hf_ptq: $model missing; see models/README.md" >&2; exit 2; }
source scripts/env.sh
cd "$(dirname "$script")"
python hf_ptq.py --pyt_ckpt_path "$OLDPWD/$model" --qformat fp8 --kv_cache_qformat fp8 \
  --dataset "$OLDPWD/$calib" --calib_size 4096 --calib_seq 512 \
  --export_path "$OLDPWD/$out" "$@"
