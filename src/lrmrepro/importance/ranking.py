"""Rank decoder linear modules by an importance score, and pick a protected set (top-k or a weight budget).

Fused groups: vLLM fuses q/k/v into ``qkv_proj`` and gate/up into ``gate_up_proj`` and refuses checkpoints whose
shards of one fused layer are compressed differently, so a selected module always brings its whole group
(:func:`lrmrepro.compress.protect.fused_group`).
"""

from __future__ import annotations

import math
from typing import Any

import polars as pl

from ..compress.protect import fused_group
from .behaviours import LABELS

SCORES = ("attribution", "attribution_mean_abs", "dom_score", "dom_norm")


def _frame(scores: Any) -> pl.DataFrame:
    return scores if isinstance(scores, pl.DataFrame) else pl.from_arrow(scores) if hasattr(scores, "schema") \
        else pl.DataFrame(scores)


def rank_modules(scores: Any, score: str = "attribution", behaviour: str = "mean") -> pl.DataFrame:
    """One row per module, best first: columns module, layer, module_type, n_params, score, rank (1 = best).

    ``behaviour``: one of the behaviours, or ``mean`` = the mean of the module's score over the behaviours that
    have segments (NaN scores, i.e. behaviours without segments, are left out). Ties keep module order."""
    df = _frame(scores)
    if score not in df.columns:
        raise ValueError(f"score {score!r} not in the scores table; allowed: "
                         f"{', '.join(c for c in SCORES if c in df.columns)}")
    if behaviour != "mean":
        if behaviour not in LABELS:
            raise ValueError(f"behaviour must be one of {', '.join(LABELS)} or 'mean', got {behaviour!r}")
        df = df.filter(pl.col("behaviour") == behaviour)
    df = df.with_row_index("_order").filter(pl.col(score).is_not_nan() & pl.col(score).is_not_null())
    if df.height == 0:
        raise ValueError(f"no finite {score!r} values for behaviour {behaviour!r} (no labelled segments?)")
    out = (df.group_by("module", maintain_order=True)
             .agg(pl.col("layer").first(), pl.col("module_type").first(), pl.col("n_params").first(),
                  pl.col(score).mean().alias("score"), pl.col("_order").min())
             .sort(["score", "_order"], descending=[True, False])
             .drop("_order"))
    return out.with_row_index("rank", offset=1).select("module", "layer", "module_type", "n_params", "score", "rank")


def select_protected(ranking: pl.DataFrame, k: int | None = None, weight_fraction: float | None = None,
                     total_params: int | None = None) -> list[str]:
    """Walk the ranking best first, adding each module with its whole fused group.

    ``k``: stop after the top ``k`` ranked modules have been taken (the result can hold more than ``k`` names
    because of group expansion). ``weight_fraction``: stop before the first group whose addition would make the
    protected weights exceed ``weight_fraction × total_params`` (greedy, no skipping ahead; may be empty);
    ``total_params`` defaults to the sum of ``n_params`` over the ranking (all decoder linear weights).
    Exactly one of ``k`` / ``weight_fraction``. Returned in ranking order: each taken module, then the rest of its
    group."""
    if (k is None) == (weight_fraction is None):
        raise ValueError("give exactly one of k (number of top modules) or weight_fraction (0 < f < 1)")
    if k is not None and (not isinstance(k, int) or isinstance(k, bool) or k < 1 or k > ranking.height):
        raise ValueError(f"k must be an integer in [1, {ranking.height}], got {k!r}")
    if weight_fraction is not None and not (isinstance(weight_fraction, (int, float)) and 0 < weight_fraction < 1):
        raise ValueError(f"weight_fraction must be a number with 0 < f < 1, got {weight_fraction!r}")
    names = ranking["module"].to_list()
    params = dict(zip(names, ranking["n_params"].to_list()))
    budget = weight_fraction * (total_params or sum(params.values())) if weight_fraction is not None else math.inf
    chosen: list[str] = []
    used = 0
    for i, name in enumerate(names):
        if k is not None and i >= k:
            break
        if name in chosen:
            continue
        group = [name] + [g for g in fused_group(name, names) if g != name and g not in chosen]
        cost = sum(params[g] for g in group)
        if used + cost > budget:
            break
        chosen.extend(group)
        used += cost
    return chosen


def importance_change(base: Any, compressed: Any, score: str = "attribution") -> pl.DataFrame:
    """Per (behaviour, module): base score, compressed score, and change = compressed − base."""
    b = _frame(base).select("behaviour", "module", "layer", "module_type", pl.col(score).alias("base"))
    c = _frame(compressed).select("behaviour", "module", pl.col(score).alias("compressed"))
    out = b.join(c, on=["behaviour", "module"], how="inner", maintain_order="left")
    if out.height != b.height:
        raise ValueError("base and compressed score tables cover different (behaviour, module) pairs")
    return out.with_columns((pl.col("compressed") - pl.col("base")).alias("change"))
