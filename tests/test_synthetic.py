import random
import re

import pytest

from lrmrepro.models.train import TrainConfig, build_corpus
from lrmrepro.tasks import synthetic
from lrmrepro.tasks.heldout import training_questions
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
        expr = re.fullmatch(r"(?:Compute|What is|Evaluate|Find the value of) ([0-9 +-]+)[.?]", ex.question).group(1)
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
        lines = [ln for ln in ex.reasoning.split("\n") if not ln.startswith(("Hmm", "Recall", "Wait", "Let me"))]
        assert lines[0] in ex.question  # the wake-up time
        person = lines[0].split()[0]
        for i, ln in enumerate(lines[1:-2]):
            assert ln.startswith(f"({'ABCD'[i]}) ") and ln[4:] in ex.question
        gap = lines[-2]
        assert gap.startswith(f"({letter}) ") and gap.endswith((f", not {start}: {person} was free from {start} to {end}.",
                                                                 f", not {start}: nobody saw {person} from {start} to {end}."))
        assert gap[4:].split(", not ")[0] in ex.question and end in gap.split(", not ")[0]
        assert lines[-1] in (f"So the answer is {ex.gold}.", f"So the free slot is {ex.gold}.")
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
        name = [ln for ln in ex.reasoning.split("\n") if not ln.startswith("Recall")][0].split(" is a ")[0]
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
    train = {"train_per_task": 300, "seed": 0, "task_weights": {}}
    seen = training_questions(train, ["arith"])["arith"]
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


# --- near-ties by construction: the choice points of the traces
def _paths(task: str, seed: int):
    """Every trace of one question: walk all choice paths (depth first), the question fixed by the seed."""
    world = synthetic.World(0)
    train_people, _ = world.split_people()

    def run(path):
        rng = random.Random(seed)
        ch = synthetic.Chooser(path=path)
        if task == "multihop":
            return synthetic.multihop(rng, world, train_people, chooser=ch)
        if task == "logic":
            return synthetic.logic(rng, chooser=ch)
        return getattr(synthetic, task)(rng, chooser=ch)

    out, todo = [], [[]]
    while todo:
        prefix = todo.pop()
        ex = run(prefix)
        taken = [i for _, _, i in ex.choices]
        assert taken[: len(prefix)] == prefix
        out.append(ex)
        for pos in range(len(prefix), len(ex.choices)):
            for alt in range(1, ex.choices[pos][1]):
                todo.append(taken[:pos] + [alt])
    return out


_EQ = re.compile(r"(\d+) ([+-]) (\d+) (?:=|gives) (\d+)")


def _check_arith_line(line: str) -> None:
    for a, op, b, c in _EQ.findall(line):
        a, b, c = int(a), int(b), int(c)
        if line.startswith("Quick guess"):
            assert c != (a + b if op == "+" else a - b) and line.endswith("Wait, that is wrong.")
        elif line.startswith("Let me check"):
            assert c == (a + b if op == "+" else a - b)
        else:
            assert c == (a + b if op == "+" else a - b), line


@pytest.mark.parametrize("task", synthetic.TASKS)
def test_every_path_of_a_trace_ends_in_the_right_answer(task):
    for seed in range(6):
        paths = _paths(task, seed)
        assert len({p.question for p in paths}) == 1 and len({p.gold for p in paths}) == 1
        assert len({p.reasoning for p in paths}) == len(paths) >= 8  # every choice makes another trace
        gold = paths[0].gold
        for ex in paths:
            last = ex.reasoning.split("\n")[-1]
            assert last.endswith(f" {gold}.") and ex.completion.endswith("\\boxed{" + gold + "}")
            if task == "arith":
                for line in ex.reasoning.split("\n"):
                    _check_arith_line(line)
            if task == "timeline":
                assert f"({gold.strip('()')}) " in ex.reasoning


@pytest.mark.parametrize("task", synthetic.TASKS)
def test_choice_points_are_balanced(task):
    """Each alternative of a choice point is taken with probability 1/k in the training data (within 5 binomial
    standard deviations over 4,000 traces)."""
    counts: dict[tuple[str, int], list[int]] = {}
    for ex in synthetic.make_split(task, 4000, seed=0, split="train"):
        for name, k, i in ex.choices:
            counts.setdefault((name, k), [0] * k)[i] += 1
    assert len(counts) >= 3
    for (name, k), c in counts.items():
        n = sum(c)
        sd = (n * (1 / k) * (1 - 1 / k)) ** 0.5
        assert all(abs(x - n / k) < 5 * sd for x in c), (task, name, c)


