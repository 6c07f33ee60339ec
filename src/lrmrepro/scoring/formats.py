"""The answer formats, one registry entry each (:data:`FORMATS`): how a format's answer is extracted from a
generation, normalised, compared with the gold answer, and how a gold answer of the format is checked.

An entry is a subclass of :class:`AnswerFormat` registered with :func:`register`; scoring
(:func:`lrmrepro.scoring.score_text`) dispatches through it, and the task records (:mod:`lrmrepro.tasks.registry`)
name a format by its key. A format's gold rule (:meth:`AnswerFormat.check_gold`) is its entry of
:data:`lrmrepro.tasks.gold.GOLD_RULES`, which task preparation checks every item with: it lives in the task stage
so that editing a scorer never reruns task preparation and generation (:mod:`lrmrepro.tasks.gold`). Adding a format
is one class here and its gold rule there (+ its test; tests/test_registries.py checks both name the same formats).

The extraction helpers below each take the segments to search (:func:`.extract.search_segments`: after
``</think>`` first, then the whole text, under the truncation policy) and return ``(extracted, rule)``; ``rule`` is
the extraction rule that fired (:data:`.extract.EXTRACTION_RULES`). None raises on malformed or truncated text (no
answer found -> ``(None, "none")``). Emphasis is stripped (:func:`.extract.strip_emphasis`) from each segment before
any rule looks at it."""

from __future__ import annotations

import abc
import dataclasses
import functools
import re
import threading
from fractions import Fraction
from typing import Any, ClassVar, Iterator, Mapping, Sequence

from .extract import (ANSWER_ANCHOR_RE, anchored_answers, boxed_contents, boxed_spans, fallback_line, last_boxed,
                      strip_emphasis, unwrap_latex_text)
from .bounded import call as run_bounded
from .program import extract_program_from, run_tests, test_limits
from .squad import best_em_f1, normalize_answer
from ..tasks import gold as gold_rules
from ..tasks.gold import GoldAnswerError


def _stripped(segs: Sequence[str]) -> Iterator[str]:
    """The segments with emphasis removed, lazily (the whole text is only stripped when the final segment failed)."""
    for seg in segs:
        yield strip_emphasis(seg)


# ------------------------------------------------------------------------------------------------ integers
_INT_RE = re.compile(r"^[+-]?\d+$")
#: a math answer longer than this (or 20 times the gold's length) is not sent to math-verify: it is wrong
MAX_MATH_CHARS = 2000
#: longer numbers are no answer (and Python refuses to convert over 4,300 digits): scored as unparseable
MAX_DIGITS = 1000
_UNIT_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz ")


def _strip_unit(s: str) -> str:
    """``s`` without a trailing unit word (``"18 eggs"`` -> ``"18"``): the trailing run of letters and spaces, when it
    holds a letter, and the white space before it. Linear (a regex anchored at the end backtracked quadratically
    on 50,000 letters)."""
    i = len(s)
    while i and s[i - 1] in _UNIT_CHARS:
        i -= 1
    return s[:i].rstrip() if any(c != " " for c in s[i:]) else s
_NUM_IN_TEXT_RE = re.compile(r"[+-]?\d[\d,]*(?:\.\d+)?")


def normalize_int(s: str | None) -> int | None:
    """``"$1,000.0"`` -> 1000, ``"007"`` -> 7, ``"18 dollars"`` / ``"18\\text{ eggs}"`` / ``"**18**"`` -> 18; anything
    that is not one integer (``"1/2"``, ``"2.5"``, ``"x+1"``) -> None."""
    if s is None:
        return None
    s = unwrap_latex_text(strip_emphasis(s).replace("\\$", ""))
    for junk in ("\\$", "$", "\\%", "%", "\\,", "\\!", "\\ ", "^\\circ", "^{\\circ}", "\\circ", "{,}"):
        s = s.replace(junk, "")
    s = s.replace(",", "").strip().rstrip(".").strip()
    s = _strip_unit(s)  # a trailing unit word
    s = re.sub(r"\.0+$", "", s)
    s = s.replace(" ", "")
    if len(s) > MAX_DIGITS or not _INT_RE.match(s):
        return None
    return int(s)


