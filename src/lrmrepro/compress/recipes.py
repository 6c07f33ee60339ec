"""Compression recipes as data: one llm-compressor YAML recipe per scheme in ``recipes/`` at the repository root.

Templating (the only edits made to a recipe before llm-compressor reads it), done by :func:`render_recipe`:

* ``ignore``: every modifier whose YAML has an ``ignore`` key gets ``["lm_head", *protected]`` (order kept,
  duplicates dropped). ``lm_head`` is always kept unquantized.
* SmoothQuant: its ``ignore`` also gets the smoothing norm of every fully protected fused group (see
  :func:`lrmrepro.compress.protect.smoothquant_skip`), else SmoothQuant would still rescale the protected weights.
* ``sparsity``: a modifier whose YAML has ``sparsity: null`` (a placeholder) gets the compression entry's
  sparsity; rendering fails when the recipe has a placeholder and no sparsity is given, or a sparsity is given
  for a recipe without a placeholder.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import yaml

from ..paths import RECIPES
from .backends import BACKENDS as _BACKEND_TABLE

RECIPES_DIR = RECIPES

#: modifiers that need calibration data (the others are data-free round-to-nearest)
CALIBRATED_MODIFIERS = {"GPTQModifier", "AWQModifier", "SparseGPTModifier", "SmoothQuantModifier", "WandaPruningModifier"}
#: modifiers that rescale weights of layers (smoothing) and may touch modules listed in ``ignore``
SMOOTHING_MODIFIERS = {"AWQModifier", "SmoothQuantModifier"}


def recipes_dir(path: str | os.PathLike | None = None) -> Path:
    return Path(path or os.environ.get("LRMREPRO_RECIPES_DIR") or RECIPES_DIR)


def available_recipes(directory: str | os.PathLike | None = None) -> list[str]:
    return sorted(p.stem for p in recipes_dir(directory).glob("*.yaml"))


def recipe_path(name: str, directory: str | os.PathLike | None = None) -> Path:
    names = available_recipes(directory)
    if name not in names:
        raise ValueError(f"unknown compression recipe {name!r}; available recipes (in {recipes_dir(directory)}): "
                         f"{', '.join(names) or '(none)'}")
    return recipes_dir(directory) / f"{name}.yaml"


#: who runs a recipe (:data:`lrmrepro.compress.backends.BACKENDS`): llm-compressor (a recipe of stages and
#: modifiers, the first), or one of the package's own backends (a recipe ``{backend: <name>, <name>: {settings}}``)
BACKENDS = tuple(_BACKEND_TABLE)


def recipe_backend(recipe: dict[str, Any]) -> str:
    return str(recipe.get("backend", "llmcompressor")) if isinstance(recipe.get("backend"), str) else "llmcompressor"


def load_recipe(name: str, directory: str | os.PathLike | None = None) -> dict[str, Any]:
    path = recipe_path(name, directory)
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict) or not data:
        raise ValueError(f"recipe {path}: expected a mapping of stages, got {type(data).__name__}")
    if "backend" in data:
        backend = data["backend"]
        own = list(_BACKEND_TABLE)[1:]  # the package's own backends (the first, llm-compressor, has no key)
        if backend not in own:
            raise ValueError(f"recipe {path}: backend {backend!r} is not allowed; allowed values: {', '.join(own)}"
                             " (or no backend key: an llm-compressor recipe)")
        if set(data) != {"backend", backend} or not isinstance(data[backend], dict):
            raise ValueError(f"recipe {path}: a {backend} recipe is {{backend: {backend}, {backend}: {{settings}}}}")
        return data
    for stage, groups in data.items():
        if not isinstance(groups, dict):
            raise ValueError(f"recipe {path}: stage {stage!r} must map modifier groups, got {type(groups).__name__}")
        for group, mods in groups.items():
            if not isinstance(mods, dict) or not mods:
                raise ValueError(f"recipe {path}: {stage}.{group} must map modifier names to arguments")
    return data


def iter_modifiers(recipe: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (modifier class name, its argument mapping) in recipe order (nothing for a non-llm-compressor recipe)."""
    if recipe_backend(recipe) != "llmcompressor":
        return
    for groups in recipe.values():
        for mods in groups.values():
            for name, args in mods.items():
                yield name, args if args is not None else {}


@dataclass(frozen=True)
class RecipeInfo:
    """What a recipe does, read from its modifiers (for tables and figures)."""

    method: str                 # gptq, awq, rtn, smoothquant+gptq, sparsegpt, ...
    weight_bits: int | None     # nominal bits per quantized weight (None: not quantized)
    act_bits: int | None        # activation bits (None: activations not quantized)
    sparsity: float | None
    mask_structure: str | None
    needs_calibration: bool
    smoothing: bool


