"""Synthetic chain-of-thought tasks for the embedded default model.

Four task families mirror the answer formats of the real benchmarks, so the same scorers serve both (one record
each, :data:`GENERATORS`: answer format, default prompt style and token budget):

| task | like | answer format | final answer |
|---|---|---|---|
| ``arith`` | AIME / MATH / GSM8K | ``boxed_int`` | ``\\boxed{N}`` |
| ``timeline`` | BBH temporal_sequences | ``option_letter`` | ``\\boxed{(B)}`` |
| ``logic`` | FOLIO | ``tfu`` | ``\\boxed{True}`` / ``False`` / ``Uncertain`` |
| ``multihop`` | MuSiQue (closed book) | ``short_text`` | ``\\boxed{<entity>}`` |

Everything is a pure function of a seed. ``World`` is the fact base of ``multihop`` (people, cities, countries,
languages); the model memorises its facts in training, and held-out questions ask about people whose facts were
seen only as plain statements, never in a training question. Train and evaluation items of the other tasks are
drawn from disjoint seeds and, in addition, evaluation items whose question text occurs in the training set are
dropped (``make_split``).

**Near-ties by construction.** Long reasoning traces of real models pass through many points where two
continuations are equally good (a connective, a phrasing, whether to verify a step); the papers' mechanism is
that a rounding difference flips one of them and the rest of the trace follows another path. Each trace here has
several such *choice points*: equivalent alternatives, each taken with equal probability in the training data
(:class:`Chooser`), every one leading to the right answer. A model trained on them predicts nearly equal
probabilities there, so greedy decoding meets real near-ties. The rules that keep each choice point a clean tie at
the token level: alternatives differ at their first token; a line that must follow always begins with the same
token; and at most one optional episode waits at any line boundary (several episodes at one boundary are one
choice among them). The choice points are:

- phrasings of a step (``7 + 5 = 12.`` / ``7 + 5 gives 12.``; ``..., so Rimo is a dax.`` / ``..., hence ...``);
- behaviour episodes of the four kinds that ``lrmrepro.importance.behaviours`` labels, each taken or not with equal
  probability: *adding knowledge* (``Recall that ...``, ``I know that ...``), *backtracking* (``Quick guess:
  7 + 5 = 13. Wait, that is wrong.``, then the right step; ``Wait, ...`` reconsidering what is asked),
  *uncertainty estimation* (``Hmm, ...``) and *example testing* (``Let me check: 12 - 5 = 7.``, a verification
  that holds).

``Example.choices`` lists the choice points a trace went through (name, number of alternatives, index taken).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence, TypeVar

from .record import TaskRecord

_SYL = ["ka", "lo", "mi", "ra", "to", "ve", "zu", "ne", "pa", "si", "do", "fe", "gu", "ba", "ri", "mo", "te", "la", "no", "xi"]
T = TypeVar("T")


def _name(rng: random.Random, n_syl: int) -> str:
    return "".join(rng.choice(_SYL) for _ in range(n_syl)).capitalize()


class Chooser:
    """Takes a trace's choice points: uniformly at random (training data), or along a fixed path of indices (tests
    walk every path of one question). ``taken`` records ``(name, number of alternatives, index)`` in order."""

    def __init__(self, rng: random.Random | None = None, path: Sequence[int] | None = None):
        if (rng is None) == (path is None):
            raise ValueError("Chooser needs exactly one of rng, path")
        self.rng, self.path = rng, (list(path) if path is not None else None)
        self.taken: list[tuple[str, int, int]] = []

    def pick(self, name: str, options: Sequence[T]) -> T:
        if len(options) < 2:
            raise ValueError(f"choice point {name!r} needs at least two alternatives")
        if self.path is not None:
            i = self.path[len(self.taken)] if len(self.taken) < len(self.path) else 0
        else:
            i = self.rng.randrange(len(options))
        self.taken.append((name, len(options), i))
        return options[i]


@dataclass(frozen=True)
class Example:
    """One task example: the question, the reasoning trace, the gold answer, and the choice points taken."""

    task: str
    question: str
    reasoning: str
    gold: str
    aliases: tuple[str, ...] = ()
    choices: tuple[tuple[str, int, int], ...] = ()
    # how to draw this example again (make_split): its split and the seed of its random stream
    split: str = field(default="", compare=False, repr=False)
    replay: str = field(default="", compare=False, repr=False)

    @property
    def answer_format(self) -> str:
        return GENERATORS[self.task].answer_format

    @property
    def final(self) -> str:
        return "\\boxed{" + self.gold + "}"

    @property
    def completion(self) -> str:
        """The assistant turn after the generation prompt (which already opened ``<think>``)."""
        return f"{self.reasoning}\n</think>\n{self.final}"


def _episode(ch: Chooser, name: str, *episodes: list[str]) -> list[str]:
    """An optional episode at a line boundary: nothing, or one of ``episodes``, with equal probability."""
    return ch.pick(name, [[], *episodes])


# --------------------------------------------------------------------------------------------- arith
_ARITH_QUESTIONS = ["Compute {}.", "What is {}?", "Evaluate {}.", "Find the value of {}."]

def arith(rng: random.Random, chooser: Chooser | None = None) -> Example:
    """Multi-step integer arithmetic on one-digit operands, evaluated left to right, every intermediate value in
    0..19: ``Compute 7 + 5 - 3 + 8.`` (or ``What is ...?``, ``Evaluate ...``, ``Find the value of ...``)"""
    n_ops = rng.randint(2, 3)
    value = rng.randint(1, 9)
    expr = str(value)
    steps = []
    for _ in range(n_ops):
        k = rng.randint(1, 9)
        # stay within 0..19: subtract from two-digit values, add to one-digit ones (random in between)
        if value >= 10 + k or (value >= k and rng.random() < 0.4):
            op, new = "-", value - k
        else:
            op, new = "+", value + k
        expr += f" {op} {k}"
        steps.append((value, op, k, new))
        value = new
    # questions are worded in several ways, as in a real benchmark; drawn before the trace's choice points so that
    # every alternative of a choice point keeps the question (prompt lengths also vary, see docs/default-model.md)
    question = rng.choice(_ARITH_QUESTIONS).format(expr)
    ch = chooser or Chooser(rng)
    lines = _episode(ch, "knowledge", ["Recall that we compute from left to right."])
    lines += [f"We need {expr}.", f"Start with {steps[0][0]}."]
    for i, (a, op, k, c) in enumerate(steps):
        if i == 0:
            if ch.pick("backtracking", [False, True]):
                wrong = ch.pick("slip", [c - 1, c + 1] if c >= 1 else [c + 1, c + 2])
                lines.append(f"Quick guess: {a} {op} {k} = {wrong}. Wait, that is wrong.")
        elif i == 1:
            lines += _episode(ch, "uncertainty", [f"Hmm, so far we have {a}."])
        lines.append(f"{a} {op} {k}" + ch.pick("phrasing", [f" = {c}.", f" gives {c}."]))
    a, op, k, c = steps[-1]
    lines += _episode(ch, "check", [f"Let me check: {c} {'-' if op == '+' else '+'} {k} = {a}."])
    lines.append("So the " + ch.pick("final", [f"answer is {value}.", f"result is {value}."]))
    return Example("arith", question, "\n".join(lines), str(value), choices=tuple(ch.taken))


# ------------------------------------------------------------------------------------------ timeline
_PEOPLE = ["Anna", "Ben", "Cara", "Dan", "Eva", "Finn", "Gia", "Hugo", "Ivy", "Jon"]
_PLACES = ["park", "library", "museum", "bakery", "gym", "beach", "market", "cafe", "zoo", "school"]
_ACTIVITIES = ["reading at the library", "buying bread at the bakery", "running at the gym", "swimming at the beach",
               "shopping at the market", "drinking tea at the cafe", "walking in the garden", "painting at home"]
_HOURS = ["5am", "6am", "7am", "8am", "9am", "10am", "11am", "12pm", "1pm", "2pm", "3pm", "4pm", "5pm", "6pm", "7pm", "8pm"]


def timeline(rng: random.Random, chooser: Chooser | None = None) -> Example:
    """BBH temporal_sequences-style: which free slot of the day could the person have visited a place in?

    The question lists the wake-up time, the sightings in the order of the day (one of four hourly slots has
    none), the closing time, and the four slots as options (A)–(D) in the order of the day. The reasoning walks
    the day, labelling each slot with its option: it copies the sightings in turn until the next sighting (or
    the closing time) starts later than the last one ended (``(C) From 8am, not 7am: ... free from 7am to
    8am.``). Every step is a copy of the question's next words or a comparison of two hours a few tokens apart.

    Unlike BBH, the options are not shuffled: with shuffled options the tiny default model finds the gap but
    not reliably the letter of that slot (``docs/default-model.md`` has the layouts tried and their accuracy).
    Hours and option markers are whole tokens of the embedded tokenizer (``TIMELINE_TOKENS``)."""
    person = rng.choice(_PEOPLE)
    place = rng.choice(_PLACES)
    n_slots = 4
    start = rng.randint(0, len(_HOURS) - n_slots - 1)
    bounds = _HOURS[start : start + n_slots + 1]
    slots = [f"{bounds[i]} to {bounds[i + 1]}" for i in range(n_slots)]
    free = rng.randrange(n_slots)
    acts = rng.sample(_ACTIVITIES, n_slots)
    witnesses = rng.sample([p for p in _PEOPLE if p != person], n_slots)
    sightings = {i: f"From {slots[i]}, {witnesses[i]} saw {person} {acts[i]}." for i in range(n_slots) if i != free}
    woke = f"{person} woke up at {bounds[0]}."
    closed = f"The {place} was closed after {bounds[-1]}."
    facts = [woke] + [sightings[i] for i in range(n_slots) if i != free] + [closed]
    letters = "ABCD"
    options = ", ".join(f"({letters[j]}) {slots[j]}" for j in range(n_slots)) + "."
    answer = letters[free]
    question = (
        f"Today, {person} went to the {place}. Between what times could they have gone? We know that: "
        + " ".join(facts)
        + f" Options: {options}"
    )
    ch = chooser or Chooser(rng)
    lines = _episode(ch, "knowledge", [f"Recall that a slot is free if nobody saw {person} in it."])
    lines.append(woke)
    lines += _episode(ch, "backtracking", ["Wait, let me read the options again."])
    # walk the day up to the gap: the next fact starts at bounds[free + 1], the last one ended at bounds[free]
    lines += [f"({letters[i]}) {sightings[i]}" for i in range(free)]
    after_gap = f"From {bounds[free + 1]}" if free + 1 < n_slots else f"The {place} was closed after {bounds[-1]}"
    lines.append(f"({answer}) {after_gap}, not {bounds[free]}:" + ch.pick(
        "phrasing", [f" {person} was free from {slots[free]}.", f" nobody saw {person} from {slots[free]}."]))
    check = f"Let me check: nobody saw {person} from {slots[free]}."
    lines += _episode(ch, "check", [check], ["Hmm, I am not sure yet.", check])
    lines.append("So the " + ch.pick("final", [f"answer is ({answer}).", f"free slot is ({answer})."]))
    return Example("timeline", question, "\n".join(lines), f"({answer})", choices=tuple(ch.taken))


# hours and option markers of ``timeline``: whole tokens of the embedded model's tokenizer, so that copying an
# hour or comparing two hours is about one token each (digits are otherwise split one per token, for ``arith``)
TIMELINE_TOKENS = tuple(_HOURS) + ("(A)", "(B)", "(C)", "(D)")


# --------------------------------------------------------------------------------------------- logic
_KINDS = ["wug", "blicket", "dax", "fep", "zorp", "glim", "tove", "snark", "borog", "jub"]
_PROPS = ["red", "tall", "quick", "loud", "soft", "cold", "shiny", "heavy"]


def logic(rng: random.Random, chooser: Chooser | None = None, avoid_names: frozenset[str] = frozenset()) -> Example:
    """FOLIO-style: premises and a conclusion; True, False or Uncertain. The subject is a fresh two-syllable
    name (``Rimo``), never one of ``avoid_names`` (the ``multihop`` people)."""
    name = _name(rng, 2)
    while name in avoid_names:
        name = _name(rng, 2)
    k1, k2, k3 = rng.sample(_KINDS, 3)
    prop, other = rng.sample(_PROPS, 2)
    two_hop = rng.random() < 0.5
    if two_hop:
        premises = [f"All {k1}s are {k2}s.", f"All {k2}s are {prop}.", f"{name} is a {k1}."]
        rules = [(f"All {k1}s are {k2}s,", f"{name} is a {k2}."), (f"All {k2}s are {prop},", f"{name} is {prop}.")]
    else:
        premises = [f"All {k1}s are {prop}.", f"{name} is a {k1}."]
        rules = [(f"All {k1}s are {prop},", f"{name} is {prop}.")]
    premises.append(f"Some {k3}s are {other}.")
    rng.shuffle(premises)
    label = rng.choice(["True", "False", "Uncertain"])
    if label == "True":
        conclusion = f"{name} is {prop}."
        tail = [f"The conclusion says {name} is {prop}, which follows.",
                f"The conclusion claims {name} is {prop}, which follows."]
    elif label == "False":
        conclusion = f"{name} is not {prop}."
        tail = [f"The conclusion says {name} is not {prop}, which contradicts this.",
                f"The conclusion claims {name} is not {prop}, which contradicts this."]
    else:
        conclusion = f"{name} is {other}."
        tail = [f"The premises say nothing about whether {name} is {other}.",
                f"Nothing in the premises says whether {name} is {other}."]
    question = "Premises: " + " ".join(premises) + f" Conclusion: {conclusion} Is the conclusion True, False, or Uncertain?"
    ch = chooser or Chooser(rng)
    lines = _episode(ch, "knowledge", [f"Recall that a rule about all {k1}s holds for every {k1}."])
    lines.append(f"{name} is a {k1}.")
    for i, (rule, result) in enumerate(rules):
        lines.append(rule + ch.pick(f"phrasing{i}", [f" so {result}", f" hence {result}"]))
    lines += _episode(ch, "doubt", [f"Wait, the premise about {k3}s does not mention {name}."], ["Hmm, let me make sure."])
    lines.append(ch.pick("verdict", tail))
    lines += _episode(ch, "check", [f"Let me check: {name} is a {k1}, and the conclusion is about {name}."])
    lines.append("So the " + ch.pick("final", [f"conclusion is {label}.", f"answer is {label}."]))
    return Example("logic", question, "\n".join(lines), label, choices=tuple(ch.taken))


# ------------------------------------------------------------------------------------------ multihop
@dataclass
class World:
    """A seeded fact base: people are born in cities; cities lie in countries and have mayors; countries have
    languages. ``facts()`` lists every fact as a sentence."""

    seed: int
    n_people: int = 96
    n_cities: int = 16
    n_countries: int = 4
    people: list[str] = field(default_factory=list)
    cities: list[str] = field(default_factory=list)
    countries: list[str] = field(default_factory=list)
    born_in: dict[str, str] = field(default_factory=dict)
    country_of: dict[str, str] = field(default_factory=dict)
    mayor_of: dict[str, str] = field(default_factory=dict)
    language_of: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        rng = random.Random(f"world:{self.seed}")
        used: set[str] = set()

        def fresh(n_syl: int) -> str:
            while True:
                n = _name(rng, n_syl)
                if n not in used:
                    used.add(n)
                    return n

        self.countries = [fresh(3) for _ in range(self.n_countries)]
        self.cities = [fresh(2) for _ in range(self.n_cities)]
        self.people = [fresh(2) for _ in range(self.n_people)]
        mayors = [fresh(3) for _ in range(self.n_cities)]
        self.language_of = {c: c[:-1] + "ish" for c in self.countries}
        for i, city in enumerate(self.cities):
            self.country_of[city] = self.countries[i % self.n_countries]
            self.mayor_of[city] = mayors[i]
        for person in self.people:
            self.born_in[person] = rng.choice(self.cities)

    def facts(self) -> list[str]:
        out = [f"{p} was born in {c}." for p, c in self.born_in.items()]
        out += [f"{c} is located in {k}." for c, k in self.country_of.items()]
        out += [f"The mayor of {c} is {m}." for c, m in self.mayor_of.items()]
        out += [f"People in {k} speak {lang}." for k, lang in self.language_of.items()]
        return out

    def split_people(self, eval_fraction: float = 0.25) -> tuple[list[str], list[str]]:
        """Deterministic split: the last ``eval_fraction`` of people are asked about only at evaluation."""
        n_eval = max(1, int(round(len(self.people) * eval_fraction)))
        return self.people[:-n_eval], self.people[-n_eval:]


def multihop(rng: random.Random, world: World, people: list[str], chooser: Chooser | None = None) -> Example:
    """MuSiQue-style 2–3-hop question over the memorised fact base."""
    person = rng.choice(people)
    city = world.born_in[person]
    country = world.country_of[city]
    kind = rng.choice(["country", "mayor", "language"])
    ch = chooser or Chooser(rng)
    lines = [ch.pick("recall", [f"{person} was born in {city}.", f"I know that {person} was born in {city}.",
                                f"Hmm, I think {person} was born in {city}."])]
    if kind == "country":
        q = f"In which country was {person} born?"
        lines.append(ch.pick("knowledge", ["Recall that ", ""]) + f"{city} is located in {country}.")
        gold, aliases, asked = country, (f"the country of {country}",), "country"
    elif kind == "mayor":
        q = f"Who is the mayor of the city where {person} was born?"
        mayor = world.mayor_of[city]
        lines.append(ch.pick("knowledge", [f"Recall that the mayor of {city}", f"The mayor of {city}"]) + f" is {mayor}.")
        gold, aliases, asked = mayor, (f"mayor {mayor}",), "mayor"
    else:
        q = f"What language do people speak in the country where {person} was born?"
        lang = world.language_of[country]
        lines.append(ch.pick("knowledge", ["Recall that ", ""]) + f"{city} is located in {country}.")
        lines.append(f"People in {country} speak {lang}.")
        gold, aliases, asked = lang, (f"the {lang} language",), "language"
    lines += _episode(ch, "check", [f"Wait, the question asks for the {asked}, so it is {gold}."],
                      [f"Let me check: {person}, {city}, {gold}."])
    lines.append("So " + ch.pick("final", [f"the answer is {gold}.", f"it is {gold}."]))
    return Example("multihop", q, "\n".join(lines), gold, aliases, choices=tuple(ch.taken))


# --------------------------------------------------------------------------------------------- splits
def _draw_multihop(split: str, world: World) -> Callable[[random.Random, Chooser | None], Example]:
    train_people, eval_people = world.split_people()
    people = train_people if split == "train" else eval_people
    return lambda rng, ch: multihop(rng, world, people, chooser=ch)


def _draw_logic(split: str, world: World) -> Callable[[random.Random, Chooser | None], Example]:
    avoid = frozenset(world.people)
    return lambda rng, ch: logic(rng, chooser=ch, avoid_names=avoid)


#: one record per generator (lrmrepro.tasks.record.TaskRecord); ``build(split, world)`` gives the draw function
GENERATORS: dict[str, TaskRecord] = {r.name: r for r in [
    TaskRecord("arith", "synthetic", "boxed_int", lambda split, world: lambda rng, ch: arith(rng, chooser=ch),
               like="AIME / MATH / GSM8K", skill="reasoning"),
    TaskRecord("timeline", "synthetic", "option_letter",
               lambda split, world: lambda rng, ch: timeline(rng, chooser=ch), like="BBH temporal_sequences",
               skill="reasoning"),
    TaskRecord("logic", "synthetic", "tfu", _draw_logic, like="FOLIO", skill="reasoning"),
    # facts memorised in training, scored by exact match
    TaskRecord("multihop", "synthetic", "short_text", _draw_multihop, like="MuSiQue (closed book)",
               skill="knowledge"),
]}
#: the generator names, in record order (the embedded model's training order)
TASKS = tuple(GENERATORS)


def _draw(task: str, split: str, world: World) -> Callable[[random.Random, Chooser | None], Example]:
    return GENERATORS[task].build(split, world)


def make_split(task: str, n: int, seed: int, split: str, world: World | None = None,
               exclude_questions: frozenset[str] = frozenset()) -> list[Example]:
    """``n`` examples of ``task`` for ``split`` in {"train", "eval"}; deterministic in (task, seed, split). Every
    draw has its own random stream (``replay``), so an example can be drawn again along another path of its choice
    points (:func:`alternatives`)."""
    if task not in TASKS:
        raise ValueError(f"unknown synthetic task {task!r}; allowed: {', '.join(TASKS)}")
    if split not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
    world = world or World(seed)
    draw = _draw(task, split, world)
    out: list[Example] = []
    seen: set[str] = set()
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 50 * n + 1000:
            raise RuntimeError(f"could not draw {n} distinct {split} items for {task}")
        key = f"{task}:{seed}:{split}:{attempts}"
        ex = draw(random.Random(key), None)
        if ex.question in exclude_questions or (split == "eval" and ex.question in seen):
            continue
        seen.add(ex.question)
        out.append(replace(ex, split=split, replay=key))
    return out


def alternatives(example: Example, world: World) -> list[tuple[int, list[Example]]]:
    """For every choice point of ``example`` (by index), the same question traced with each *other* alternative of
    that point (earlier choices kept, later ones at their first alternative). Training uses them to find, at each
    choice point, the first token of every alternative: the target there is uniform over the alternatives
    (``lrmrepro.models.train``)."""
    if not example.replay:
        raise ValueError("alternatives() needs an example drawn by make_split")
    draw = _draw(example.task, example.split, world)
    taken = [i for _, _, i in example.choices]
    out = []
    for j, (_, k, chosen) in enumerate(example.choices):
        alts = [draw(random.Random(example.replay), Chooser(path=taken[:j] + [a])) for a in range(k) if a != chosen]
        out.append((j, alts))
    return out
