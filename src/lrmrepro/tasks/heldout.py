"""The embedded default model's training examples of the synthetic tasks, and so the questions the evaluation items
of a synthetic task must leave out (evaluation never tests memorised items).

``train`` is the configuration's ``train`` section (or the fields of :class:`lrmrepro.models.train_config.TrainConfig`):
of it, only ``seed``, ``train_per_task`` and ``task_weights`` decide the examples. The model's trainer
(:mod:`lrmrepro.models.train`) and the task preparation (:mod:`lrmrepro.tasks.prepare`) both take them from here.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from . import synthetic


def n_examples(train: Mapping[str, Any], task: str) -> int:
    """Training examples of ``task``: ``train_per_task`` × the task's weight (default 1); distinct, not repeats."""
    return int(train["train_per_task"]) * int(train["task_weights"].get(task, 1))


def training_examples(train: Mapping[str, Any], tasks: Iterable[str]) -> dict[str, list[synthetic.Example]]:
    """The training examples of each of ``tasks``, all drawn in the one synthetic world of ``train["seed"]``."""
    seed = int(train["seed"])
    world = synthetic.World(seed)
    return {t: synthetic.make_split(t, n_examples(train, t), seed, "train", world=world) for t in tasks}


def training_questions(train: Mapping[str, Any], tasks: Iterable[str]) -> dict[str, frozenset[str]]:
    """The question texts seen in training, per task: evaluation items must avoid them."""
    return {t: frozenset(e.question for e in exs) for t, exs in training_examples(train, tasks).items()}
