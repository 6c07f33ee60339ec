"""Protected variants: modules kept in full precision via llm-compressor's ``ignore`` list.

An entry is a module name (exact match) or ``re:<pattern>`` (Python ``re.match``: anchored at the start of the
module name, not at the end), the same rule compressed-tensors applies. Protection must cover whole fused groups:
vLLM fuses q/k/v into one ``qkv_proj`` and gate/up into one ``gate_up_proj`` and refuses a checkpoint whose shards
of one fused layer have different quantization schemes (:data:`FUSED_GROUPS`, :func:`fused_group`; the importance
stage's rankings use them too). No torch import at module level: the importance figures import the groups.
"""

from __future__ import annotations

import re
from typing import Any, Iterable

#: linear projections vLLM fuses into one layer (q/k/v -> qkv_proj, gate/up -> gate_up_proj)
FUSED_GROUPS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))


def fused_group(module: str, all_modules: Iterable[str]) -> list[str]:
    """The module's fused group members that exist among ``all_modules`` (the module alone if not fused)."""
    parent, _, leaf = module.rpartition(".")
    names = set(all_modules)
    for group in FUSED_GROUPS:
        if leaf in group:
            return [f"{parent}.{g}" for g in group if f"{parent}.{g}" in names]
    return [module]


def matches(name: str, entry: str) -> bool:
    if entry.startswith("re:"):
        return re.match(entry[3:], name) is not None
    return name == entry


def linear_names(model: Any) -> list[str]:
    """Names of the ``torch.nn.Linear`` modules of ``model``."""
    import torch

    return [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]


def resolve_protected(names: Iterable[str], ignore: Iterable[str], allow_split: bool = False) -> list[str]:
    """The linear module names covered by ``ignore``; fails on entries that match nothing or (unless
    ``allow_split``: a variant run dense or on transformers, a single-component one) split a fused group."""
    names = list(names)
    ignore = list(ignore)
    for entry in ignore:
        if not isinstance(entry, str) or not entry:
            raise ValueError(f"ignore: entries must be module names or 're:' patterns, got {entry!r}")
        if entry.startswith("re:"):
            try:
                re.compile(entry[3:])
            except re.error as e:
                raise ValueError(f"ignore: bad regular expression {entry!r}: {e}") from None
        if not any(matches(n, entry) for n in names):
            raise ValueError(f"ignore: {entry!r} matches no linear module of the model (names look like "
                             f"{names[:3]}; 're:' patterns are anchored at the start of the name)")
    protected = [n for n in names if any(matches(n, e) for e in ignore)]
    pset = set(protected)
    errors = []
    for name in names:
        parent, _, leaf = name.rpartition(".")
        if any(leaf == group[0] for group in FUSED_GROUPS):
            members = fused_group(name, names)
            covered = [m for m in members if m in pset]
            if covered and len(covered) != len(members):
                errors.append(f"{parent}: protects {[c.rsplit('.', 1)[1] for c in covered]} but not "
                              f"{[m.rsplit('.', 1)[1] for m in members if m not in pset]}")
    if errors and not allow_split:
        raise ValueError("ignore: protection splits fused groups (q/k/v and gate/up must be protected together, "
                         "because vLLM fuses them into one layer and refuses a checkpoint whose fused shards are "
                         "quantized differently; a variant with execution: dequantized, or with `only`, may): " + "; ".join(errors))
    return protected


#: fused group -> the norm whose output feeds it (Llama/Qwen2 naming: <layer>.self_attn.q_proj <- <layer>.input_layernorm)
SMOOTH_LAYERS = {("self_attn", "q_proj"): "input_layernorm", ("mlp", "gate_proj"): "post_attention_layernorm"}


def smoothquant_skip(all_module_names: Iterable[str], protected: Iterable[str]) -> list[str]:
    """Norms to add to SmoothQuant's ``ignore`` so that it skips the mappings of fully protected fused groups.

    SmoothQuant (llm-compressor 0.14) skips a mapping only when the smooth layer *and* all its balance layers are
    ignored; protecting q/k/v alone would still rescale them (the norm's scale is divided into them)."""
    names = set(all_module_names)
    pset = set(protected)
    out = []
    for name in sorted(pset):
        block, _, leaf = name.rpartition(".")
        layer, _, sub = block.rpartition(".")
        norm = SMOOTH_LAYERS.get((sub, leaf))
        if norm and f"{layer}.{norm}" in names:
            group = next(g for g in FUSED_GROUPS if g[0] == leaf)
            if all(f"{block}.{g}" in pset for g in group):
                out.append(f"{layer}.{norm}")
    return out
