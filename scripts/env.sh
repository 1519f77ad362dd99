# Sourced by the other scripts: put the pipeline environment's `vlmquant` and `python` on PATH.
# Inside `pixi run` (PIXI_ENVIRONMENT_NAME is set) pixi's environment is used as it is;
# otherwise scripts/setup.sh builds or reuses the venv (VLMQUANT_VENV, default .venv).
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${PIXI_ENVIRONMENT_NAME:-}" ]; then
  bash "$repo_root/scripts/setup.sh"
  export PATH="${VLMQUANT_VENV:-$repo_root/.venv}/bin:$PATH"
fi
export TOKENIZERS_PARALLELISM=false VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1
