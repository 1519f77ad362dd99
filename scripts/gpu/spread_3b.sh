#!/usr/bin/env bash
# GPU runs on the Qwen2.5-VL-3B shape (random weights), most wanted first:
#  1. the offline bench, BF16 vs FP8 (hf_ptq), ENGINE_STARTS (3) engine starts each
#     ($OUT/bench-3b-h200-starts.json);
#  2. the recipes' speed, one engine start each: hf_ptq's, then RECIPES (default: BF16 KV cache,
#     fp8_cast KV scales, per-channel/per-token, per-channel/per-token + BF16 KV)
#     ($OUT/bench-recipes-3b-h200.json; the BF16 base's speed is step 1's);
#  3. profiles, ENGINE_STARTS engine starts each: decode steps, and one image request beside a
#     text prompt of the same length (issue #15 item 4) ($OUT/bench-3b-h200-profile.json);
#  4. quantize --device auto (hf_ptq's device_map "auto") against --device cuda (one GPU):
#     the two exports diffed tensor by tensor ($OUT/device-parity.json).
# Each bench JSON is rendered beside itself. Long: run it in the background and poll.
#   usage (GPU host, repo root, after install.sh + env.sh): OUT=DIR bash scripts/gpu/spread_3b.sh
#   env: ENGINE_STARTS (3), RECIPES, SKIP (space list of step numbers to skip), SHAPE=tiny (a CPU
#        smoke test); steps 1-3: STEP_LIMIT (seconds a bench may run, then stopped with what it
#        has) and RESUME=1 (continue the host's bench that a STEP_LIMIT cut short); step 2:
#        RECIPES_OUT (the result's name, default bench-recipes-3b-h200); step 3: PROFILE_OUT (the
#        result's name, default bench-3b-h200-profile), ENCODER_GRAPH=1 (vLLM's CUDA graph for the
#        vision tower, compilation_config.cudagraph_mm_encoder, for both models)
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
skip=" ${SKIP:-} "
NEED_VLM=0 ensure_models
cp "$res/environment.txt" "$out/environment.txt"
# list flags collect when repeated, so each is given once: the 3B shape's, or a tiny smoke's
args=(--gpu-memory-utilization 0.85 --image-size 448); c1=(1 256); c2=(256); io=512x256; reps=5; mode=default
[ "$shape" = tiny ] && { args=(--max-model-len 512 --image-size 56 --single-stream 32 16)
  c1=(1 4); c2=(4); io=32x16; reps=1; mode=eager; }
render() {
  [ -f "$out/$1.json" ] || { echo "no $1.json"; return 0; }
  vq report --results "$out" > /dev/null && tail -n +2 "$out/$1.md" | head -40
}
bench_to() {  # NAME BENCH-FLAGS...: `vlmquant bench` into the host's work folder, so that a
  # later call can resume (RESUME=1) a run that STEP_LIMIT seconds (0: none) stopped in time to
  # hand back what it had; the result (or what it has so far) is copied to $out and rendered
  # shellcheck disable=SC2046
  local name=$1; shift
  timeout -s INT -k 60 "${STEP_LIMIT:-0}" python3 -m vlmquant bench "$@" --out "$res/$name.json" \
    --force $([ "${RESUME:-0}" = 1 ] && echo --resume) 2>&1 | grep --line-buffered "^bench\|rror"
  cp "$res/$name.json" "$out/" 2>/dev/null || cp "$res/.$name.json.partial" "$out/$name.partial.json"
  render "$name"
}
export_of() {  # NAME QUANTIZE-FLAGS...: an export of the base, made once
  local dir="$q/$1"; shift
  [ -f "$dir/run.json" ] || vq quantize --model "$base" --calib "$calib" --calib-size 512 \
    --out "$dir" "$@" 2>&1 | tail -1
}
if [[ "$skip" != *" 1 "* ]]; then
  step "1: offline bench, ${ENGINE_STARTS:-3} engine starts"
  bench_to bench-3b-h200-starts --model "$base" --model "$q/fp8_fp8_demo" --modes "$mode" \
    --engine-starts "${ENGINE_STARTS:-3}" --concurrency "${c1[@]}" --shapes "$io" --repeats 3 \
    "${args[@]}"
fi
if [[ "$skip" != *" 2 "* ]]; then
  step "2: recipes' speed"
  declare -A flags=([bf16kv]="--kv-cache-qformat none" [fp8cast_kv]="--kv-cache-qformat fp8_cast"
    [pcpt]="--qformat fp8_per_channel_per_token"
    [pcpt_bf16kv]="--qformat fp8_per_channel_per_token --kv-cache-qformat none")
  ln -sfn "$q/fp8_fp8_demo" "$q/hf_ptq"  # the recipe's name on the page
  models=(--model "$q/hf_ptq")  # the first: the ratios are against hf_ptq's recipe
  for m in ${RECIPES:-bf16kv fp8cast_kv pcpt pcpt_bf16kv}; do
    # shellcheck disable=SC2086
    export_of "$m" ${flags[$m]:?unknown recipe $m}; models+=(--model "$q/$m")
  done
  bench_to "${RECIPES_OUT:-bench-recipes-3b-h200}" "${models[@]}" --modes "$mode" --engine-starts 1 \
    --concurrency "${c2[@]}" --shapes "$io" --repeats 3 "${args[@]}"
fi
if [[ "$skip" != *" 3 "* ]]; then
  step "3: decode-step and image-request profiles, ${ENGINE_STARTS:-3} engine starts"
  graph=(); [ "${ENCODER_GRAPH:-0}" = 1 ] && graph=(--engine-arg 'compilation_config={"cudagraph_mm_encoder": true}')
  bench_to "${PROFILE_OUT:-bench-3b-h200-profile}" --model "$base" --model "$q/fp8_fp8_demo" \
    --modes "$mode" --engine-starts "${ENGINE_STARTS:-3}" --no-matrix --repeats "$reps" \
    --profile-steps 64 "${graph[@]}" "${args[@]}"
fi
if [[ "$skip" != *" 4 "* ]]; then
  step "4: --device cuda export beside the --device auto one"
  export_of fp8_fp8_demo_cuda --device cuda
  vq inspect "$q/fp8_fp8_demo" --diff "$q/fp8_fp8_demo_cuda" --json > "$out/device-parity.json"
  python3 - "$out/device-parity.json" "$q/fp8_fp8_demo/run.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1])); run = json.load(open(sys.argv[2]))
t = d["tensors"]
print("identical:", d["identical"], "| tensors compared", t["compared"], "bit-identical",
      t["bit_identical"], "| placement", run["placement"])
EOF
fi
step done