_SCHEME_BITS = {"W4A16": (4, None), "W4A16_ASYM": (4, None), "W8A16": (8, None), "W8A8": (8, 8), "INT8": (8, 8),
                "FP8_DYNAMIC": (8, 8), "FP8": (8, 8), "W4A8": (4, 8), "W3A16": (3, None)}


def recipe_info(recipe: dict[str, Any]) -> RecipeInfo:
    backend = recipe_backend(recipe)
    if backend == "anyq":
        bits = int(recipe["anyq"]["bits"])
        return RecipeInfo(f"any{bits}", bits, None, None, None, needs_calibration=True, smoothing=False)
    if backend == "gptqmodel":
        settings = recipe["gptqmodel"]
        bits = int(settings["bits"])
        method = "gptaq" if settings.get("gptaq") else "gptq (gptqmodel)"
        return RecipeInfo(method, bits, None, None, None, needs_calibration=True, smoothing=False)
    mods = list(iter_modifiers(recipe))
    names = [m for m, _ in mods]
    wbits = abits = sparsity = structure = None
    group_bits: set[int] = set()
    for name, args in mods:
        if "scheme" in args and isinstance(args["scheme"], str):
            wbits, abits = _SCHEME_BITS.get(args["scheme"].upper(), (None, None))
        for group in (args.get("config_groups") or {}).values():
            if group.get("weights"):
                group_bits.add(int(group["weights"].get("num_bits")))
            if group.get("input_activations"):
                abits = group["input_activations"].get("num_bits")
        if name in {"SparseGPTModifier", "WandaPruningModifier"}:
            sparsity, structure = args.get("sparsity"), args.get("mask_structure", "0:0")
    if group_bits:  # several schemes (dynamic mixed precision): the nominal bits are the lowest
        wbits = min(group_bits)
    if "AWQModifier" in names:
        method = "awq"
    elif "GPTQModifier" in names:
        method = "smoothquant+gptq" if "SmoothQuantModifier" in names else "gptq"
    elif "SparseGPTModifier" in names:
        method = "sparsegpt"
    elif "QuantizationModifier" in names:
        method = "rtn"
    else:
        method = "+".join(n.removesuffix("Modifier").lower() for n in names)
    if len(group_bits) > 1:
        method += "-mixed"
    return RecipeInfo(method, wbits, abits, sparsity, structure,
                      needs_calibration=bool(CALIBRATED_MODIFIERS & set(names)),
                      smoothing=bool(SMOOTHING_MODIFIERS & set(names)))


def _dedupe(items: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for i in items:
        seen.setdefault(i, None)
    return list(seen)


def render_recipe(name: str, ignore: Iterable[str] = (), sparsity: float | None = None,
                  directory: str | os.PathLike | None = None,
                  extra_ignore: dict[str, Iterable[str]] | None = None) -> tuple[dict[str, Any], str]:
    """Load recipe ``name`` and apply the templating described in the module docstring.

    ``extra_ignore`` maps a modifier class name to further ``ignore`` entries for that modifier only (used for
    SmoothQuant: see :func:`lrmrepro.compress.protect.smoothquant_skip`). Returns (recipe mapping, YAML text)."""
    recipe = copy.deepcopy(load_recipe(name, directory))
    ignore = [str(i) for i in ignore]
    extra_ignore = extra_ignore or {}
    backend = recipe_backend(recipe)
    if backend != "llmcompressor":
        if sparsity is not None:
            raise ValueError(f"recipe {name!r} ({backend}) takes no sparsity")
        settings = recipe[backend]
        settings["ignore"] = _dedupe(["lm_head", *(settings.get("ignore") or []), *ignore])
        return recipe, yaml.safe_dump(recipe, sort_keys=False)
    has_placeholder = False
    for mod, args in iter_modifiers(recipe):
        if "ignore" in args:
            args["ignore"] = _dedupe(["lm_head", *(args["ignore"] or []), *ignore, *extra_ignore.get(mod, [])])
        if "sparsity" in args and args["sparsity"] is None:
            has_placeholder = True
            if sparsity is None:
                raise ValueError(f"recipe {name!r} needs a sparsity (compressions.<name>.sparsity, 0 < s < 1)")
            if not isinstance(sparsity, (int, float)) or isinstance(sparsity, bool) or not 0.0 < float(sparsity) < 1.0:
                raise ValueError(f"recipe {name!r}: sparsity must be a number with 0 < sparsity < 1, got {sparsity!r} "
                                 "(0% sparsity is the uncompressed model: compression `none`)")
            args["sparsity"] = float(sparsity)
    if sparsity is not None and not has_placeholder:
        with_placeholder = [r for r in available_recipes(directory)
                            if any("sparsity" in a and a["sparsity"] is None for _, a in iter_modifiers(load_recipe(r, directory)))]
        raise ValueError(f"recipe {name!r} has a fixed (or no) sparsity; `sparsity` is only accepted by: "
                         f"{', '.join(with_placeholder) or '(none)'}")
    return recipe, yaml.safe_dump(recipe, sort_keys=False)
