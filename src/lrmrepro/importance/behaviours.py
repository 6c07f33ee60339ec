"""Reasoning behaviours in generated traces: sentence segments, rule-based (or judge) labels, token spans.

A trace is ``prompt + text`` of one generations row (the exact prompt and the decoded completion). Only the
reasoning part of the completion is segmented: the text before the first ``</think>`` (the whole completion when
there is none); ``<think>`` / ``</think>`` tags and the final answer after ``</think>`` are not segments.

Segments are sentences: maximal runs of text ending at a newline or at ``.``, ``!``, ``?`` followed by whitespace
(so ``3.5`` is not split). Leading/trailing whitespace is stripped from each segment.

Rule-based label of a segment: the first behaviour of :data:`CUE_PHRASES` (in table order) one of whose cue
patterns occurs anywhere in the segment (case-insensitive, word-bounded). A segment without a cue is
``initializing`` when it is the first segment of the trace and ``deduction`` otherwise (the remainder).

Character offsets (``char_start``, ``char_end``) index the full text ``prompt + text``; the token span
(``tok_start``, ``tok_end``, end exclusive) is every token of :func:`encode_trace` whose character range overlaps
the segment's (so a token merging the end of one sentence with the next, like ``".\\n"``, can belong to both).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import pyarrow as pa

#: the four behaviours of the paper, in the order used by tables and figures
BEHAVIOURS = ("uncertainty_estimation", "adding_knowledge", "backtracking", "example_testing")
#: labels of segments without a cue
REMAINDER = ("initializing", "deduction")
#: label a judge answer gets when it names no allowed label
UNPARSED = "unparsed"
LABELS = BEHAVIOURS + REMAINDER

#: cue phrases per behaviour (regular expressions, matched case-insensitively with word boundaries around them).
#: Order matters: a sentence with cues of two behaviours gets the first one listed here.
CUE_PHRASES: dict[str, tuple[str, ...]] = {
    "backtracking": (
        r"wait", r"alternatively", r"on second thought", r"actually,? no", r"that(?:'s| is) (?:wrong|incorrect|not right)",
        r"i made a mistake", r"let me (?:reconsider|redo|re-?think|start over)", r"scratch that",
    ),
    "uncertainty_estimation": (
        r"maybe", r"perhaps", r"hmm+", r"i(?:'m| am) not (?:sure|certain)", r"not sure", r"i(?:'m| am) unsure",
        r"i wonder",
    ),
    "example_testing": (
        r"let me (?:check|verify|test|double-check|confirm)", r"let's (?:check|verify|test|double-check)",
        r"to (?:check|verify)", r"double-check", r"sanity check", r"plug(?:ging)? in", r"for example",
    ),
    "adding_knowledge": (
        r"recall that", r"i know that", r"i remember", r"remember that", r"we know that", r"it is known",
        r"by definition", r"the formula for",
    ),
}
assert set(CUE_PHRASES) == set(BEHAVIOURS)

_CUE_RES = {b: re.compile(r"(?<!\w)(?:" + "|".join(p) + r")(?!\w)", re.IGNORECASE) for b, p in CUE_PHRASES.items()}
_THINK_CLOSE = "</think>"
_TAG_RE = re.compile(r"</?think>")
_SENT_RE = re.compile(r"[^\n]*?(?:[.!?](?=\s)|\n|$)")

SPAN_SCHEMA = pa.schema([
    ("id", pa.string()), ("sample_idx", pa.int32()), ("segment_idx", pa.int32()), ("behaviour", pa.string()),
    ("char_start", pa.int32()), ("char_end", pa.int32()), ("tok_start", pa.int32()), ("tok_end", pa.int32()),
    ("text", pa.string()),
])


@dataclass(frozen=True)
class Segment:
    start: int   # character offset in the string that was segmented
    end: int     # exclusive
    text: str


def reasoning_region(text: str) -> tuple[int, int]:
    """(start, end) of the reasoning part of a completion: up to the first ``</think>`` (or the end)."""
    end = text.find(_THINK_CLOSE)
    return 0, (len(text) if end < 0 else end)


def split_segments(text: str, start: int = 0, end: int | None = None) -> list[Segment]:
    """Sentence segments of ``text[start:end]`` with offsets into ``text`` (think tags removed, whitespace stripped)."""
    end = len(text) if end is None else end
    segments: list[Segment] = []
    # think tags are boundaries, never part of a segment
    pieces, pos = [], start
    for m in _TAG_RE.finditer(text, start, end):
        pieces.append((pos, m.start()))
        pos = m.end()
    pieces.append((pos, end))
    for a, b in pieces:
        chunk = text[a:b]
        for m in _SENT_RE.finditer(chunk):
            raw = m.group(0)
            if not raw.strip():
                continue
            lead = len(raw) - len(raw.lstrip())
            s = a + m.start() + lead
            e = a + m.start() + len(raw.rstrip())
            segments.append(Segment(s, e, text[s:e]))
    return segments


def rule_label(sentence: str, first: bool = False) -> str:
    """Label of one sentence by the cue-phrase table (see module docstring)."""
    for behaviour in CUE_PHRASES:
        if _CUE_RES[behaviour].search(sentence):
            return behaviour
    return "initializing" if first else "deduction"


def encode_trace(tokenizer: Any, prompt: str, text: str, add_special_tokens: bool = False) -> dict[str, Any]:
    """Tokenize ``prompt + text`` with a fast tokenizer: input ids, character offsets and the first completion
    token (the first token ending after the prompt). ``add_special_tokens=False``: the prompt text already holds
    whatever the chat template put there (as the generation stage fed it)."""
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("behaviour spans need a fast tokenizer (return_offsets_mapping); got "
                         f"{type(tokenizer).__name__}")
    full = prompt + text
    enc = tokenizer(full, return_offsets_mapping=True, add_special_tokens=add_special_tokens)
    offsets = [tuple(o) for o in enc["offset_mapping"]]
    n_prompt = len(prompt)
    completion_start = next((i for i, (_, e) in enumerate(offsets) if e > n_prompt), len(offsets))
    return {"full_text": full, "input_ids": list(enc["input_ids"]), "offsets": offsets,
            "completion_start": completion_start}


def char_to_token_span(offsets: Sequence[tuple[int, int]], char_start: int, char_end: int) -> tuple[int, int]:
    """Tokens whose character range overlaps [char_start, char_end): (first, last + 1). Fails on an empty span."""
    toks = [i for i, (s, e) in enumerate(offsets) if s < char_end and e > char_start and e > s]
    if not toks:
        raise ValueError(f"no token overlaps characters [{char_start}, {char_end})")
    return toks[0], toks[-1] + 1


def label_trace(tokenizer: Any, prompt: str, text: str, *, labeller: Callable[[list[str]], list[str]] | None = None,
                add_special_tokens: bool = False) -> list[dict[str, Any]]:
    """Segment and label one trace; rows of the span table without ``id``/``sample_idx``.

    ``labeller``: maps the list of segment texts to their labels (default: :func:`rule_label` per sentence)."""
    r0, r1 = reasoning_region(text)
    segments = split_segments(text, r0, r1)
    if labeller is None:
        labels = [rule_label(s.text, first=i == 0) for i, s in enumerate(segments)]
    else:
        labels = list(labeller([s.text for s in segments]))
        if len(labels) != len(segments):
            raise ValueError(f"labeller returned {len(labels)} labels for {len(segments)} segments")
    enc = encode_trace(tokenizer, prompt, text, add_special_tokens)
    rows = []
    off = len(prompt)
    for i, (seg, lab) in enumerate(zip(segments, labels)):
        cs, ce = seg.start + off, seg.end + off
        ts, te = char_to_token_span(enc["offsets"], cs, ce)
        rows.append({"segment_idx": i, "behaviour": lab, "char_start": cs, "char_end": ce,
                     "tok_start": ts, "tok_end": te, "text": seg.text})
    return rows


def label_generations(generations: Any, tokenizer: Any, *, labeller: Callable[[list[str]], list[str]] | None = None,
                      add_special_tokens: bool = False) -> pa.Table:
    """Span table (:data:`SPAN_SCHEMA`) for a generations table (polars/pyarrow/list of row mappings with
    ``id``, ``sample_idx``, ``prompt``, ``text``)."""
    rows_in = _rows(generations, ("id", "sample_idx", "prompt", "text"))
    out = []
    for r in rows_in:
        for row in label_trace(tokenizer, r["prompt"], r["text"], labeller=labeller,
                               add_special_tokens=add_special_tokens):
            out.append({"id": str(r["id"]), "sample_idx": int(r["sample_idx"]), **row})
    return pa.Table.from_pylist(out, schema=SPAN_SCHEMA)


def _rows(table: Any, required: Iterable[str]) -> list[dict[str, Any]]:
    if hasattr(table, "to_dicts"):
        rows = table.to_dicts()
    elif isinstance(table, pa.Table):
        rows = table.to_pylist()
    else:
        rows = list(table)
    for key in required:
        if rows and key not in rows[0]:
            raise ValueError(f"generations table lacks column {key!r} (needs {', '.join(required)})")
    return rows


# ---------------------------------------------------------------------------------------------- judge labeller

JUDGE_TEMPLATE = (
    "Classify the reasoning step below into exactly one category: {labels}.\n"
    "uncertainty_estimation: expresses doubt or confidence; adding_knowledge: recalls a fact or rule; "
    "backtracking: abandons or corrects an earlier step; example_testing: checks a result or tries an example; "
    "initializing: restates the problem; deduction: derives a new step.\n"
    "Step: {sentence}\nAnswer with the category name only.\nCategory:"
)


def parse_judge_answer(answer: str) -> str:
    """The first allowed label named in a judge's answer (``-``/space spellings accepted), else ``unparsed``."""
    norm = answer.lower().replace("-", "_")
    found = [(m.start(), lab) for lab in LABELS for m in [re.search(lab.replace("_", "[_ ]"), norm)] if m]
    return min(found)[1] if found else UNPARSED


def judge_labeller(generate: Callable[[list[str]], list[str]], template: str = JUDGE_TEMPLATE
                   ) -> Callable[[list[str]], list[str]]:
    """A ``labeller`` for :func:`label_trace` that asks a judge model: ``generate(prompts) -> texts`` is any
    generation backend (one completion per prompt). Answers naming no label become ``unparsed`` (ignored by the
    importance scores, which only use :data:`BEHAVIOURS`)."""
    def label(sentences: list[str]) -> list[str]:
        if not sentences:
            return []
        prompts = [template.format(labels=", ".join(LABELS), sentence=s) for s in sentences]
        answers = list(generate(prompts))
        if len(answers) != len(prompts):
            raise ValueError(f"judge generate() returned {len(answers)} texts for {len(prompts)} prompts")
        return [parse_judge_answer(a) for a in answers]
    return label
