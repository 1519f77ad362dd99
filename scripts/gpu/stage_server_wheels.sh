#!/usr/bin/env bash
# Here (not on the GPU host): stage the wheels vLLM 0.25's OpenAI server and `vllm bench serve`
# need besides ../shared/gpu-host's set (uvicorn, aiohttp, the SageMaker router's package, ...)
# into the git-ignored .gpuhost/w2, pinned and hash-checked (scripts/gpu/server-wheels.txt).
# On the GPU host, after install.sh: scripts/gpu/serve_3b.sh installs them into /tmp/site2.
#   usage: bash scripts/gpu/stage_server_wheels.sh      then carry ".gpuhost/w2"
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
mkdir -p .gpuhost/w2
PIP_CONFIG_FILE=/dev/null python3 -m pip download -q --no-deps --only-binary=:all: \
  --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
  --require-hashes -r scripts/gpu/server-wheels.txt -d .gpuhost/w2
echo "staged $(ls .gpuhost/w2 | wc -l) wheels in .gpuhost/w2 ($(du -sh .gpuhost/w2 | cut -f1))"
