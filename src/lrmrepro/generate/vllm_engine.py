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


def prepare_environment(device: str, *, batch_invariant: bool, cache_root: str | Path | None = None) -> dict[str, str]:
    """Set the vLLM environment variables for this run (before vLLM is imported); returns what was set.

    CPU: ``VLLM_CPU_KVCACHE_SPACE`` (GiB, default 1) and ``VLLM_CPU_OMP_THREADS_BIND`` (default: every CPU this
    process may use, e.g. the SLURM allocation; vLLM otherwise leaves one core idle) unless already set."""
    env: dict[str, str] = {"VLLM_BATCH_INVARIANT": "1" if batch_invariant else "0"}
    if cache_root is not None and "VLLM_CACHE_ROOT" not in os.environ:
        env["VLLM_CACHE_ROOT"] = str(Path(cache_root).resolve())
    if device == "cpu":
        env.setdefault("VLLM_TARGET_DEVICE", "cpu")
        for key, value in CPU_ENV_DEFAULTS.items():
            if key not in os.environ:
                env[key] = value
        if "VLLM_CPU_OMP_THREADS_BIND" not in os.environ:
            env["VLLM_CPU_OMP_THREADS_BIND"] = ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))
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
