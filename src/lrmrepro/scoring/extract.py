"""Answer extraction helpers shared by the scorers (pure string functions, never raise on odd input).

Where the answer is searched (:func:`search_segments`), under which truncation policy, how emphasis is removed
(:func:`strip_emphasis`) and the short-text fallback (:func:`fallback_line`) are stated in docs/tasks.md, "Scorers".
"""

from __future__ import annotations

import re

THINK_CLOSE = "</think>"

#: scoring policies for outputs that hit max_new_tokens (docs/tasks.md, "Truncated outputs")
POLICIES = ("strict", "lenient")

#: the value of ``extraction_rule``: which rule produced the extracted answer
EXTRACTION_RULES = ("boxed", "anchor", "last_mention", "fallback_line", "code_block", "truncated", "none", "error")
#: boxes nested deeper than this many braces are not read: a looping output of 20,000 nested ``\boxed{`` would
#: otherwise materialise 20,000 copies of itself (real answers nest a few levels)
MAX_BOX_DEPTH = 64

_BOX_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BRACE_RE = re.compile(r"[{}]")


def boxed_contents(text: str) -> list[str]:
    """Contents of every complete ``\\boxed{...}`` / ``\\fbox{...}`` in ``text``, in order, with brace matching
    (nested braces kept). An unclosed box (truncated output) is dropped."""
    return [c for _, c in boxed_spans(text)]


def boxed_spans(text: str) -> list[tuple[int, str]]:
    """``(start offset, content)`` of every complete box, in order (see :func:`boxed_contents`). One pass over the
    braces (linear even when a looping output repeats an unclosed ``\\boxed{`` thousands of times)."""
    starts = list(_BOX_RE.finditer(text))
    if not starts:
        return []
    closing: dict[int, int] = {}
    depth: dict[int, int] = {}
    stack: list[int] = []
    for m in _BRACE_RE.finditer(text, starts[0].end() - 1):
        if m.group() == "{":
            depth[m.start()] = len(stack)
            stack.append(m.start())
        elif stack:
            closing[stack.pop()] = m.start()
    out: list[tuple[int, str]] = []
    for m in starts:
        end = closing.get(m.end() - 1)
        if end is not None and depth[m.end() - 1] < MAX_BOX_DEPTH:
            out.append((m.start(), text[m.end():end].strip()))
    return out


def last_boxed(text: str) -> str | None:
    boxes = boxed_contents(text)
    return boxes[-1] if boxes else None


# ------------------------------------------------------------------------------------------------ emphasis
# Markdown bold/italic and LaTeX emphasis around a token: `**D**`, `__D__`, `*D*`, `\textbf{(C)}`, `\emph{x}`.
# The markers must hug their content and sit outside words, so `2*3*4`, `x**2`, `z^*` and `a * b` are kept; the
# content is at most 300 characters of one line without the marker character, which keeps the search linear on
# long lines of unclosed markers (looping outputs).
_BOLD_RE = re.compile(r"(?<![\w*\\])(\*\*\*?)(?=[^\s*])([^*\n]{0,300}?[^\s*\\])\1(?![\w*])")  # bold, bold italic
_UNDER_RE = re.compile(r"(?<![\w_\\])__(?=[^\s_])([^_\n]{0,300}?[^\s_\\])__(?![\w_])")
_ITALIC_RE = re.compile(r"(?<![\w*\\^])\*(?=[^\s*])([^*\n]{0,300}?[^\s*\\^])\*(?![\w*])")
_ITALIC1_RE = re.compile(r"(?<![\w*\\^])\*([^\s*\\^])\*(?![\w*])")  # `*D*`: one-character content
_LATEX_EMPH_RE = re.compile(r"\\(?:textbf|textit|emph|mathbf|bm|boldsymbol)\s*\{([^{}]*)\}")


def strip_emphasis(s: str) -> str:
    """Remove emphasis around text, keeping the text: ``**Answer:** (B)`` -> ``Answer: (B)``, ``Answer: **D**`` ->
    ``Answer: D``, ``__x__``, ``*x*``, ``\\textbf{(C)}`` / ``\\textit{}`` / ``\\emph{}`` (also ``\\mathbf``,
    ``\\bm``, ``\\boldsymbol``) -> their content (innermost first). Multiplication and exponent stars stay."""
    if not s:
        return s or ""
    if "*" in s:
        s = _BOLD_RE.sub(r"\2", s)
        if "*" in s:
            s = _ITALIC1_RE.sub(r"\1", _ITALIC_RE.sub(r"\1", s))
    if "__" in s:
        s = _UNDER_RE.sub(r"\1", s)
    if "\\" in s:
        prev = None
        while prev != s:
            prev, s = s, _LATEX_EMPH_RE.sub(r"\1", s)
    return s


# ------------------------------------------------------------------------------------------------ where to search
def think_closed(text: str | None) -> bool:
    """The text closes a think block (holds ``</think>``)."""
    return THINK_CLOSE in (text or "")


def segments(text: str) -> list[str]:
    """Where to look for the final answer, in order of preference: the text after the last ``</think>`` (when
    there is one), then the whole text. A final answer after the reasoning thus overrides anything inside it;
    when nothing follows the closing tag, the reasoning itself is searched."""
    text = text or ""
    if THINK_CLOSE in text:
        return [text.rsplit(THINK_CLOSE, 1)[1], text]
    return [text]


