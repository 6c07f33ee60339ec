"""The one gate every engine passes while the workflow builds its DAG (``rules/common.smk``): a run its engine cannot
execute is refused before anything is planned, naming the engine, what it cannot do and what to do instead (a
refusal inside a job would be resubmitted by a cluster profile's retries, after the jobs before it ran).

Engine by engine: transformers runs a model on one GPU per job; vLLM what :mod:`lrmrepro.generate.vllm_support`
says it runs; llama.cpp GGUF models only (the configuration's cross-checks, :mod:`lrmrepro.config`, say so per key),
and a split GGUF is llama.cpp's alone. Pure Python: nothing of an engine is imported here.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from ..hardware import on_cpu
from .engines import engine_of
from .vllm_support import UnsupportedRun, check_vllm_engine


def check_engines(engines: Iterable[Any], config: Mapping[str, Any], compressions: Mapping[str, Any]) -> None:
    """Refuse every engine (:class:`lrmrepro.runs.Engine`) of ``engines`` its backend cannot execute; raises
    :class:`lrmrepro.generate.vllm_support.UnsupportedRun`."""
    from ..models.gguf import SPLIT

    for engine in engines:
        kind = engine_of(engine.backend).name
        spec = config["models"].get(engine.model, {})
        if kind != "llamacpp" and spec.get("source") == "gguf" and SPLIT.match(str(spec.get("gguf", "")).split("/")[-1]):
            raise UnsupportedRun(
                f"runs of engine {engine.slug}: models.{engine.model} is a split GGUF ({spec['gguf']}), which only "
                f"llama.cpp reads (transformers converts one file); use backend llamacpp for it")
        if kind == "transformers" and not on_cpu(engine.hardware) and engine.parallel != 1:
            raise UnsupportedRun(
                f"runs of engine {engine.slug}: parallel={engine.parallel} on a GPU label with the transformers "
                "backend; this backend runs a model on one GPU per job (its `parallel` is CPU threads), and a model "
                "spread over several GPUs layer by layer (a device map) is a different computation from tensor "
                "parallelism. Use backend vllm (or llamacpp, which splits a GGUF's layers) for a GPU count, or "
                "parallel 1")
        if kind == "vllm":
            check_vllm_engine(engine, config, compressions)
