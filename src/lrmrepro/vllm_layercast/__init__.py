"""LayerCast for vLLM V1, as a vLLM general plugin registering a custom quantization method ``layercast``.

LayerCast (Yuan et al. 2025) stores the weights of the linear projections in BF16 and computes in FP32. On vLLM
it is: ``LLM(model, dtype="float32", quantization="layercast")``:

- ``dtype=float32`` makes everything that is not a linear projection FP32: embeddings, norms, RoPE, attention,
  the KV cache, the LM head and the logits. The attention backend must support FP32 (vLLM picks one: CPU_ATTN on
  CPU, FLEX_ATTENTION on CUDA; FlashAttention does not take FP32).
- every ``LinearBase`` layer vLLM builds (q/k/v/o, gate/up/down, fused ``qkv_proj`` / ``gate_up_proj``, for any
  architecture vLLM loads) gets ``LayerCastLinearMethod``: the weight is allocated in BF16 (the checkpoint's values
  are rounded to BF16 when loaded, round-to-nearest-even like ``tensor.to(torch.bfloat16)``), the bias (owned by
  the layer, created in FP32) is rounded to BF16 after loading, and the forward pass is
  ``F.linear(x.float(), W_bf16.float(), b_bf16.float())``.

This matches ``lrmrepro.layercast.apply_layercast`` (the transformers implementation). Neither multiplies the
logits by 1.2 as the public reference code does. Only unquantized checkpoints are supported (a compressed
checkpoint brings its own quantization method); ``lrmrepro.generate.vllm_support.check_supported`` refuses the rest.

Registration: vLLM calls ``register()`` in every process it starts (engine core, workers) through the
``vllm.general_plugins`` entry point ``lrmrepro_layercast = "lrmrepro.vllm_layercast:register"`` declared in
pyproject.toml. ``register()`` is idempotent.
"""

from __future__ import annotations

from typing import Any

QUANTIZATION_NAME = "layercast"
ENTRY_POINT_GROUP = "vllm.general_plugins"
ENTRY_POINT_NAME = "lrmrepro_layercast"

_registered = False


def register() -> None:
    """Register the ``layercast`` quantization method with vLLM (safe to call several times)."""
    global _registered
    if _registered:
        return
    from vllm.model_executor.layers.quantization import register_quantization_config

    from .method import LayerCastConfig

    register_quantization_config(QUANTIZATION_NAME)(LayerCastConfig)
    _registered = True


def entry_point_installed() -> bool:
    """Whether the installed lrmrepro distribution declares the vLLM plugin entry point (so that vLLM's spawned
    processes register ``layercast`` too)."""
    from importlib.metadata import entry_points

    return any(ep.name == ENTRY_POINT_NAME for ep in entry_points(group=ENTRY_POINT_GROUP))


def engine_kwargs() -> dict[str, Any]:
    """The ``vllm.LLM`` arguments that select LayerCast."""
    return {"dtype": "float32", "quantization": QUANTIZATION_NAME}
