"""The embedded model's training configuration: task weights scale a task's training examples."""

from dataclasses import asdict

import pytest

from lrmrepro.config import load_schema
from lrmrepro.models.train_config import TrainConfig
from lrmrepro.tasks.heldout import training_questions


def test_task_weight_multiplies_distinct_training_examples():
    cfg = TrainConfig.from_dict({"train_per_task": 10, "task_weights": {"timeline": 3}, "tasks": ["arith", "timeline"]})
    exs = cfg.training_examples()
    assert len(exs["arith"]) == 10 and len(exs["timeline"]) == 30
    assert len({e.question for e in exs["timeline"]}) == 30
    # the unweighted examples are a prefix: weighting one task does not change the others' data
    plain = TrainConfig.from_dict({"train_per_task": 10, "tasks": ["timeline"]}).training_examples()
    assert [e.question for e in exs["timeline"][:10]] == [e.question for e in plain["timeline"]]
    # the held-out filter sees every weighted training question
    assert training_questions(asdict(cfg), ["timeline"])["timeline"] == frozenset(e.question for e in exs["timeline"])


def test_defaults_are_the_schemas():
    """TrainConfig (the trainer's library API) and the schema's `train` section default alike."""
    schema = load_schema()["properties"]["train"]["properties"]
    defaults = {k: v for k, v in asdict(TrainConfig()).items() if k != "tasks"}
    assert defaults == {k: schema[k]["default"] for k in defaults}


@pytest.mark.parametrize("weights, message", [
    ({"algebra": 2}, "train.task_weights.algebra: unknown task; allowed: arith, timeline, logic, multihop"),
    ({"timeline": 0}, "train.task_weights.timeline must be an integer >= 1"),
])
def test_bad_task_weight_named(weights, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.").replace("(", r"\(")):
        TrainConfig.from_dict({"task_weights": weights})
