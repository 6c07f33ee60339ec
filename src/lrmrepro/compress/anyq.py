"""ANY4 / ANY3: a learned lookup table per weight row (Elhoushi & Johnson, "any4: Learned 4-bit Numeric
Representation for LLMs", ICML 2025, arXiv 2507.04610; reference code github.com/facebookresearch/any4).

Each row of a linear layer's weight gets its own table of ``2^b`` values (b = 4: ANY4, b = 3: ANY3); every weight
stores the index of its table entry. As in the reference code, a row is first scaled group-wise (groups of
``group_size`` input columns, asymmetric: each group's [min, max] mapped onto [0, 2^b − 1]), and the table is fitted
to the scaled values of the whole row; a weight is reconstructed as ``table[index] · scale + min`` of its group.
``group_size: null`` fits the table to the raw row instead.

The table of a row is a weighted k-means (Lloyd-Max quantizer) over the row's scaled values, all rows at once
(vectorised torch; assignments by ``searchsorted`` on the midpoints of the sorted table, updates by
``scatter_add``). Weights: each input column's mean absolute activation over the calibration tokens (the paper's
activation-weighted k-means; a column whose inputs are large matters more for the layer's output), times the
square of its group's scale (the error of a scaled value, back in weight units). Choices of ours, stated:

- initialisation at the ``2^b`` integer levels of the scaled range, i.e. the levels round-to-nearest would use: the
  weighted error never rises in Lloyd iterations, so the table is never worse than group-wise asymmetric RTN at
  the same bits (in the weighted error); the reference initialises with k-means++;
- a row with at most ``2^b`` distinct (scaled) values gets exactly those values as its table (reproduced exactly);
- iterations stop when no table entry moves by more than 1e-7 (scaled units) or after ``iterations``;
- tables, scales and minima are stored in fp16 and the dequantised weights are computed from the stored values, so
  the checkpoint holds exactly what a lookup-table kernel would compute.

Deterministic given the calibration sample (drawn with the calibration seed). The checkpoint is a plain HF
checkpoint with the dequantised weights (fake quantization, loadable by transformers and vLLM as a dense model) plus
``anyq/tables.safetensors`` (in a subfolder, so that loaders reading every ``*.safetensors`` of the checkpoint
folder, as vLLM does, see only the model) with, per quantized module, ``<m>.lut`` (rows × 2^b, fp16), ``<m>.index`` (rows × columns,
uint8) and, with group scaling, ``<m>.scale`` / ``<m>.min`` (rows × groups, fp16). Effective bits per weight count
that storage: ``b + 16·2^b / columns + 32 / group_size``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import torch

TOL = 1e-7


@dataclass(frozen=True)
class AnyQuantized:
    lut: torch.Tensor            # [rows, K] float16
    index: torch.Tensor          # [rows, cols] uint8
    scale: torch.Tensor | None   # [rows, groups] float16
    minimum: torch.Tensor | None  # [rows, groups] float16
    iterations: int

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        values = self.lut.float().gather(1, self.index.long())
        if self.scale is not None:
            rows, cols = values.shape
            g = cols // self.scale.shape[1]
            values = (values.view(rows, -1, g) * self.scale.float()[:, :, None] + self.minimum.float()[:, :, None])
            values = values.view(rows, cols)
        return values.to(dtype)

    def bits(self, bits: int) -> float:
        rows, cols = self.index.shape
        total = rows * cols * bits + self.lut.numel() * 16
        if self.scale is not None:
            total += (self.scale.numel() + self.minimum.numel()) * 16
        return total / (rows * cols)


def _group_scale(w: torch.Tensor, bits: int, group_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    rows, cols = w.shape
    if cols % group_size:
        raise ValueError(f"group_size {group_size} does not divide the {cols} input columns")
    groups = w.view(rows, cols // group_size, group_size)
    lo, hi = groups.amin(dim=2), groups.amax(dim=2)
    scale = ((hi - lo) / (2**bits - 1)).clamp(min=1e-8).half()  # stored in fp16
    lo = lo.half()
    scaled = (groups - lo.float()[:, :, None]) / scale.float()[:, :, None]
    return scaled.reshape(rows, cols), scale, lo


def fit_tables(x: torch.Tensor, weight: torch.Tensor, k: int, *, init: torch.Tensor,
               iterations: int = 50) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Weighted 1-D k-means of every row of ``x`` ([rows, cols], float64) with per-element weights ``weight``
    (same shape, > 0), ``k`` centres per row initialised at ``init`` ([rows, k], sorted). Returns (tables
    [rows, k] sorted, indices [rows, cols] int64, iterations run)."""
    cent = init.clone()
    done = 0
    for done in range(1, iterations + 1):
        mids = ((cent[:, 1:] + cent[:, :-1]) / 2).contiguous()
        idx = torch.searchsorted(mids, x.contiguous())
        num = torch.zeros_like(cent).scatter_add_(1, idx, weight * x)
        den = torch.zeros_like(cent).scatter_add_(1, idx, weight)
        new = torch.where(den > 0, num / den.clamp(min=1e-300), cent)
        new, _ = new.sort(dim=1)
        moved = (new - cent).abs().max().item() if new.numel() else 0.0
        cent = new
        if moved <= TOL:
            break
    mids = ((cent[:, 1:] + cent[:, :-1]) / 2).contiguous()
    return cent, torch.searchsorted(mids, x.contiguous()), done


