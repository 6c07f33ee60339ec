"""Configuration of the embedded default model's training (its defaults are the schema's ``train`` defaults; a test
checks). Which examples it trains on is :mod:`lrmrepro.tasks.heldout`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..tasks import heldout, synthetic


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    hidden_size: int = 128
    intermediate_size: int = 512
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2
    vocab_size: int = 640
    train_per_task: int = 4000
    fact_repeats: int = 40
    facts_per_doc: int = 6
    steps: int = 4000
    batch_size: int = 16
    lr: float = 4e-3
    warmup: int = 100
    weight_decay: float = 0.01
    threads: int = 2
    tasks: tuple[str, ...] = synthetic.TASKS
    # training examples of task t: train_per_task × task_weights.get(t, 1) (distinct examples, not repeats)
    task_weights: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key in ("hidden_size", "intermediate_size"):
            if getattr(self, key) % 128:
                raise ValueError(f"train.{key} must be a multiple of 128 (group-128 quantization), got {getattr(self, key)}")
        if self.hidden_size % self.num_heads:
            raise ValueError("train.hidden_size must be divisible by train.num_heads")
        if self.num_heads % self.num_kv_heads:
            raise ValueError("train.num_heads must be divisible by train.num_kv_heads")
        for task, weight in self.task_weights.items():
            if task not in synthetic.TASKS:
                raise ValueError(f"train.task_weights.{task}: unknown task; allowed: {', '.join(synthetic.TASKS)}")
            if not isinstance(weight, int) or weight < 1:
                raise ValueError(f"train.task_weights.{task} must be an integer >= 1, got {weight!r}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        d = dict(d)
        if "tasks" in d:
            d["tasks"] = tuple(d["tasks"])
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown train keys {sorted(unknown)}; allowed: {sorted(cls.__dataclass_fields__)}")
        return cls(**d)

    def training_examples(self) -> dict[str, list[synthetic.Example]]:
        """The examples this configuration trains on, per task (:func:`lrmrepro.tasks.heldout.training_examples`)."""
        return heldout.training_examples(asdict(self), self.tasks)
