"""Every task the workflow knows: the synthetic generators' records (:data:`lrmrepro.tasks.synthetic.GENERATORS`)
and the benchmarks' (:data:`lrmrepro.tasks.loaders.BENCHMARKS`), one :class:`~lrmrepro.tasks.record.TaskRecord`
each. The configuration's allowed generator and benchmark names and its per-task defaults (``prompt_style``,
``max_new_tokens``) come from here (:mod:`lrmrepro.config`); ``tests/test_registries.py`` checks that the schema's
enums and the task table of docs/tasks.md say the same."""

from __future__ import annotations

from typing import Any, Mapping

from .loaders import BENCHMARKS
from .record import TaskRecord
from .synthetic import GENERATORS

__all__ = ["BENCHMARKS", "GENERATORS", "TaskRecord", "benchmark_names", "generator_names", "record_of"]


def generator_names() -> tuple[str, ...]:
    return tuple(GENERATORS)


def benchmark_names() -> tuple[str, ...]:
    return tuple(BENCHMARKS)


def record_of(name: str, spec: Mapping[str, Any]) -> TaskRecord | None:
    """The record of configured task ``name`` (``spec`` = ``tasks.<name>``): its ``generator`` (synthetic) or
    ``benchmark`` (default: the task's name); None when it names none of them."""
    if spec["source"] == "synthetic":
        return GENERATORS.get(spec.get("generator", name))
    return BENCHMARKS.get(spec.get("benchmark", name))
