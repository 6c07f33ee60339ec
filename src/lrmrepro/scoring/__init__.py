"""Scorers: extract the final answer from a generation and judge it against the gold answer.

``score_text`` scores one text, ``score_table`` a whole generations table (scores schema of docs/architecture.md).
Rules per answer format are in docs/tasks.md and in the docstrings of :mod:`.formats`.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Sequence

from . import formats
from .program import score_program

ANSWER_FORMATS = ("boxed_int", "boxed_math", "option_letter", "tfu", "short_text", "program")


@dataclasses.dataclass(frozen=True)
class Score:
    extracted: str | None
    correct: bool
    em: float | None = None  # short_text only
    f1: float | None = None  # short_text only


def score_text(answer_format: str, text: str | None, gold: str, aliases: Sequence[str] = (),
               metadata: dict[str, Any] | None = None, *, allow_weak_sandbox: bool = False) -> Score:
    """Score one generated ``text`` against ``gold`` (and ``aliases`` for short_text). ``metadata`` carries the test
    cases for ``program``. Malformed, empty or truncated text scores wrong; only an unknown format or a gold answer
    that does not fit the format raises ValueError."""
    text = text if isinstance(text, str) else ""
    if answer_format == "boxed_int":
        return Score(*formats.score_boxed_int(text, gold))
    if answer_format == "boxed_math":
        return Score(*formats.score_boxed_math(text, gold))
    if answer_format == "option_letter":
        letters = (metadata or {}).get("letters", "ABCD")
        return Score(*formats.score_option_letter(text, gold, letters))
    if answer_format == "tfu":
        return Score(*formats.score_tfu(text, gold))
    if answer_format == "short_text":
        ext, em, f1 = formats.score_short_text(text, gold, aliases)
        return Score(ext, em == 1.0, em, f1)
    if answer_format == "program":
        return Score(*score_program(text, metadata, allow_weak_sandbox))
    raise ValueError(f"unknown answer_format {answer_format!r}; allowed: {', '.join(ANSWER_FORMATS)}")


def score_table(items: Any, generations: Any, *, allow_weak_sandbox: bool = False) -> Any:
    """One scores row per generations row (same order): ``id``, ``sample_idx``, ``extracted``, ``correct``, ``em``,
    ``f1``. Items are joined on ``id``; a generation whose id is not among the items raises ValueError."""
    import polars as pl

    by_id = {r["id"]: r for r in items.select("id", "gold", "aliases", "answer_format", "metadata").iter_rows(named=True)}
    rows = []
    for g in generations.select("id", "sample_idx", "text").iter_rows(named=True):
        item = by_id.get(g["id"])
        if item is None:
            raise ValueError(f"generation id {g['id']!r} is not in the task items")
        meta = json.loads(item["metadata"]) if item["metadata"] else {}
        s = score_text(item["answer_format"], g["text"], item["gold"], item["aliases"] or (), meta,
                       allow_weak_sandbox=allow_weak_sandbox)
        rows.append({"id": g["id"], "sample_idx": g["sample_idx"], "extracted": s.extracted, "correct": s.correct,
                     "em": s.em, "f1": s.f1})
    return pl.DataFrame(rows, schema={"id": pl.String, "sample_idx": pl.Int32, "extracted": pl.String,
                                      "correct": pl.Boolean, "em": pl.Float64, "f1": pl.Float64})


__all__ = ["ANSWER_FORMATS", "Score", "score_table", "score_text"]