@pytest.mark.parametrize("task", synthetic.TASKS)
def test_behaviour_episodes_are_labelled_by_the_importance_stage(task):
    """The episodes carry the cue phrases the importance stage labels; each task shows at least three of the four
    behaviours, and all four appear across the tasks."""
    from lrmrepro.importance.behaviours import BEHAVIOURS, rule_label, split_segments

    seen = set()
    for ex in synthetic.make_split(task, 200, seed=0, split="train"):
        seen |= {rule_label(seg.text) for seg in split_segments(ex.reasoning)}
    assert len(set(BEHAVIOURS) & seen) >= 3, seen
    if task == "arith":  # the backtracking slip and the check are arith's
        assert {"backtracking", "example_testing", "uncertainty_estimation", "adding_knowledge"} <= seen


@pytest.mark.parametrize("task", synthetic.TASKS)
def test_alternatives_part_at_a_token_boundary(task):
    """The embedded tokenizer splits sibling traces identically up to where they part, so a choice is one
    decision between first tokens (a clean near-tie), not a merge across the shared prefix."""
    from lrmrepro.models.tokenizer import train_tokenizer
    from lrmrepro.prompts import RAW_SUFFIX, user_message

    corpus = [user_message(e.question) + RAW_SUFFIX + e.completion
              for t in synthetic.TASKS for e in synthetic.make_split(t, 300, seed=1, split="train")]
    tok = train_tokenizer(corpus, 640, whole_tokens=synthetic.TIMELINE_TOKENS)
    paths = _paths(task, 0)
    checked = 0
    for a, b in zip(paths, paths[1:]):
        x, y = a.completion, b.completion
        cut = next(i for i, (p, q) in enumerate(zip(x, y)) if p != q)
        tx = tok(x, add_special_tokens=False, return_offsets_mapping=True)
        ty = tok(y, add_special_tokens=False, return_offsets_mapping=True)
        shared_x = [t for t, (s, e) in zip(tx["input_ids"], tx["offset_mapping"]) if e <= cut]
        shared_y = [t for t, (s, e) in zip(ty["input_ids"], ty["offset_mapping"]) if e <= cut]
        assert shared_x == shared_y
        assert tx["offset_mapping"][len(shared_x)][0] == cut or x[cut - 1] == " ", (x[max(0, cut - 20):cut + 20],
                                                                                   y[max(0, cut - 20):cut + 20])
        checked += 1
    assert checked >= 7


def test_alternatives_trace_the_same_question_along_each_other_choice():
    world = synthetic.World(0)
    for task in synthetic.TASKS:
        ex = synthetic.make_split(task, 5, seed=2, split="train", world=world)[3]
        alts = synthetic.alternatives(ex, world)
        assert [j for j, _ in alts] == list(range(len(ex.choices)))
        for j, others in alts:
            assert len(others) == ex.choices[j][1] - 1
            for other in others:
                assert other.question == ex.question and other.gold == ex.gold
                assert other.reasoning != ex.reasoning
                assert [i for _, _, i in other.choices[:j]] == [i for _, _, i in ex.choices[:j]]


def test_choice_targets_find_each_alternatives_first_token():
    from lrmrepro.models.train import choice_targets

    ids = [5, 6, 7, 8, 9]
    alternatives = [[[5, 6, 1, 8, 9]], [[5, 6, 7, 8, 2], [5, 6, 7, 8, 3, 4]], [[5, 6, 7, 8, 9, 10]]]
    # the third "alternative" only extends the trace: no token where they part inside both, so no target
    assert choice_targets(ids, alternatives) == [(2, [7, 1]), (4, [9, 2, 3])]


def test_soft_targets_are_met_by_equal_probabilities():
    """At a choice point the loss is the cross-entropy with the uniform distribution over the alternatives: it is
    lowest when the model gives them equal probability, whichever one the trace took."""
    import torch

    from lrmrepro.models.train import _loss

    labels = torch.tensor([[-100, 1, 2]])
    soft = (torch.tensor([0]), torch.tensor([2]), torch.tensor([[2, 3]]), torch.tensor([[0.5, 0.5]]))
    labels_soft = labels.clone()
    labels_soft[0, 2] = -100

    def loss(p2, p3):
        logits = torch.full((1, 3, 5), -20.0)
        logits[0, 0, 1] = 0.0  # position 0 predicts token 1 (hard)
        logits[0, 1, 2], logits[0, 1, 3] = float(torch.tensor(p2).log()), float(torch.tensor(p3).log())
        return float(_loss(logits, labels_soft, soft))

    assert loss(0.5, 0.5) < loss(0.6, 0.4) < loss(0.9, 0.1)
    assert abs(loss(0.6, 0.4) - loss(0.4, 0.6)) < 1e-6  # symmetric: the path taken does not matter


def test_arith_questions_vary_in_wording_and_length():
    """Prompt lengths must vary within a task: on the CPU backend a batch's padding is what makes runtime
    configurations differ (docs/default-model.md); one wording of one length would give identical runs."""
    exs = synthetic.make_split("arith", 200, seed=0, split="eval")
    leads = {ex.question.split()[0] for ex in exs}
    assert leads == {"Compute", "What", "Evaluate", "Find"}
    assert len({len(ex.question) for ex in exs}) >= 6