def extract_int(segs: Sequence[str]) -> tuple[str | None, str]:
    """Last ``\\boxed{}``; else the first number after the last ``answer is`` / ``Answer:`` / ``####``."""
    for seg in _stripped(segs):
        box = last_boxed(seg)
        if box is not None:
            return box, "boxed"
        tails = anchored_answers(seg) + [m.group(1) for m in re.finditer(r"####\s*(.+)", seg)]
        if tails:
            m = _NUM_IN_TEXT_RE.search(tails[-1])
            if m:
                return m.group(0), "anchor"
    return None, "none"


# ------------------------------------------------------------------------------------------------ math (math-verify)
MATH_VERIFY_SECONDS = 5


def _in_main_thread() -> bool:
    # math-verify's own timeouts use signal.alarm, which only works in the main thread
    return threading.current_thread() is threading.main_thread()


def _strip_spaces(s: str) -> str:
    return re.sub(r"\s+|\\!|\\,|\\;|\\ ", "", unwrap_latex_text(s))


@functools.lru_cache(maxsize=8192)
def _mv_parse(latex: str, timeout: int | None) -> Any:
    """math-verify's ``parse`` of ``$latex$``, memoised: a gold answer is parsed once per process, not once per
    sample (the parsed sympy objects are immutable; verify does not change them)."""
    from math_verify import parse

    return parse(f"${latex}$", parsing_timeout=timeout)


_FRAC_RE = re.compile(r"([+-]?)\\[dt]?frac\{(\d+)\}\{(\d+)\}")
_SLASH_RE = re.compile(r"([+-]?\d+)/(\d+)")
_DECIMAL_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")


def _rational(s: str) -> Fraction | None:
    """An integer, a decimal, ``a/b`` or ``\\frac{a}{b}`` (normalised by :func:`_strip_spaces`) as an exact
    fraction; anything else (and numbers of over :data:`MAX_DIGITS` characters) None."""
    if len(s) > MAX_DIGITS:
        return None
    m = _FRAC_RE.fullmatch(s)
    if m:
        num, den = int(m.group(2)), int(m.group(3))
        return Fraction(-num if m.group(1) == "-" else num, den) if den else None
    m = _SLASH_RE.fullmatch(s)
    if m:
        return Fraction(int(m.group(1)), int(m.group(2))) if int(m.group(2)) else None
    if _DECIMAL_RE.fullmatch(s):
        return Fraction(s)
    return None


_CLEARLY_DIFFERENT = Fraction(1, 10**4)


def math_equal(pred: str, gold: str) -> bool:
    """Equivalence of two LaTeX answers: identical after whitespace/``\\text``/``\\left`` normalisation, or equal
    according to math-verify (``parse`` of each wrapped in ``$...$``, then ``verify(gold, pred)``).

    Shortcut (decided without math-verify, same verdict): when both are plain numbers (integer, decimal, ``a/b``,
    ``\\frac{a}{b}``), exactly equal values are equal, and values apart by more than 1e-4, both absolutely and
    relative to the larger, are not; only nearer pairs (e.g. a rounded decimal) go to math-verify."""
    ps, gs = _strip_spaces(pred), _strip_spaces(gold)
    if ps == gs:
        return True
    pr, gr = _rational(ps), _rational(gs)
    if pr is not None and gr is not None:
        if pr == gr:
            return True
        diff = abs(pr - gr)
        if diff > _CLEARLY_DIFFERENT and diff > _CLEARLY_DIFFERENT * max(abs(pr), abs(gr)):
            return False
    if len(ps) > MAX_MATH_CHARS or len(ps) > 20 * max(len(gs), 10):
        return False  # not an answer but a loop's residue: math-verify would spend its whole timeout parsing it
    if not _in_main_thread():  # no signal.alarm here: the same work in a worker process, bounded from outside
        try:
            return run_bounded(_math_verify_equal, pred, gold, MATH_VERIFY_SECONDS,
                                timeout=2 * MATH_VERIFY_SECONDS + 5)
        except Exception:  # over time (the worker is killed) or the worker died: "not equal", like a timeout
            return False
    return _math_verify_equal(pred, gold, MATH_VERIFY_SECONDS)


