import random
import re

import pytest

from lrmrepro.models.train import TrainConfig, build_corpus
from lrmrepro.models.train_config import training_questions
from lrmrepro.tasks import synthetic
from lrmrepro.tasks.prepare import synthetic_items


@pytest.mark.parametrize("task", synthetic.TASKS)
def test_generators_are_deterministic(task):
    a = synthetic.make_split(task, 20, seed=3, split="eval")
    b = synthetic.make_split(task, 20, seed=3, split="eval")
    c = synthetic.make_split(task, 20, seed=4, split="eval")
    assert a == b
    assert [e.question for e in a] != [e.question for e in c]


def test_arith_gold_is_left_to_right_value():
    for ex in synthetic.make_split("arith", 200, seed=0, split="train"):
        expr = ex.question.removeprefix("Compute ").removesuffix(".")
        tokens = expr.split()
        value = int(tokens[0])
        for op, k in zip(tokens[1::2], tokens[2::2]):
            value = value + int(k) if op == "+" else value - int(k)
        assert ex.gold == str(value)
        assert ex.completion.endswith("\\boxed{" + ex.gold + "}")


def test_timeline_answer_is_the_free_slot():
    for ex in synthetic.make_split("timeline", 100, seed=1, split="eval"):
        letter = ex.gold.strip("()")
        options = ex.question.split("Options: ")[1]
        slot = re.search(r"\(" + letter + r"\) (\d+[ap]m to \d+[ap]m)", options).group(1)
        assert f"From {slot}," not in ex.question  # nobody saw the person in the answer slot
        assert ex.completion.endswith("\\boxed{" + ex.gold + "}")


def test_timeline_trace_walks_the_day_up_to_the_gap():
    """Each line before the gap is a sighting of the question, word for word, labelled with its slot's option;
    the gap line compares the next start with the last end and names the answer's slot."""
    letters = {"A": 0, "B": 0, "C": 0, "D": 0}
    for ex in synthetic.make_split("timeline", 200, seed=3, split="train"):
        options = ex.question.split("Options: ")[1]
        hours = re.findall(r"\((\w)\) (\d+[ap]m) to (\d+[ap]m)", options)
        assert [h[0] for h in hours] == list("ABCD")
        assert all(h[2] == n[1] for h, n in zip(hours, hours[1:]))  # the options are the day's slots, in order
        letter = ex.gold.strip("()")
        letters[letter] += 1
        _, start, end = hours["ABCD".index(letter)]
        lines = [ln for ln in ex.reasoning.split("\n") if not ln.startswith("Hmm")]
        assert lines[0] in ex.question  # the wake-up time
        for i, ln in enumerate(lines[1:-2]):
            assert ln.startswith(f"({'ABCD'[i]}) ") and ln[4:] in ex.question
        gap = lines[-2]
        assert gap.startswith(f"({letter}) ") and gap.endswith(f", not {start}: " + lines[0].split()[0]
                                                              + f" was free from {start} to {end}.")
        assert gap[4:].split(", not ")[0] in ex.question and end in gap.split(", not ")[0]
        assert lines[-1] == f"So the answer is {ex.gold}."
    assert min(letters.values()) > 30  # the free slot is uniform over the options


def test_logic_labels_follow_from_premises():
    counts = {"True": 0, "False": 0, "Uncertain": 0}
    for ex in synthetic.make_split("logic", 300, seed=2, split="eval"):
        counts[ex.gold] += 1
        conclusion = ex.question.split("Conclusion: ")[1].split(" Is the conclusion")[0]
        if ex.gold == "False":
            assert " not " in conclusion
    assert min(counts.values()) > 50


def test_logic_subjects_are_fresh_names_never_multihop_people():
    """``logic`` subjects are two-syllable names like the ``multihop`` people (so the model learns to copy names
    of that shape) but never one of them: held-out people appear in training only in their facts."""
    world = synthetic.World(0)
    names = set()
    for ex in synthetic.make_split("logic", 300, 0, "train", world=world):
        name = ex.reasoning.split(" is a ")[0]
        assert re.fullmatch(r"[A-Z][a-z]+", name) and name in ex.question
        names.add(name)
    assert len(names) > 100 and not names & set(world.people)


def test_multihop_eval_people_never_asked_in_training():
    world = synthetic.World(0)
    train_people, eval_people = world.split_people()
    assert not set(train_people) & set(eval_people)
    train_q = " ".join(e.question for e in synthetic.make_split("multihop", 500, 0, "train", world=world))
    for ex in synthetic.make_split("multihop", 40, 0, "eval", world=world):
        person = next(p for p in eval_people if p in ex.question)
        assert person not in train_q
        # ...but the facts about them are in the training corpus
        assert f"{person} was born in {world.born_in[person]}." in world.facts()


def test_eval_items_exclude_training_questions():
    train = {"train_per_task": 300, "seed": 0}
    seen = training_questions(TrainConfig.from_dict({**train, "tasks": ["arith"]}))["arith"]
    items = synthetic_items("arith", {"source": "synthetic", "n": 50}, train)
    assert items.height == 50
    assert not set(items.get_column("question").to_list()) & seen
    assert set(items.get_column("answer_format").to_list()) == {"boxed_int"}


def test_corpus_contains_facts_and_both_prompt_styles():
    cfg = TrainConfig(train_per_task=20, fact_repeats=2)
    docs = build_corpus(cfg)
    styles = {d["style"] for d in docs}
    assert styles == {"chat_boxed", "raw_think", ""}
    assert any("was born in" in d["completion"] for d in docs if d["style"] == "")


def test_train_config_rejects_sizes_not_multiple_of_128():
    with pytest.raises(ValueError, match="multiple of 128"):
        TrainConfig(hidden_size=100)
    with pytest.raises(ValueError, match="unknown train keys"):
        TrainConfig.from_dict({"hiden_size": 128})


def test_unknown_task_named_in_error():
    with pytest.raises(ValueError, match="allowed: arith, timeline, logic, multihop"):
        synthetic.make_split("algebra", 1, 0, "eval")


def test_timeline_hours_and_option_markers_are_whole_tokens():
    """The embedded tokenizer keeps "12pm" and "(A)" whole (one match-and-copy step each), longest match first
    ("12pm" is not "1" + "2pm"), digits elsewhere one per token, and decoding gives the text back."""
    from lrmrepro.models.tokenizer import train_tokenizer

    examples = synthetic.make_split("timeline", 50, seed=0, split="train")
    tok = train_tokenizer([e.question + e.completion for e in examples] + ["Compute 12 + 7."], 320,
                          whole_tokens=synthetic.TIMELINE_TOKENS)
    pieces = tok.convert_ids_to_tokens(tok("(A) 12pm to 1pm, 17", add_special_tokens=False)["input_ids"])
    assert "(A)" in pieces and "12pm" in pieces and "1pm" in pieces
    assert "1" in pieces and "7" in pieces  # "17" outside an hour: one token per digit
    text = examples[0].question
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text
