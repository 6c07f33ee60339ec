"""A vLLM worker extension (``LLM(worker_extension_cls=...)``, a supported extension point) that reports what the
engine actually built: attention backends, and parameter bytes by dtype (to check that LayerCast stores BF16).

Called from the driver with ``llm.collective_rpc("lrmrepro_describe")``; runs inside each worker process."""

from __future__ import annotations

from typing import Any

WORKER_EXTENSION = "lrmrepro.vllm_layercast.worker_ext.DescribeExtension"


class DescribeExtension:
    def lrmrepro_describe(self) -> dict[str, Any]:
        runner = getattr(self, "model_runner", None)
        backends: set[str] = set()
        for groups in getattr(runner, "attn_groups", None) or []:
            for group in groups:
                backend = getattr(group, "backend", None)
                if backend is not None:
                    backends.add(getattr(backend, "__name__", type(backend).__name__))
        model = runner.get_model() if runner is not None and hasattr(runner, "get_model") else None
        by_dtype: dict[str, int] = {}
        linear_dtypes: dict[str, int] = {}
        if model is not None:
            for name, p in model.named_parameters():
                key = str(p.dtype).removeprefix("torch.")
                by_dtype[key] = by_dtype.get(key, 0) + p.numel() * p.element_size()
                if name.endswith(".weight") and p.ndim == 2 and ".layers." in name:
                    linear_dtypes[key] = linear_dtypes.get(key, 0) + p.numel() * p.element_size()
        return {
            "attention_backends": sorted(backends),
            "param_bytes_by_dtype": by_dtype,
            "decoder_matrix_bytes_by_dtype": linear_dtypes,
        }
