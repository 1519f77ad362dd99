#!/usr/bin/env bash
# GPU serving benchmark (vlmquant bench --serve) on the Qwen2.5-VL-3B shape (random weights):
# BF16 vs FP8 LM-only behind `vllm serve`, driven by `vllm bench serve`, 3 engine starts each;
# writes $OUT/serve-h200.json + serve-h200.md. Long: run it in the background and poll.
#   usage (GPU host, repo root, after install.sh, with .gpuhost/w2 carried from
#   scripts/gpu/stage_server_wheels.sh):  OUT=DIR bash scripts/gpu/serve_3b.sh
#   env: STARTS (3), CONCURRENCY ("1 16 64 256"), SERVE_ARGS (more bench flags), SHAPE=tiny,
#        PCPT=1: afterwards also the fp8_per_channel_per_token export: check-vllm, infer (its
#        samples and the kernels vLLM picked) and an offline bench beside the per-tensor FP8
#        export (one engine start each, no matrix: a load-and-speed check, not the spread)
set -uo pipefail
source scripts/gpu/common.sh
if [ -d .gpuhost/w2 ] && [ ! -d /tmp/site2 ]; then  # the server's dependencies
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site2 .gpuhost/w2/*.whl
fi
export PYTHONPATH="$PYTHONPATH:/tmp/site2"
python3 -c "import uvicorn, vllm.entrypoints.openai.api_server, vllm.benchmarks.serve" || {
  echo "vLLM's server does not import: stage .gpuhost/w2 (scripts/gpu/stage_server_wheels.sh)"
  exit 2
}
NEED_VLM=0 ensure_models
starts="${STARTS:-3}"
step "serve bench: $base vs $q/fp8_fp8_demo, $starts starts"
# shellcheck disable=SC2086
vq bench --serve --model "$base" --model "$q/fp8_fp8_demo" --modes default \
  --engine-starts "$starts" --concurrency ${CONCURRENCY:-1 16 64 256} \
  --gpu-memory-utilization 0.85 ${SERVE_ARGS:-} --out "$out/serve-h200.json" --force
echo "exit $?"
cp "$res/environment.txt" "$out/serve-h200.environment.txt"
vq report --results "$out" && cat "$out/serve-h200.md"
if [ "${PCPT:-0}" = 1 ]; then
  pc="$q/fp8pcpt_fp8_demo"
  step "per-channel/per-token export"
  [ -f "$pc/run.json" ] || vq quantize --model "$base" --calib "$calib" --calib-size 512 \
    --qformat fp8_per_channel_per_token --out "$pc" 2>&1 | tail -1
  vq check-vllm "$pc" | tee "$out/pcpt-check-vllm.txt"
  vq infer --model "$pc" --out "$out/pcpt-infer" --force 2>&1 | tail -2
  vq bench --model "$q/fp8_fp8_demo" --model "$pc" --modes default --no-matrix --repeats 3 \
    --image-size 448 --gpu-memory-utilization 0.85 --out "$out/bench-pcpt-h200.json" --force
  vq report --results "$out" && cat "$out/bench-pcpt-h200.md"
fi
