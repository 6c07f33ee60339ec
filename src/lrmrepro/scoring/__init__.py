"""Scorers: extract the final answer from a generation and judge it against the gold answer.

``score_text`` scores one text, ``score_table`` a whole generations table (scores schema of docs/architecture.md),
``scoring_stats`` the per-run figures of ``scores.meta.json``. Rules per answer format and the truncation policies
(``strict``, ``lenient``) are in docs/tasks.md and in the docstrings of :mod:`.formats` and :mod:`.extract`. Every
answer format is one entry of :data:`.formats.FORMATS`; scoring dispatches through it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any, Sequence

from .extract import EXTRACTION_RULES, POLICIES, search_segments, think_closed
from .formats import FORMATS, Item, get_format

log = logging.getLogger(__name__)

#: the answer formats' names, in registry order (:data:`.formats.FORMATS`)
ANSWER_FORMATS = tuple(FORMATS)


@dataclasses.dataclass(frozen=True)
class Score:
    extracted: str | None
    correct: bool
    em: float | None = None  # short_text only
    f1: float | None = None  # short_text only
    rule: str = "none"  # the extraction rule that fired (EXTRACTION_RULES)


def is_truncated(finish_reason: str | None) -> bool | None:
    """``finish_reason == "length"`` (the output hit max_new_tokens); None when the finish reason is unknown."""
    if finish_reason is None or (isinstance(finish_reason, float) and finish_reason != finish_reason):
        return None
    return str(finish_reason) == "length"


def score_text(answer_format: str, text: str | None, gold: str, aliases: Sequence[str] = (),
               metadata: dict[str, Any] | None = None, *, allow_weak_sandbox: bool = False,
               truncated: bool | None = False, policy: str = "strict", check_gold: bool = True) -> Score:
    """Score one generated ``text`` against ``gold`` (and ``aliases`` for short_text). ``metadata`` carries the test
    cases for ``program``. ``truncated``: the output hit max_new_tokens (None = unknown, scored as not truncated);
    under ``policy="strict"`` a truncated output that did not close its think block has no answer (rule
    ``truncated``), one that closed it is searched after ``</think>`` only; ``"lenient"`` ignores truncation.
    Malformed, empty or truncated text scores wrong; only an unknown format or policy, or a gold answer that does
    not fit the format, raises ValueError (``check_gold=False``: the caller checked the gold answer already; the
    items of a task are checked when they are built, :mod:`lrmrepro.tasks.prepare`)."""
    fmt = get_format(answer_format)
    text = text if isinstance(text, str) else ""
    segs = search_segments(text, truncated, policy)
    item = Item(aliases=tuple(aliases), metadata=metadata or {}, truncated=truncated,
                allow_weak_sandbox=allow_weak_sandbox)
    if check_gold:  # a gold answer that does not fit raises, truncated or not
        fmt.check_gold(gold, item)
    j = fmt.unanswered("truncated") if segs is None else fmt.score(segs, gold, item)  # None: strict, truncated
    return Score(j.extracted, j.correct, j.em, j.f1, j.rule)


SCORES_SCHEMA = {
    "id": "String", "sample_idx": "Int32", "extracted": "String", "correct": "Boolean", "em": "Float64",
    "f1": "Float64", "truncated": "Boolean", "think_closed": "Boolean", "extraction_rule": "String",
}


def scores_schema() -> dict[str, Any]:
    import polars as pl

    return {k: getattr(pl, v) for k, v in SCORES_SCHEMA.items()}


def score_table(items: Any, generations: Any, *, allow_weak_sandbox: bool = False, policy: str = "strict") -> Any:
    """One scores row per generations row (same order): ``id``, ``sample_idx``, ``extracted``, ``correct``, ``em``,
    ``f1``, ``truncated`` (finish_reason ``length``; null when the table has no finish reason), ``think_closed``
    (the text holds ``</think>``), ``extraction_rule``. Items are joined on ``id``; a generation whose id is not
    among the items raises ValueError. ``policy``: ``strict`` or ``lenient`` (docs/tasks.md)."""
    import polars as pl

    if policy not in POLICIES:
        raise ValueError(f"unknown scoring policy {policy!r}; allowed: {', '.join(POLICIES)}")
    by_id = {r["id"]: r for r in items.select("id", "gold", "aliases", "answer_format", "metadata").iter_rows(named=True)}
    cols = ["id", "sample_idx", "text"] + (["finish_reason"] if "finish_reason" in generations.columns else [])
    rows = []
    metas: dict[str, dict[str, Any]] = {}  # per item: metadata parsed and gold answer checked once, not per row
    for g in generations.select(cols).iter_rows(named=True):
        item = by_id.get(g["id"])
        if item is None:
            raise ValueError(f"generation id {g['id']!r} is not in the task items")
        meta = metas.get(g["id"])
        if meta is None:
            meta = metas[g["id"]] = json.loads(item["metadata"]) if item["metadata"] else {}
            get_format(item["answer_format"]).check_gold(item["gold"], Item(metadata=meta))
        trunc = is_truncated(g.get("finish_reason"))
        try:
            s = score_text(item["answer_format"], g["text"], item["gold"], item["aliases"] or (), meta,
                           allow_weak_sandbox=allow_weak_sandbox, truncated=trunc, policy=policy, check_gold=False)
        except Exception as err:  # what a model wrote must not stop the run: this row scores wrong, named in the log
            log.warning("scoring item %r sample %s failed (%s: %s): scored wrong, extraction_rule 'error'", g["id"],
                        g["sample_idx"], type(err).__name__, str(err)[:200])
            j = get_format(item["answer_format"]).unanswered("error")
            s = Score(j.extracted, j.correct, j.em, j.f1, j.rule)
        rows.append({"id": g["id"], "sample_idx": g["sample_idx"], "extracted": s.extracted, "correct": s.correct,
                     "em": s.em, "f1": s.f1, "truncated": trunc, "think_closed": think_closed(g["text"]),
                     "extraction_rule": s.rule})
    return pl.DataFrame(rows, schema=scores_schema())


def scoring_stats(scores: Any, policy: str) -> dict[str, Any]:
    """What ``scores.meta.json`` reports about a scores table: ``scoring_policy``, ``accuracy``, ``n``,
    ``extraction_rules`` (rows per rule, every rule listed), ``truncation_rate`` (share of rows with
    ``truncated`` true; unknown counts as not truncated), ``think_closed_rate``, ``unanswered_rate`` (extracted
    null)."""
    n = scores.height
    rules = {r: 0 for r in EXTRACTION_RULES}
    for r in scores.get_column("extraction_rule").to_list():
        rules[r] = rules.get(r, 0) + 1

    def rate(col: Any) -> float:
        return float(col.fill_null(False).cast(int).sum()) / n if n else float("nan")

    return {
        "scoring_policy": policy, "n": n,
        "accuracy": float(scores.get_column("correct").cast(float).mean()) if n else float("nan"),
        "extraction_rules": rules,
        "truncation_rate": rate(scores.get_column("truncated")),
        "think_closed_rate": rate(scores.get_column("think_closed")),
        "unanswered_rate": rate(scores.get_column("extracted").is_null()),
    }


__all__ = ["ANSWER_FORMATS", "EXTRACTION_RULES", "FORMATS", "POLICIES", "SCORES_SCHEMA", "Score", "is_truncated",
           "score_table", "score_text", "scoring_stats"]
