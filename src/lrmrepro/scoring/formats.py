"""One scorer per answer format. Each takes the generated text and the gold answer and returns
``(extracted, correct)``; none raises on malformed or truncated text (no answer found -> ``(None, False)``)."""

from __future__ import annotations

import re
import threading
from typing import Sequence

from .extract import anchored_answers, boxed_contents, last_boxed, segments, unwrap_latex_text

# ------------------------------------------------------------------------------------------------ integers
_INT_RE = re.compile(r"^[+-]?\d+$")
_NUM_IN_TEXT_RE = re.compile(r"[+-]?\d[\d,]*(?:\.\d+)?")


def normalize_int(s: str | None) -> int | None:
    """``"$1,000.0"`` -> 1000, ``"007"`` -> 7, ``"18 dollars"`` / ``"18\\text{ eggs}"`` -> 18; anything that is not
    one integer (``"1/2"``, ``"2.5"``, ``"x+1"``) -> None."""
    if s is None:
        return None
    s = unwrap_latex_text(s.replace("\\$", ""))
    for junk in ("\\$", "$", "\\%", "%", "\\,", "\\!", "\\ ", "^\\circ", "^{\\circ}", "\\circ", "{,}"):
        s = s.replace(junk, "")
    s = s.replace(",", "").strip().rstrip(".").strip()
    s = re.sub(r"\s*[A-Za-z][A-Za-z ]*$", "", s)  # a trailing unit word
    s = re.sub(r"\.0+$", "", s)
    s = s.replace(" ", "")
    if not _INT_RE.match(s):
        return None
    return int(s)


def score_boxed_int(text: str, gold: str) -> tuple[str | None, bool]:
    """Last ``\\boxed{}`` (after ``</think>`` when an answer follows it); fallback: the first number after the last
    ``answer is`` / ``Answer:`` / ``####``. Compared as integers."""
    g = normalize_int(gold)
    if g is None:
        raise ValueError(f"boxed_int gold answer {gold!r} is not an integer")
    for seg in segments(text):
        box = last_boxed(seg)
        if box is not None:
            return box, normalize_int(box) == g
        tails = anchored_answers(seg) + [m.group(1) for m in re.finditer(r"####\s*(.+)", seg)]
        if tails:
            m = _NUM_IN_TEXT_RE.search(tails[-1])
            if m:
                cand = m.group(0)
                return cand, normalize_int(cand) == g
    return None, False


# ------------------------------------------------------------------------------------------------ math (math-verify)
def _mv_timeout() -> int | None:
    # math-verify's timeouts use signal.alarm, which only works in the main thread
    return 5 if threading.current_thread() is threading.main_thread() else None


def _strip_spaces(s: str) -> str:
    return re.sub(r"\s+|\\!|\\,|\\;|\\ ", "", unwrap_latex_text(s))


def math_equal(pred: str, gold: str) -> bool:
    """Equivalence of two LaTeX answers: identical after whitespace/``\\text``/``\\left`` normalisation, or equal
    according to math-verify (``parse`` of each wrapped in ``$...$``, then ``verify(gold, pred)``)."""
    if _strip_spaces(pred) == _strip_spaces(gold):
        return True
    from math_verify import parse, verify

    t = _mv_timeout()
    try:
        g = parse(f"${gold}$", parsing_timeout=t)
        p = parse(f"${pred}$", parsing_timeout=t)
        if not g or not p:
            return False
        return bool(verify(g, p, timeout_seconds=t))
    except Exception:  # math-verify guards most errors itself; any residue counts as "not equal"
        return False


def score_boxed_math(text: str, gold: str) -> tuple[str | None, bool]:
    """Last ``\\boxed{}`` (after ``</think>`` when an answer follows it), else the rest of the line after the last
    ``answer is`` / ``Answer:`` (trailing period and ``$`` stripped); equivalence by :func:`math_equal`."""
    for seg in segments(text):
        box = last_boxed(seg)
        if box is not None:
            return box, math_equal(box, gold)
        tails = anchored_answers(seg)
        if tails:
            cand = tails[-1].strip().rstrip(".").strip().strip("$").strip()
            if cand:
                return cand, math_equal(cand, gold)
    return None, False


# ------------------------------------------------------------------------------------------------ True/False/Uncertain
_TFU = {"true": "True", "false": "False", "uncertain": "Uncertain", "unknown": "Uncertain"}
_TFU_WORD_RE = re.compile(r"\b(true|false|uncertain|unknown)\b", re.IGNORECASE)