def _math_verify_equal(pred: str, gold: str, timeout: int | None) -> bool:
    """math-verify's verdict (``parse`` of each, then ``verify(gold, pred)``), each step bounded by ``timeout``
    seconds (signal.alarm: main thread only)."""
    from math_verify import verify

    try:
        g = _mv_parse(gold, timeout)
        p = _mv_parse(pred, timeout)
        if not g or not p:
            return False
        return bool(verify(g, p, timeout_seconds=timeout))
    except Exception:  # math-verify guards most errors itself; any residue counts as "not equal"
        return False


def extract_math(segs: Sequence[str]) -> tuple[str | None, str]:
    """Last ``\\boxed{}``; else the rest of the line after the last ``answer is`` / ``Answer:`` (trailing period
    and ``$`` stripped)."""
    for seg in _stripped(segs):
        box = last_boxed(seg)
        if box is not None:
            return box, "boxed"
        tails = anchored_answers(seg)
        if tails:
            cand = tails[-1].strip().rstrip(".").strip().strip("$").strip()
            if cand:
                return cand, "anchor"
    return None, "none"


# ------------------------------------------------------------------------------------------------ True/False/Uncertain
_TFU = {"true": "True", "false": "False", "uncertain": "Uncertain", "unknown": "Uncertain"}
_TFU_WORD_RE = re.compile(r"\b(true|false|uncertain|unknown)\b", re.IGNORECASE)


def normalize_tfu(s: str | None) -> str | None:
    """``"true"``/``"(A) True"``/``"\\text{True}."``/``"**True**"`` -> ``"True"``; ``Unknown`` counts as
    ``Uncertain``; text holding none or several different labels -> None."""
    if s is None:
        return None
    found = {_TFU[m.lower()] for m in _TFU_WORD_RE.findall(unwrap_latex_text(strip_emphasis(s)))}
    return found.pop() if len(found) == 1 else None


def extract_tfu(segs: Sequence[str]) -> tuple[str | None, str]:
    """Per segment: the last ``\\boxed{}`` holding a label, then the first label of the last ``answer is`` /
    ``Answer:`` line holding one, then the last label word anywhere in the segment."""
    for seg in _stripped(segs):
        for cand in reversed(boxed_contents(seg)):
            lab = normalize_tfu(cand)
            if lab:
                return lab, "boxed"
        for cand in reversed(anchored_answers(seg)):
            m = _TFU_WORD_RE.search(cand)
            if m:
                return _TFU[m.group(1).lower()], "anchor"
        words = _TFU_WORD_RE.findall(seg)
        if words:
            return _TFU[words[-1].lower()], "last_mention"
    return None, "none"


# ------------------------------------------------------------------------------------------------ option letters
def normalize_letter(s: str | None, letters: str = "ABCD") -> str | None:
    """``"(B)"``, ``"B"``, ``"b)"``, ``"\\text{(B)}"``, ``"**B**"``, ``"B) 2pm to 6pm"`` -> ``"B"``; otherwise None."""
    if s is None:
        return None
    s = unwrap_latex_text(strip_emphasis(s)).strip()
    m = re.match(rf"^\(?\s*([{letters}{letters.lower()}])\s*\)?(?:[\s.:)]|$)", s)
    return m.group(1).upper() if m else None


def extract_letter(segs: Sequence[str], letters: str = "ABCD") -> tuple[str | None, str]:
    """Per segment: the last ``\\boxed{}`` holding a letter, then the last ``answer is`` line starting with a letter
    or holding ``(X)``, then the last mention: the last ``(X)`` anywhere, or a line that is only a letter
    (``D``, ``D.``, ``D)``), whichever is later."""
    mention = re.compile(rf"\(([{letters}])\)|^[ \t]*([{letters}])[ \t]*[.)]?[ \t]*$", re.MULTILINE)
    paren = re.compile(rf"\(([{letters}])\)")
    for seg in _stripped(segs):
        for cand in reversed(boxed_contents(seg)):
            lab = normalize_letter(cand, letters)
            if lab:
                return lab, "boxed"
        for cand in reversed(anchored_answers(seg)):
            lab = normalize_letter(cand, letters)
            if lab is None:
                m = paren.findall(cand)
                lab = m[-1] if m else None
            if lab:
                return lab, "anchor"
        found = mention.findall(seg)
        if found:
            a, b = found[-1]
            return a or b, "last_mention"
    return None, "none"


