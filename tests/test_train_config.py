"""The embedded model's training configuration: task weights scale a task's training examples."""

import pytest

from lrmrepro.models.train_config import TrainConfig, training_examples, training_questions


def test_task_weight_multiplies_distinct_training_examples():
    cfg = TrainConfig.from_dict({"train_per_task": 10, "task_weights": {"timeline": 3}, "tasks": ["arith", "timeline"]})
    exs = training_examples(cfg)
    assert len(exs["arith"]) == 10 and len(exs["timeline"]) == 30
    assert len({e.question for e in exs["timeline"]}) == 30
    # the unweighted examples are a prefix: weighting one task does not change the others' data
    plain = training_examples(TrainConfig.from_dict({"train_per_task": 10, "tasks": ["timeline"]}))
    assert [e.question for e in exs["timeline"][:10]] == [e.question for e in plain["timeline"]]
    # the held-out filter sees every weighted training question
    assert training_questions(cfg)["timeline"] == frozenset(e.question for e in exs["timeline"])


@pytest.mark.parametrize("weights, message", [
    ({"algebra": 2}, "train.task_weights.algebra: unknown task; allowed: arith, timeline, logic, multihop"),
    ({"timeline": 0}, "train.task_weights.timeline must be an integer >= 1"),
])
def test_bad_task_weight_named(weights, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.").replace("(", r"\(")):
        TrainConfig.from_dict({"task_weights": weights})