def search_segments(text: str, truncated: bool | None = False, policy: str = "strict") -> list[str] | None:
    """The segments the scorers search, in order, under a truncation ``policy`` (emphasis not yet stripped).

    ``strict``: an output that was truncated (``finish_reason == "length"``) inside its reasoning (no ``</think>``)
    has not answered: None. A truncated output that closed its think block is searched after the last
    ``</think>`` only. ``lenient``, and every output that was not truncated (``truncated`` False or unknown):
    :func:`segments` (after ``</think>`` first, then the whole text)."""
    if policy not in POLICIES:
        raise ValueError(f"unknown scoring policy {policy!r}; allowed: {', '.join(POLICIES)}")
    text = text or ""
    if policy == "strict" and truncated:
        if THINK_CLOSE not in text:
            return None
        return [text.rsplit(THINK_CLOSE, 1)[1]]
    return segments(text)


# ------------------------------------------------------------------------------------------------ anchors
# "answer is X", "final answer: X", "Answer: X" (the value after the anchor, up to the end of the line)
ANSWER_ANCHOR_RE = re.compile(r"\b(?:final\s+answer|answer)\s*(?:is|:)\s*:?\s*(.+)", re.IGNORECASE)


def anchored_answers(text: str) -> list[str]:
    """Every ``answer is ...`` / ``Answer: ...`` tail (rest of that line), in order. Strip emphasis first
    (:func:`strip_emphasis`): ``**Answer:** X`` has no anchor until then."""
    return [m.group(1).strip() for m in ANSWER_ANCHOR_RE.finditer(text)]


_TEXT_WRAP_RE = re.compile(r"\\(?:text|textbf|mathrm|mbox|textit)\s*\{([^{}]*)\}")


def unwrap_latex_text(s: str) -> str:
    """``\\text{Paris}`` -> ``Paris`` (repeatedly, innermost first); drops ``$`` and ``\\left``/``\\right``."""
    prev = None
    while prev != s:
        prev, s = s, _TEXT_WRAP_RE.sub(r"\1", s)
    s = s.replace("\\left", "").replace("\\right", "").replace("$", "")
    return s.strip()


# ------------------------------------------------------------------------------------------------ short-text fallback
#: leading phrases removed from a fallback line (case-insensitive, repeatedly, longest first)
LEADING_PHRASES = (
    "the final answer is", "the correct answer is", "the short answer is", "the answer is", "my answer is",
    "final answer", "short answer", "answer", "in conclusion", "in summary", "to summarize", "to conclude",
    "therefore", "thus", "hence", "so", "overall", "finally", "ultimately", "i think", "i believe", "it is", "it's",
)
_LEAD_RE = re.compile(r"^(?:" + "|".join(re.escape(p).replace(r"\ ", r"\s+") for p in
                                         sorted(LEADING_PHRASES, key=len, reverse=True)) + r")\b\s*[:,\-–—]?\s*",
                      re.IGNORECASE)
_MARKDOWN_LEAD_RE = re.compile(r"^(?:#{1,6}\s+|>\s*|[-*+•]\s+|\d{1,2}[.)]\s+)+")
_SENTENCE_SPLIT_RE = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")
#: a fallback line with more words than this is a "long sentence": its last sentence is a candidate too
LONG_LINE_WORDS = 12
#: the fallback looks at this many last non-empty lines of the final segment for a more concise candidate
FALLBACK_LINES = 6


def clean_candidate(line: str) -> str:
    """One fallback candidate: emphasis, markdown list/heading/quote markers, ``$``, leading phrases
    (:data:`LEADING_PHRASES`) and a trailing period or colon removed."""
    s = unwrap_latex_text(strip_emphasis(line.strip()))
    s = _MARKDOWN_LEAD_RE.sub("", s).strip()
    prev = None
    while prev != s:
        prev, s = s, _LEAD_RE.sub("", s).strip()
    return s.rstrip(" .:;,!").strip()


def _norm(s: str) -> str:
    from .squad import normalize_answer

    return normalize_answer(s)


def fallback_line(segment: str, truncated: bool | None = False) -> str | None:
    """The short-text fallback (no box and no anchor in the final segment): the last non-empty line of
    ``segment``, cleaned (:func:`clean_candidate`); when that line has more than :data:`LONG_LINE_WORDS` words its
    last sentence, cleaned, replaces it. Then the most concise candidate wins: among the cleaned last
    :data:`FALLBACK_LINES` non-empty lines (and the last line in full), the shortest whose normalised words occur,
    as a whole-word run, in the normalised last line, when shorter than the choice so far. Lines ending in a colon
    (headings such as ``Explanation:``) are no candidates. A ``truncated`` output's last line was cut by the token
    limit: it is dropped first. None when the segment has no usable line."""
    if truncated:
        segment = segment.rsplit("\n", 1)[0] if "\n" in segment else ""
    lines = [ln for ln in segment.splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.rstrip().rstrip("*_").rstrip().endswith(":")]
    if not lines:
        return None
    last_full = clean_candidate(lines[-1])
    if not last_full:
        return None
    choice = last_full
    if len(last_full.split()) > LONG_LINE_WORDS:
        sentences = [s for s in _SENTENCE_SPLIT_RE.split(last_full) if s.strip()]
        if len(sentences) > 1:
            choice = clean_candidate(sentences[-1]) or last_full
    container = f" {_norm(last_full)} "
    for ln in lines[-FALLBACK_LINES:-1]:
        cand = clean_candidate(ln)
        n = _norm(cand)
        if n and len(cand) < len(choice) and f" {n} " in container:
            choice = cand
    return choice or None
