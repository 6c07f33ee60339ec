"""Answer extraction helpers shared by the scorers (pure string functions, never raise on odd input)."""

from __future__ import annotations

import re

THINK_CLOSE = "</think>"

_BOX_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")


def boxed_contents(text: str) -> list[str]:
    """Contents of every complete ``\\boxed{...}`` / ``\\fbox{...}`` in ``text``, in order, with brace matching
    (nested braces kept). An unclosed box (truncated output) is dropped."""
    return [c for _, c in boxed_spans(text)]


def boxed_spans(text: str) -> list[tuple[int, str]]:
    """``(start offset, content)`` of every complete box, in order (see :func:`boxed_contents`)."""
    out: list[tuple[int, str]] = []
    for m in _BOX_RE.finditer(text):
        depth, i = 1, m.end()
        while i < len(text):
            c = text[i]
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    out.append((m.start(), text[m.end():i].strip()))
                    break
            i += 1
    return out


def last_boxed(text: str) -> str | None:
    boxes = boxed_contents(text)
    return boxes[-1] if boxes else None


def segments(text: str) -> list[str]:
    """Where to look for the final answer, in order of preference: the text after the last ``</think>`` (when
    there is one), then the whole text. A final answer after the reasoning thus overrides anything inside it;
    when nothing follows the closing tag, the reasoning itself is searched."""
    text = text or ""
    if THINK_CLOSE in text:
        return [text.rsplit(THINK_CLOSE, 1)[1], text]
    return [text]


# "answer is X", "final answer: X", "Answer: X" (the value after the anchor, up to the end of the line)
ANSWER_ANCHOR_RE = re.compile(r"(?:final\s+answer|answer)\s*(?:is|:)\s*:?\s*(.+)", re.IGNORECASE)


def anchored_answers(text: str) -> list[str]:
    """Every ``answer is ...`` / ``Answer: ...`` tail (rest of that line), in order."""
    return [m.group(1).strip() for m in ANSWER_ANCHOR_RE.finditer(text)]


_TEXT_WRAP_RE = re.compile(r"\\(?:text|textbf|mathrm|mbox|textit)\s*\{([^{}]*)\}")


def unwrap_latex_text(s: str) -> str:
    """``\\text{Paris}`` -> ``Paris`` (repeatedly, innermost first); drops ``$`` and ``\\left``/``\\right``."""
    prev = None
    while prev != s:
        prev, s = s, _TEXT_WRAP_RE.sub(r"\1", s)
    s = s.replace("\\left", "").replace("\\right", "").replace("$", "")
    return s.strip()