def _exact_rows(x: torch.Tensor, k: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Rows with at most ``k`` distinct values, and those values (sorted) per such row."""
    s, _ = x.sort(dim=1)
    distinct = 1 + (s[:, 1:] != s[:, :-1]).sum(dim=1)
    rows = torch.nonzero(distinct <= k).flatten()
    return rows, [torch.unique(x[r]) for r in rows.tolist()]


def quantize_weight(w: torch.Tensor, bits: int, *, column_weight: torch.Tensor | None = None,
                    group_size: int | None = 128, iterations: int = 50, row_chunk: int = 4096) -> AnyQuantized:
    """ANY-b quantization of one weight matrix ``w`` ([out, in]); ``column_weight`` ([in], > 0): the activation
    statistic of each input column (None: uniform)."""
    if not 2 <= bits <= 8:
        raise ValueError(f"bits must be in 2..8, got {bits}")
    k = 2**bits
    w = w.detach().to(torch.float64)
    rows, cols = w.shape
    cw = torch.ones(cols, dtype=torch.float64) if column_weight is None else column_weight.to(torch.float64)
    if cw.shape != (cols,) or (cw < 0).any():
        raise ValueError(f"column_weight must be {cols} non-negative values")
    cw = cw + 1e-12 * (cw.max() if cw.numel() else 1.0) + 1e-30
    if group_size:
        x, scale, minimum = _group_scale(w.float(), bits, group_size)
        x = x.to(torch.float64)
        elem_w = cw[None, :] * (scale.double() ** 2).repeat_interleave(group_size, dim=1)
        init = torch.arange(k, dtype=torch.float64).expand(rows, k)
    else:
        x, scale, minimum = w, None, None
        elem_w = cw[None, :].expand(rows, cols)
        lo, hi = x.amin(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)
        init = lo + (hi - lo) * torch.linspace(0, 1, k, dtype=torch.float64)[None, :]
    luts, idxs, its = [], [], 0
    for start in range(0, rows, row_chunk):
        sl = slice(start, start + row_chunk)
        lut, idx, n = fit_tables(x[sl], elem_w[sl].contiguous(), k, init=init[sl].contiguous(), iterations=iterations)
        luts.append(lut), idxs.append(idx)
        its = max(its, n)
    lut, idx = torch.cat(luts), torch.cat(idxs)
    exact, values = _exact_rows(x, k)
    for r, v in zip(exact.tolist(), values):
        table = torch.cat([v, v[-1:].expand(k - v.numel())])
        lut[r] = table
        idx[r] = torch.searchsorted(v.contiguous(), x[r].contiguous())
    return AnyQuantized(lut.half(), idx.to(torch.uint8), scale, minimum, its)


def rtn_weight(w: torch.Tensor, bits: int, group_size: int | None = 128) -> torch.Tensor:
    """Group-wise asymmetric round-to-nearest at ``bits`` (the baseline ANY is compared with), dequantised."""
    w = w.detach().float()
    if group_size:
        x, scale, minimum = _group_scale(w, bits, group_size)
        q = x.round().clamp(0, 2**bits - 1)
        rows, cols = w.shape
        return (q.view(rows, -1, group_size) * scale.float()[:, :, None] + minimum.float()[:, :, None]).view(rows, cols)
    lo, hi = w.amin(dim=1, keepdim=True), w.amax(dim=1, keepdim=True)
    step = ((hi - lo) / (2**bits - 1)).clamp(min=1e-8)
    return ((w - lo) / step).round().clamp(0, 2**bits - 1) * step + lo


def activation_statistics(model: Any, batches: Iterable[dict[str, torch.Tensor]],
                          names: Iterable[str]) -> dict[str, torch.Tensor]:
    """Mean absolute input activation per input column of each named linear module, over every token of the
    calibration batches (forward hooks; the model runs in full precision)."""
    names = set(names)
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    handles = []

    def hook(name):
        def fn(module, inputs, output):
            x = inputs[0].detach().float().reshape(-1, inputs[0].shape[-1])
            sums[name] = sums.get(name, 0) + x.abs().sum(dim=0).double()
            counts[name] = counts.get(name, 0) + x.shape[0]
        return fn

    for name, module in model.named_modules():
        if name in names:
            handles.append(module.register_forward_hook(hook(name)))
    try:
        with torch.inference_mode():
            for batch in batches:
                model(**batch)
    finally:
        for h in handles:
            h.remove()
    return {n: sums[n] / counts[n] for n in sums}


def anyq_model(model_dir: str | Path, out_dir: str | Path, *, bits: int, group_size: int | None, iterations: int,
               ignore: Iterable[str], texts: list[str], max_seq_len: int) -> dict[str, Any]:
    """Quantize every decoder linear module of the checkpoint ``model_dir`` (except ``lm_head`` and ``ignore``d
    ones) and save the fake-quantized checkpoint with ``anyq/tables.safetensors`` into ``out_dir`` (a fresh folder the
    caller replaces atomically). Returns facts for meta.json."""
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .protect import linear_names, resolve_protected

    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype="auto").eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    user_ignore = [i for i in ignore if i != "lm_head"]
    # the checkpoint is dense (fake-quantized): a fused group in part loads in every engine
    protected = set(resolve_protected(linear_names(model), user_ignore, allow_split=True)) if user_ignore else set()
    targets = [n for n in linear_names(model) if n.split(".")[-1] != "lm_head" and n not in protected]
    batches = []
    for text in texts:
        enc = tokenizer(text, add_special_tokens=False, truncation=True, max_length=max_seq_len, return_tensors="pt")
        if enc["input_ids"].shape[1]:
            batches.append({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]})
    stats = activation_statistics(model, batches, targets)
    tensors: dict[str, torch.Tensor] = {}
    total_bits = total_weights = 0.0
    max_iterations = 0
    modules = dict(model.named_modules())
    with torch.no_grad():
        for name in targets:
            lin = modules[name]
            q = quantize_weight(lin.weight, bits, column_weight=stats.get(name), group_size=group_size,
                                iterations=iterations)
            lin.weight.copy_(q.dequantize(lin.weight.dtype))
            tensors[f"{name}.lut"], tensors[f"{name}.index"] = q.lut.contiguous(), q.index.contiguous()
            if q.scale is not None:
                tensors[f"{name}.scale"], tensors[f"{name}.min"] = q.scale.contiguous(), q.minimum.contiguous()
            n = lin.weight.numel()
            total_bits += q.bits(bits) * n
            total_weights += n
            max_iterations = max(max_iterations, q.iterations)
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    (out_dir / "anyq").mkdir()
    save_file(tensors, str(out_dir / "anyq" / "tables.safetensors"),
              metadata={"bits": str(bits), "group_size": str(group_size)})
    return {
        "quantized_modules": len(targets),
        "protected_modules": sorted(protected),
        "anyq_effective_bits": total_bits / total_weights if total_weights else math.nan,
        "kmeans_iterations_max": max_iterations,
        "calibration_tokens": int(sum(b["input_ids"].numel() for b in batches)),
        "compress_seconds": time.perf_counter() - t0,
    }
