# Sourced by the GPU scripts: paths, helpers, and the 3B-shaped models (built once per host).
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
out="${OUT:?set OUT to a results folder}"
w="${VLMQUANT_GPU_WORK:-/tmp/vlmquant-gpu}"
shape="${SHAPE:-3b}"      # SHAPE=tiny: a CPU smoke test of the script
res="$w/results"
mkdir -p "$w" "$res"
vq() { python3 -m vlmquant "$@"; }
step() { echo "=== $(date +%T) $*"; }
base="$w/models/qwen2_5_vl_3b_random/checkpoints/random"
q="$w/models/qwen2_5_vl_3b_random/quantized"
calib="$w/datasets/demo_captions.txt"

ensure_models() {
  { nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "no GPU"
    python3 -c "import torch, transformers, vllm; print('torch', torch.__version__, \
'transformers', transformers.__version__, 'vllm', vllm.__version__)"; } > "$res/environment.txt"
  [ -f "$base/config.json" ] || vq make-tiny --shape "$shape" --out "$base"
  [ -f "${calib%.txt}.manifest.json" ] || vq calib --demo --num-samples 512 --out "$calib"
  [ -f "$q/fp8_fp8_demo/run.json" ] || vq quantize --model "$base" --calib "$calib" \
    --calib-size 512 --out "$q/fp8_fp8_demo" 2>&1 | tail -1
  [ "${NEED_KV16:-0}" = 0 ] || [ -f "$q/fp8_none_demo/run.json" ] || vq quantize --model "$base" \
    --calib "$calib" --calib-size 512 --kv-cache-qformat none --out "$q/fp8_none_demo" 2>&1 | tail -1
  [ "${NEED_VLM:-1}" = 0 ] || [ -f "$q/fp8_fp8_demo_vlm/run.json" ] || vq quantize --model "$base" --calib "$calib" \
    --calib-size 256 --scope full --images "${calib%.txt}_images" --out "$q/fp8_fp8_demo_vlm" \
    2>&1 | tail -1
}

# The trained Qwen2.5-Coder-0.5B in Qwen2.5-VL (make-tiny --lm-gguf $GGUF) and the demo
# captions, built once per host; the card and versions go to $1/environment.txt.
trained="$w/models/qwen2_5_coder_0_5b_vl/checkpoints/base"
ensure_trained() {
  { nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    python3 -c "import torch, transformers, vllm, modelopt; print('torch', torch.__version__, \
'transformers', transformers.__version__, 'vllm', vllm.__version__, 'modelopt', modelopt.__version__)"
  } | tee "$1/environment.txt"
  [ -f "${calib%.txt}.manifest.json" ] || vq calib --demo --num-samples 512 --out "$calib"
  [ -f "$trained/config.json" ] || vq make-tiny --lm-gguf "${GGUF:?set GGUF}" --out "$trained" 2>&1 | tail -1
}

# The trained model's export for one recipe, from the 512 demo captions, built once per host:
# hf_ptq (FP8 + FP8 KV), bf16kv (--kv-cache-qformat none), fp8cast_kv (fp8_cast KV scales),
# pcpt_bf16kv (per-channel/per-token FP8, BF16 KV).
trained_export() {  # RECIPE, or RECIPE_kvskipL1-L2: those layers' KV cache BF16
  local -A kv=([hf_ptq]=fp8 [bf16kv]=none [fp8cast_kv]=fp8_cast [pcpt_bf16kv]=none)
  local -A fmt=([pcpt_bf16kv]=fp8_per_channel_per_token)
  local r="${1%_kvskip*}" skip=""
  [ "$r" = "$1" ] || skip="${1##*_kvskip}"
  # shellcheck disable=SC2046  # the layers are separate arguments
  [ -f "$w/trained_$1/run.json" ] || { step "quantize $1"; vq quantize --model "$trained" \
    --calib "$calib" --calib-size 512 --kv-cache-qformat "${kv[$r]:?unknown recipe $r}" \
    --qformat "${fmt[$r]:-fp8}" ${skip:+--kv-cache-bf16-layers ${skip//-/ }} \
    --out "$w/trained_$1" 2>&1 | tail -1; }
}