def normalize_tfu(s: str | None) -> str | None:
    """``"true"``/``"(A) True"``/``"\\text{True}."`` -> ``"True"``; ``Unknown`` counts as ``Uncertain``; text holding
    none or several different labels -> None."""
    if s is None:
        return None
    found = {_TFU[m.lower()] for m in _TFU_WORD_RE.findall(unwrap_latex_text(s))}
    return found.pop() if len(found) == 1 else None


def score_tfu(text: str, gold: str) -> tuple[str | None, bool]:
    """Preference within the final-answer segment: last ``\\boxed{}`` holding a label, then the last
    ``answer is`` / ``Answer:`` line holding one, then the last label word anywhere in the segment."""
    g = normalize_tfu(gold)
    if g is None:
        raise ValueError(f"tfu gold answer {gold!r} is not True, False or Uncertain")
    for seg in segments(text):
        for cand in reversed(boxed_contents(seg)):
            lab = normalize_tfu(cand)
            if lab:
                return lab, lab == g
        for cand in reversed(anchored_answers(seg)):
            m = list(_TFU_WORD_RE.finditer(cand))
            if m:
                lab = _TFU[m[0].group(1).lower()]
                return lab, lab == g
        words = _TFU_WORD_RE.findall(seg)
        if words:
            lab = _TFU[words[-1].lower()]
            return lab, lab == g
    return None, False


# ------------------------------------------------------------------------------------------------ option letters
def normalize_letter(s: str | None, letters: str = "ABCD") -> str | None:
    """``"(B)"``, ``"B"``, ``"b)"``, ``"\\text{(B)}"``, ``"B) 2pm to 6pm"`` -> ``"B"``; otherwise None."""
    if s is None:
        return None
    s = unwrap_latex_text(s).strip()
    m = re.match(rf"^\(?\s*([{letters}{letters.lower()}])\s*\)?(?:[\s.:)]|$)", s)
    return m.group(1).upper() if m else None


def score_option_letter(text: str, gold: str, letters: str = "ABCD") -> tuple[str | None, bool]:
    """Preference within the final-answer segment: last ``\\boxed{}`` holding a letter, then the last ``answer is``
    line starting with a letter or holding ``(X)``, then the last ``(X)`` anywhere in the segment."""
    g = normalize_letter(gold, letters)
    if g is None:
        raise ValueError(f"option_letter gold answer {gold!r} is not one of ({'), ('.join(letters)})")
    paren = re.compile(rf"\(([{letters}])\)")
    for seg in segments(text):
        for cand in reversed(boxed_contents(seg)):
            lab = normalize_letter(cand, letters)
            if lab:
                return f"({lab})", lab == g
        for cand in reversed(anchored_answers(seg)):
            lab = normalize_letter(cand, letters)
            if lab is None:
                m = paren.findall(cand)
                lab = m[-1] if m else None
            if lab:
                return f"({lab})", lab == g
        m = paren.findall(seg)
        if m:
            return f"({m[-1]})", m[-1] == g
    return None, False


# ------------------------------------------------------------------------------------------------ short text
def extract_short_text(text: str) -> str | None:
    """The later of the last ``\\boxed{}`` and the last ``Answer:``/``answer is`` line in the final-answer segment;
    if neither, the text after ``</think>`` (first non-empty line). Trailing period stripped."""
    from .extract import ANSWER_ANCHOR_RE, THINK_CLOSE, boxed_spans

    text = text or ""
    for seg in segments(text):
        spans = boxed_spans(seg)
        best: tuple[int, str] | None = spans[-1] if spans else None
        anchors = list(ANSWER_ANCHOR_RE.finditer(seg))
        if anchors and (best is None or anchors[-1].start() > best[0]):
            best = (anchors[-1].start(), anchors[-1].group(1))
        if best is not None:
            ans = unwrap_latex_text(best[1]).strip().rstrip(".").strip()
            return ans or None
    if THINK_CLOSE in text:
        for line in text.rsplit(THINK_CLOSE, 1)[1].splitlines():
            if line.strip():
                return line.strip().rstrip(".").strip()
    return None


def score_short_text(text: str, gold: str, aliases: Sequence[str] = ()) -> tuple[str | None, float, float]:
    from .squad import best_em_f1

    ext = extract_short_text(text)
    if ext is None:
        return None, 0.0, 0.0
    em, f1 = best_em_f1(ext, [gold, *aliases])
    return ext, em, f1
