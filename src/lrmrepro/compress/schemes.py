"""Scheme labels of a compression: ``none``, ``sparse`` (dense-stored sparsity only), ``W{bits}A16`` (weight-only
integers), ``W{bits}A{bits}`` (integer weights and activations), ``FP8_DYNAMIC`` / ``FP8``, joined with ``+`` when a
recipe mixes schemes. Known before compressing (:func:`scheme_of_recipe`) or read from a checkpoint
(:func:`scheme_of_checkpoint`): what the vLLM support check (:mod:`lrmrepro.generate.vllm_support`) needs to know.

Torch-free and vLLM-free: the workflow imports it while it builds the DAG.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml


def scheme_of_quantization_config(qc: dict[str, Any] | None) -> str:
    """A short label of a checkpoint's ``quantization_config`` (compressed-tensors): ``none``, ``sparse`` (dense-stored
    sparsity only), ``W{bits}A16`` (weight-only int), ``W{bits}A{bits}`` (int weights and activations),
    ``FP8_DYNAMIC`` / ``FP8`` (float8 weights and activations), or ``other:<quant_method>``."""
    if not qc:
        return "none"
    method = qc.get("quant_method", "")
    if method != "compressed-tensors":
        return {"gptq": "W4A16", "awq": "W4A16"}.get(method, f"other:{method}")
    groups = qc.get("config_groups") or {}
    if not groups:
        return "sparse" if qc.get("sparsity_config") else "none"
    labels = set()
    for group in groups.values():
        w, a = group.get("weights") or {}, group.get("input_activations")
        if w.get("type") == "float":
            labels.add("FP8_DYNAMIC" if a and a.get("dynamic") else "FP8")
        elif a is None:
            labels.add(f"W{w.get('num_bits')}A16")
        else:
            labels.add(f"W{w.get('num_bits')}A{a.get('num_bits')}")
    return "+".join(sorted(labels))


def scheme_of_recipe(recipe: dict[str, Any] | str | Path) -> str:
    """The scheme label an llm-compressor recipe (dict, or path to its YAML) will produce, for checks at DAG time."""
    if not isinstance(recipe, dict):
        recipe = yaml.safe_load(Path(recipe).read_text())
    labels: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "scheme" and isinstance(value, str):
                    labels.add(value.upper().removesuffix("_ASYM"))
                elif key == "config_groups" and isinstance(value, dict):
                    labels.add(scheme_of_quantization_config({"quant_method": "compressed-tensors",
                                                              "config_groups": value}))
                elif key.endswith("SparseGPTModifier") or key in ("WandaPruningModifier", "MagnitudePruningModifier"):
                    labels.add("sparse")
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(recipe)
    quant = sorted(label for label in labels if label != "sparse")
    return "+".join(quant) if quant else ("sparse" if labels else "none")


def scheme_of_checkpoint(model_dir: str | Path) -> str:
    """The scheme label of a checkpoint folder (its ``config.json``'s ``quantization_config``)."""
    cfg = json.loads((Path(model_dir) / "config.json").read_text())
    return scheme_of_quantization_config(cfg.get("quantization_config"))
