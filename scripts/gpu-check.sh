#!/usr/bin/env bash
# The GPU check, for the day a GPU is at hand (docs/gpu-validation.md): the transformers backend on CUDA with the
# embedded model — bf16 / fp16 / fp32 / LayerCast × batch sizes 1, 4, 8, 16, the nondeterminism it shows, and LayerCast
# numerics on CUDA — in one run of a few minutes, with only PyTorch, transformers, tokenizers and numpy installed
# (no hub, no vLLM). Writes gpu_check.json and gpu_check.md into OUT.
#   scripts/gpu-check.sh OUT [MODEL_DIR]     # MODEL_DIR: default embedded/default (the shipped model); "train":
#                                            # a small one is trained first (CPU, a few minutes)
set -euo pipefail
OUT=${1:?usage: scripts/gpu-check.sh OUT [MODEL_DIR]}
cd "$(dirname "$0")/.."
MODEL=${2:-embedded/default}
[ "$MODEL" = train ] && MODEL=""
PY=${PYTHON:-python3}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
exec "$PY" scripts/gpu_check.py --out "$OUT" ${MODEL:+--model "$MODEL"} --device "${DEVICE:-cuda}" --n "${N:-32}"
