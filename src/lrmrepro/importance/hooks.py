"""Forward/backward hooks on every linear module of the decoder, capturing module outputs (and their gradients).

Discovery is generic: every submodule of ``model.model.layers`` that is an ``nn.Linear`` (compressed-tensors'
``CompressedLinear`` is a subclass) or whose class name ends in ``Linear`` (e.g. LayerCast's wrapper), keyed by
its full module name as in ``model.named_modules()`` (the names llm-compressor's ``ignore`` list uses), e.g.
``model.layers.3.mlp.up_proj``. ``lm_head`` and embeddings are outside the decoder layers and not hooked.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

_LAYER_RE = re.compile(r"\.(\d+)\.")
#: module types in figure column order (Qwen2 / Llama naming); other names are appended as found
MODULE_TYPES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _is_linear(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) or type(module).__name__.endswith("Linear")


def decoder_layers_name(model: nn.Module) -> str:
    """The module name of ``model.model.layers`` (e.g. ``model.layers``)."""
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if layers is None:
        raise ValueError(f"{type(model).__name__} has no model.model.layers (a decoder-only causal LM like Qwen2/Llama "
                         "is expected)")
    for name, mod in model.named_modules():
        if mod is layers:
            return name
    raise ValueError("model.model.layers is not a registered submodule")


def decoder_linear_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Every linear module under ``model.model.layers``, by full name, in module order."""
    prefix = decoder_layers_name(model) + "."
    found = {n: m for n, m in model.named_modules() if n.startswith(prefix) and _is_linear(m)}
    if not found:
        raise ValueError("no linear modules found under model.model.layers")
    return found


def module_layer(name: str) -> int:
    m = _LAYER_RE.search(name)
    if m is None:
        raise ValueError(f"module name {name!r} has no layer index")
    return int(m.group(1))


def module_type(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def module_weight_numel(model: nn.Module) -> dict[str, int]:
    """Number of weight entries (bias excluded) of every decoder linear module (dense shape: out × in)."""
    out = {}
    for n, m in decoder_linear_modules(model).items():
        if hasattr(m, "in_features") and hasattr(m, "out_features"):
            out[n] = int(m.in_features) * int(m.out_features)
        else:
            out[n] = int(m.weight.numel())
    return out


class ActivationRecorder:
    """Context manager: forward hooks store each module's output (``outputs[name]``, batch × seq × features).

    ``keep_graph=False`` stores detached outputs (for difference of means, under ``torch.no_grad``).
    ``keep_graph=True`` stores the outputs attached to the autograd graph, and ``capture_grads=True`` in addition
    registers a backward hook on each output tensor that stores ∂L/∂output in ``grads[name]`` at every backward
    pass (overwritten, not accumulated)."""

    def __init__(self, model: nn.Module, modules: dict[str, nn.Module] | None = None, *, keep_graph: bool = False,
                 capture_grads: bool = False):
        if capture_grads and not keep_graph:
            raise ValueError("capture_grads=True needs keep_graph=True")
        self.modules = modules if modules is not None else decoder_linear_modules(model)
        self.keep_graph = keep_graph
        self.capture_grads = capture_grads
        self.outputs: dict[str, torch.Tensor] = {}
        self.grads: dict[str, torch.Tensor] = {}
        self._handles: list[Any] = []

    def _hook(self, name: str):
        def hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
            if not self.keep_graph:
                self.outputs[name] = output.detach()
                return
            self.outputs[name] = output
            if self.capture_grads and output.requires_grad:
                def store(grad: torch.Tensor, name: str = name) -> None:
                    self.grads[name] = grad.detach()
                output.register_hook(store)
        return hook

    def clear(self) -> None:
        self.outputs.clear()
        self.grads.clear()

    def __enter__(self) -> "ActivationRecorder":
        for name, mod in self.modules.items():
            self._handles.append(mod.register_forward_hook(self._hook(name)))
        return self

    def __exit__(self, *exc: Any) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
