"""Run a function with a time bound that works in any thread.

math-verify bounds its own work with ``signal.alarm``, which Python allows only in the main thread; called from a
worker thread (a thread pool scoring in parallel, a notebook's executor) it gets no timeout at all and a hostile
expression can stall it for minutes. :func:`call` runs the function in a separate worker process (kept between
calls, started with ``spawn`` so that a host with torch or vLLM threads forks nothing), waits at most ``timeout``
seconds, and on expiry kills the worker (the next call starts a new one) and raises :class:`TimeoutError`.
"""

from __future__ import annotations

import atexit
import concurrent.futures as cf
import multiprocessing
import threading
from typing import Any, Callable

_lock = threading.Lock()
_pool: cf.ProcessPoolExecutor | None = None


def _get_pool() -> cf.ProcessPoolExecutor:
    global _pool
    if _pool is None:
        _pool = cf.ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
    return _pool


def _discard_pool() -> None:
    global _pool
    pool, _pool = _pool, None
    if pool is None:
        return
    for p in list(getattr(pool, "_processes", {}).values()):  # the stalled worker: shutdown() alone would wait for it
        p.kill()
    pool.shutdown(wait=False, cancel_futures=True)


@atexit.register
def _shutdown() -> None:  # before the interpreter tears down the modules the pool's callbacks use
    global _pool
    pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)


def call(fn: Callable[..., Any], *args: Any, timeout: float) -> Any:
    """``fn(*args)`` in the worker process (``fn`` and its arguments picklable), at most ``timeout`` seconds;
    calls are serialised (one worker)."""
    with _lock:
        fut = _get_pool().submit(fn, *args)
        try:
            return fut.result(timeout=timeout)
        except cf.TimeoutError:
            _discard_pool()
            raise TimeoutError(f"{getattr(fn, '__qualname__', fn)} took over {timeout:g} s") from None
        except cf.process.BrokenProcessPool:
            _discard_pool()
            raise
