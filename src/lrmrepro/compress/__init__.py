"""Compression stage: llm-compressor recipes (``recipes/*.yaml``), protected variants, checkpoint facts."""

from .inspect import size_on_disk, verify_protected, weight_stats
from .recipes import available_recipes, render_recipe
from .run import compress_model

__all__ = ["available_recipes", "compress_model", "render_recipe", "size_on_disk", "verify_protected", "weight_stats"]
