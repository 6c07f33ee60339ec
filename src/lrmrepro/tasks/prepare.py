"""Materialise a task's evaluation items as parquet (schema: docs/architecture.md, "Task items"). Every item's gold
answer is checked against its answer format here (:func:`lrmrepro.tasks.gold.check_items`): a bad one fails task
preparation, naming the task and the item, before any model generates for it."""

from __future__ import annotations

import json
from typing import Any

import polars as pl

from . import synthetic
from .gold import check_items
from .heldout import training_questions
from .items import items_frame
from .loaders import load_benchmark_with_source


def synthetic_items(task: str, spec: dict[str, Any], train: dict[str, Any]) -> pl.DataFrame:
    """Held-out items of a synthetic task. Questions the embedded model saw in training (given ``train``, the
    config's ``train`` section; empty: no trained model to hold out from) are excluded, so evaluation never tests
    memorised items (:mod:`lrmrepro.tasks.heldout`)."""
    generator = spec.get("generator", task)
    seen = training_questions(train, [generator])[generator] if train else frozenset()
    world_seed = train["seed"] if train else spec.get("seed", 0)
    world = synthetic.World(world_seed)
    examples = synthetic.make_split(generator, spec.get("n", 100), world_seed + spec.get("seed", 0), "eval",
                                    world=world, exclude_questions=seen)
    record = synthetic.GENERATORS[generator]
    return items_frame([
        {"id": f"{task}-{i:05d}", "task": task, "question": ex.question, "gold": ex.gold, "aliases": list(ex.aliases),
         "answer_format": record.answer_format,
         "metadata": json.dumps(record.item_metadata({"generator": generator, "reasoning": ex.reasoning}))}
        for i, ex in enumerate(examples)
    ])


def prepare_items(task: str, spec: dict[str, Any], train: dict[str, Any] | None = None) -> pl.DataFrame:
    return prepare_items_with_source(task, spec, train)[0]


def prepare_items_with_source(task: str, spec: dict[str, Any],
                              train: dict[str, Any] | None = None) -> tuple[pl.DataFrame, dict[str, Any]]:
    """The task's items and where they came from (``dataset`` of the task's meta.json): for benchmarks the record of
    :func:`lrmrepro.tasks.loaders.load_benchmark_with_source`, for synthetic tasks ``{source: "synthetic",
    generator, items}``. A gold answer that does not fit its answer format raises
    :class:`lrmrepro.tasks.gold.GoldAnswerError` naming the task, the item and the format."""
    if spec["source"] == "synthetic":
        df = synthetic_items(task, spec, train or {})
        check_items(task, df.iter_rows(named=True))
        return df, {"source": "synthetic", "generator": spec.get("generator", task), "items": df.height}
    source = {k: spec[k] for k in ("path", "hub", "split", "config", "revision") if k in spec}
    df, info = load_benchmark_with_source(spec.get("benchmark", task), source, seed=spec.get("seed", 0),
                                          limit=spec.get("n"),
                                          **({"options": spec["options"]} if spec.get("options") else {}))
    check_items(task, df.iter_rows(named=True))
    return df.with_columns(pl.lit(task).alias("task")), {"benchmark": spec.get("benchmark", task), **info}
