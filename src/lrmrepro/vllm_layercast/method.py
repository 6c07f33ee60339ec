"""The ``layercast`` quantization config and linear method for vLLM (imported only inside a vLLM environment)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from vllm.model_executor.layers.linear import LinearBase, LinearMethodBase
from vllm.model_executor.layers.quantization.base_config import QuantizationConfig, QuantizeMethodBase
from vllm.model_executor.parameter import ModelWeightParameter
from vllm.model_executor.utils import set_weight_attrs

STORAGE_DTYPE = torch.bfloat16
COMPUTE_DTYPE = torch.float32


class LayerCastConfig(QuantizationConfig):
    """Selects ``LayerCastLinearMethod`` for every linear layer; everything else keeps vLLM's unquantized path
    (in the model dtype, which must be float32)."""

    def get_name(self) -> str:
        return "layercast"

    def get_supported_act_dtypes(self) -> list[torch.dtype]:
        return [COMPUTE_DTYPE]

    @classmethod
    def get_min_capability(cls) -> int:
        return 0  # plain torch ops: any device vLLM runs on

    @staticmethod
    def get_config_filenames() -> list[str]:
        return []  # not read from the checkpoint: selected with LLM(quantization="layercast")

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "LayerCastConfig":
        return cls()

    def get_quant_method(self, layer: torch.nn.Module, prefix: str) -> QuantizeMethodBase | None:
        if isinstance(layer, LinearBase):
            return LayerCastLinearMethod()
        return None  # embeddings, LM head, attention, norms: unquantized, float32


class LayerCastLinearMethod(LinearMethodBase):
    """Weight stored in BF16 (allocated so; the loader's ``copy_`` rounds the checkpoint values), bias rounded to
    BF16 after loading, matmul in FP32: ``F.linear(x.float(), W.float(), b.float())``."""

    def create_weights(
        self,
        layer: torch.nn.Module,
        input_size_per_partition: int,
        output_partition_sizes: list[int],
        input_size: int,
        output_size: int,
        params_dtype: torch.dtype,
        **extra_weight_attrs: Any,
    ) -> None:
        if params_dtype != COMPUTE_DTYPE:
            raise ValueError(
                f"LayerCast needs the model dtype float32 (activations, norms and KV cache in FP32), got "
                f"{params_dtype}; use LLM(dtype='float32', quantization='layercast')"
            )
        weight_loader = extra_weight_attrs.pop("weight_loader")
        weight = ModelWeightParameter(
            data=torch.empty(sum(output_partition_sizes), input_size_per_partition, dtype=STORAGE_DTYPE),
            input_dim=1,
            output_dim=0,
            weight_loader=weight_loader,
        )
        layer.register_parameter("weight", weight)
        set_weight_attrs(weight, extra_weight_attrs)

    def process_weights_after_loading(self, layer: torch.nn.Module) -> None:
        if layer.weight.dtype != STORAGE_DTYPE:
            raise RuntimeError(f"LayerCast weight of {type(layer).__name__} is {layer.weight.dtype}, expected bf16")
        bias = getattr(layer, "bias", None)
        if isinstance(bias, torch.nn.Parameter) and bias.dtype != STORAGE_DTYPE:
            layer.bias = torch.nn.Parameter(bias.data.to(STORAGE_DTYPE), requires_grad=False)

    def apply(self, layer: torch.nn.Module, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        return F.linear(
            x.to(COMPUTE_DTYPE),
            layer.weight.to(COMPUTE_DTYPE),
            None if bias is None else bias.to(COMPUTE_DTYPE),
        )
