"""``compress_model``: one llm-compressor ``oneshot`` run, saved atomically as a compressed-tensors checkpoint."""

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
from .calibration import build_calibration, validate_spec
from .cpu import no_pinning_without_accelerator
from .inspect import size_on_disk, verify_protected, weight_stats
from .protect import linear_names, resolve_protected, smoothquant_skip
from .recipes import recipe_backend, recipe_info, render_recipe

log = logging.getLogger(__name__)

#: files of the base checkpoint copied next to the compressed weights (not produced by save_pretrained)
EXTRA_FILES = ("train_corpus.jsonl", "chat_template.jinja", "generation_config.json")


def peak_rss_bytes() -> int:
    """High-water mark of the resident memory of this process or of the largest child process it has waited for
    (the GPTQModel environment quantizes in a child), whichever is higher (Linux ``ru_maxrss`` is in KiB)."""
    return max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) * 1024


def compress_model(model_dir: str | os.PathLike, out_dir: str | os.PathLike, *, recipe: str,
                   ignore: Iterable[str] = (), sparsity: float | None = None, calibration: dict[str, Any],
                   seed: int = 0, recipes_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Compress the HF checkpoint ``model_dir`` with recipe ``recipe`` into ``out_dir`` (replaced atomically).

    ``ignore``: protected modules (names or ``re:`` patterns anchored at the start), kept unquantized;
    ``sparsity``: fills the recipe's sparsity placeholder (sparsegpt_unstructured);
    ``calibration``: see :mod:`lrmrepro.compress.calibration` (``seed`` there defaults to ``seed``);
    ``seed``: torch's global seed for the run. Returns the figures for meta.json (the caller writes it)."""
    import torch

    ignore = list(ignore or [])
    recipe_dict, recipe_text = render_recipe(recipe, ignore, sparsity, recipes_dir)
    info = recipe_info(recipe_dict)
    calibration = validate_spec({"seed": seed, **dict(calibration)})
    model_dir = Path(model_dir)
    backend = recipe_backend(recipe_dict)
    if backend != "llmcompressor":
        torch.manual_seed(seed)
        return _own_backend(backend, model_dir, Path(out_dir), recipe, recipe_dict, recipe_text, info, ignore,
                            calibration, seed)
    from llmcompressor import oneshot
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype="auto")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    protected = resolve_protected(linear_names(model), ignore) if ignore else []
    sq_skip = smoothquant_skip([n for n, _ in model.named_modules()], protected)
    if sq_skip:
        recipe_dict, recipe_text = render_recipe(recipe, ignore, sparsity, recipes_dir,
                                                 extra_ignore={"SmoothQuantModifier": sq_skip})

    kwargs: dict[str, Any] = {}
    calib_info: dict[str, Any] = {"used": False, "reason": "data-free recipe (round-to-nearest)"}
    if info.needs_calibration:
        dataset, calib_info = build_calibration(calibration, model_dir, tokenizer)
        calib_info["used"] = True
        kwargs = dict(dataset=dataset, num_calibration_samples=calib_info["num_samples"],
                      max_seq_length=calibration["max_seq_len"], shuffle_calibration_samples=False)
    with no_pinning_without_accelerator() as pin_workaround:
        model = oneshot(model=model, tokenizer=tokenizer, recipe=recipe_text, **kwargs)
    compress_seconds = time.perf_counter() - t0

    with io.atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp, save_compressed=True)
        tokenizer.save_pretrained(tmp)
        protection, stats, disk, msg = _finish_checkpoint(model_dir, tmp, recipe, recipe_text, ignore)
        if msg:
            if not info.smoothing:
                raise RuntimeError(msg + " (unexpected for a recipe without smoothing: the checkpoint is not saved)")
            # smoothing (AWQ / SmoothQuant) rescales weights of smoothed layers even when they are in `ignore`:
            # kept, and reported in meta.json (protection.all_identical = false)
            log.warning("%s; smoothing rescales them (see docs/compression.md)", msg)

    return {
        "recipe": recipe,
        "recipe_text": recipe_text,
        "recipe_info": asdict(info),
        "ignore": ignore,
        "protected_modules": protected,
        "sparsity": sparsity,
        "seed": seed,
        "calibration": calib_info,
        "compress_seconds": compress_seconds,
        "peak_rss_bytes": peak_rss_bytes(),
        "size_on_disk_bytes": disk,
        "base_size_on_disk_bytes": size_on_disk(model_dir),
        **stats,
        "protection": protection,
        "cpu_pin_memory_workaround": pin_workaround,
    }


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


def _own_backend(backend: str, model_dir: Path, out_dir: Path, recipe: str, recipe_dict: dict[str, Any],
                 recipe_text: str, info: Any, ignore: list[str], calibration: dict[str, Any],
                 seed: int) -> dict[str, Any]:
    """A recipe run by one of the package's own backends (ANY4/ANY3, GPTQModel): same checkpoint layout and
    meta.json figures as an llm-compressor run; ``effective_bits`` counts the backend's own storage."""
    from .calibration import load_texts, sample_texts

    settings = recipe_dict[backend]
    texts, origin = load_texts(calibration, model_dir)
    chosen = sample_texts(texts, calibration["num_samples"], calibration["seed"])
    calib_info = {"used": True, "source": calibration["source"], "resolved_source": origin,
                  "seed": calibration["seed"], "num_samples": len(chosen), "max_seq_len": calibration["max_seq_len"]}
    t0 = time.perf_counter()
    with io.atomic_dir(out_dir) as tmp:
        if backend == "anyq":
            from .anyq import anyq_model

            facts = anyq_model(model_dir, tmp, bits=int(settings["bits"]), group_size=settings.get("group_size"),
                               iterations=int(settings.get("iterations", 50)), ignore=settings["ignore"],
                               texts=chosen, max_seq_len=calibration["max_seq_len"])
            own_bits = facts.pop("anyq_effective_bits")
        else:
            from .gptaq import gptqmodel_model

            facts = gptqmodel_model(model_dir, tmp, settings=settings, texts=chosen,
                                    max_seq_len=calibration["max_seq_len"], seed=seed)
            own_bits = facts.pop("gptqmodel_effective_bits")
        protection, stats, disk, msg = _finish_checkpoint(model_dir, tmp, recipe, recipe_text, ignore)
        if msg:
            raise RuntimeError(msg + " (the checkpoint is not saved)")
    stored_bits = stats.pop("effective_bits")
    return {
        "recipe": recipe, "recipe_text": recipe_text, "recipe_info": asdict(info), "backend": backend,
        "settings": settings, "ignore": ignore, "protected_modules": facts.pop("protected_modules", []),
        "sparsity": None, "seed": seed, "calibration": calib_info,
        "compress_seconds": time.perf_counter() - t0, "peak_rss_bytes": peak_rss_bytes(),
        "size_on_disk_bytes": disk, "base_size_on_disk_bytes": size_on_disk(model_dir),
        # bits per weight of the backend's own format (indices + tables + scales); the checkpoint also stores the
        # dequantised weights densely (stored_dense_bits) so that transformers and vLLM load it as it is
        "effective_bits": own_bits, "stored_dense_bits": stored_bits, **stats, **facts,
        "protection": protection, "cpu_pin_memory_workaround": False,
    }
