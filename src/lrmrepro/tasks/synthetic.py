"""Synthetic chain-of-thought tasks for the embedded default model.

Four task families mirror the answer formats of the real benchmarks, so the same scorers serve both:

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

Reasoning traces contain cue phrases of the behaviours labelled by ``lrmrepro.importance.behaviours``:
"Let me check" (example testing), "Wait," (backtracking), "Recall that" (adding knowledge) and
"Hmm, I am not sure" (uncertainty estimation).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable

TASKS = ("arith", "timeline", "logic", "multihop")
ANSWER_FORMATS = {"arith": "boxed_int", "timeline": "option_letter", "logic": "tfu", "multihop": "short_text"}

_SYL = ["ka", "lo", "mi", "ra", "to", "ve", "zu", "ne", "pa", "si", "do", "fe", "gu", "ba", "ri", "mo", "te", "la", "no", "xi"]


def _name(rng: random.Random, n_syl: int) -> str:
    return "".join(rng.choice(_SYL) for _ in range(n_syl)).capitalize()


@dataclass(frozen=True)
class Example:
    """One task example: the question, the reasoning trace, and the gold answer."""

    task: str
    question: str
    reasoning: str
    gold: str
    aliases: tuple[str, ...] = ()

    @property
    def answer_format(self) -> str:
        return ANSWER_FORMATS[self.task]

    @property
    def final(self) -> str:
        return "\\boxed{" + self.gold + "}"

    @property
    def completion(self) -> str:
        """The assistant turn after the generation prompt (which already opened ``<think>``)."""
        return f"{self.reasoning}\n</think>\n{self.final}"


# --------------------------------------------------------------------------------------------- arith
def arith(rng: random.Random, style_noise: bool = True) -> Example:
    """Multi-step integer arithmetic on one-digit operands, evaluated left to right, every intermediate value in
    0..19: ``Compute 7 + 5 - 3 + 8.``"""
    n_ops = rng.randint(2, 3)
    value = rng.randint(1, 9)
    expr = str(value)
    lines = [f"Start with {value}."]
    for _ in range(n_ops):
        k = rng.randint(1, 9)
        # stay within 0..19: subtract from two-digit values, add to one-digit ones (random in between)
        if value >= 10 + k or (value >= k and rng.random() < 0.4):
            op, new = "-", value - k
        else:
            op, new = "+", value + k
        expr += f" {op} {k}"
        if style_noise and rng.random() < 0.08:
            wrong = new + rng.choice([-1, 1])
            lines.append(f"{value} {op} {k} = {wrong}. Wait, {value} {op} {k} = {new}.")
        else:
            lines.append(f"{value} {op} {k} = {new}.")
        value = new
    if style_noise and rng.random() < 0.25:
        lines.append(f"Let me check: the result is {value}.")
    return Example("arith", f"Compute {expr}.", "\n".join(lines), str(value))


# ------------------------------------------------------------------------------------------ timeline
_PEOPLE = ["Anna", "Ben", "Cara", "Dan", "Eva", "Finn", "Gia", "Hugo", "Ivy", "Jon"]
_PLACES = ["park", "library", "museum", "bakery", "gym", "beach", "market", "cafe", "zoo", "school"]
_ACTIVITIES = ["reading at the library", "buying bread at the bakery", "running at the gym", "swimming at the beach",
               "shopping at the market", "drinking tea at the cafe", "walking in the garden", "painting at home"]
_HOURS = ["5am", "6am", "7am", "8am", "9am", "10am", "11am", "12pm", "1pm", "2pm", "3pm", "4pm", "5pm", "6pm", "7pm", "8pm"]


def timeline(rng: random.Random, style_noise: bool = True) -> Example:
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
    # walk the day up to the gap: the next fact starts at bounds[free + 1], the last one ended at bounds[free]
    lines = [woke] + [f"({letters[i]}) {sightings[i]}" for i in range(free)]
    after_gap = f"From {bounds[free + 1]}" if free + 1 < n_slots else f"The {place} was closed after {bounds[-1]}"
    lines.append(f"({answer}) {after_gap}, not {bounds[free]}: {person} was free from {slots[free]}.")
    if style_noise and rng.random() < 0.15:
        lines.append(f"Hmm, I am not sure yet. Let me check: nobody saw {person} from {slots[free]}.")
    lines.append(f"So the answer is ({answer}).")
    return Example("timeline", question, "\n".join(lines), f"({answer})")


# hours and option markers of ``timeline``: whole tokens of the embedded model's tokenizer, so that copying an
# hour or comparing two hours is about one token each (digits are otherwise split one per token, for ``arith``)
TIMELINE_TOKENS = tuple(_HOURS) + ("(A)", "(B)", "(C)", "(D)")


# --------------------------------------------------------------------------------------------- logic
_KINDS = ["wug", "blicket", "dax", "fep", "zorp", "glim", "tove", "snark", "borog", "jub"]
_PROPS = ["red", "tall", "quick", "loud", "soft", "cold", "shiny", "heavy"]


def logic(rng: random.Random, style_noise: bool = True, avoid_names: frozenset[str] = frozenset()) -> Example:
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
        chain = [f"{name} is a {k1}.", f"All {k1}s are {k2}s, so {name} is a {k2}.", f"All {k2}s are {prop}, so {name} is {prop}."]
    else:
        premises = [f"All {k1}s are {prop}.", f"{name} is a {k1}."]
        chain = [f"{name} is a {k1}.", f"All {k1}s are {prop}, so {name} is {prop}."]
    premises.append(f"Some {k3}s are {other}.")
    rng.shuffle(premises)
    label = rng.choice(["True", "False", "Uncertain"])
    if label == "True":
        conclusion = f"{name} is {prop}."
        tail = [f"The conclusion says {name} is {prop}, which follows.", "So the conclusion is True."]
    elif label == "False":
        conclusion = f"{name} is not {prop}."
        tail = [f"The conclusion says {name} is not {prop}, which contradicts this.", "So the conclusion is False."]
    else:
        conclusion = f"{name} is {other}."
        tail = [f"The premises say nothing about whether {name} is {other}.", "So the conclusion is Uncertain."]
    if label == "Uncertain" and style_noise and rng.random() < 0.3:
        tail[0] = "Hmm, I am not sure. " + tail[0]
    lines = chain + tail
    question = "Premises: " + " ".join(premises) + f" Conclusion: {conclusion} Is the conclusion True, False, or Uncertain?"
    return Example("logic", question, "\n".join(lines), label)


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


def multihop(rng: random.Random, world: World, people: list[str], style_noise: bool = True) -> Example:
    """MuSiQue-style 2–3-hop question over the memorised fact base."""
    person = rng.choice(people)
    city = world.born_in[person]
    country = world.country_of[city]
    kind = rng.choice(["country", "mayor", "language"])
    first = f"{person} was born in {city}."
    if kind == "country":
        q = f"In which country was {person} born?"
        lines = [first, f"Recall that {city} is located in {country}."]
        gold, aliases = country, (f"the country of {country}",)
    elif kind == "mayor":
        q = f"Who is the mayor of the city where {person} was born?"
        mayor = world.mayor_of[city]
        lines = [first, f"Recall that the mayor of {city} is {mayor}."]
        gold, aliases = mayor, (f"mayor {mayor}",)
    else:
        q = f"What language do people speak in the country where {person} was born?"
        lang = world.language_of[country]
        lines = [first, f"Recall that {city} is located in {country}.", f"People in {country} speak {lang}."]
        gold, aliases = lang, (f"the {lang} language",)
    lines.append(f"So the answer is {gold}.")
    return Example("multihop", q, "\n".join(lines), gold, aliases)


# --------------------------------------------------------------------------------------------- splits
def make_split(task: str, n: int, seed: int, split: str, world: World | None = None,
               exclude_questions: frozenset[str] = frozenset()) -> list[Example]:
    """``n`` examples of ``task`` for ``split`` in {"train", "eval"}; deterministic in (task, seed, split)."""
    if task not in TASKS:
        raise ValueError(f"unknown synthetic task {task!r}; allowed: {', '.join(TASKS)}")
    if split not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
    rng = random.Random(f"{task}:{seed}:{split}")
    world = world or World(seed)
    train_people, eval_people = world.split_people()
    gen: Callable[[], Example]
    if task == "multihop":
        people = train_people if split == "train" else eval_people
        gen = lambda: multihop(rng, world, people, style_noise=split == "train")  # noqa: E731
    elif task == "logic":
        avoid = frozenset(world.people)
        gen = lambda: logic(rng, style_noise=split == "train", avoid_names=avoid)  # noqa: E731
    else:
        fn = {"arith": arith, "timeline": timeline}[task]
        gen = lambda: fn(rng, style_noise=split == "train")  # noqa: E731
    out: list[Example] = []
    seen: set[str] = set()
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 50 * n + 1000:
            raise RuntimeError(f"could not draw {n} distinct {split} items for {task}")
        ex = gen()
        if ex.question in exclude_questions or (split == "eval" and ex.question in seen):
            continue
        seen.add(ex.question)
        out.append(ex)
    return out
