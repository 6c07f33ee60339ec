"""Pairing generations rows with their labelled spans, re-encoded exactly as the labeller encoded them."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Iterator

from .behaviours import _rows, encode_trace
from ..progress import track


@dataclass
class Trace:
    key: tuple[str, int]             # (id, sample_idx)
    input_ids: list[int]
    completion_start: int            # first completion token
    spans: list[tuple[str, int, int]]  # (behaviour, tok_start, tok_end) of every labelled segment


def iter_traces(generations: Any, spans: Any, tokenizer: Any, *, add_special_tokens: bool = False,
                max_tokens: int | None = None, progress: str | None = None) -> Iterator[Trace]:
    """One :class:`Trace` per generations row (in row order). Spans are checked against the re-encoded text
    (their characters must equal the stored segment text; token ends within the sequence), so a span table built
    from other generations or another tokenizer fails loudly. ``max_tokens`` truncates each sequence (spans
    ending after it are dropped). ``progress``: what to call the pass in its progress lines (trace i of N, ETA;
    :mod:`lrmrepro.progress`)."""
    by_key: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for s in _rows(spans, ("id", "sample_idx", "behaviour", "char_start", "char_end", "tok_start", "tok_end", "text")):
        by_key[(str(s["id"]), int(s["sample_idx"]))].append(s)
    gens = _rows(generations, ("id", "sample_idx", "prompt", "text"))
    gen_keys = {(str(r["id"]), int(r["sample_idx"])) for r in gens}
    unknown = sorted(set(by_key) - gen_keys)
    if unknown:
        raise ValueError(f"spans refer to {len(unknown)} (id, sample_idx) pairs absent from the generations, "
                         f"e.g. {unknown[:3]}")
    for r in (track(gens, progress, len(gens), unit="trace") if progress else gens):
        key = (str(r["id"]), int(r["sample_idx"]))
        enc = encode_trace(tokenizer, r["prompt"], r["text"], add_special_tokens)
        ids = enc["input_ids"]
        n = len(ids) if max_tokens is None else min(len(ids), max_tokens)
        out = []
        for s in sorted(by_key.get(key, []), key=lambda s: int(s["segment_idx"])):
            cs, ce, ts, te = int(s["char_start"]), int(s["char_end"]), int(s["tok_start"]), int(s["tok_end"])
            if enc["full_text"][cs:ce] != s["text"] or not 0 <= ts < te <= len(ids):
                raise ValueError(f"span {key} segment {s['segment_idx']} does not match the re-encoded trace "
                                 f"(chars [{cs}, {ce}), tokens [{ts}, {te}) of {len(ids)}): were the spans built "
                                 "from these generations with this tokenizer?")
            if te <= n:
                out.append((str(s["behaviour"]), ts, te))
        yield Trace(key, ids[:n], min(enc["completion_start"], n), out)
