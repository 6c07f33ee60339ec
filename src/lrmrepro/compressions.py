"""A compressed variant of a study, typed: one ``compressions.<name>`` entry of the validated configuration.

:class:`lrmrepro.study.Study` builds every entry once (``Study.compressions``); rules, planning checks and figures ask
these objects, never the raw config dict. The validator (:mod:`lrmrepro.config`, ``compress.distill_config``)
is the one place that reads the raw entries, before these exist. Pure Python; the recipe file is read (YAML,
no torch) only when a recipe's backend or scheme is asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Mapping

from .paths import RECIPES

#: the methods: a recipe of recipes/ (llm-compressor or one of the package's own backends), or a distilled student
METHODS = ("recipe", "distill")


@dataclass(frozen=True, eq=False)
class Compression:
    """One compressed variant. Lists and mappings are the validated config's own objects (rule params keep their
    exact values, so Snakemake's params trigger sees no change)."""

    name: str
    #: ``recipe`` or ``distill``
    method: str
    #: the recipe name (a file ``recipes/<name>.yaml``), None for a distilled student
    recipe: str | None = None
    #: target sparsity of a pruning recipe (None: not a pruned variant)
    sparsity: float | None = None
    #: modules kept in full precision
    ignore: list[str] = field(default_factory=list)
    #: the only modules quantized (the verification experiment)
    only: list[str] = field(default_factory=list)
    #: the importance ranking whose top modules are protected: None (no protection), ``"none"`` (the uncompressed
    #: model's) or a compressed variant of ``importance.compare`` (its own traces' ranking)
    protect_from: str | None = None
    #: how engines run it: ``packed`` (the compressed checkpoint) or ``dequantized`` (its dense copy)
    execution: str = "packed"
    #: distillation: the student and the training settings (``method: distill``)
    student: Mapping[str, Any] | None = None
    distill: Mapping[str, Any] | None = None
    recipes_dir: Path = RECIPES

    @classmethod
    def from_entry(cls, name: str, entry: Mapping[str, Any], recipes_dir: str | Path = RECIPES) -> "Compression":
        """The typed form of a validated ``compressions.<name>`` entry."""
        source = entry.get("protect_from_importance")
        protect = source["model"] if isinstance(source, Mapping) else ("none" if source else None)
        return cls(name=name, method=entry.get("method", "recipe"), recipe=entry.get("recipe"),
                   sparsity=entry.get("sparsity"), ignore=entry.get("ignore", []), only=entry.get("only", []),
                   protect_from=protect, student=entry.get("student"), distill=entry.get("distill"),
                   execution=entry.get("execution", "packed"), recipes_dir=Path(recipes_dir))

    @property
    def dequantized(self) -> bool:
        """Engines run its dense copy (``results/dequantized/...``), not the compressed checkpoint."""
        return self.execution == "dequantized"

    @property
    def distilled(self) -> bool:
        return self.method == "distill"

    @property
    def removes_weights(self) -> bool:
        """A pruned (``sparsity``) or distilled variant: the weight-count finding's rows."""
        return bool(self.sparsity) or self.distilled

    @property
    def recipe_file(self) -> Path | None:
        return self.recipes_dir / f"{self.recipe}.yaml" if self.recipe else None

    @cached_property
    def backend(self) -> str | None:
        """Which compression backend runs the recipe (:data:`lrmrepro.compress.recipes.BACKENDS`); None for a
        distilled student."""
        if self.recipe is None:
            return None
        from .compress.recipes import load_recipe, recipe_backend

        return recipe_backend(load_recipe(self.recipe, self.recipes_dir))

    @cached_property
    def scheme(self) -> str:
        """The checkpoint's compression scheme label (:mod:`lrmrepro.compress.schemes`); a distilled student is a
        dense checkpoint (``none``)."""
        if self.recipe_file is None:
            return "none"
        from .compress.schemes import scheme_of_recipe

        return scheme_of_recipe(self.recipe_file)

    def protect_spec(self, model: str) -> str | None:
        """The protected set this variant's compression reads (None: not a protected variant)."""
        if self.protect_from is None:
            return None
        if self.protect_from == "none":
            return f"results/importance/{model}/protect_spec.json"
        return f"results/importance/{model}/{self.protect_from}/protect_spec.json"


def compressions(config: Mapping[str, Any], recipes_dir: str | Path = RECIPES) -> dict[str, Compression]:
    """Every ``compressions`` entry of a validated configuration, typed, in config order."""
    return {name: Compression.from_entry(name, entry, recipes_dir)
            for name, entry in (config.get("compressions") or {}).items()}
