"""Progress of a long job: a bar where a terminal is attached, plain lines in the job's log otherwise.

A workflow job writes into its rule's log (``runlog.rule_log`` redirects stderr there), where a progress bar is a
stream of carriage returns; so every long loop (generation chunks, distillation steps, importance traces, the
default model's training) reports through :class:`Progress`: a ``tqdm`` bar when stderr is a terminal (the package
used by hand), and otherwise a log line at most every ``every`` seconds and at the end: ``<what>: <unit> i of N,
<rate>, ETA hh:mm:ss``. ``tail -f logs/<rule>/<job>.log`` follows a running job.

tqdm draws the bar (the common choice in this stack: transformers, llm-compressor and vLLM use it too).
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, Iterable, Iterator, TypeVar

from tqdm import tqdm

T = TypeVar("T")

#: seconds between two log lines of one loop
EVERY_SECONDS = 10.0


def on_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _clock(seconds: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(seconds)) if seconds < 86400 else f"{seconds / 3600:.0f} h"


class Progress:
    """``total`` units of work (``done`` of them finished before, e.g. resumed chunks); :meth:`update` after each.
    ``tokens``/``model_seconds`` (optional): the rate is then tokens per second of the model calls, otherwise units
    per second of wall time. ``bar``: None draws a bar only on a terminal."""

    def __init__(self, what: str, total: int, done: int = 0, *, unit: str = "chunk", every: float | None = None,
                 logger: logging.Logger | None = None, bar: bool | None = None) -> None:
        self.what, self.total, self.done, self.unit = what, total, done, unit
        self.every = EVERY_SECONDS if every is None else every
        self.first = done
        self.tokens = 0
        self.log = logger or logging.getLogger(__name__)
        self.start = self.last = time.perf_counter()
        show_bar = on_terminal() if bar is None else bar
        self.bar = tqdm(total=total, initial=done, desc=what, unit=unit, mininterval=2) if show_bar else None

    def update(self, n: int = 1, *, tokens: int | None = None, model_seconds: float | None = None,
               note: str = "") -> None:
        self.done += n
        if tokens is not None:
            self.tokens += tokens
        if self.bar is not None:
            self.bar.update(n)
            if note:
                self.bar.set_postfix_str(note, refresh=False)
            return
        now = time.perf_counter()
        if now - self.last < self.every and self.done < self.total:
            return
        self.last = now
        eta = (now - self.start) / max(1, self.done - self.first) * (self.total - self.done)
        if model_seconds is not None:
            rate = f"{self.tokens / model_seconds:.0f} tokens/s" if model_seconds > 0 else "nan tokens/s"
        else:
            rate = f"{(self.done - self.first) / max(now - self.start, 1e-9):.2f} {self.unit}s/s"
        self.log.info("%s: %s %d of %d, %s%s, ETA %s", self.what, self.unit, self.done, self.total, rate,
                      f", {note}" if note else "", _clock(eta))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def track(items: Iterable[T], what: str, total: int, *, unit: str = "item", logger: logging.Logger | None = None,
          every: float | None = None) -> Iterator[T]:
    """``items``, reporting one unit of progress after each."""
    with Progress(what, total, unit=unit, logger=logger, every=every) as p:
        for item in items:
            yield item
            p.update()
