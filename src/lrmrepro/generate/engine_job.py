"""One generation job per engine (docs/cluster.md, "One engine per grid point"): load the model once, then
generate every run of the grid point — its tasks and batch sizes — each into its own generations.parquet,
generations.meta.json and resumable chunk store.

A job is a list of *run specs*, built by ``rules/common.smk`` from the configuration::

    {"run": {model, compression, task, precision, backend, parallel, batch_size, hardware, decoding},
     "tasks_parquet": "results/tasks/<task>.parquet", "prompt_style": "chat_boxed" | "raw_think",
     "decoding": {max_new_tokens, temperature, top_p, n, seed},
     "output": ".../generations.parquet", "meta": ".../generations.meta.json",
     "hardware_patterns": [regular expressions of the hardware label's alias, if any]}

All specs of a job share the engine fields (``lrmrepro.runs.Engine.LABELS``: model, compression, precision, backend,
parallel, hardware, decoding name); ``check_job`` refuses anything else, and a hardware label that is not true of
this machine (``lrmrepro.hardware.check``), before any model is loaded.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Sequence

from .. import hardware as hw
from ..provenance import Timer, hardware, hardware_label, write_meta
from ..runs import Engine
from .common import Decoding


def check_job(runs: Sequence[dict[str, Any]]) -> None:
    if not runs:
        raise ValueError("a generation job needs at least one run")
    first = runs[0]["run"]
    for spec in runs:
        differ = [k for k in Engine.LABELS if spec["run"][k] != first[k]]
        if differ:
            raise ValueError(f"runs of one engine job must share {', '.join(Engine.LABELS)}; run {spec['run']} "
                             f"differs from {first} in {differ}")
    outputs = [spec["output"] for spec in runs]
    if len(set(outputs)) != len(outputs):
        raise ValueError("two runs of one job write the same output")
    label = first["hardware"]
    hw.check(label, hardware(), {label: tuple(runs[0].get("hardware_patterns", ()))})


def prepared(runs: Sequence[dict[str, Any]], tokenizer: Any) -> list[tuple[dict[str, Any], list[str], list[str],
                                                                             Decoding]]:
    """(spec, item ids, prompts, decoding) per run; each task's items are read and prompted once."""
    import polars as pl

    from ..prompts import build_prompts_for_items

    cache: dict[tuple[str, str], tuple[list[str], list[str]]] = {}
    out = []
    for spec in runs:
        key = (spec["tasks_parquet"], spec["prompt_style"])
        if key not in cache:
            items = pl.read_parquet(spec["tasks_parquet"])
            cache[key] = (items.get_column("id").to_list(), build_prompts_for_items(items, spec["prompt_style"],
                                                                                    tokenizer))
        ids, prompts = cache[key]
        out.append((spec, ids, prompts, Decoding(**spec["decoding"])))
    return out


def engine_summary(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """What meta.json records about the job a run was generated in."""
    return {"runs_in_engine": len(runs),
            "tasks_in_engine": sorted({s["run"]["task"] for s in runs}),
            "batch_sizes_in_engine": sorted({int(s["run"]["batch_size"]) for s in runs})}


def generate_all(runs: Sequence[dict[str, Any]], generate: Callable[..., dict[str, Any]], tokenizer: Any, *,
                 code: str | None, log: logging.Logger, extra_config: dict[str, Any] | None = None) -> None:
    """Generate every run with ``generate(prompts, ids, batch_size=, decoding=, output=, code=)`` and write its
    meta.json."""
    check_job(runs)
    detected = hardware_label()
    summary = engine_summary(runs)
    for spec, ids, prompts, decoding in prepared(runs, tokenizer):
        with Timer() as t:
            figures = generate(prompts, ids, batch_size=int(spec["run"]["batch_size"]), decoding=decoding,
                               output=spec["output"], code=code)
        log.info("%s: %.1f tokens/s", spec["output"], figures["tokens_per_s"])
        write_meta(spec["meta"], "generate", {"run": spec["run"], "decoding": decoding.as_dict(),
                                              "prompt_style": spec["prompt_style"], **(extra_config or {})},
                   code=code, wall_seconds=t.seconds, detected_hardware=detected, **summary, **figures)


def run_transformers_engine(model_dir: str, runs: Sequence[dict[str, Any]], *, code: str | None,
                            log: logging.Logger) -> None:
    from .transformers_backend import TransformersGenerator

    check_job(runs)
    first = runs[0]["run"]
    gen = TransformersGenerator(model_dir, precision=first["precision"], parallel=int(first["parallel"]))

    def generate(prompts, ids, **kw):
        return gen.generate_table(prompts, ids, progress=False, **kw)

    generate_all(runs, generate, gen.tokenizer, code=code, log=log)
