"""What a gold answer of each answer format must look like, checked when a task's items are built
(:func:`check_items`, called by :mod:`lrmrepro.tasks.prepare`): a bad gold answer fails ``prepare_task``, naming the
task, the item and the format, before any model generates for it.

Each answer format of the scoring registry (:data:`lrmrepro.scoring.formats.FORMATS`) checks its gold answers with
the rule of the same name here (``AnswerFormat.check_gold``), so task preparation and scoring apply one rule;
``tests/test_registries.py`` checks that both name the same formats. The rules live in the task stage, not in
:mod:`lrmrepro.scoring`, so that the items' code fingerprint (:mod:`lrmrepro.fingerprint`) holds these few lines and
not the scorers: editing a scorer reruns scoring, never task preparation and generation.

The rules accept a gold answer in its canonical form, the form the loaders and generators write (an integer
``"204"``, a label ``"True"``, an option ``"(B)"``); each is a subset of what the format's scorer normalises.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable, Iterable, Mapping


class GoldAnswerError(ValueError):
    """A gold answer that does not fit its answer format."""


@dataclasses.dataclass(frozen=True)
class GoldRule:
    """``fits(gold, metadata)``: whether ``gold`` is a gold answer of the format; ``says(metadata)``: what one must be,
    in words (the error message)."""

    fits: Callable[[str, Mapping[str, Any]], bool]
    says: Callable[[Mapping[str, Any]], str]


def _letters(metadata: Mapping[str, Any]) -> str:
    return str(metadata.get("letters", "ABCD"))


def _letter_fits(gold: str, metadata: Mapping[str, Any]) -> bool:
    letters = _letters(metadata)
    return re.fullmatch(rf"\(?\s*[{letters}{letters.lower()}]\s*\)?", gold.strip()) is not None


def _text(gold: Any) -> bool:
    return isinstance(gold, str) and bool(gold.strip())


#: answer format -> its gold rule
GOLD_RULES: dict[str, GoldRule] = {
    "boxed_int": GoldRule(lambda g, m: re.fullmatch(r"[+-]?\d+", g.strip()) is not None, lambda m: "an integer"),
    "boxed_math": GoldRule(lambda g, m: _text(g), lambda m: "a non-empty LaTeX answer"),
    "option_letter": GoldRule(_letter_fits, lambda m: f"one of ({'), ('.join(_letters(m))})"),
    "tfu": GoldRule(lambda g, m: g.strip().lower() in ("true", "false", "uncertain", "unknown"),
                    lambda m: "True, False or Uncertain"),
    "short_text": GoldRule(lambda g, m: _text(g), lambda m: "a non-empty text"),
    # the item's test cases (metadata.tests) are its gold answer; the gold field is unused (empty)
    "program": GoldRule(lambda g, m: True, lambda m: "anything (unused)"),
}


def check_gold(answer_format: str, gold: Any, metadata: Mapping[str, Any] | None = None) -> None:
    """Raise :class:`GoldAnswerError` when ``gold`` does not fit ``answer_format`` (``metadata``: the item's, e.g.
    ``letters`` of option_letter), or ValueError for an unknown format."""
    rule = GOLD_RULES.get(answer_format)
    if rule is None:
        raise ValueError(f"unknown answer_format {answer_format!r}; allowed: {', '.join(GOLD_RULES)}")
    meta = metadata or {}
    if not isinstance(gold, str) or not rule.fits(gold, meta):
        raise GoldAnswerError(f"{answer_format} gold answer {gold!r} is not {rule.says(meta)}")


def check_items(task: str, rows: Iterable[Mapping[str, Any]]) -> None:
    """Check the gold answer of every item (rows of the task-items schema, ``metadata`` a JSON string); the first
    bad one raises :class:`GoldAnswerError` naming the task, the item's id and index, and the format."""
    import json

    for i, row in enumerate(rows):
        meta = json.loads(row["metadata"]) if row.get("metadata") else {}
        try:
            check_gold(row["answer_format"], row["gold"], meta)
        except ValueError as err:
            raise GoldAnswerError(f"task {task!r}, item {row['id']!r} (index {i}), answer format "
                                  f"{row['answer_format']!r}: {err}") from None
