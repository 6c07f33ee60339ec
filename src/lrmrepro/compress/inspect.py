"""Facts about a checkpoint folder read from its safetensors files: size on disk, effective bits per weight,
measured sparsity, and the protection check (protected weights bit-identical to the original).

Effective bits per weight (``effective_bits``): let L be the linear layers of the transformer blocks, i.e. every
2-D ``<module>.weight`` tensor of the *original* checkpoint except the token embedding (``*embed_tokens*``) and
``lm_head`` (kept unquantized by every recipe). Then

    effective_bits = sum over m in L, over stored tensors t of m whose name starts with "weight"
                        (weight, weight_packed, weight_scale, weight_zero_point, weight_g_idx, weight_shape)
                        of numel(t) * bits(dtype(t))
                     / sum over m in L of numel(original m.weight)

Biases and activation scales are excluded. It counts storage, not information: a pruned model stored dense in
bf16 has 16 bits per weight whatever its sparsity, and a packed 4-bit group-128 model with a bf16 scale and an
int8 zero point per group has 4 + 16/128 + 8/128 = 4.1875 bits per weight (+ the g_idx if activation ordering
stored one).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import torch
from safetensors import safe_open

from .protect import resolve_protected


def _files(ckpt: str | os.PathLike) -> list[Path]:
    files = sorted(Path(ckpt).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors in {ckpt}")
    return files


def tensor_index(ckpt: str | os.PathLike) -> dict[str, Path]:
    return {k: f for f in _files(ckpt) for k in safe_open(f, "pt").keys()}


def load_tensor(index: dict[str, Path], key: str) -> torch.Tensor:
    with safe_open(index[key], "pt") as f:
        return f.get_tensor(key)


def _shape_dtype(index: dict[str, Path], key: str) -> tuple[list[int], torch.dtype]:
    with safe_open(index[key], "pt") as f:
        sl = f.get_slice(key)
        dtype = getattr(torch, {"BF16": "bfloat16", "F16": "float16", "F32": "float32", "F64": "float64",
                                "I8": "int8", "U8": "uint8", "I16": "int16", "I32": "int32", "I64": "int64",
                                "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2", "BOOL": "bool"}[sl.get_dtype()])
        return list(sl.get_shape()), dtype


def _bits(dtype: torch.dtype) -> int:
    return 1 if dtype == torch.bool else torch.empty(0, dtype=dtype).element_size() * 8


def block_linear_modules(original_dir: str | os.PathLike) -> dict[str, int]:
    """Module name -> number of weight elements, for the set L defined in the module docstring."""
    index = tensor_index(original_dir)
    out = {}
    for key in sorted(index):
        if not key.endswith(".weight"):
            continue
        name = key[: -len(".weight")]
        if "embed_tokens" in name or name.split(".")[-1] == "lm_head":
            continue
        shape, _ = _shape_dtype(index, key)
        if len(shape) == 2:
            out[name] = shape[0] * shape[1]
    return out


def size_on_disk(ckpt: str | os.PathLike, exclude: Iterable[str] = ("meta.json",)) -> int:
    exclude = set(exclude)
    return sum(p.stat().st_size for p in Path(ckpt).rglob("*") if p.is_file() and p.name not in exclude)


def weight_stats(original_dir: str | os.PathLike, compressed_dir: str | os.PathLike) -> dict:
    """Effective bits per weight (definition above) and the zero fraction of dense-stored block weights."""
    modules = block_linear_modules(original_dir)
    index = tensor_index(compressed_dir)
    total_bits = 0
    zeros = dense = 0
    missing = []
    for name, n in modules.items():
        keys = [k for k in index if k.startswith(name + ".") and k[len(name) + 1:].startswith("weight")]
        if not keys:
            missing.append(name)
            continue
        for k in keys:
            shape, dtype = _shape_dtype(index, k)
            numel = 1
            for s in shape:
                numel *= s
            total_bits += numel * _bits(dtype)
        if name + ".weight" in index:
            w = load_tensor(index, name + ".weight")
            if w.dtype.is_floating_point and w.dtype.itemsize >= 2:
                zeros += int((w == 0).sum())
                dense += w.numel()
    if missing:
        raise ValueError(f"{compressed_dir}: no stored weight for {missing[:5]} (not a checkpoint of the same model?)")
    n_weights = sum(modules.values())
    return {
        "effective_bits": total_bits / n_weights,
        "linear_weight_elements": n_weights,
        "linear_weight_bits_total": total_bits,
        "n_linear_modules": len(modules),
        # fraction of exact zeros among block weights stored dense (unquantized); None when none is stored dense
        "measured_sparsity_dense": zeros / dense if dense else None,
    }


def verify_protected(original_dir: str | os.PathLike, compressed_dir: str | os.PathLike,
                     ignore: Iterable[str]) -> dict:
    """Compare every protected module's stored ``weight`` (and ``bias``) with the original checkpoint.

    Returns ``{"modules": [...], "identical": [...], "differ": [{"module", "tensor", "reason", "max_abs_diff"}],
    "all_identical": bool}``; bit-identical means same dtype, same shape and ``torch.equal``."""
    ignore = list(ignore)
    orig = tensor_index(original_dir)
    comp = tensor_index(compressed_dir)
    names = sorted({k[: -len(".weight")] for k in orig if k.endswith(".weight") and len(_shape_dtype(orig, k)[0]) == 2})
    protected = resolve_protected(names, ignore, allow_split=True) if ignore else []  # checked when compressing
    identical, differ = [], []
    for name in protected:
        ok = True
        for suffix in ("weight", "bias"):
            key = f"{name}.{suffix}"
            if key not in orig:
                continue
            if key not in comp:
                quantized = [k for k in comp if k.startswith(name + ".")]
                differ.append({"module": name, "tensor": suffix, "max_abs_diff": None,
                               "reason": f"not stored unquantized (stored: {quantized})"})
                ok = False
                continue
            a, b = load_tensor(orig, key), load_tensor(comp, key)
            if a.dtype != b.dtype or a.shape != b.shape:
                differ.append({"module": name, "tensor": suffix, "max_abs_diff": None,
                               "reason": f"dtype/shape {a.dtype}{tuple(a.shape)} -> {b.dtype}{tuple(b.shape)}"})
                ok = False
            elif not torch.equal(a, b):
                diff = float((a.float() - b.float()).abs().max())
                differ.append({"module": name, "tensor": suffix, "max_abs_diff": diff,
                               "reason": "values changed (e.g. rescaled by AWQ smoothing)"})
                ok = False
        if ok:
            identical.append(name)
    return {"modules": protected, "identical": identical, "differ": differ, "all_identical": not differ}
