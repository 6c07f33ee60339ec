#!/usr/bin/env bash
# Create or update the core environment (.venv) from envs/core.txt. Idempotent: reinstalls only when
# envs/core.txt changed (a hash stamp is kept in the venv).
#   scripts/setup-env.sh            core env in .venv
# The vLLM environment has its own script: scripts/setup-env-vllm.sh (see docs/cluster.md).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv
REQ=envs/core.txt
stamp="$VENV/.core-env.sha256"
want=$(sha256sum "$REQ" pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -x "$VENV/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "[setup-env] creating/updating $VENV from $REQ (torch CPU build, transformers, llm-compressor, snakemake, ...)" >&2
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# torch first and alone, pinned: on machines with the local CPU wheel this never downloads a CUDA build.
"$VENV/bin/python" -m pip install --quiet "$(grep -E '^torch==' "$REQ")"
"$VENV/bin/python" -m pip install --quiet -r "$REQ"
"$VENV/bin/python" -m pip install --quiet --no-deps -e .
echo "$want" > "$stamp"
echo "[setup-env] ready: $VENV" >&2
