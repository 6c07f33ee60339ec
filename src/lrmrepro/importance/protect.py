"""Protected compression specs from an importance ranking, and the single-module verification specs.

A spec is the JSON form of a ``compressions.<name>`` config entry plus provenance:
``{"recipe": <recipe name>, "ignore": [exact module names], "source": {...}}`` — the compression stage keeps the
``ignore`` modules unquantized (``lrmrepro.compress.recipes.render_recipe`` adds them to every modifier's
``ignore``; ``lm_head`` is always there).

Single-module specs ("quantize exactly one module (group), keep everything else"): ``ignore`` = every OTHER
decoder linear module. compressed-tensors 0.19 would also accept the module names as ``targets`` (exact names or
``re:`` patterns, ``compressed_tensors.utils.match.match_name``), but our recipes set ``targets: [Linear]`` both on
the modifier and inside ``config_groups`` and only ``ignore`` is templated, so the ignore form is the one the
compression stage runs unchanged. The quantized names are recorded under ``quantize`` (informational).
"""

from __future__ import annotations

import json
from typing import Any, Iterable

import polars as pl

from ..io import write_json
from ..compress.protect import fused_group
from .ranking import select_protected


def protected_spec(ranking: pl.DataFrame, recipe: str, *, k: int | None = None, weight_fraction: float | None = None,
                   source: dict[str, Any] | None = None) -> dict[str, Any]:
    """Protect the top of ``ranking`` (see :func:`lrmrepro.importance.ranking.select_protected`)."""
    ignore = select_protected(ranking, k=k, weight_fraction=weight_fraction)
    params = dict(zip(ranking["module"].to_list(), ranking["n_params"].to_list()))
    total = sum(params.values())
    protected = sum(params[m] for m in ignore)
    note = ("the top-ranked module's fused group alone exceeds the weight budget: nothing is protected"
            if not ignore else None)
    return {"recipe": recipe, "ignore": ignore,
            "source": {**(source or {}), "k": k, "weight_fraction": weight_fraction, "note": note,
                       "protected_params": protected, "decoder_linear_params": total,
                       "protected_fraction": protected / total if total else 0.0,
                       "top": ranking.head(max(len(ignore), 1)).to_dicts()}}


def single_module_specs(module_names: Iterable[str], recipe: str, *, modules: Iterable[str] | None = None,
                        expand_groups: bool = True, source: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Verification specs: for each chosen module (default: all), quantize only it (with its fused group when
    ``expand_groups``; vLLM needs that, the transformers backend does not) and ignore every other decoder linear
    module. Keyed by a filesystem-safe name: the module name with dots as underscores (``layers_3_mlp_up_proj``,
    the ``model.`` prefix dropped)."""
    names = list(module_names)
    chosen = list(modules) if modules is not None else names
    unknown = [m for m in chosen if m not in names]
    if unknown:
        raise ValueError(f"modules {unknown[:3]} are not decoder linear modules (names look like {names[:2]})")
    specs: dict[str, dict[str, Any]] = {}
    for m in chosen:
        quantize = fused_group(m, names) if expand_groups else [m]
        key = m.removeprefix("model.").replace(".", "_")
        specs[key] = {"recipe": recipe, "ignore": [n for n in names if n not in quantize], "quantize": quantize,
                      "source": {**(source or {}), "experiment": "single_module", "module": m,
                                 "expand_groups": expand_groups}}
    return specs


def write_spec(spec: dict[str, Any], path: Any) -> None:
    json.dumps(spec)  # fail before touching the file if not serialisable
    write_json(spec, path)
