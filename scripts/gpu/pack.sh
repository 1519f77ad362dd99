#!/usr/bin/env bash
# Pack the GPU work folder's results (no logs) into $OUT/NAME.tar.gz; safe to call after a
# timed-out step, so whatever finished comes back.   usage: bash scripts/gpu/pack.sh NAME
set -uo pipefail
w="${VLMQUANT_GPU_WORK:-/tmp/vlmquant-gpu}"
tar -czf "${OUT:?}/$1.tar.gz" --exclude='*.log' --exclude='engine_spec.json' -C "$w" results
ls -la "$OUT"
