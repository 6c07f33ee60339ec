"""``compress_model``: one recipe run by its backend (:mod:`lrmrepro.compress.backends`), saved atomically as a checkpoint."""

from __future__ import annotations

import logging
import os
import resource
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterable

from .. import io
from .backends import BACKENDS, Job
from .calibration import validate_spec
from .inspect import size_on_disk, verify_protected, weight_stats
from .recipes import load_recipe, recipe_backend, recipe_info, render_recipe

log = logging.getLogger(__name__)

#: files of the base checkpoint copied next to the compressed weights (not produced by save_pretrained)
EXTRA_FILES = ("train_corpus.jsonl", "chat_template.jinja", "generation_config.json")


def peak_rss_bytes() -> int:
    """High-water mark of the resident memory of this process or of the largest child process it has waited for
    (the GPTQModel environment quantizes in a child), whichever is higher (Linux ``ru_maxrss`` is in KiB)."""
    return max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) * 1024


def compress_model(model_dir: str | os.PathLike, out_dir: str | os.PathLike, *, recipe: str,
                   ignore: Iterable[str] = (), sparsity: float | None = None, calibration: dict[str, Any],
                   seed: int = 0, recipes_dir: str | os.PathLike | None = None,
                   allow_split_groups: bool = False) -> dict[str, Any]:
    """Compress the HF checkpoint ``model_dir`` with recipe ``recipe`` into ``out_dir`` (replaced atomically), by the
    recipe's backend (:data:`lrmrepro.compress.backends.BACKENDS`).

    ``ignore``: protected modules (names or ``re:`` patterns anchored at the start), kept unquantized;
    ``sparsity``: fills the recipe's sparsity placeholder (sparsegpt_unstructured);
    ``calibration``: see :mod:`lrmrepro.compress.calibration` (``seed`` there defaults to ``seed``);
    ``seed``: torch's global seed for the run; ``allow_split_groups``: the protected set may leave a fused group in
    part (single-component variants, dense execution). Returns the figures for meta.json (the caller writes it)."""
    import torch

    ignore = list(ignore or [])
    job = Job(Path(model_dir), recipe, ignore, sparsity, validate_spec({"seed": seed, **dict(calibration)}), seed,
              render=lambda extra_ignore: render_recipe(recipe, ignore, sparsity, recipes_dir, extra_ignore=extra_ignore),
              info=recipe_info, allow_split_groups=allow_split_groups)
    backend = BACKENDS[recipe_backend(load_recipe(recipe, recipes_dir))]
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    with io.atomic_dir(out_dir) as tmp:
        done = backend.compress(job, tmp)
        protection, stats, disk, msg = _finish_checkpoint(job.model_dir, tmp, recipe, done.recipe_text, job.ignore)
        if msg:
            if not done.smoothing:
                raise RuntimeError(msg + " (the method does not smooth: the checkpoint is not saved)")
            # smoothing (AWQ / SmoothQuant) rescales weights of smoothed layers even when they are in `ignore`:
            # kept, and reported in meta.json (protection.all_identical = false)
            log.warning("%s; smoothing rescales them (see docs/compression.md)", msg)
    figures = dict(done.figures)
    figures.setdefault("compress_seconds", time.perf_counter() - t0)
    if "own_effective_bits" in figures:  # the backend's own storage; the checkpoint stores dequantised weights
        stats["stored_dense_bits"] = stats.pop("effective_bits")
        stats["effective_bits"] = figures.pop("own_effective_bits")
    return {"recipe": recipe, "recipe_text": done.recipe_text, "recipe_info": asdict(recipe_info(done.recipe)),
            "ignore": job.ignore, "seed": seed, "peak_rss_bytes": peak_rss_bytes(), "size_on_disk_bytes": disk,
            "base_size_on_disk_bytes": size_on_disk(job.model_dir), **stats, **figures, "protection": protection}


def _finish_checkpoint(model_dir: Path, tmp: Path, recipe: str, recipe_text: str,
                       ignore: list[str]) -> tuple[dict[str, Any] | None, dict[str, Any], int, str | None]:
    """Complete a compressed checkpoint being written in ``tmp``: the base model's extra files, the rendered recipe;
    then check it: (protection check or None, weight statistics, size on disk, a message naming the protected
    modules the method changed, or None)."""
    for name in EXTRA_FILES:
        if (model_dir / name).exists() and not (tmp / name).exists():
            shutil.copy2(model_dir / name, tmp / name)
    (tmp / "recipe.yaml").write_text(recipe_text)
    protection = verify_protected(model_dir, tmp, ignore) if ignore else None
    msg = None
    if protection and not protection["all_identical"]:
        msg = f"protected modules changed by {recipe}: {sorted({d['module'] for d in protection['differ']})}"
    return protection, weight_stats(model_dir, tmp), size_on_disk(tmp), msg
