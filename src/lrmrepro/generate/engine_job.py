"""One generation job per engine (docs/cluster.md, "One engine per grid point"): load the model once, then
generate every run of the grid point — its tasks and batch sizes — each into its own generations.parquet,
generations.meta.json and resumable chunk store.

A job is a list of *run specs*, built by ``rules/common.smk`` from the configuration (JSON: it crosses into the vLLM
environment's interpreter)::

    {"run": {model, compression, task, precision, backend, parallel, batch_size, hardware, decoding},
     "tasks_parquet": "results/tasks/<task>.parquet", "prompt_style": "chat_boxed" | "raw_think",
     "decoding": {max_new_tokens, temperature, top_p, n, seed},
     "output": ".../generations.parquet", "meta": ".../generations.meta.json",
     "hardware_patterns": [regular expressions of the hardware label's alias, if any]}

``check_job`` turns the specs into a :class:`Job` once, at that boundary (a :class:`lrmrepro.runs.Engine` and a
:class:`RunSpec` per run, with its :class:`lrmrepro.runs.Run` and :class:`Decoding`), and the engine code works with
those objects from there on. All specs of a job share the engine fields (``Engine.LABELS``: model, compression,
precision, backend, parallel, hardware, decoding name); ``check_job`` refuses anything else, and a hardware label that
is not true of this machine (``lrmrepro.hardware.check``), before any model is loaded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from .. import hardware as hw
from ..provenance import Timer, hardware, hardware_label, write_meta
from ..runs import Engine, Run
from .common import Decoding
from .. import io


@dataclass(frozen=True)
class RunSpec:
    """One run of an engine job: the run, where its items are, its prompt style and decoding, where it writes."""

    run: Run
    tasks_parquet: str
    prompt_style: str
    decoding: Decoding
    output: str
    meta: str
    hardware_patterns: tuple[str, ...] = ()

    @classmethod
    def parse(cls, spec: Mapping[str, Any]) -> "RunSpec":
        """A run spec as ``rules/common.smk`` (``run_spec``) writes it."""
        return cls(run=Run.from_wildcards(spec["run"]), tasks_parquet=str(spec["tasks_parquet"]),
                   prompt_style=str(spec["prompt_style"]), decoding=Decoding(**spec["decoding"]),
                   output=str(spec["output"]), meta=str(spec["meta"]),
                   hardware_patterns=tuple(spec.get("hardware_patterns", ())))


@dataclass(frozen=True)
class Job:
    """The runs of one engine job and the engine they share."""

    engine: Engine
    runs: tuple[RunSpec, ...]

    @property
    def max_batch_size(self) -> int:
        return max(spec.run.batch_size for spec in self.runs)

    def summary(self) -> dict[str, Any]:
        """What meta.json records about the job a run was generated in."""
        return {"runs_in_engine": len(self.runs),
                "tasks_in_engine": sorted({s.run.task for s in self.runs}),
                "batch_sizes_in_engine": sorted({s.run.batch_size for s in self.runs})}


def check_job(specs: Sequence[Mapping[str, Any]]) -> Job:
    """The job of ``specs`` (JSON run specs), checked: one engine, distinct outputs, and a hardware label that is
    true of this machine."""
    if not specs:
        raise ValueError("a generation job needs at least one run")
    runs = tuple(RunSpec.parse(spec) for spec in specs)
    engine = Engine.of(runs[0].run)
    for spec in runs:
        differ = [k for k in Engine.LABELS if getattr(spec.run, k) != getattr(engine, k)]
        if differ:
            raise ValueError(f"runs of one engine job must share {', '.join(Engine.LABELS)}; run "
                             f"{spec.run.labels()} differs from {runs[0].run.labels()} in {differ}")
    outputs = [spec.output for spec in runs]
    if len(set(outputs)) != len(outputs):
        raise ValueError("two runs of one job write the same output")
    hw.check(engine.hardware, hardware(), {engine.hardware: runs[0].hardware_patterns})
    return Job(engine, runs)


@dataclass(frozen=True)
class PreparedRun:
    """A run with its items' ids and prompts (and their token ids, where the backend takes those)."""

    spec: RunSpec
    ids: list[str]
    prompts: list[str]
    token_ids: list[list[int]] | None = None


def prepare(job: Job, tokenizer: Any,
            encode: Callable[[list[str]], list[list[int]]] | None = None) -> list[PreparedRun]:
    """Every run's items and prompts; each task's items are read, prompted (and tokenized with ``encode``) once."""

    from ..prompts import build_prompts_for_items

    cache: dict[tuple[str, str], tuple[list[str], list[str], list[list[int]] | None]] = {}
    out = []
    for spec in job.runs:
        key = (spec.tasks_parquet, spec.prompt_style)
        if key not in cache:
            items = io.read_parquet(spec.tasks_parquet)
            prompts = build_prompts_for_items(items, spec.prompt_style, tokenizer)
            cache[key] = (items.get_column("id").to_list(), prompts, encode(prompts) if encode else None)
        ids, prompts, token_ids = cache[key]
        out.append(PreparedRun(spec, ids, prompts, token_ids))
    return out


def generate_all(job: Job, prepared: Sequence[PreparedRun], generate: Callable[[PreparedRun], dict[str, Any]], *,
                 code: str | None, log: logging.Logger, extra_config: dict[str, Any] | None = None) -> None:
    """Generate every prepared run with ``generate(prepared_run)`` (the backend's figures for meta.json) and write its
    meta.json."""
    detected = hardware_label()
    summary = job.summary()
    for item in prepared:
        spec = item.spec
        with Timer() as t:
            figures = generate(item)
        log.info("%s: %.1f tokens/s", spec.output, figures["tokens_per_s"])
        write_meta(spec.meta, "generate", {"run": spec.run.labels(), "decoding": spec.decoding.as_dict(),
                                           "prompt_style": spec.prompt_style, **(extra_config or {})},
                   code=code, wall_seconds=t.seconds, detected_hardware=detected, **summary, **figures)


@dataclass
class OpenEngine:
    """An engine loaded for a job (what an engine module's ``open_engine`` returns): the job's runs with their
    prompts, ``generate(prepared_run)`` writing one run's table and returning its figures for meta.json, ``close``
    (stop workers), and what meta.json's config slice records of the engine's options."""

    prepared: list[PreparedRun]
    generate: Callable[[PreparedRun], dict[str, Any]]
    close: Callable[[], None] = lambda: None
    extra_config: dict[str, Any] = field(default_factory=dict)


def run_engine(model_dir: str, specs: Sequence[Mapping[str, Any]], *, code: str | None, log: logging.Logger,
               options: Mapping[str, Any] | None = None) -> None:
    """The one entry point of every engine job: check the job (one engine, a hardware label true of this machine)
    before anything loads, open the engine that serves its backend (:data:`lrmrepro.generate.engines.ENGINES`; its
    options, then ``options`` over them), generate every run, close it."""
    import importlib

    from .engines import engine_of, split_backend

    job = check_job(specs)
    kind = engine_of(job.engine.backend)
    backend = split_backend(job.engine.backend)[0]  # a runtime profile's label: its backend's options
    opened = importlib.import_module(kind.module).open_engine(
        model_dir, job, code=code, options={**kind.backends[backend], **(options or {})}, log=log)
    try:
        generate_all(job, opened.prepared, opened.generate, code=code, log=log, extra_config=opened.extra_config)
    finally:
        opened.close()
