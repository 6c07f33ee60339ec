"""The record of a task: every fact about a benchmark or a synthetic generator in one place.

A benchmark's record sits beside its loader function (:data:`lrmrepro.tasks.loaders.BENCHMARKS`), a generator's
beside its generator (:data:`lrmrepro.tasks.synthetic.GENERATORS`); :mod:`lrmrepro.tasks.registry` is the union
that the configuration, task preparation, the schema test and the docs test read.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

#: a task's default ``max_new_tokens`` unless its record says otherwise (the schema's default before the records)
DEFAULT_MAX_NEW_TOKENS = 128
#: what a task stands for in the weight-count finding ("" : neither)
SKILLS = ("", "knowledge", "reasoning")


@dataclasses.dataclass(frozen=True)
class TaskRecord:
    """One benchmark (``kind="benchmark"``) or synthetic generator (``kind="synthetic"``).

    - ``answer_format``: a key of :data:`lrmrepro.scoring.formats.FORMATS` (every item's format; gold answers are
      checked against it when the items are built);
    - ``build``: benchmark: ``(rows, options) -> item dicts`` (the loader function); synthetic:
      ``(split, world) -> draw(rng, chooser) -> Example``;
    - ``prompt_style``: the default of ``tasks.<name>.prompt_style`` (:data:`lrmrepro.prompts.PROMPT_STYLES`);
    - ``max_new_tokens``: the default of ``tasks.<name>.max_new_tokens``;
    - ``scorer_options``: defaults of the item metadata the answer format reads (e.g. ``letters`` for
      ``option_letter``), written into every item's metadata when not empty;
    - benchmarks: ``hub``, ``split``, ``config`` (the default dataset version: ``tasks.<name>.hub``/``split``/
      ``config`` override them), ``sample`` (``n`` is the size of a seeded random sample, default ``sample``,
      instead of the first ``n`` items), ``hub_options`` (``options -> extra load_dataset arguments``);
    - ``like``: what it stands for (docs);
    - ``skill``: ``knowledge`` or ``reasoning`` where the task stands for one in finding (1) of "When Reasoning
      Meets Compression" (the weight-count table and figure: :meth:`lrmrepro.study.Study.task_groups`), else empty.
    """

    name: str
    kind: str
    answer_format: str
    build: Callable[..., Any]
    prompt_style: str = "chat_boxed"
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    scorer_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    hub: str | None = None
    split: str | None = None
    config: str | None = None
    sample: int | None = None
    hub_options: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    like: str = ""
    skill: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ("benchmark", "synthetic"):
            raise ValueError(f"task record {self.name!r}: kind {self.kind!r}; allowed: benchmark, synthetic")
        if self.kind == "benchmark" and not (self.hub and self.split):
            raise ValueError(f"benchmark record {self.name!r} needs a default hub id and split")
        if self.skill not in SKILLS:
            raise ValueError(f"task record {self.name!r}: skill {self.skill!r}; allowed: {', '.join(SKILLS)}")

    def item_metadata(self, metadata: dict[str, Any]) -> dict[str, Any]:
        """An item's metadata with the record's ``scorer_options`` as defaults (unchanged when there are none)."""
        return {**self.scorer_options, **metadata} if self.scorer_options else metadata
