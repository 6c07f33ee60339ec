"""The generation loop both backends share: resume from the chunk store, generate the missing chunks, finalise the
table and report the figures for meta.json.

A backend says only how to generate one chunk: ``generate_chunk(chunk_idx, span, clock)`` returns the table rows of
the prompts ``span`` (a range of prompt indices, ``common.chunks``), timing its model call inside ``with clock:``
(what ``tokens_per_s`` divides by: the model call, not the conversion into rows).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from ..progress import Progress
from .cache import FROM_ENVIRONMENT, cache_dir
from .common import ChunkStore, chunks, throughput

log = logging.getLogger(__name__)


class Stopwatch:
    """Seconds spent inside ``with stopwatch:`` blocks, added up."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._start = 0.0

    def __enter__(self) -> "Stopwatch":
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.seconds += time.perf_counter() - self._start


#: ``generate_chunk(chunk_idx, span, clock)`` -> the rows of that chunk (``common.GENERATION_SCHEMA``)
ChunkGenerator = Callable[[int, range, Stopwatch], Sequence[dict[str, Any]]]


def generate_chunks(prompts: Sequence[str], ids: Sequence[str], *, batch_size: int, output: str | Path,
                    key: dict[str, Any], code: str | None, generate_chunk: ChunkGenerator, progress: bool = True,
                    desc: str = "generate", cache: str | Path | None | object = FROM_ENVIRONMENT) -> dict[str, Any]:
    """Cut the prompts into consecutive chunks of ``batch_size``, generate every chunk the ``ChunkStore`` of
    ``output`` (``key``: the backend's ``store_key``; ``code``: the rule's code fingerprint) does not hold yet, write
    ``output`` and return the loop's figures for meta.json (chunks, resumed chunks, generation seconds, throughput).
    ``cache``: the generation cache's folder (default: ``$LRMREPRO_CACHE``, which the workflow sets; unset: chunks
    beside the output, no finished tables kept); a run whose finished table is there is copied, not generated."""
    if len(prompts) != len(ids):
        raise ValueError("prompts and ids differ in length")
    spans = chunks(len(prompts), batch_size)
    store = ChunkStore(output, key, code=code, cache=cache_dir() if cache is FROM_ENVIRONMENT else cache)
    cached = store.cached()
    if cached is not None:
        log.info("%s: the finished table is in the generation cache (%s): copied, nothing generated", output,
                 store.dir)
        return {"n_prompts": len(prompts), "n_chunks": len(spans), "resumed_chunks": len(spans),
                "generation_seconds": 0.0, "cache": "hit", **throughput(cached, [], 0.0)}
    resumed = store.finished_chunks()
    if resumed:
        log.info("resuming: %d of %d chunks already generated", len(resumed), len(spans))
    todo = [(i, span) for i, span in enumerate(spans) if not store.done(i)]
    clock = Stopwatch()
    # only the lengths of finished rows are kept: holding every row's nested top-k lists until the end made Python's
    # cyclic garbage collector rescan them after each chunk (+30 % wall time on 256 short prompts)
    output_lengths: list[int] = []
    # a bar on a terminal (``progress`` False: none), plain lines in the job's log (chunk i of N, tokens/s, ETA)
    with Progress(f"{desc} -> {output}", len(spans), len(spans) - len(todo), unit="chunk", logger=log,
                  bar=None if progress else False) as report:
        for chunk_idx, span in todo:
            rows = generate_chunk(chunk_idx, span, clock)
            store.write(chunk_idx, rows)
            output_lengths.extend(r["output_length"] for r in rows)
            report.update(tokens=sum(r["output_length"] for r in rows), model_seconds=clock.seconds)
    table = store.finalize(len(spans))
    return {
        "n_prompts": len(prompts),
        "n_chunks": len(spans),
        "resumed_chunks": len(resumed),
        "generation_seconds": clock.seconds,
        "cache": "miss" if store.cache is not None else "off",
        **throughput(table, output_lengths, clock.seconds),
    }
