#!/usr/bin/env bash
# The device check: run on a bare CUDA machine (python3 with torch, numpy and scipy; cpikan is not
# installed) as `tools/gpu-check.sh`. Prints one table (AMP, derivative engines, the paper's
# diffusion setup, seed batching), sized for under 10 minutes on one H100/H200. Exits non-zero without CUDA
# (it never falls back to the CPU) or when a row failed. Arguments go to `cpikan bench gpu`:
# --device cuda:N, or --device cpu --smoke to check the script itself in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHONPATH="$PWD" exec "${PYTHON:-python3}" -m cpikan.cli bench gpu "$@"
