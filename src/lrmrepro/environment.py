"""The environment of every job: which package code and which interpreters the workflow's jobs run with.

``rules/common.smk`` calls :func:`job_environment` once while the workflow is read; every job Snakemake starts from
that process (scripts, shell commands, the vLLM environment's python) inherits it.
"""

from __future__ import annotations

import os
from pathlib import Path


def vllm_python(basedir: str | Path) -> str:
    """Interpreter of the vLLM environment: ``$LRMREPRO_VLLM_PYTHON``, else ``.venvs/vllm-cpu/bin/python`` of the
    checkout (made by scripts/setup-extra-env.sh). vLLM has its own environment because it pins other
    compressed-tensors/transformers versions than llm-compressor."""
    return os.environ.get("LRMREPRO_VLLM_PYTHON") or str(Path(basedir) / ".venvs" / "vllm-cpu" / "bin" / "python")


def job_environment(basedir: str | Path) -> dict[str, str]:
    """Set, in this process (and so in every job Snakemake starts from it), ``PYTHONPATH`` to begin with the checkout's
    ``src/`` (jobs run the package code the code fingerprints hash, not another installed copy), and the
    interpreters of the extra environments: ``LRMREPRO_VLLM_PYTHON`` (:func:`vllm_python`) and
    ``LRMREPRO_GPTQMODEL_PYTHON`` (``.venvs/gptqmodel``). Returns what was set."""
    src = str(Path(basedir) / "src")
    rest = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != src]
    env = {"PYTHONPATH": os.pathsep.join([src, *rest]), "LRMREPRO_VLLM_PYTHON": vllm_python(basedir),
           "LRMREPRO_GPTQMODEL_PYTHON": os.environ.get("LRMREPRO_GPTQMODEL_PYTHON")
           or str(Path(basedir) / ".venvs" / "gptqmodel" / "bin" / "python")}
    os.environ.update(env)
    return env