# ------------------------------------------------------------------------------------------------ short text
def extract_short_text_rule(segs: Sequence[str], truncated: bool | None = False) -> tuple[str | None, str]:
    """Per segment, the later of the last ``\\boxed{}`` and the last ``Answer:``/``answer is`` line; in the first
    (final) segment, when it has neither, the fallback line (:func:`.extract.fallback_line`) before any later
    segment (the reasoning) is searched; a truncated output's cut last line is no fallback candidate. Trailing
    period stripped."""
    for i, seg in enumerate(_stripped(segs)):
        spans = boxed_spans(seg)
        best: tuple[int, str] | None = spans[-1] if spans else None
        anchors = list(ANSWER_ANCHOR_RE.finditer(seg))
        rule = "boxed"
        if anchors and (best is None or anchors[-1].start() > best[0]):
            best, rule = (anchors[-1].start(), anchors[-1].group(1)), "anchor"
        if best is not None:
            ans = unwrap_latex_text(best[1]).strip().rstrip(".").strip()
            if ans:
                return ans, rule
        if i == 0:
            line = fallback_line(seg, truncated)
            if line:
                return line, "fallback_line"
    return None, "none"


def extract_short_text(text: str) -> str | None:
    """:func:`extract_short_text_rule` on the segments of ``text`` (no truncation policy)."""
    from .extract import segments

    return extract_short_text_rule(segments(text or ""))[0]


# ================================================================================================ the registry
@dataclasses.dataclass(frozen=True)
class Item:
    """What a format may need to know about the item beside its gold answer: ``aliases`` (short_text),
    ``metadata`` (the item's metadata: ``letters`` for option_letter, default ``ABCD``; ``tests``/``fn_name`` for
    program), ``truncated`` (the output hit max_new_tokens; None = unknown), ``allow_weak_sandbox`` (program)."""

    aliases: Sequence[str] = ()
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    truncated: bool | None = False
    allow_weak_sandbox: bool = False

    @property
    def letters(self) -> str:
        return self.metadata.get("letters", "ABCD")


@dataclasses.dataclass(frozen=True)
class Judgement:
    """One scored answer: ``extracted`` (None when no answer was found), ``correct``, ``em``/``f1`` (graded formats
    only, else None) and the extraction ``rule`` that fired."""

    extracted: str | None
    correct: bool
    em: float | None = None
    f1: float | None = None
    rule: str = "none"


class AnswerFormat(abc.ABC):
    """One answer format: a subclass sets ``name`` and defines :meth:`extract`, :meth:`normalise` and
    :meth:`compare`; :meth:`check_gold` applies the format's gold rule (:data:`lrmrepro.tasks.gold.GOLD_RULES`, the
    rule task preparation checks every item with). ``graded``: the format reports ``em``/``f1`` (0 without an
    answer)."""

    name: ClassVar[str]
    graded: ClassVar[bool] = False

    @abc.abstractmethod
    def extract(self, segs: Sequence[str], item: Item) -> tuple[str | None, str]:
        """``(extracted, rule)`` from the segments to search; ``(None, "none")`` when no rule fires."""

    def normalise(self, answer: str | None, item: Item) -> Any:
        """The comparable form of an answer (extracted or gold); None when it is not an answer of this format."""
        return answer

    @abc.abstractmethod
    def compare(self, extracted: str, gold: str, item: Item) -> tuple[bool, float | None, float | None]:
        """``(correct, em, f1)`` of an extracted answer against the gold answer."""

    def check_gold(self, gold: str, item: Item) -> None:
        """Raise :class:`GoldAnswerError` (a ValueError) when ``gold`` is not a gold answer of this format."""
        gold_rules.check_gold(self.name, gold, item.metadata)

    def unanswered(self, rule: str) -> Judgement:
        return Judgement(None, False, *((0.0, 0.0) if self.graded else (None, None)), rule=rule)

    def score(self, segs: Sequence[str], gold: str, item: Item) -> Judgement:
        extracted, rule = self.extract(segs, item)
        if extracted is None:
            return self.unanswered(rule)
        return Judgement(extracted, *self.compare(extracted, gold, item), rule=rule)

    def _gold(self, gold: str, item: Item) -> Any:
        """The normalised gold answer; one that does not normalise raises (a cheap assertion: items are checked
        when they are built)."""
        g = self.normalise(gold, item)
        if g is None:
            self.check_gold(gold, item)
            raise GoldAnswerError(f"{self.name} gold answer {gold!r} does not normalise")
        return g


