"""A worked example of divergence (the reproducibility paper's example of one problem answered differently at two
batch sizes), picked from an experiment's own divergence points (:mod:`lrmrepro.stats.divergence`), never typed in.

Among the problems whose greedy outputs diverge across the runtime configurations of a group, the example is the
one that says most: first a problem answered correctly under one configuration and wrongly under another, then
one whose two configurations differ in the batch size alone, then the earliest divergence (most of the text
differs), then the problem id. It compares the group's reference configuration with that other one: the text both
share up to the divergence (its end), each continuation, and at the first differing token each configuration's
token, top-1 and top-2 probabilities and margin, the kind of flip, and the extracted answers.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import polars as pl

from ..stats.labels import CONFIG_KEYS, GROUP_KEYS

#: characters of shared text before the divergence and of each continuation shown
CONTEXT_CHARS, CONTINUATION_CHARS = 400, 600


def _config(row: Mapping[str, Any]) -> tuple:
    return tuple(row[k] for k in CONFIG_KEYS)


def _describe(config: tuple) -> str:
    labels = dict(zip(CONFIG_KEYS, config))
    return f"{labels['backend']} p{labels['parallel']} bs{labels['batch_size']} {labels['hardware']}"


def pick(points: pl.DataFrame, correct: Callable[[Mapping[str, Any], tuple, str], bool | None]) -> dict[str, Any] | None:
    """The example's group, problem, reference and other configuration (their divergence rows), or None when no
    problem diverged. ``correct(group, config, id)``: whether that run answered the problem correctly."""
    if points.height == 0:
        return None
    best, best_key = None, None
    for key, rows in points.group_by([*GROUP_KEYS, "id"], maintain_order=True):
        rows = rows.to_dicts()
        refs = [r for r in rows if r["reference"]]
        if not refs:
            continue
        ref = refs[0]
        group = {k: ref[k] for k in GROUP_KEYS}
        for other in rows:
            if other is ref or _config(other) == _config(ref) or other["token"] == ref["token"]:
                continue
            a, b = correct(group, _config(ref), ref["id"]), correct(group, _config(other), ref["id"])
            only_batch = all(ref[k] == other[k] for k in CONFIG_KEYS if k != "batch_size")
            rank = (a is not None and b is not None and a != b, only_batch, -ref["div_index"])
            tie = (ref["id"], _config(other))
            if best_key is None or rank > best_key[0] or (rank == best_key[0] and tie < best_key[1]):
                best, best_key = {"group": group, "id": ref["id"], "reference": ref, "other": other}, (rank, tie)
    return best


def _shared_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _fence(text: str) -> str:
    return "```text\n" + text.replace("```", "ʼʼʼ") + "\n```"


def example_markdown(example: dict[str, Any] | None, texts: Mapping[tuple, str],
                     answers: Mapping[tuple, tuple[str | None, bool | None]], experiment: str, n_configs: int) -> str:
    """The page of ``example`` (:func:`pick`); ``texts`` / ``answers``: (config, id) -> the run's output text /
    (extracted answer, correct)."""
    title = f"**A worked example of divergence: experiment {experiment}**"
    if example is None:
        return (f"{title}\n\nNo problem's greedy output diverged across the {n_configs} runtime configurations of "
                "this experiment: every configuration generated the same tokens for every problem.\n")
    ref, other, pid = example["reference"], example["other"], example["id"]
    ta, tb = texts[(_config(ref), pid)], texts[(_config(other), pid)]
    cut = _shared_prefix(ta, tb)
    group = ", ".join(f"{k} {v}" for k, v in example["group"].items())
    lines = [title, "",
             f"Problem `{pid}` ({group}): the outputs of {_describe(_config(ref))} (the reference configuration) and "
             f"{_describe(_config(other))} agree on the first {ref['div_index']} tokens and differ from token "
             f"{ref['div_index']} on.", "",
             "| configuration | token at the divergence | top-1 p | top-2 p | margin (nats) | flip | answer | correct |",
             "|---|---|---|---|---|---|---|---|"]
    for row in (ref, other):
        answer, right = answers.get((_config(row), pid), (None, None))
        lines.append(f"| {_describe(_config(row))} | {row['token']} | {math.exp(row['top1_logprob']):.4f} | "
                     f"{math.exp(row['top2_logprob']):.4f} | {row['margin']:.4f} | {row['flip']} | "
                     f"{answer if answer is not None else '–'} | {'–' if right is None else ('yes' if right else 'no')} |")
    lines += ["", f"Shared text up to the divergence (its last {CONTEXT_CHARS} characters):", "",
              _fence(("…" if cut > CONTEXT_CHARS else "") + ta[max(0, cut - CONTEXT_CHARS):cut]), ""]
    for row, text in ((ref, ta), (other, tb)):
        more = "…" if len(text) - cut > CONTINUATION_CHARS else ""
        lines += [f"{_describe(_config(row))} continues:", "", _fence(text[cut:cut + CONTINUATION_CHARS] + more), ""]
    return "\n".join(lines)
