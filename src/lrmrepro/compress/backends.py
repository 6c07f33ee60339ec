"""The compression backends, as a table: who runs a recipe, in which environment, and what it writes.

A recipe of ``recipes/`` names its backend (``backend: <name>``; none: llm-compressor). Each backend is one entry of
:data:`BACKENDS`: its name, the extra environment its jobs need (:data:`lrmrepro.environment.EXTRA_ENVIRONMENTS`;
None: the core one), what it is, and ``compress(job, out) -> Compressed``, which renders the recipe once, writes the
checkpoint's weights into the fresh folder ``out`` and returns the rendered recipe and the backend's own figures.
:func:`lrmrepro.compress.run.compress_model` does the rest for every backend alike (the atomic folder, the base
model's extra files, the protection check, weight statistics, one meta builder). Adding a backend is one entry
here and a module that quantizes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable


@dataclass(frozen=True)
class Job:
    """What a backend is asked: compress ``model_dir`` with recipe ``recipe`` (``ignore``: protected modules;
    ``calibration``: validated, :mod:`lrmrepro.compress.calibration`). ``render(extra_ignore)`` renders the recipe
    (:func:`lrmrepro.compress.recipes.render_recipe` with the job's protected modules and sparsity: a mapping and
    its YAML text); ``info(recipe)`` describes it (:func:`lrmrepro.compress.recipes.recipe_info`)."""

    model_dir: Path
    recipe: str
    ignore: list[str]
    sparsity: float | None
    calibration: dict[str, Any]
    seed: int
    render: Callable[[dict[str, Any] | None], tuple[dict[str, Any], str]]
    info: Callable[[dict[str, Any]], Any]
    #: a fused group (q/k/v, gate/up) may be quantized in part: the variant runs as a dense copy or with `only`
    allow_split_groups: bool = False


@dataclass
class Compressed:
    """What a backend did: the recipe as rendered (mapping and YAML text), and its figures for meta.json (merged
    over the common ones). ``smoothing``: the method rescales protected modules too (AWQ, SmoothQuant), so a
    changed protected module is reported, not fatal."""

    recipe: dict[str, Any]
    recipe_text: str
    figures: dict[str, Any] = field(default_factory=dict)
    smoothing: bool = False


@dataclass(frozen=True)
class CompressionBackend:
    name: str
    #: the extra environment its jobs run in (None: the core environment)
    environment: str | None
    #: what it is (messages, docs)
    about: str
    compress: Callable[[Job, Path], Compressed]


def _llmcompressor(job: Job, out: Path) -> Compressed:
    """llm-compressor's ``oneshot`` on the loaded model, saved as a compressed-tensors checkpoint. The recipe is
    rendered once the model's module names are known (SmoothQuant skips the mappings of protected modules)."""
    from llmcompressor import oneshot
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .calibration import build_calibration
    from .cpu import no_pinning_without_accelerator
    from .protect import linear_names, resolve_protected, smoothquant_skip

    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(job.model_dir, dtype="auto")
    tokenizer = AutoTokenizer.from_pretrained(job.model_dir)
    protected = resolve_protected(linear_names(model), job.ignore, job.allow_split_groups) if job.ignore else []
    sq_skip = smoothquant_skip([n for n, _ in model.named_modules()], protected)
    recipe, recipe_text = job.render({"SmoothQuantModifier": sq_skip} if sq_skip else None)
    info = job.info(recipe)
    kwargs: dict[str, Any] = {}
    calib_info: dict[str, Any] = {"used": False, "reason": "data-free recipe (round-to-nearest)"}
    if info.needs_calibration:
        dataset, calib_info = build_calibration(job.calibration, job.model_dir, tokenizer)
        calib_info["used"] = True
        kwargs = dict(dataset=dataset, num_calibration_samples=calib_info["num_samples"],
                      max_seq_length=job.calibration["max_seq_len"], shuffle_calibration_samples=False)
    with no_pinning_without_accelerator() as pin_workaround:
        model = oneshot(model=model, tokenizer=tokenizer, recipe=recipe_text, **kwargs)
    seconds = time.perf_counter() - t0
    model.save_pretrained(out, save_compressed=True)
    tokenizer.save_pretrained(out)
    return Compressed(recipe, recipe_text, {
        "protected_modules": protected, "sparsity": job.sparsity, "calibration": calib_info,
        "compress_seconds": seconds, "cpu_pin_memory_workaround": pin_workaround}, smoothing=info.smoothing)


def _own(quantize: Callable[[Job, dict[str, Any], list[str], Path], dict[str, Any]], own_bits: str
         ) -> Callable[[Job, Path], Compressed]:
    """A backend of the package's own (``{backend: <name>, <name>: {settings}}``): calibration texts sampled from
    the source, the weights written by ``quantize(job, settings, texts, out)``; ``own_bits``: the figure holding the
    bits per weight of its own storage format."""

    def compress(job: Job, out: Path) -> Compressed:
        from .calibration import load_texts, sample_texts

        recipe, recipe_text = job.render(None)
        backend = recipe["backend"]
        settings = recipe[backend]
        calibration = job.calibration
        texts, origin = load_texts(calibration, job.model_dir)
        chosen = sample_texts(texts, calibration["num_samples"], calibration["seed"])
        calib_info = {"used": True, "source": calibration["source"], "resolved_source": origin,
                      "seed": calibration["seed"], "num_samples": len(chosen),
                      "max_seq_len": calibration["max_seq_len"]}
        facts = quantize(job, settings, chosen, out)
        # bits per weight of the backend's own format (indices + tables + scales); the checkpoint also stores the
        # dequantised weights densely (stored_dense_bits) so that transformers and vLLM load it as it is
        return Compressed(recipe, recipe_text, {
            "backend": backend, "settings": settings, "protected_modules": facts.pop("protected_modules", []),
            "sparsity": None, "calibration": calib_info, "own_effective_bits": facts.pop(own_bits),
            "cpu_pin_memory_workaround": False, **facts})

    return compress


def _anyq(job: Job, settings: dict[str, Any], texts: list[str], out: Path) -> dict[str, Any]:
    from .anyq import anyq_model

    return anyq_model(job.model_dir, out, bits=int(settings["bits"]), group_size=settings.get("group_size"),
                      iterations=int(settings.get("iterations", 50)), ignore=settings["ignore"], texts=texts,
                      max_seq_len=job.calibration["max_seq_len"])


def _gptqmodel(job: Job, settings: dict[str, Any], texts: list[str], out: Path) -> dict[str, Any]:
    from .gptaq import gptqmodel_model

    return gptqmodel_model(job.model_dir, out, settings=settings, texts=texts,
                           max_seq_len=job.calibration["max_seq_len"], seed=job.seed)


#: every backend a recipe may name; the first is the default (a recipe without ``backend``)
BACKENDS: dict[str, CompressionBackend] = {b.name: b for b in [
    CompressionBackend("llmcompressor", None, "llm-compressor oneshot (GPTQ, AWQ, SparseGPT, SmoothQuant, RTN, "
                       "FP8)", _llmcompressor),
    CompressionBackend("anyq", None, "ANY4/ANY3 lookup-table quantization (lrmrepro.compress.anyq)",
                       _own(_anyq, "anyq_effective_bits")),
    CompressionBackend("gptqmodel", "gptqmodel", "GPTQ/GPTAQ with GPTQModel (lrmrepro.compress.gptaq)",
                       _own(_gptqmodel, "gptqmodel_effective_bits")),
]}
