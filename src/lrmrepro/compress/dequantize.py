"""Dequantized execution: a compressed checkpoint rewritten as a dense one holding exactly the values the quantizer
chose, so that any engine (vLLM at any tensor-parallel size, transformers) runs any scheme.

A packed checkpoint (compressed-tensors: packed integer weights, scales, zero points, bitmasks) needs a kernel for
its scheme: vLLM has none for 3-bit weights, ANY3/ANY4 lookup tables or GPTAQ's, nor for a fused group (q/k/v,
gate/up) quantized in part; its CPU build has no WNA16 kernel without AVX-512. The dense copy is the same model
without the kernel: every weight is ``scale × (q − zero point)`` (or the table value) in the checkpoint's dtype,
pruned weights are zeros. What it does not carry is what a kernel does at run time: W8A8's dynamic int8
quantization of activations, FP8's activation scaling. So "packed vs dequantized" on one variant measures
whether the kernel (activation quantization, fused int8 matmuls) changes the result (docs/compression.md).

transformers decompresses (``CompressedTensorsConfig(dequantize=True)``: compressed-tensors' own decompressors,
the code that wrote the checkpoint); the quantization parameters left on the modules are dropped and the model is
saved without a ``quantization_config``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from .. import io

#: parameters compressed-tensors leaves on a decompressed module (not weights of the dense model)
QUANT_PARAMS = ("weight_scale", "weight_zero_point", "weight_g_idx", "weight_shape", "weight_global_scale",
                "input_scale", "input_zero_point", "input_global_scale", "output_scale", "output_zero_point")
#: files of the source checkpoint the dense one keeps
KEEP = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
        "generation_config.json", "train_corpus.jsonl", "recipe.yaml", "vocab.json", "merges.txt")


class DequantizeError(RuntimeError):
    pass


def quantization_config(model_dir: str | Path) -> dict[str, Any] | None:
    cfg = json.loads((Path(model_dir) / "config.json").read_text())
    return cfg.get("quantization_config") or cfg.get("compression_config")


def dequantize_checkpoint(src: str | Path, out: str | Path) -> dict[str, Any]:
    """Write the dense copy of the compressed checkpoint ``src`` to ``out``; returns the figures for meta.json
    (source scheme, dtype, the number of dense linear weights and of distinct values in the first one, zeros)."""
    import torch
    from transformers import AutoModelForCausalLM, CompressedTensorsConfig

    from .schemes import scheme_of_checkpoint

    src, out = Path(src), Path(out)
    qc = quantization_config(src)
    scheme = scheme_of_checkpoint(src)
    kwargs: dict[str, Any] = {"dtype": "auto"}
    if qc is not None:
        if qc.get("quant_method") != "compressed-tensors":
            raise DequantizeError(f"{src}: quantization method {qc.get('quant_method')!r}; dequantized execution "
                                  "reads compressed-tensors checkpoints (llm-compressor's and this package's)")
        kwargs["quantization_config"] = CompressedTensorsConfig(dequantize=True)
    model = AutoModelForCausalLM.from_pretrained(str(src), **kwargs)
    dropped = 0
    for module in model.modules():
        for name in QUANT_PARAMS:
            if name in module._parameters:
                del module._parameters[name]
                dropped += 1
            elif name in module._buffers:
                del module._buffers[name]
                dropped += 1
    for attr in ("quantization_config", "compression_config"):
        if hasattr(model.config, attr):
            delattr(model.config, attr)
    model.hf_quantizer = None
    left = [n for n, _ in model.named_parameters() if n.rsplit(".", 1)[-1] in QUANT_PARAMS]
    if left:
        raise DequantizeError(f"{src}: quantization parameters left after decompression: {left[:3]}")
    linears = {n: m.weight for n, m in model.named_modules()
               if isinstance(m, torch.nn.Linear) and ".layers." in n}
    first = next(iter(linears.values()))
    zeros = sum(int((w == 0).sum()) for w in linears.values())
    total = sum(w.numel() for w in linears.values())
    with io.atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        for name in KEEP:
            if (src / name).exists() and not (tmp / name).exists():
                shutil.copy2(src / name, tmp / name)
        if quantization_config(tmp) is not None:
            raise DequantizeError(f"{out}: the dense copy still carries a quantization_config")
    return {"source": str(src), "source_scheme": scheme, "dtype": str(first.dtype).removeprefix("torch."),
            "quantization_params_dropped": dropped, "decoder_linear_weights": total,
            "zero_fraction": zeros / total if total else None,
            "first_linear_distinct_values_row0": int(torch.unique(first[0]).numel()),
            "first_linear_row_length": int(first.shape[1])}
