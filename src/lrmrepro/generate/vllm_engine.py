"""Setting up a vLLM engine: the device, the environment variables vLLM reads at import, GPU facts for meta.json,
the LayerCast quantization method's registration, the ``vllm.LLM`` keyword arguments and the model length.

vLLM and torch are imported inside the functions that need them (the vLLM environment only).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Sequence

from ..precision import load_dtype
from ..provenance import gpu_driver
from .common import TOP_K, Decoding

log = logging.getLogger(__name__)

CPU_ENV_DEFAULTS = {"VLLM_CPU_KVCACHE_SPACE": "1"}  # GiB of KV cache on CPU


def detect_device() -> str:
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:  # pragma: no cover - vLLM needs torch
        return "cpu"


def cpu_thread_binding(cpus: Sequence[int], parallel: int) -> str:
    """``VLLM_CPU_OMP_THREADS_BIND`` for ``parallel`` tensor-parallel ranks on ``cpus``: consecutive, equal groups,
    ranks separated by ``|`` (vLLM's CPU format), e.g. ``0|1`` for two ranks on two cores, ``0-3|4-7`` on eight.
    Each rank's OpenMP threads are pinned to its own cores: two ranks never share a core."""
    cpus = sorted(cpus)
    if parallel < 1 or len(cpus) < parallel:
        raise ValueError(f"tensor_parallel_size={parallel} on CPU needs at least {parallel} cores, this job may use "
                         f"{len(cpus)} ({cpus}): give the job more cores (SLURM: cpus_per_task) or a smaller parallel")
    size = len(cpus) // parallel
    groups = [cpus[r * size:(r + 1) * size] for r in range(parallel)]

    def span(g: list[int]) -> str:
        return f"{g[0]}-{g[-1]}" if len(g) > 1 and g == list(range(g[0], g[-1] + 1)) else ",".join(map(str, g))

    return "|".join(span(g) for g in groups)


def prepare_environment(device: str, *, batch_invariant: bool, cache_root: str | Path | None = None,
                        parallel: int = 1) -> dict[str, str]:
    """Set the vLLM environment variables for this run (before vLLM is imported); returns what was set.

    CPU: ``VLLM_CPU_KVCACHE_SPACE`` (GiB, default 1) and ``VLLM_CPU_OMP_THREADS_BIND`` (default: every CPU this
    process may use, e.g. the SLURM allocation, vLLM otherwise leaving one core idle; with ``parallel`` > 1 tensor-
    parallel ranks, those CPUs split into one group per rank, :func:`cpu_thread_binding`) unless already set."""
    env: dict[str, str] = {"VLLM_BATCH_INVARIANT": "1" if batch_invariant else "0"}
    if cache_root is not None and "VLLM_CACHE_ROOT" not in os.environ:
        env["VLLM_CACHE_ROOT"] = str(Path(cache_root).resolve())
    if device == "cpu":
        env.setdefault("VLLM_TARGET_DEVICE", "cpu")
        for key, value in CPU_ENV_DEFAULTS.items():
            if key not in os.environ:
                env[key] = value
        if "VLLM_CPU_OMP_THREADS_BIND" not in os.environ:
            env["VLLM_CPU_OMP_THREADS_BIND"] = cpu_thread_binding(sorted(os.sched_getaffinity(0)), parallel)
    os.environ.update(env)
    return env


def gpu_info() -> dict[str, Any]:
    """GPU names (torch) and driver version (nvidia-smi); empty on CPU."""
    import torch

    if not torch.cuda.is_available():
        return {}
    info: dict[str, Any] = {
        "gpu_names": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "cuda_runtime": torch.version.cuda,
    }
    driver = gpu_driver()
    if driver:
        info["gpu_driver"] = driver
    return info


def register_layercast(parallel: int) -> None:
    """Make ``quantization='layercast'`` known in this process and in the processes vLLM spawns."""
    from .. import vllm_layercast

    vllm_layercast.register()
    if vllm_layercast.entry_point_installed():
        return
    if parallel == 1:
        # Without the entry point vLLM's engine-core process would not know 'layercast': keep the engine in-process.
        log.warning("the vllm.general_plugins entry point %s is not installed (reinstall lrmrepro in the vLLM env: "
                    "scripts/setup-extra-env.sh); running the engine in-process (VLLM_ENABLE_V1_MULTIPROCESSING=0)",
                    vllm_layercast.ENTRY_POINT_NAME)
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        return
    raise RuntimeError(
        f"precision 'layercast' with tensor_parallel_size={parallel} needs the vllm.general_plugins entry point "
        f"{vllm_layercast.ENTRY_POINT_NAME!r} (so every vLLM worker registers the method); reinstall lrmrepro in "
        "the vLLM environment: scripts/setup-extra-env.sh")


def engine_kwargs(model_dir: str | Path, precision: str, parallel: int, max_batch_size: int, decoding: Decoding,
                  max_model_len: int | None, enforce_eager: bool) -> dict[str, Any]:
    """``max_num_seqs`` holds the largest chunk the engine will get (``max_batch_size × n``): every chunk of
    ``batch_size ≤ max_batch_size`` prompts then runs as one batch."""
    kwargs: dict[str, Any] = dict(
        model=str(model_dir),
        tokenizer=str(model_dir),
        dtype=load_dtype(precision),
        tensor_parallel_size=parallel,
        max_num_seqs=max_batch_size * decoding.n,
        seed=decoding.seed,
        enable_prefix_caching=False,
        enforce_eager=enforce_eager,
        logprobs_mode="raw_logprobs",
        max_logprobs=TOP_K,
        generation_config="vllm",
        max_model_len=max_model_len,
        worker_extension_cls="lrmrepro.vllm_layercast.worker_ext.DescribeExtension",
    )
    if parallel > 1 and detect_device() == "cpu":
        # vLLM's CPU build runs tensor-parallel ranks as processes (gloo all-reduce), each bound to its cores
        kwargs["distributed_executor_backend"] = "mp"
    if precision == "layercast":
        from .. import vllm_layercast

        kwargs.update(vllm_layercast.engine_kwargs())
    return kwargs


def needed_model_len(model_dir: str | Path, token_counts: Sequence[int], max_new_tokens: int) -> int:
    """The engine's ``max_model_len``: longest prompt + ``max_new_tokens`` rounded up to 256, capped by the model.
    Only the KV-cache size depends on it (smaller memory on CPU), not the numerics."""
    cfg = json.loads((Path(model_dir) / "config.json").read_text())
    model_max = cfg.get("max_position_embeddings")
    longest = max(token_counts, default=1)
    want = longest + max_new_tokens
    if model_max is not None and want > model_max:
        raise ValueError(f"longest prompt ({longest} tokens) + max_new_tokens ({max_new_tokens}) exceeds the "
                         f"model's max_position_embeddings ({model_max})")
    return min(model_max or want, -(-want // 256) * 256)