FORMATS: dict[str, AnswerFormat] = {}


def register(cls: type[AnswerFormat]) -> type[AnswerFormat]:
    """Class decorator: add the format to :data:`FORMATS` under its ``name``."""
    if cls.name in FORMATS:
        raise ValueError(f"answer format {cls.name!r} is registered twice")
    FORMATS[cls.name] = cls()
    return cls


def get_format(name: str) -> AnswerFormat:
    if name not in FORMATS:
        raise ValueError(f"unknown answer_format {name!r}; allowed: {', '.join(FORMATS)}")
    return FORMATS[name]


def check_gold(answer_format: str, gold: str, letters: str = "ABCD") -> None:
    """Raise ValueError when ``gold`` does not fit ``answer_format`` (:meth:`AnswerFormat.check_gold`)."""
    get_format(answer_format).check_gold(gold, Item(metadata={"letters": letters}))


@register
class BoxedInt(AnswerFormat):
    """:func:`extract_int`, compared as integers (:func:`normalize_int`)."""

    name = "boxed_int"

    def extract(self, segs, item):
        return extract_int(segs)

    def normalise(self, answer, item):
        return normalize_int(answer)

    def compare(self, extracted, gold, item):
        return self.normalise(extracted, item) == self._gold(gold, item), None, None


@register
class BoxedMath(AnswerFormat):
    """:func:`extract_math`; equivalence by :func:`math_equal` (whose first test is the whitespace/``\\text``
    normalisation of :meth:`normalise`)."""

    name = "boxed_math"

    def extract(self, segs, item):
        return extract_math(segs)

    def normalise(self, answer, item):
        return _strip_spaces(answer) if answer is not None else None

    def compare(self, extracted, gold, item):
        return math_equal(extracted, gold), None, None


@register
class OptionLetter(AnswerFormat):
    """:func:`extract_letter` over the item's ``letters``; the extracted answer is written ``(X)``."""

    name = "option_letter"

    def extract(self, segs, item):
        lab, rule = extract_letter(segs, item.letters)
        return (f"({lab})" if lab else None), rule

    def normalise(self, answer, item):
        return normalize_letter(answer, item.letters)

    def compare(self, extracted, gold, item):
        return self.normalise(extracted, item) == self._gold(gold, item), None, None


@register
class TrueFalseUncertain(AnswerFormat):
    """:func:`extract_tfu`; labels compared after :func:`normalize_tfu` (``Unknown`` = ``Uncertain``)."""

    name = "tfu"

    def extract(self, segs, item):
        return extract_tfu(segs)

    def normalise(self, answer, item):
        return normalize_tfu(answer)

    def compare(self, extracted, gold, item):
        return self.normalise(extracted, item) == self._gold(gold, item), None, None


@register
class ShortText(AnswerFormat):
    """:func:`extract_short_text_rule`; EM and F1 after SQuAD normalisation (:meth:`normalise`), the best over the
    gold answer and its aliases."""

    name, graded = "short_text", True

    def extract(self, segs, item):
        return extract_short_text_rule(segs, item.truncated)

    def normalise(self, answer, item):
        return normalize_answer(answer) if answer is not None else None

    def compare(self, extracted, gold, item):
        em, f1 = best_em_f1(extracted, [gold, *item.aliases])
        return em == 1.0, em, f1


@register
class Program(AnswerFormat):
    """The last fenced block (:func:`.program.extract_program_from`, rule ``code_block``), run in the sandbox
    against the item's test cases (``metadata["tests"]``): correct when every test passes. The tests are the gold
    answer; the ``gold`` field is unused (empty)."""

    name = "program"

    def extract(self, segs, item):
        code = extract_program_from(segs)
        return code, ("code_block" if code is not None else "none")

    def compare(self, extracted, gold, item):
        meta = dict(item.metadata)
        if not meta.get("tests"):
            return False, None, None
        passed, total = run_tests(extracted, meta, test_limits(meta, item.allow_weak_sandbox))
        return passed == total, None, None
