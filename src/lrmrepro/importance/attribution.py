"""Attribution patching: how much each module's output, moved along its behaviour direction, changes the loss.

For behaviour c, module m, and each segment s_i ∈ D+_c (tokens [ts, te) of its trace):

    L(s_i) = (1/|s_i|) Σ_{t=ts}^{te-1} CE(logits(t-1), x_t)          next-token loss on the segment's tokens
                                                                      (one forward over the trace prefix [0, te))
    g_i    = (1/|s_i|) Σ_{t=ts}^{te-1} ũ_m^c · ∂L(s_i)/∂a_m(t)        gradient at the segment's own positions,
                                                                      projected on ũ = u/‖u‖₂ (u: the DoM vector,
                                                                      ũ = 0 when u = 0), averaged over the tokens
    I_m^c  = | (1/|D+_c|) Σ_i g_i |                                    ``attribution`` (the slide's formula:
                                                                      |·| outside the sum over segments)

Also reported: ``attribution_mean_abs`` = (1/|D+_c|) Σ_i |g_i| (the public reference code puts |·| inside) and
``attribution_signed`` = (1/|D+_c|) Σ_i g_i.

Each segment needs its own backward pass (∂L(s_i)/∂a also flows from later tokens' losses, so segment losses
cannot be summed): one forward per trace (graph retained), then ``torch.autograd.grad`` of each segment's loss
with respect to all hooked module outputs at once. Parameters get no gradients. A segment starting at token 0
has no next-token prediction for its first token and is skipped.
"""

from __future__ import annotations

from typing import Any, Iterable

import pyarrow as pa
import torch

from .behaviours import BEHAVIOURS
from .dom import unit
from .hooks import ActivationRecorder, decoder_linear_modules, module_layer, module_type, module_weight_numel
from .traces import iter_traces


def attribution_patching(model: torch.nn.Module, tokenizer: Any, generations: Any, spans: Any,
                         vectors: dict[str, dict[str, torch.Tensor]], *, behaviours: Iterable[str] = BEHAVIOURS,
                         max_tokens: int | None = None, add_special_tokens: bool = False) -> pa.Table:
    """Attribution scores per (behaviour, module); ``vectors`` are the DoM vectors u[behaviour][module] (e.g.
    :attr:`DomResult.vectors`). Behaviours without a vector are reported with n_segments 0 and NaN scores."""
    behaviours = tuple(behaviours)
    modules = decoder_linear_modules(model)
    names = list(modules)
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    for b in behaviours:
        missing = [m for m in names if b in vectors and m not in vectors[b]]
        if missing:
            raise ValueError(f"DoM vectors for {b!r} lack modules {missing[:3]} (computed on another model?)")
    dirs = {b: [unit(vectors[b][m].to(torch.float64)).to(device) for m in names] for b in behaviours if b in vectors}
    sums = {b: torch.zeros(len(names), dtype=torch.float64, device=device) for b in dirs}
    abs_sums = {b: torch.zeros(len(names), dtype=torch.float64, device=device) for b in dirs}
    counts = {b: 0 for b in behaviours}
    embed = model.get_input_embeddings()
    model.eval()
    with ActivationRecorder(model, modules, keep_graph=True) as rec:
        for tr in iter_traces(generations, spans, tokenizer, add_special_tokens=add_special_tokens,
                              max_tokens=max_tokens, progress="attribution patching"):
            todo = []
            for b, ts, te in tr.spans:
                if b not in dirs or ts < 1:
                    continue
                counts[b] += 1
                todo.append((b, ts, te))
            if not todo:
                continue
            end = max(te for _, _, te in todo)
            ids = torch.tensor([tr.input_ids[:end]], device=device)
            rec.clear()
            with torch.enable_grad():
                # gradients flow from the (detached) input embeddings, so every module output is in the graph
                # whether or not the parameters require grad
                emb = embed(ids).detach().to(dtype).requires_grad_(True)
                logits = model(inputs_embeds=emb, use_cache=False).logits[0].float()
                outs = [rec.outputs[m] for m in names]
                for k, (b, ts, te) in enumerate(todo):
                    loss = torch.nn.functional.cross_entropy(logits[ts - 1:te - 1], ids[0, ts:te])
                    grads = torch.autograd.grad(loss, outs, retain_graph=k < len(todo) - 1, allow_unused=True)
                    g = _project(grads, dirs[b], ts, te, device)
                    sums[b] += g
                    abs_sums[b] += g.abs()
            del logits, outs, emb
            rec.clear()
    n_params = module_weight_numel(model)
    rows = []
    for b in behaviours:
        for i, m in enumerate(names):
            n = counts[b] if b in dirs else 0
            signed = float(sums[b][i] / n) if n else float("nan")
            rows.append({"behaviour": b, "module": m, "layer": module_layer(m), "module_type": module_type(m),
                         "n_params": n_params[m], "n_attr_segments": n, "attribution": abs(signed),
                         "attribution_signed": signed,
                         "attribution_mean_abs": float(abs_sums[b][i] / n) if n else float("nan")})
    return pa.Table.from_pylist(rows)


def _project(grads: Any, dirs: list[torch.Tensor], ts: int, te: int, device: Any) -> torch.Tensor:
    """g_i per module: the token-mean of ∂L/∂a over [ts, te), dotted with the unit direction."""
    vals = []
    for i, gr in enumerate(grads):
        d = dirs[i]
        if gr is None:
            vals.append(torch.zeros((), dtype=torch.float64, device=device))
        else:
            vals.append(gr[0, ts:te].to(torch.float64).mean(0) @ d)
    return torch.stack(vals)
