#!/usr/bin/env bash
# GPU run for the quantize stage on the Qwen2.5-VL-3B shape (random weights: no hub here).
# Builds the 3B-shaped model, the 4096-caption demo calib set (no COCO on the GPU host), runs
# both recipes' quantization (LM-only and vision FP8) plus a 4096 x 512-token calibration
# timing run, loads each export in vLLM and asks a text and an image prompt, and packs every
# run.json / inspect / vLLM result into $OUT/quantize-3b.tar.gz for docs/results.
#   usage (on the GPU host, repo root, vLLM + ModelOpt importable):
#     OUT=/some/dir bash scripts/gpu/quantize_3b.sh
set -uo pipefail
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
out="${OUT:?set OUT to a results folder}"
w="${VLMQUANT_GPU_WORK:-/tmp/vlmquant-gpu}"
shape="${SHAPE:-3b}" n="${CALIB_SIZE:-4096}"   # SHAPE=tiny CALIB_SIZE=64: a CPU smoke test
res="$w/results"
mkdir -p "$w" "$res"
vq() { python3 -m vlmquant "$@"; }
step() { echo "=== $(date +%T) $*"; }

step environment
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "no GPU"
  python3 -c "import torch, transformers, vllm, modelopt; print('torch', torch.__version__, \
'transformers', transformers.__version__, 'vllm', vllm.__version__, 'modelopt', modelopt.__version__)"
} | tee "$res/environment.txt"

base="$w/models/qwen2_5_vl_3b_random/checkpoints/random"
step make-tiny --shape 3b
t0=$SECONDS
[ -f "$base/config.json" ] || vq make-tiny --shape "$shape" --out "$base"
echo "make-tiny ${shape}: $((SECONDS - t0)) s" | tee "$res/make_tiny.txt"

calib="$w/datasets/demo_captions.txt"
step calib --demo 4096
[ -f "${calib%.txt}.manifest.json" ] || vq calib --demo --num-samples "$n" --out "$calib"
# 4096 texts of >512 tokens (the shipped paragraphs, rotated), so every sample is cut at 512:
# the full 4096 x 512 workload the goal names; captions alone are ~15 tokens each.
long="$w/datasets/long_texts.txt"
python3 - "$long" "$n" <<'PY'
import sys
from importlib import resources
paras = resources.files("vlmquant.data").joinpath("paragraphs.txt").read_text().split("\n")
paras = [p for p in paras if p]
with open(sys.argv[1], "w") as f:
    for i in range(int(sys.argv[2])):
        f.write(" ".join(paras[(i + k) % len(paras)] for k in range(len(paras))) + "\n")
PY

q="$w/models/qwen2_5_vl_3b_random/quantized"
for variant in lm vlm long; do
  step quantize "$variant"
  case "$variant" in
    lm)   args=(--calib "$calib" --out "$q/fp8_fp8_demo") ;;
    vlm)  args=(--calib "$calib" --scope full --images "${calib%.txt}_images" --out "$q/fp8_fp8_demo_vlm") ;;
    long) args=(--calib "$long" --out "$q/fp8_fp8_long512") ;;
  esac
  vq quantize --model "$base" --calib-size "$n" --calib-seq 512 --force "${args[@]}" \
    2>&1 | grep -v "it/s]" | tail -5
  cp "${args[-1]}/run.json" "$res/quantize_${variant}.run.json"
  cp "${args[-1]}/precision_map.json" "$res/quantize_${variant}.precision_map.json"
done

for ckpt in "$base" "$q/fp8_fp8_demo" "$q/fp8_fp8_demo_vlm"; do
  vq inspect --json "$ckpt" > "$res/inspect_$(basename "$ckpt").json"
done

step vLLM load + text and image prompt
python3 - "$q" "$res" <<'PY'
import json, sys
from pathlib import Path
from vlmquant.engine.args import engine_kwargs
from vlmquant.engine.worker import run_worker
from vlmquant.results.infer import Generation
q, res = Path(sys.argv[1]), Path(sys.argv[2])
prompts = [{"text": "Describe a cute animal in one sentence."},
           {"text": "What shape is in this picture and what colour is it?", "image": "red_circle"}]
for name in ("fp8_fp8_demo", "fp8_fp8_demo_vlm"):
    spec = {"engine": engine_kwargs(q / name, max_model_len=4096, enforce_eager=True,
                                    gpu_memory_utilization=0.5),
            "task": "vlmquant.infer.infer_stage:generate_samples",
            "sampling": {"temperature": 0.0, "max_tokens": 32}, "prompts": prompts}
    try:
        r = run_worker(spec, res / f"vllm_{name}")
        print(name, r["used"], r["load_s"], [x["response"][:60] for x in r["results"]])
        (res / f"vllm_{name}.json").write_text(Generation.dumps(r))
    except Exception as e:  # keep going: the record says what failed
        (res / f"vllm_{name}.failed.txt").write_text(str(e)[-3000:])
        print(name, "FAILED", str(e)[-1500:])
PY
step pack
tar -czf "$out/quantize-3b.tar.gz" -C "$w" results
ls -la "$out"
