"""Loading a model in a precision (:mod:`lrmrepro.precision`), and LayerCast for the transformers backend.

LayerCast (Yuan et al. 2025, "Give Me FP32 or Give Me Death?"): the weight (and bias) of every linear projection
inside the decoder layers (attention q/k/v/o, MLP gate/up/down, i.e. every ``nn.Linear`` there) is *stored* in
BF16 and upcast to FP32 just before the matmul::

    y = F.linear(x.float(), W_bf16.float(), b_bf16.float())

Everything else stays FP32: activations, norms, embeddings, lm_head, RoPE, the KV cache. Unlike the public
reference implementation we do NOT multiply the logits by 1.2. See docs/metrics.md, section LayerCast. The vLLM
implementation is :mod:`lrmrepro.vllm_layercast`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .precision import load_dtype


def torch_dtype(precision: str) -> torch.dtype:
    """The dtype the model is loaded in (``layercast`` loads in fp32; its linear weights are then stored in bf16)."""
    return getattr(torch, load_dtype(precision))


class LayerCastLinear(nn.Module):
    """A linear projection whose weight and bias are stored in BF16 and upcast to FP32 for the matmul.

    The output is FP32 whatever the input dtype (the input is upcast too)."""

    storage_dtype = torch.bfloat16

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        super().__init__()
        if weight.ndim != 2:
            raise ValueError(f"LayerCastLinear needs a 2-D weight, got shape {tuple(weight.shape)}")
        self.out_features, self.in_features = weight.shape
        self.weight = nn.Parameter(weight.detach().to(self.storage_dtype), requires_grad=False)
        self.bias = None if bias is None else nn.Parameter(bias.detach().to(self.storage_dtype), requires_grad=False)

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> "LayerCastLinear":
        return cls(linear.weight, linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight.dtype != self.storage_dtype:
            raise RuntimeError(
                f"LayerCastLinear weight was cast to {self.weight.dtype}; LayerCast stores weights in "
                f"{self.storage_dtype} (do not call model.float() / model.to(dtype) after apply_layercast)"
            )
        bias = None if self.bias is None else self.bias.float()
        return F.linear(x.float(), self.weight.float(), bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"storage={self.storage_dtype}, compute=torch.float32")


def decoder_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The transformer decoder layers of ``model``: modules whose class is listed in the model's
    ``_no_split_modules`` (transformers' name for its repeated block) or whose class name ends in ``DecoderLayer``."""
    block_names = set(getattr(model, "_no_split_modules", None) or [])
    layers = [(name, m) for name, m in model.named_modules()
              if type(m).__name__ in block_names or type(m).__name__.endswith("DecoderLayer")]
    # keep only outermost matches (a block class nested in another block would otherwise be visited twice)
    outer = [(n, m) for n, m in layers if not any(n != o and n.startswith(o + ".") for o, _ in layers)]
    if not outer:
        raise ValueError(
            f"apply_layercast: found no decoder layers in {type(model).__name__} (looked for classes in "
            f"_no_split_modules={sorted(block_names)} or named '*DecoderLayer')"
        )
    return outer


def _refusal(name: str, module: nn.Module) -> str | None:
    """Why ``module`` (a linear projection inside a decoder layer) cannot be turned into LayerCast, or None."""
    if type(module) is not nn.Linear:
        return (f"{name} is a {type(module).__module__}.{type(module).__name__}, not a plain torch.nn.Linear "
                "(e.g. a still-compressed or kernel-backed quantized layer; load compressed-tensors checkpoints "
                "decompressed)")
    w = getattr(module, "weight", None)
    if w is None or w.ndim != 2 or not w.is_floating_point():
        return f"{name} has no floating-point 2-D weight"
    if w.device.type == "meta":
        return f"{name} has its weight on the meta device (offloaded / not materialised)"
    if module._forward_hooks or module._forward_pre_hooks:
        return f"{name} has forward hooks (transforms, offloading or quantization hooks would be dropped)"
    scheme = getattr(module, "quantization_scheme", None)
    if scheme is not None:
        if getattr(scheme, "input_activations", None) is not None or getattr(scheme, "output_activations", None):
            return (f"{name} quantizes activations at run time (compressed-tensors scheme with activation "
                    "quantization); LayerCast would silently drop that")
        status = getattr(module, "quantization_status", None)
        if getattr(scheme, "weights", None) is not None and str(getattr(status, "value", status)) != "decompressed":
            return (f"{name} holds a quantized weight that is not decompressed (quantization_status={status}); "
                    "load compressed-tensors checkpoints with dequantize=True (load_model does)")
    elif "forward" in vars(module):
        return f"{name} has a patched forward method that LayerCast would drop"
    return None


def apply_layercast(model: nn.Module) -> nn.Module:
    """Replace, in place, every ``nn.Linear`` inside the decoder layers by a ``LayerCastLinear`` and return the model.

    The model is expected in FP32 (``load_model(..., "layercast")`` does that). Raises ValueError, naming every
    offending module, when a linear projection cannot be converted (see ``_refusal``); nothing is changed then.
    """
    emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if emb is not None and emb.weight.dtype != torch.float32:
        raise ValueError(f"apply_layercast expects an fp32 model (load with precision 'layercast'); "
                         f"the input embeddings are {emb.weight.dtype}")
    targets: list[tuple[nn.Module, str, nn.Linear]] = []
    problems: list[str] = []
    for layer_name, layer in decoder_layers(model):
        for sub_name, sub in layer.named_modules():
            full = f"{layer_name}.{sub_name}" if sub_name else layer_name
            if isinstance(sub, LayerCastLinear):
                raise ValueError(f"apply_layercast: {full} is already a LayerCastLinear (applied twice?)")
            if not isinstance(sub, nn.Linear):
                continue
            why = _refusal(full, sub)
            if why:
                problems.append(why)
                continue
            parent_name, _, attr = sub_name.rpartition(".")
            targets.append((layer.get_submodule(parent_name) if parent_name else layer, attr, sub))
    if problems:
        raise ValueError("apply_layercast cannot convert:\n  " + "\n  ".join(problems))
    if not targets:
        raise ValueError("apply_layercast: the decoder layers contain no nn.Linear")
    for parent, attr, linear in targets:
        setattr(parent, attr, LayerCastLinear.from_linear(linear))
    config = getattr(model, "config", None)
    if config is not None:
        config.lrmrepro_precision = "layercast"
    return model


def _compressed_tensors_config(model_dir: Path):
    """For a compressed-tensors checkpoint, a config asking transformers to dequantize the weights at load time
    (LayerCast needs plain nn.Linear weights); None for other checkpoints."""
    import json

    cfg_path = model_dir / "config.json"
    if not cfg_path.exists():
        return None
    qc = json.loads(cfg_path.read_text()).get("quantization_config") or {}
    if qc.get("quant_method") != "compressed-tensors":
        return None
    from transformers import CompressedTensorsConfig

    return CompressedTensorsConfig(dequantize=True)


def load_model(model_dir: str | Path, precision: str, **from_pretrained_kwargs: Any):
    """Load a causal LM checkpoint (also compressed-tensors ones, decompressed by transformers) in ``precision``."""
    from transformers import AutoModelForCausalLM

    dtype = torch_dtype(precision)
    if precision == "layercast" and "quantization_config" not in from_pretrained_kwargs:
        qcfg = _compressed_tensors_config(Path(model_dir))
        if qcfg is not None:
            from_pretrained_kwargs["quantization_config"] = qcfg
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=dtype, **from_pretrained_kwargs)
    if precision == "layercast":
        apply_layercast(model)
    return model
