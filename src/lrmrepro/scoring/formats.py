"""One scorer per answer format. Each takes the segments to search (:func:`.extract.search_segments`: after
``</think>`` first, then the whole text, under the truncation policy) and the gold answer and returns
``(extracted, correct, rule)``; ``rule`` is the extraction rule that fired (:data:`.extract.EXTRACTION_RULES`).
None raises on malformed or truncated text (no answer found -> ``(None, False, "none")``). Emphasis is stripped
(:func:`.extract.strip_emphasis`) from each segment before any rule looks at it."""

from __future__ import annotations

import functools
import re
import threading
from fractions import Fraction
from typing import Any, Iterator, Sequence

from .extract import (ANSWER_ANCHOR_RE, anchored_answers, boxed_contents, boxed_spans, fallback_line, last_boxed,
                      strip_emphasis, unwrap_latex_text)


def _stripped(segs: Sequence[str]) -> Iterator[str]:
    """The segments with emphasis removed, lazily (the whole text is only stripped when the final segment failed)."""
    for seg in segs:
        yield strip_emphasis(seg)


# ------------------------------------------------------------------------------------------------ integers
_INT_RE = re.compile(r"^[+-]?\d+$")
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
    s = re.sub(r"\s*[A-Za-z][A-Za-z ]*$", "", s)  # a trailing unit word
    s = re.sub(r"\.0+$", "", s)
    s = s.replace(" ", "")
    if not _INT_RE.match(s):
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


def score_boxed_int(segs: Sequence[str], gold: str) -> tuple[str | None, bool, str]:
    """:func:`extract_int`, compared as integers (:func:`normalize_int`)."""
    g = normalize_int(gold)
    if g is None:
        raise ValueError(f"boxed_int gold answer {gold!r} is not an integer")
    cand, rule = extract_int(segs)
    return cand, cand is not None and normalize_int(cand) == g, rule


# ------------------------------------------------------------------------------------------------ math (math-verify)
def _mv_timeout() -> int | None:
    # math-verify's timeouts use signal.alarm, which only works in the main thread
    return 5 if threading.current_thread() is threading.main_thread() else None


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
    fraction; anything else None."""
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
    from math_verify import verify

    t = _mv_timeout()
    try:
        g = _mv_parse(gold, t)
        p = _mv_parse(pred, t)
        if not g or not p:
            return False
        return bool(verify(g, p, timeout_seconds=t))
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


def score_boxed_math(segs: Sequence[str], gold: str) -> tuple[str | None, bool, str]:
    """:func:`extract_math`; equivalence by :func:`math_equal`."""
    cand, rule = extract_math(segs)
    return cand, cand is not None and math_equal(cand, gold), rule


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


def score_tfu(segs: Sequence[str], gold: str) -> tuple[str | None, bool, str]:
    g = normalize_tfu(gold)
    if g is None:
        raise ValueError(f"tfu gold answer {gold!r} is not True, False or Uncertain")
    lab, rule = extract_tfu(segs)
    return lab, lab is not None and lab == g, rule


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


def score_option_letter(segs: Sequence[str], gold: str, letters: str = "ABCD") -> tuple[str | None, bool, str]:
    """:func:`extract_letter`; the extracted answer is written ``(X)``."""
    g = normalize_letter(gold, letters)
    if g is None:
        raise ValueError(f"option_letter gold answer {gold!r} is not one of ({'), ('.join(letters)})")
    lab, rule = extract_letter(segs, letters)
    return (f"({lab})" if lab else None), lab is not None and lab == g, rule


def check_gold(answer_format: str, gold: str, letters: str = "ABCD") -> None:
    """Raise ValueError when ``gold`` does not fit ``answer_format`` (integer, label, option letter)."""
    if answer_format == "boxed_int" and normalize_int(gold) is None:
        raise ValueError(f"boxed_int gold answer {gold!r} is not an integer")
    if answer_format == "tfu" and normalize_tfu(gold) is None:
        raise ValueError(f"tfu gold answer {gold!r} is not True, False or Uncertain")
    if answer_format == "option_letter" and normalize_letter(gold, letters) is None:
        raise ValueError(f"option_letter gold answer {gold!r} is not one of ({'), ('.join(letters)})")


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


def score_short_text(segs: Sequence[str], gold: str, aliases: Sequence[str] = (),
                     truncated: bool | None = False) -> tuple[str | None, float, float, str]:
    from .squad import best_em_f1

    ext, rule = extract_short_text_rule(segs, truncated)
    if ext is None:
        return None, 0.0, 0.0, rule
    em, f1 = best_em_f1(ext, [gold, *aliases])
    return ext, em, f1, rule
