"""Official SQuAD / MuSiQue answer normalisation, exact match and token F1 (as in the MuSiQue evaluation script,
which copies SQuAD v1.1's ``normalize_answer``)."""

from __future__ import annotations

import collections
import re
import string
from typing import Iterable

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation)


def normalize_answer(s: str) -> str:
    """Lowercase, remove punctuation, remove articles a/an/the, collapse whitespace (SQuAD order)."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCT)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str) -> float:
    pred_toks = normalize_answer(prediction).split()
    gold_toks = normalize_answer(gold).split()
    common = collections.Counter(pred_toks) & collections.Counter(gold_toks)
    same = sum(common.values())
    if not pred_toks or not gold_toks:  # SQuAD: F1 is 1 if both empty, else 0
        return float(pred_toks == gold_toks)
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_toks), same / len(gold_toks)
    return 2 * precision * recall / (precision + recall)


def best_em_f1(prediction: str, golds: Iterable[str]) -> tuple[float, float]:
    """Max EM and max F1 over the gold answer and its aliases (each maximised separately, as MuSiQue does)."""
    golds = [g for g in golds if g is not None]
    if not golds:
        return 0.0, 0.0
    return max(exact_match(prediction, g) for g in golds), max(token_f1(prediction, g) for g in golds)
